//! The regtest chain itself: blocks, the UTXO set, the mempool, mining, reorgs
//! and the faucet. Plain state without IO or locking; [`super::BitcoinDevnet`]
//! puts it behind a mutex and the servers read it from there.
//!
//! - **Blocks** are real `bitcoin::Block`s: BIP34 height in the coinbase, a
//!   segwit witness commitment, the merkle root, the previous block's hash, and
//!   proof of work against regtest's target (`0x207fffff`), which about every
//!   second nonce meets.
//! - **Mempool**: a transaction may spend outputs of mempool transactions, as in
//!   Core, within Core's limit of 25 ancestors and descendants. Such a parent
//!   counts as confirmed in the next block for BIP68, so a relative lock of one
//!   block or more waits for the parent to be mined. No replacement (RBF): a
//!   conflict with the mempool is refused.
//! - **Mining** takes the mempool in arrival order (parents before children) up
//!   to the block weight limit. Every mempool transaction was checked against
//!   the tip, and the chain only grows between reorgs, so all of them are valid
//!   in the next block.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::blockdata::constants::genesis_block;
use bitcoin::hashes::Hash;
use bitcoin::script::Builder;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, Network, OutPoint, Script, ScriptBuf, Sequence,
    Transaction, TxIn, TxMerkleNode, TxOut, Txid, Witness,
};

use super::validate::{
    self, Rejection, COINBASE_MATURITY, MAX_BLOCK_WEIGHT, MEMPOOL_PACKAGE_LIMIT,
};
use super::wallet::{fee_at, DevnetWallet};
use super::DevnetError;

/// Regtest's proof-of-work limit, the target of every devnet block.
const REGTEST_BITS: u32 = 0x207f_ffff;
/// Regtest halves the block reward every 150 blocks.
const HALVING_INTERVAL: u32 = 150;
/// Weight Core keeps free for the coinbase when it fills a block.
const COINBASE_WEIGHT_RESERVE: u64 = 4_000;
/// Version bits with no deployment signalled, like Core's regtest miner.
const BLOCK_VERSION: i32 = 0x2000_0000;
const WITNESS_RESERVED_VALUE: [u8; 32] = [0; 32];
const WITNESS_COMMITMENT_HEADER: [u8; 4] = [0xaa, 0x21, 0xa9, 0xed];
/// Blocks mined by [`Chain::new`] so the faucet has mature coinbase outputs.
pub(crate) const INITIAL_BLOCKS: u32 = COINBASE_MATURITY + 1;
/// The devnet's fee estimate until told otherwise, in sat/vB.
pub(crate) const DEFAULT_FEE_RATE_SAT_VB: u64 = 2;

/// An unspent output with what the rules need to know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Coin {
    pub(crate) output: TxOut,
    /// Height of the block holding it; the next block's height for a mempool output.
    pub(crate) height: u32,
    pub(crate) coinbase: bool,
}

/// A block the devnet mined, in the active chain or not (stale after a reorg).
pub(crate) struct StoredBlock {
    pub(crate) block: Block,
    pub(crate) height: u32,
    /// Per transaction, the coins it spent, to undo the block in a reorg.
    undo: Vec<Vec<(OutPoint, Coin)>>,
}

pub(crate) struct MempoolTx {
    pub(crate) tx: Transaction,
    pub(crate) txid: Txid,
    pub(crate) fee: Amount,
}

/// Where a transaction the devnet knows is.
pub(crate) enum TxPlace<'a> {
    Block {
        tx: &'a Transaction,
        block: &'a StoredBlock,
    },
    Mempool(&'a MempoolTx),
}

impl TxPlace<'_> {
    pub(crate) fn tx(&self) -> &Transaction {
        match self {
            TxPlace::Block { tx, .. } => tx,
            TxPlace::Mempool(entry) => &entry.tx,
        }
    }
}

/// An output of an address, for Esplora's `/address/:a/utxo`.
pub(crate) struct AddressUtxo {
    pub(crate) outpoint: OutPoint,
    pub(crate) value: Amount,
    /// `None` while in the mempool.
    pub(crate) block: Option<(BlockHash, u32, u32)>,
}

pub(crate) struct Chain {
    /// Hashes of the active chain by height; `active[0]` is regtest's genesis.
    active: Vec<BlockHash>,
    /// Every block ever mined here, stale ones included, so lookups by hash keep working.
    blocks: HashMap<BlockHash, StoredBlock>,
    utxos: HashMap<OutPoint, Coin>,
    /// Transactions of the active chain: block and position.
    tx_index: HashMap<Txid, (BlockHash, usize)>,
    /// In arrival order, which is also a valid order to mine them in.
    mempool: Vec<MempoolTx>,
    mempool_index: HashMap<Txid, usize>,
    mempool_spends: HashMap<OutPoint, Txid>,
    wallet: DevnetWallet,
    /// Written into every coinbase so no two blocks share a hash, even when a
    /// reorg mines the same transactions at the same height in the same second.
    extra_nonce: u64,
    fee_rate_sat_vb: u64,
}

impl Chain {
    /// Regtest's genesis block, then [`INITIAL_BLOCKS`] paying `wallet`.
    pub(crate) fn new(wallet: DevnetWallet) -> Self {
        let genesis = genesis_block(Network::Regtest);
        let hash = genesis.block_hash();
        let mut blocks = HashMap::new();
        // Genesis's output is not spendable (Core keeps it out of the UTXO set) and
        // its transaction is not indexed, as in Core.
        blocks.insert(
            hash,
            StoredBlock {
                block: genesis,
                height: 0,
                undo: Vec::new(),
            },
        );
        let mut chain = Self {
            active: vec![hash],
            blocks,
            utxos: HashMap::new(),
            tx_index: HashMap::new(),
            mempool: Vec::new(),
            mempool_index: HashMap::new(),
            mempool_spends: HashMap::new(),
            wallet,
            extra_nonce: 0,
            fee_rate_sat_vb: DEFAULT_FEE_RATE_SAT_VB,
        };
        chain.mine(INITIAL_BLOCKS, None);
        chain
    }

    // ---- reading ----

    pub(crate) fn height(&self) -> u32 {
        // `active` always holds genesis; a chain of 2^32 blocks is out of reach.
        u32::try_from(self.active.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    pub(crate) fn tip_hash(&self) -> BlockHash {
        self.active
            .last()
            .copied()
            .unwrap_or_else(BlockHash::all_zeros)
    }

    pub(crate) fn hash_at(&self, height: u64) -> Option<BlockHash> {
        usize::try_from(height)
            .ok()
            .and_then(|h| self.active.get(h))
            .copied()
    }

    pub(crate) fn block(&self, hash: &BlockHash) -> Option<&StoredBlock> {
        self.blocks.get(hash)
    }

    pub(crate) fn is_active(&self, stored: &StoredBlock) -> bool {
        self.hash_at(u64::from(stored.height)) == Some(stored.block.block_hash())
    }

    /// Core's `confirmations` of a block: depth in the active chain, -1 when stale.
    pub(crate) fn confirmations(&self, stored: &StoredBlock) -> i64 {
        if self.is_active(stored) {
            i64::from(self.height()) - i64::from(stored.height) + 1
        } else {
            -1
        }
    }

    /// The active block after `stored`, if any.
    pub(crate) fn next_active(&self, stored: &StoredBlock) -> Option<BlockHash> {
        if self.is_active(stored) {
            self.hash_at(u64::from(stored.height) + 1)
        } else {
            None
        }
    }

    /// Median time past of the block with `hash`: the median of its time and its
    /// ten ancestors' (fewer near genesis).
    pub(crate) fn median_time_past(&self, hash: &BlockHash) -> u32 {
        let mut times = Vec::with_capacity(11);
        let mut cursor = self.blocks.get(hash);
        while let Some(stored) = cursor {
            times.push(stored.block.header.time);
            if times.len() == 11 || stored.height == 0 {
                break;
            }
            cursor = self.blocks.get(&stored.block.header.prev_blockhash);
        }
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or(0)
    }

    fn mtp_at_height(&self, height: u32) -> u32 {
        self.hash_at(u64::from(height))
            .map(|h| self.median_time_past(&h))
            .unwrap_or(0)
    }

    pub(crate) fn find_tx(&self, txid: &Txid) -> Option<TxPlace<'_>> {
        if let Some(&index) = self.mempool_index.get(txid) {
            return self.mempool.get(index).map(TxPlace::Mempool);
        }
        let (hash, position) = self.tx_index.get(txid)?;
        let block = self.blocks.get(hash)?;
        let tx = block.block.txdata.get(*position)?;
        Some(TxPlace::Block { tx, block })
    }

    /// Any output of a transaction in the active chain or the mempool, spent or not.
    pub(crate) fn output(&self, outpoint: &OutPoint) -> Option<TxOut> {
        let place = self.find_tx(&outpoint.txid)?;
        let index = usize::try_from(outpoint.vout).ok()?;
        place.tx().output.get(index).cloned()
    }

    pub(crate) fn mempool_txids(&self) -> Vec<Txid> {
        self.mempool.iter().map(|e| e.txid).collect()
    }

    /// Unspent outputs paying `script`, confirmed or in the mempool, minus those
    /// a mempool transaction spends (Esplora's view).
    pub(crate) fn utxos_of(&self, script: &Script) -> Vec<AddressUtxo> {
        let mut found: Vec<AddressUtxo> = self
            .utxos
            .iter()
            .filter(|(op, c)| {
                c.output.script_pubkey == *script && !self.mempool_spends.contains_key(op)
            })
            .filter_map(|(op, c)| {
                let hash = self.hash_at(u64::from(c.height))?;
                let time = self.blocks.get(&hash)?.block.header.time;
                Some(AddressUtxo {
                    outpoint: *op,
                    value: c.output.value,
                    block: Some((hash, c.height, time)),
                })
            })
            .collect();
        found.sort_by_key(|u| (u.block.map(|b| b.1), u.outpoint.txid, u.outpoint.vout));
        for entry in &self.mempool {
            for (vout, output) in entry.tx.output.iter().enumerate() {
                let outpoint = OutPoint::new(entry.txid, vout as u32);
                if output.script_pubkey == *script && !self.mempool_spends.contains_key(&outpoint) {
                    found.push(AddressUtxo {
                        outpoint,
                        value: output.value,
                        block: None,
                    });
                }
            }
        }
        found
    }

    pub(crate) fn fee_rate_sat_vb(&self) -> u64 {
        self.fee_rate_sat_vb
    }

    pub(crate) fn set_fee_rate_sat_vb(&mut self, rate: u64) {
        self.fee_rate_sat_vb = rate.max(1);
    }

    // ---- mining ----

    /// Mines `n` blocks paying `payout` (the devnet wallet when `None`).
    pub(crate) fn mine(&mut self, n: u32, payout: Option<&Script>) -> Vec<BlockHash> {
        let script = payout.map_or_else(|| self.wallet.script_pubkey().clone(), Script::to_owned);
        (0..n).map(|_| self.mine_block(&script)).collect()
    }

    fn mine_block(&mut self, payout: &Script) -> BlockHash {
        let height = self.height() + 1;
        let mut weight = COINBASE_WEIGHT_RESERVE;
        let take = self
            .mempool
            .iter()
            .take_while(|e| {
                weight += e.tx.weight().to_wu();
                weight <= MAX_BLOCK_WEIGHT
            })
            .count();
        let included: Vec<MempoolTx> = self.mempool.drain(..take).collect();
        self.reindex_mempool();
        let fees: Amount = included.iter().map(|e| e.fee).sum();
        let reward = subsidy(height)
            .checked_add(fees)
            .unwrap_or(Amount::MAX_MONEY);

        self.extra_nonce += 1;
        let coinbase = Transaction {
            version: Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: Builder::new()
                    .push_int(i64::from(height))
                    .push_slice(self.extra_nonce.to_le_bytes())
                    .into_script(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[WITNESS_RESERVED_VALUE]),
            }],
            output: vec![TxOut {
                value: reward,
                script_pubkey: payout.to_owned(),
            }],
        };
        let mut txdata = vec![coinbase];
        txdata.extend(included.into_iter().map(|e| e.tx));
        let mut block = Block {
            header: Header {
                version: BlockVersion::from_consensus(BLOCK_VERSION),
                prev_blockhash: self.tip_hash(),
                merkle_root: TxMerkleNode::all_zeros(),
                time: self.next_block_time(),
                bits: CompactTarget::from_consensus(REGTEST_BITS),
                nonce: 0,
            },
            txdata,
        };
        // The witness root treats the coinbase as zero, so the commitment can go
        // into the coinbase after it is computed.
        if let Some(root) = block.witness_root() {
            let commitment = Block::compute_witness_commitment(&root, &WITNESS_RESERVED_VALUE);
            let mut data = [0u8; 36];
            data[..4].copy_from_slice(&WITNESS_COMMITMENT_HEADER);
            data[4..].copy_from_slice(commitment.as_byte_array());
            if let Some(coinbase) = block.txdata.first_mut() {
                coinbase.output.push(TxOut {
                    value: Amount::ZERO,
                    script_pubkey: ScriptBuf::new_op_return(data),
                });
            }
        }
        if let Some(root) = block.compute_merkle_root() {
            block.header.merkle_root = root;
        }
        let target = block.header.target();
        while !target.is_met_by(block.header.block_hash()) {
            block.header.nonce = block.header.nonce.wrapping_add(1);
            if block.header.nonce == 0 {
                block.header.time = block.header.time.saturating_add(1);
            }
        }
        self.connect(block, height)
    }

    /// Wall-clock time, but always above the tip's median time past as consensus requires.
    fn next_block_time(&self) -> u32 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        now.max(self.median_time_past(&self.tip_hash()) + 1)
    }

    fn connect(&mut self, block: Block, height: u32) -> BlockHash {
        let hash = block.block_hash();
        let mut undo = Vec::with_capacity(block.txdata.len());
        for (position, tx) in block.txdata.iter().enumerate() {
            let txid = tx.compute_txid();
            let mut spent = Vec::new();
            if !tx.is_coinbase() {
                for input in &tx.input {
                    if let Some(coin) = self.utxos.remove(&input.previous_output) {
                        spent.push((input.previous_output, coin));
                    }
                }
            }
            for (vout, output) in tx.output.iter().enumerate() {
                // Provably unspendable outputs never enter the UTXO set (as in Core).
                if output.script_pubkey.is_op_return() {
                    continue;
                }
                self.utxos.insert(
                    OutPoint::new(txid, vout as u32),
                    Coin {
                        output: output.clone(),
                        height,
                        coinbase: position == 0,
                    },
                );
            }
            self.tx_index.insert(txid, (hash, position));
            undo.push(spent);
        }
        self.active.push(hash);
        self.blocks.insert(
            hash,
            StoredBlock {
                block,
                height,
                undo,
            },
        );
        hash
    }

    /// Undoes the tip block and returns its transactions except the coinbase.
    fn disconnect_tip(&mut self) -> Vec<Transaction> {
        if self.active.len() <= 1 {
            return Vec::new();
        }
        let Some(hash) = self.active.pop() else {
            return Vec::new();
        };
        let Some(stored) = self.blocks.get_mut(&hash) else {
            return Vec::new();
        };
        let undo = std::mem::take(&mut stored.undo);
        let txdata = stored.block.txdata.clone();
        // In reverse, so an output created and spent inside the block ends up gone.
        for (tx, spent) in txdata.iter().zip(undo).rev() {
            let txid = tx.compute_txid();
            for vout in 0..tx.output.len() {
                self.utxos.remove(&OutPoint::new(txid, vout as u32));
            }
            for (outpoint, coin) in spent {
                self.utxos.insert(outpoint, coin);
            }
            self.tx_index.remove(&txid);
        }
        txdata.into_iter().skip(1).collect()
    }

    // ---- the mempool ----

    fn reindex_mempool(&mut self) {
        self.mempool_index = self
            .mempool
            .iter()
            .enumerate()
            .map(|(i, e)| (e.txid, i))
            .collect();
        self.mempool_spends = self
            .mempool
            .iter()
            .flat_map(|e| e.tx.input.iter().map(move |i| (i.previous_output, e.txid)))
            .collect();
    }

    /// The coin `outpoint` names, confirmed or a mempool output (counted at `next_height`).
    fn coin(&self, outpoint: &OutPoint, next_height: u32) -> Option<Coin> {
        if let Some(coin) = self.utxos.get(outpoint) {
            return Some(coin.clone());
        }
        let entry = self.mempool.get(*self.mempool_index.get(&outpoint.txid)?)?;
        let output = entry.tx.output.get(usize::try_from(outpoint.vout).ok()?)?;
        Some(Coin {
            output: output.clone(),
            height: next_height,
            coinbase: false,
        })
    }

    /// Checks `tx` as Core's `sendrawtransaction` does, in Core's order, and adds
    /// it to the mempool. A transaction already in the mempool is accepted again
    /// (Core answers its txid); one whose outputs are in the UTXO set is refused
    /// with `AlreadyInChain`. `max_fee_rate` in sat/kvB, `None` for no limit.
    pub(crate) fn accept(
        &mut self,
        tx: &Transaction,
        max_fee_rate: Option<u64>,
    ) -> Result<Txid, Rejection> {
        let txid = tx.compute_txid();
        if (0..tx.output.len()).any(|v| self.utxos.contains_key(&OutPoint::new(txid, v as u32))) {
            return Err(Rejection::already_in_chain());
        }
        if self.mempool_index.contains_key(&txid) {
            return Ok(txid);
        }
        validate::check_transaction(tx)?;
        validate::check_standard(tx)?;
        let next_height = self.height() + 1;
        let tip_mtp = self.median_time_past(&self.tip_hash());
        if !validate::is_final(tx, next_height, tip_mtp) {
            return Err(Rejection::rejected("non-final"));
        }
        if tx
            .input
            .iter()
            .any(|i| self.mempool_spends.contains_key(&i.previous_output))
        {
            return Err(Rejection::rejected("txn-mempool-conflict"));
        }
        let coins = tx
            .input
            .iter()
            .map(|i| self.coin(&i.previous_output, next_height))
            .collect::<Option<Vec<Coin>>>()
            .ok_or_else(|| Rejection::verify("bad-txns-inputs-missingorspent"))?;
        let heights: Vec<u32> = coins.iter().map(|c| c.height).collect();
        if !validate::sequence_locks_satisfied(tx, &heights, next_height, tip_mtp, |h| {
            self.mtp_at_height(h)
        }) {
            return Err(Rejection::rejected("non-BIP68-final"));
        }
        let fee = validate::check_inputs(tx, &coins, next_height)?;
        validate::check_inputs_standard(tx, &coins)?;
        self.check_package_limits(tx)?;
        validate::check_min_relay_fee(tx, fee)?;
        validate::verify_scripts(tx, &coins)?;
        if let Some(max) = max_fee_rate {
            validate::check_max_fee(tx, fee, max)?;
        }
        for input in &tx.input {
            self.mempool_spends.insert(input.previous_output, txid);
        }
        self.mempool_index.insert(txid, self.mempool.len());
        self.mempool.push(MempoolTx {
            tx: tx.clone(),
            txid,
            fee,
        });
        Ok(txid)
    }

    fn mempool_parents(&self, tx: &Transaction) -> impl Iterator<Item = Txid> + '_ {
        tx.input
            .iter()
            .map(|i| i.previous_output.txid)
            .filter(|t| self.mempool_index.contains_key(t))
            .collect::<HashSet<_>>()
            .into_iter()
    }

    fn mempool_ancestors(&self, tx: &Transaction) -> HashSet<Txid> {
        let mut ancestors = HashSet::new();
        let mut stack: Vec<Txid> = self.mempool_parents(tx).collect();
        while let Some(txid) = stack.pop() {
            if ancestors.insert(txid) {
                if let Some(entry) = self
                    .mempool_index
                    .get(&txid)
                    .and_then(|&i| self.mempool.get(i))
                {
                    stack.extend(self.mempool_parents(&entry.tx));
                }
            }
        }
        ancestors
    }

    fn mempool_descendants(&self, txid: Txid) -> HashSet<Txid> {
        let mut descendants = HashSet::new();
        let mut stack = vec![txid];
        while let Some(current) = stack.pop() {
            let Some(entry) = self
                .mempool_index
                .get(&current)
                .and_then(|&i| self.mempool.get(i))
            else {
                continue;
            };
            for vout in 0..entry.tx.output.len() {
                if let Some(child) = self
                    .mempool_spends
                    .get(&OutPoint::new(current, vout as u32))
                {
                    if descendants.insert(*child) {
                        stack.push(*child);
                    }
                }
            }
        }
        descendants
    }

    /// Core's default package limits: 25 transactions counting `tx` and its
    /// mempool ancestors, and 25 counting any ancestor and its descendants.
    fn check_package_limits(&self, tx: &Transaction) -> Result<(), Rejection> {
        let ancestors = self.mempool_ancestors(tx);
        if ancestors.len() + 1 > MEMPOOL_PACKAGE_LIMIT {
            return Err(Rejection::rejected(format!(
                "too-long-mempool-chain, too many unconfirmed ancestors [limit: {MEMPOOL_PACKAGE_LIMIT}]"
            )));
        }
        for ancestor in &ancestors {
            // The ancestor, its descendants, and `tx`.
            if self.mempool_descendants(*ancestor).len() + 2 > MEMPOOL_PACKAGE_LIMIT {
                return Err(Rejection::rejected(format!(
                    "too-long-mempool-chain, too many descendants for tx {ancestor} [limit: {MEMPOOL_PACKAGE_LIMIT}]"
                )));
            }
        }
        Ok(())
    }

    // ---- reorgs ----

    /// Replaces the last `n` blocks with `n + 1` new ones. The transactions of the
    /// replaced blocks and the mempool go back in, in their order, except `drop`
    /// and everything spending from a dropped transaction. Each new block takes
    /// what is valid at its height (a transaction under a relative timelock may
    /// land a block later than before); what is still invalid after the last new
    /// block (e.g. a spend of a replaced block's coinbase) is discarded.
    pub(crate) fn reorg(&mut self, n: u32, drop: &[Txid]) -> Result<Vec<BlockHash>, DevnetError> {
        if n == 0 {
            return Err(DevnetError::EmptyReorg);
        }
        let height = self.height();
        if n > height {
            return Err(DevnetError::ReorgTooDeep {
                requested: n,
                height,
            });
        }
        let replaced: HashSet<Txid> = (height - n + 1..=height)
            .filter_map(|h| self.hash_at(u64::from(h)))
            .filter_map(|hash| self.blocks.get(&hash))
            .flat_map(|stored| {
                stored
                    .block
                    .txdata
                    .iter()
                    .skip(1)
                    .map(Transaction::compute_txid)
            })
            .chain(self.mempool.iter().map(|e| e.txid))
            .collect();
        // Refuse rather than let the caller believe a transaction of an older block was dropped.
        if let Some(unknown) = drop.iter().find(|t| !replaced.contains(*t)) {
            return Err(DevnetError::NotReorgable {
                txid: *unknown,
                blocks: n,
            });
        }

        let mut disconnected = Vec::with_capacity(n as usize);
        for _ in 0..n {
            disconnected.push(self.disconnect_tip());
        }
        let mut candidates: Vec<Transaction> = disconnected.into_iter().rev().flatten().collect();
        candidates.extend(std::mem::take(&mut self.mempool).into_iter().map(|e| e.tx));
        self.reindex_mempool();

        let mut excluded: HashSet<Txid> = drop.iter().copied().collect();
        let mut pending = Vec::with_capacity(candidates.len());
        for tx in candidates {
            let txid = tx.compute_txid();
            if excluded.contains(&txid)
                || tx
                    .input
                    .iter()
                    .any(|i| excluded.contains(&i.previous_output.txid))
            {
                excluded.insert(txid);
            } else {
                pending.push(tx);
            }
        }
        let payout = self.wallet.script_pubkey().clone();
        let mut hashes = Vec::with_capacity(n as usize + 1);
        for _ in 0..=n {
            self.readmit(&mut pending);
            hashes.push(self.mine_block(&payout));
        }
        self.readmit(&mut pending);
        if !pending.is_empty() {
            tracing::info!(
                devnet.discarded = pending.len(),
                "transactions of the replaced blocks are no longer valid and were discarded"
            );
        }
        Ok(hashes)
    }

    /// Moves into the mempool every pending transaction now acceptable, in order.
    fn readmit(&mut self, pending: &mut Vec<Transaction>) {
        pending.retain(|tx| self.accept(tx, None).is_err());
    }

    // ---- the faucet ----

    /// Pays `sats` to `to` from the devnet wallet: mature coinbase outputs first
    /// (oldest first), then its unconfirmed change. The payment goes through the
    /// same checks as any submitted transaction and lands in the mempool.
    pub(crate) fn faucet(&mut self, to: &Script, sats: u64) -> Result<Txid, DevnetError> {
        let amount = Amount::from_sat(sats);
        if amount > Amount::MAX_MONEY {
            return Err(DevnetError::InsufficientFunds {
                available: 0,
                needed: sats,
            });
        }
        let limit = to.minimal_non_dust();
        if amount < limit || amount == Amount::ZERO {
            return Err(DevnetError::Dust {
                sats,
                limit: limit.to_sat(),
            });
        }
        let next_height = self.height() + 1;
        let wallet_script = self.wallet.script_pubkey().clone();
        let spendable = |op: &OutPoint, c: &Coin| {
            c.output.script_pubkey == wallet_script
                && !(c.coinbase && next_height - c.height < COINBASE_MATURITY)
                && !self.mempool_spends.contains_key(op)
        };
        let mut coins: Vec<(u32, OutPoint, TxOut)> = self
            .utxos
            .iter()
            .filter(|(op, c)| spendable(op, c))
            .map(|(op, c)| (c.height, *op, c.output.clone()))
            .collect();
        coins.sort_by_key(|(height, op, _)| (*height, op.txid, op.vout));
        for entry in &self.mempool {
            for (vout, output) in entry.tx.output.iter().enumerate() {
                let op = OutPoint::new(entry.txid, vout as u32);
                if output.script_pubkey == wallet_script && !self.mempool_spends.contains_key(&op) {
                    coins.push((next_height, op, output.clone()));
                }
            }
        }

        let payment = TxOut {
            value: amount,
            script_pubkey: to.to_owned(),
        };
        let change_template = TxOut {
            value: Amount::ZERO,
            script_pubkey: wallet_script.clone(),
        };
        let rate = self.fee_rate_sat_vb;
        let fee_for = |selected: &[(OutPoint, TxOut)], with_change: bool| {
            let mut outputs = vec![payment.clone()];
            if with_change {
                outputs.push(change_template.clone());
            }
            fee_at(
                rate,
                self.wallet
                    .signed_vsize(&DevnetWallet::unsigned(selected, outputs)),
            )
        };
        let mut selected: Vec<(OutPoint, TxOut)> = Vec::new();
        let mut total = Amount::ZERO;
        for (_, op, output) in coins {
            total = total.checked_add(output.value).unwrap_or(Amount::MAX_MONEY);
            selected.push((op, output));
            if total >= amount + fee_for(&selected, true) {
                break;
            }
        }
        let fee_without_change = fee_for(&selected, false);
        let needed = amount + fee_without_change;
        if selected.is_empty() || total < needed {
            return Err(DevnetError::InsufficientFunds {
                available: total.to_sat(),
                needed: needed.to_sat(),
            });
        }
        let fee_with_change = fee_for(&selected, true);
        let mut outputs = vec![payment];
        if let Some(change) = total.checked_sub(amount + fee_with_change) {
            if change >= wallet_script.minimal_non_dust() {
                outputs.push(TxOut {
                    value: change,
                    script_pubkey: wallet_script.clone(),
                });
            }
        }
        let mut tx = DevnetWallet::unsigned(&selected, outputs);
        self.wallet
            .sign(&mut tx, &selected)
            .map_err(DevnetError::Wallet)?;
        Ok(self.accept(&tx, Some(validate::DEFAULT_MAX_FEE_RATE_SAT_PER_KVB))?)
    }

    #[cfg(test)]
    pub(crate) fn remove_from_mempool_for_tests(&mut self, txid: Txid) {
        self.mempool.retain(|e| e.txid != txid);
        self.reindex_mempool();
    }

    pub(crate) fn wallet(&self) -> &DevnetWallet {
        &self.wallet
    }
}

/// Regtest's block reward at `height`: 50 BTC halved every 150 blocks.
fn subsidy(height: u32) -> Amount {
    let halvings = height / HALVING_INTERVAL;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat((50 * 100_000_000u64) >> halvings)
}
