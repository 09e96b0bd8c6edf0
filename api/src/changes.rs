//! How a committed change reaches the subscriptions that follow it, on every
//! replica, without any subscription polling the database.
//!
//! A writer calls [`Changes::announce`] in the transaction that made the change,
//! after its write. On PostgreSQL that is `pg_notify('agora_changes', 'order:<uuid>')`:
//! PostgreSQL delivers it once the transaction commits (never when it rolls
//! back) to every connection that listens, and each replica holds exactly one
//! (`LISTEN agora_changes`, application name `agora-changes`), which wakes the
//! local subscriptions of that topic. On SQLite (one process by design) the
//! topic goes to a relay in this process that first waits for the writing
//! transaction to end and only then wakes the subscriptions (see `sqlite_relay`).
//!
//! Either way a subscription is woken only once the change can be read, so it
//! reads once per wake. When the listener loses its connection it reconnects
//! with backoff, listens again and then wakes every subscription of the
//! process once: each re-reads, so a notification sent while it was away loses
//! nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// The PostgreSQL notification channel every replica listens on.
pub const CHANNEL: &str = "agora_changes";

/// The `application_name` of the listener's connection (how an operator, or a
/// test, finds it in `pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "agora-changes";

/// The first wait before reconnecting a lost listener; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What changed: the kind of record and its id. A notification's payload is
/// `<kind>:<uuid>`, at most 50 bytes (PostgreSQL allows 8,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// An order's state, escrow or history (`orderUpdated`).
    Order(Uuid),
    /// The metered session of the order with this id (`sessionUpdated`).
    Session(Uuid),
    /// A dispute (`disputeUpdated`).
    Dispute(Uuid),
    /// A new notification for the user with this id (`myNotifications`).
    Notifications(Uuid),
    /// The sessions or roles of the user with this id (a logout, a revoked
    /// session, a role removed): its subscriptions check they may go on.
    Account(Uuid),
}

impl Topic {
    fn kind(self) -> &'static str {
        match self {
            Topic::Order(_) => "order",
            Topic::Session(_) => "session",
            Topic::Dispute(_) => "dispute",
            Topic::Notifications(_) => "notifications",
            Topic::Account(_) => "account",
        }
    }

    fn id(self) -> Uuid {
        match self {
            Topic::Order(id)
            | Topic::Session(id)
            | Topic::Dispute(id)
            | Topic::Notifications(id)
            | Topic::Account(id) => id,
        }
    }

    /// The notification payload, `order:<uuid>`.
    pub fn payload(self) -> String {
        format!("{}:{}", self.kind(), self.id())
    }

    /// Reads a payload back; `None` for anything this version does not know
    /// (a newer replica's kind during a rolling upgrade is ignored, not an error).
    pub fn parse(payload: &str) -> Option<Topic> {
        let (kind, id) = payload.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "order" => Some(Topic::Order(id)),
            "session" => Some(Topic::Session(id)),
            "dispute" => Some(Topic::Dispute(id)),
            "notifications" => Some(Topic::Notifications(id)),
            "account" => Some(Topic::Account(id)),
            _ => None,
        }
    }
}

/// The subscriptions of this process, by topic. A topic has an entry only
/// while some subscription follows it, so a change nobody follows costs one
/// map lookup and an idle subscription costs one watch receiver.
#[derive(Default)]
struct Hub {
    topics: Mutex<HashMap<Topic, watch::Sender<()>>>,
}

impl Hub {
    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<Topic, watch::Sender<()>>> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, topic: Topic) {
        if let Some(tx) = self.topics().get(&topic) {
            tx.send_modify(|_| {});
        }
    }

    fn wake_all(&self) {
        for tx in self.topics().values() {
            tx.send_modify(|_| {});
        }
    }
}

/// One subscription's interest in a topic. [`Watch::changed`] returns after
/// each change of the topic committed since the watch was made (or since the
/// last return); several changes in between are one wake.
pub struct Watch {
    hub: Arc<Hub>,
    topic: Topic,
    rx: watch::Receiver<()>,
}

impl Watch {
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The sender lives in the hub as long as any receiver of its topic
            // (see `Drop`), so this is unreachable; never wake spuriously in a loop.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut topics = self.hub.topics();
        // `self.rx` is still alive here: one receiver left means it is the last.
        if topics.get(&self.topic).is_some_and(|tx| tx.receiver_count() <= 1) {
            topics.remove(&self.topic);
        }
    }
}

/// The application's side of change notifications: announce in a writing
/// transaction, watch in a subscription.
pub struct Changes {
    hub: Arc<Hub>,
    relay: Relay,
}

enum Relay {
    /// `pg_notify` in the writer's transaction; the listener task fans out.
    Postgres,
    /// Topics for the after-commit relay of this process.
    Sqlite(mpsc::UnboundedSender<Pending>),
}

impl Changes {
    /// Starts what carries changes for `db`'s backend: on PostgreSQL the
    /// listener (its first `LISTEN` is done when this returns, so a change
    /// committed from now on reaches this process), on SQLite the relay.
    pub async fn start(db: &DatabaseConnection) -> anyhow::Result<Changes> {
        let hub = Arc::new(Hub::default());
        let relay = match db.get_database_backend() {
            DbBackend::Postgres => {
                let options = (*db.get_postgres_connection_pool().connect_options())
                    .clone()
                    .application_name(LISTENER_APPLICATION_NAME);
                let listener = listen(&options)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot LISTEN for changes on PostgreSQL: {e}"))?;
                tokio::spawn(pg_listener(options, listener, hub.clone()));
                Relay::Postgres
            }
            _ => {
                let (tx, rx) = mpsc::unbounded_channel();
                let options = (*db.get_sqlite_connection_pool().connect_options()).clone();
                tokio::spawn(sqlite_relay(options, rx, hub.clone()));
                Relay::Sqlite(tx)
            }
        };
        Ok(Changes { hub, relay })
    }

    /// Follows `topic`. Make the watch before reading the record, so a change
    /// committed between the read and the first wait still wakes it.
    pub fn watch(&self, topic: Topic) -> Watch {
        let rx = self.hub.topics().entry(topic).or_insert_with(|| watch::channel(()).0).subscribe();
        Watch {
            hub: self.hub.clone(),
            topic,
            rx,
        }
    }

    /// Tells the subscriptions of `topics`, on every replica, that they
    /// changed, once the transaction `db` is in commits. Call it in that
    /// transaction, after its write (SQLite's relay relies on the write lock
    /// the write took); outside a transaction it is delivered at once.
    pub async fn announce<C: ConnectionTrait>(&self, db: &C, topics: &[Topic]) -> Result<(), DbErr> {
        match &self.relay {
            Relay::Postgres => {
                for topic in topics {
                    db.execute_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "SELECT pg_notify($1, $2)",
                        [CHANNEL.into(), topic.payload().into()],
                    ))
                    .await?;
                }
            }
            Relay::Sqlite(tx) => {
                let (noted, seen) = oneshot::channel();
                let pending = Pending { topics: topics.to_vec(), noted };
                // Wait until the relay has read the database's version while
                // this transaction still holds the write lock (see
                // `sqlite_relay`). A relay that stopped (shutdown) has nobody
                // left to wake.
                if tx.send(pending).is_ok() {
                    let _ = seen.await;
                }
            }
        }
        Ok(())
    }

    /// Wakes every subscription of this process once (they re-read).
    pub fn wake_all(&self) {
        self.hub.wake_all();
    }
}

/// A connection of its own (not one of the pool's) with `LISTEN` done.
async fn listen(options: &sqlx::postgres::PgConnectOptions) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.clone())
        .await?;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Receives notifications for as long as the process runs and wakes their
/// topics; on a lost connection, listens again (with backoff while that
/// fails) and wakes everything once.
async fn pg_listener(options: sqlx::postgres::PgConnectOptions, first: sqlx::postgres::PgListener, hub: Arc<Hub>) {
    let mut listener = Some(first);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(current) = listener.as_mut() else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match listen(&options).await {
                Ok(l) => {
                    tracing::info!("change listener reconnected to PostgreSQL");
                    listener = Some(l);
                    backoff = FIRST_BACKOFF;
                    hub.wake_all();
                }
                Err(e) => tracing::warn!(error = %e, retry.after_ms = backoff.as_millis() as u64, "change listener cannot reconnect"),
            }
            continue;
        };
        match current.try_recv().await {
            Ok(Some(n)) => match Topic::parse(n.payload()) {
                Some(topic) => hub.publish(topic),
                None => tracing::debug!(payload = n.payload(), "change notification of an unknown kind ignored"),
            },
            // The connection was lost and sqlx has listened again on a new one.
            Ok(None) => {
                tracing::info!("change listener lost its connection and listens again");
                hub.wake_all();
            }
            Err(e) => {
                tracing::warn!(error = %e, "change listener lost PostgreSQL");
                listener = None;
            }
        }
    }
}

/// An announcement on SQLite, until its transaction has ended.
struct Pending {
    topics: Vec<Topic>,
    /// Answered once the relay has read the database's version.
    noted: oneshot::Sender<()>,
}

/// How long the relay waits for an announcing transaction to end before it
/// wakes the topics anyway (it rolled back, or wrote outside a transaction,
/// and nothing else has been committed since).
const SQLITE_MAX_WAIT: Duration = Duration::from_secs(1);
/// How often the relay reads the version while an announcement waits.
const SQLITE_RECHECK: Duration = Duration::from_millis(2);

/// SQLite's after-commit delivery. SQLite has one writer at a time, and a
/// writer holds the write lock from its first write until it commits or
/// rolls back; writers announce after their write, so while `announce` runs
/// the announcing transaction is the one writer. The relay reads
/// `PRAGMA data_version` on a connection of its own then (a read: it never
/// blocks a writer) and answers; the value changes only when another
/// connection commits, and nothing else can commit before the announcing
/// transaction has ended. So once it has changed, that transaction is over
/// and the topics are woken. The relay reads it only while an announcement
/// waits (every 2 ms, at most a second); subscriptions never read for it.
/// SQLite offers no after-commit callback to sqlx (its commit hook runs before
/// the commit is visible to other connections), hence this; taking the write
/// lock as a barrier instead would make concurrent writers fail with
/// SQLITE_BUSY.
async fn sqlite_relay(
    options: sqlx::sqlite::SqliteConnectOptions,
    mut incoming: mpsc::UnboundedReceiver<Pending>,
    hub: Arc<Hub>,
) {
    use sea_orm::sqlx::Connection as _;
    let mut conn: Option<sqlx::SqliteConnection> = None;
    let mut waiting: Vec<(Option<i64>, tokio::time::Instant, Vec<Topic>)> = Vec::new();
    loop {
        let next = if waiting.is_empty() {
            incoming.recv().await
        } else {
            tokio::select! {
                p = incoming.recv() => p,
                () = tokio::time::sleep(SQLITE_RECHECK) => None,
            }
        };
        if conn.is_none() {
            match sqlx::SqliteConnection::connect_with(&options).await {
                Ok(c) => conn = Some(c),
                Err(e) => tracing::warn!(error = %e, "change relay cannot open SQLite; wakes without waiting"),
            }
        }
        let version = match conn.as_mut() {
            Some(c) => match sqlx::query_scalar::<_, i64>("PRAGMA data_version").fetch_one(&mut *c).await {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "change relay cannot read SQLite's version; wakes without waiting");
                    conn = None;
                    None
                }
            },
            None => None,
        };
        match next {
            Some(p) => {
                let _ = p.noted.send(());
                waiting.push((version, tokio::time::Instant::now(), p.topics));
            }
            None if waiting.is_empty() && incoming.is_closed() => return,
            None => {}
        }
        waiting.retain(|(noted, since, topics)| {
            let over = version.is_none() || *noted != version || since.elapsed() >= SQLITE_MAX_WAIT;
            if over {
                for topic in topics {
                    hub.publish(*topic);
                }
            }
            !over
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_as_its_topic() {
        let id = Uuid::now_v7();
        for topic in [
            Topic::Order(id),
            Topic::Session(id),
            Topic::Dispute(id),
            Topic::Notifications(id),
            Topic::Account(id),
        ] {
            assert_eq!(Topic::parse(&topic.payload()), Some(topic));
        }
        assert_eq!(Topic::Order(id).payload(), format!("order:{id}"));
    }

    #[test]
    fn unknown_or_malformed_payloads_are_no_topic() {
        let id = Uuid::now_v7();
        assert_eq!(Topic::parse(&format!("invoice:{id}")), None);
        assert_eq!(Topic::parse("order:not-a-uuid"), None);
        assert_eq!(Topic::parse("order"), None);
        assert_eq!(Topic::parse(""), None);
    }

    #[tokio::test]
    async fn a_change_wakes_the_watches_of_its_topic_only() {
        let hub = Arc::new(Hub::default());
        let changes = Changes {
            hub: hub.clone(),
            relay: Relay::Postgres,
        };
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut on_a = changes.watch(Topic::Order(a));
        let mut on_b = changes.watch(Topic::Order(b));
        hub.publish(Topic::Order(a));
        hub.publish(Topic::Dispute(b));
        on_a.changed().await;
        assert!(!on_b.rx.has_changed().unwrap_or(true), "a change of another topic woke it");
        assert!(!on_a.rx.has_changed().unwrap_or(true), "one change, one wake");
        changes.wake_all();
        on_b.changed().await;
        on_a.changed().await;
    }

    #[tokio::test]
    async fn a_topic_is_forgotten_when_its_last_watch_ends() {
        let changes = Changes {
            hub: Arc::new(Hub::default()),
            relay: Relay::Postgres,
        };
        let id = Uuid::now_v7();
        let first = changes.watch(Topic::Order(id));
        let second = changes.watch(Topic::Order(id));
        drop(first);
        assert_eq!(changes.hub.topics().len(), 1, "another watch still follows it");
        drop(second);
        assert!(changes.hub.topics().is_empty());
    }
}
