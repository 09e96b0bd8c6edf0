//! How every subscription follows a changing record: the record as it is, then
//! each newer version. A change on this replica wakes the stream at once (a
//! broadcast hint sent when the record is saved, before its transaction
//! commits, hence the short re-reads); changes by other replicas are picked up
//! by a version check every second, so no update is lost.

use std::future::Future;
use std::time::Duration;

use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use uuid::Uuid;

pub const POLL: Duration = Duration::from_secs(1);

/// Waits for a hint about `key`, at most one poll interval.
pub async fn wait_for_hint(hints: &mut Receiver<Uuid>, key: Uuid) {
    let _ = tokio::time::timeout(POLL, async {
        loop {
            match hints.recv().await {
                Ok(id) if id == key => return,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => {
                    tokio::time::sleep(POLL).await;
                    return;
                }
            }
        }
    })
    .await;
}

/// After a hint, the change may not be committed yet: read again a few times.
pub const REREAD_MS: [u64; 3] = [0, 50, 200];

/// Streams `first` (at `version`), then every version `load` returns that is
/// newer than the last one sent; ends when `load` returns `None` (the record
/// vanished or the caller lost access).
pub fn follow_versions<T, F, Fut>(first: T, version: i32, hints: Receiver<Uuid>, key: Uuid, load: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Option<(T, i32)>> + Send,
{
    stream::unfold(
        (Some(first), version, hints, load),
        move |(first, mut seen, mut hints, load)| async move {
            if let Some(item) = first {
                return Some((item, (None, seen, hints, load)));
            }
            loop {
                wait_for_hint(&mut hints, key).await;
                for delay_ms in REREAD_MS {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    match load().await {
                        Some((item, v)) if v > seen => {
                            seen = v;
                            return Some((item, (None, seen, hints, load)));
                        }
                        Some(_) => {}
                        None => return None,
                    }
                }
            }
        },
    )
}
