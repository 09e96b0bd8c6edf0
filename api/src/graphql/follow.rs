//! How every subscription follows a changing record: the record as it is, then
//! each newer version. Writers announce every change inside their transaction
//! (see `changes`); the subscription's watch wakes once that transaction has
//! committed, whichever replica wrote it, and the subscription reads the
//! record once. No subscription polls the database.

use std::future::Future;

use futures_util::stream::{self, Stream};

use crate::changes::Watch;

/// Streams `first` (at `version`), then every version `load` returns that is
/// newer than the last one sent; ends when `load` returns `None` (the record
/// vanished or the caller lost access). Make `watch` before reading `first`,
/// so a change committed in between is not missed.
pub fn follow_versions<T, F, Fut>(first: T, version: i32, watch: Watch, load: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Option<(T, i32)>> + Send,
{
    stream::unfold(
        (Some(first), version, watch, load),
        move |(first, mut seen, mut watch, load)| async move {
            if let Some(item) = first {
                return Some((item, (None, seen, watch, load)));
            }
            loop {
                watch.changed().await;
                match load().await {
                    Some((item, v)) if v > seen => {
                        seen = v;
                        return Some((item, (None, seen, watch, load)));
                    }
                    // A wake for nothing new: a rolled-back write on SQLite,
                    // or every subscription re-reading after a reconnect.
                    Some(_) => {}
                    None => return None,
                }
            }
        },
    )
}
