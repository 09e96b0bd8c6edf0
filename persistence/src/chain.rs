//! The chain watchers' cursors: the blocks (ledgers) processed so far. The
//! highest row per chain is the cursor; it is written in the same transaction
//! as the order changes the block caused, so a crash neither loses nor repeats
//! an event.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::entities::chain_blocks;
use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedBlock {
    pub height: u64,
    pub hash: String,
}

fn height_i64(h: u64) -> Result<i64, StoreError> {
    i64::try_from(h).map_err(|_| StoreError::Corrupt(format!("height {h}")))
}

/// The last processed block of `chain`.
pub async fn cursor<C: ConnectionTrait>(db: &C, chain: &str) -> Result<Option<ScannedBlock>, StoreError> {
    Ok(chain_blocks::Entity::find()
        .filter(chain_blocks::Column::Chain.eq(chain))
        .order_by_desc(chain_blocks::Column::Height)
        .one(db)
        .await?
        .map(|m| ScannedBlock {
            height: m.height.max(0) as u64,
            hash: m.hash,
        }))
}

/// The processed block of `chain` at `height`, if it is still recorded.
pub async fn block_at<C: ConnectionTrait>(db: &C, chain: &str, height: u64) -> Result<Option<String>, StoreError> {
    Ok(chain_blocks::Entity::find_by_id((chain.to_owned(), height_i64(height)?))
        .one(db)
        .await?
        .map(|m| m.hash))
}

/// Records `block` as processed (it becomes the cursor) and forgets blocks
/// older than `keep` below it.
pub async fn advance<C: ConnectionTrait>(
    db: &C,
    chain: &str,
    block: &ScannedBlock,
    keep: u64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    chain_blocks::Entity::insert(chain_blocks::ActiveModel {
        chain: Set(chain.to_owned()),
        height: Set(height_i64(block.height)?),
        hash: Set(block.hash.clone()),
        scanned_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    if block.height > keep {
        chain_blocks::Entity::delete_many()
            .filter(chain_blocks::Column::Chain.eq(chain))
            .filter(chain_blocks::Column::Height.lt(height_i64(block.height - keep)?))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Forgets every processed block above `height` (a reorg's fork point).
pub async fn rewind<C: ConnectionTrait>(db: &C, chain: &str, height: u64) -> Result<(), StoreError> {
    chain_blocks::Entity::delete_many()
        .filter(chain_blocks::Column::Chain.eq(chain))
        .filter(chain_blocks::Column::Height.gt(height_i64(height)?))
        .exec(db)
        .await?;
    Ok(())
}
