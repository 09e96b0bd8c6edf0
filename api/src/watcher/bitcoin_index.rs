//! The Bitcoin watcher's in-memory watch index: which order an output script
//! or a spent outpoint belongs to, and which orders need a look at a block
//! even when nothing in it touches them (confirmations to count, a timelock
//! margin to raise, a stray refund to prepare).
//!
//! The index is a cache of the database, never a source of truth: every entry
//! is [`WatchEntry::of`] an order as stored, so it can always be rebuilt from
//! the rows. The watcher builds it when it becomes leader, adds orders placed
//! since (their marketplace key index is above the highest one loaded: see
//! [`WatchIndex::key_index_seen`]), and replaces the entries of the orders a
//! block or a reorg changed only after that transaction committed.
//!
//! An order that settles stays indexed by its script (money sent to a settled
//! escrow is a stray deposit the buyer gets back) but leaves the per-block set
//! once nothing about it depends on the height any more.

use std::collections::{BTreeSet, HashMap};

use bitcoin::hashes::Hash as _;
use bitcoin::{Block, OutPoint, Script, ScriptBuf};
use uuid::Uuid;

use crate::orders::{EscrowRecord, Order};

/// foldhash: in the dependency tree already (through hashbrown), several
/// times faster than SipHash on 34-byte scripts and 36-byte outpoints, and
/// still seeded per process, so scripts chosen on the chain cannot be ground
/// into one bucket ahead of time.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What the watcher needs to know about one order between two blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEntry {
    /// The escrow's output script.
    pub script: ScriptBuf,
    /// Outputs of the escrow (funding and strays) whose spends matter.
    pub outpoints: Vec<OutPoint>,
    /// From this height on, the order is looked at in every block.
    pub wake_at: Option<u64>,
    /// The highest block any chain fact stored for the order comes from: a
    /// reorg back to a fork below it concerns the order.
    pub last_height: u64,
    /// A stray refund is prepared and not yet seen spending its output: the
    /// broadcaster sends it once the buyer has signed.
    pub refund_outstanding: bool,
    /// The order's marketplace key index (new orders have higher ones).
    pub key_index: u32,
}

impl WatchEntry {
    /// The entry of a Bitcoin order as stored; `None` for other chains. Every
    /// fact it reads is written only by the chain watcher, except the state,
    /// which is only read in a way no other writer can make more urgent.
    pub fn of(order: &Order) -> Result<Option<Self>, String> {
        let EscrowRecord::Bitcoin(btc) = &order.escrow else { return Ok(None) };
        let script = btc
            .address
            .parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>()
            .map_err(|e| format!("order {}: escrow address: {e}", order.id()))?
            .assume_checked()
            .script_pubkey();
        let outpoints = btc
            .funding
            .iter()
            .chain(btc.strays.iter().map(|s| &s.utxo))
            .map(|u| OutPoint::new(u.txid, u.vout))
            .collect();
        let last_height = btc
            .funding
            .iter()
            .chain(btc.strays.iter().map(|s| &s.utxo))
            .filter_map(|u| u.height)
            .chain(btc.payout.as_ref().and_then(|p| p.mined_at))
            .chain(btc.other_spend.as_ref().map(|o| o.mined_at))
            .max()
            .unwrap_or(0);
        let stray_pending = btc.strays.iter().any(|s| s.refund.is_none() && !s.dust && s.spent_by.is_none());
        let wake_at = if order.state.is_settled() {
            stray_pending.then_some(0)
        } else if stray_pending
            || (!crate::orders::chain::funding_frozen(order) && !btc.funding.is_empty())
            || btc.payout.as_ref().is_some_and(|p| p.mined_at.is_some())
            || btc.other_spend.is_some()
        {
            // Confirmations are counted block by block.
            Some(0)
        } else if btc.timelock_alerted || btc.funding.is_empty() {
            None
        } else {
            // Funded and frozen: the timelock margin. The state may move
            // (delivered, disputed, paying out) without the watcher, so the
            // height is taken from what the watcher stored, and the earlier
            // of it and the state's own wins; at that height the real rule
            // decides.
            order.terms.deadlines().timelock.map(|t| {
                let stored = btc.funding_height.saturating_add(u64::from(t.blocks)).saturating_sub(u64::from(t.margin_blocks));
                agora_domain::escrow::deadlines::timelock_watch(&order.state, Some(t))
                    .map_or(stored, |w| w.alert_height.min(stored))
            })
        };
        let refund_outstanding = btc.strays.iter().any(|s| s.refund.is_some() && s.spent_by.is_none());
        Ok(Some(Self {
            script,
            outpoints,
            wake_at,
            last_height,
            refund_outstanding,
            key_index: btc.key_index,
        }))
    }
}

/// Which orders a block touches: the transactions paying to their scripts
/// (with the output index) and spending their outpoints. Indexes point into
/// `block.txdata`; transaction ids are computed only for these.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BlockMatches {
    /// (order, transaction, output index)
    pub outputs: Vec<(Uuid, usize, u32)>,
    /// (order, transaction); one row per transaction and order.
    pub spends: Vec<(Uuid, usize)>,
}

impl BlockMatches {
    pub fn orders(&self) -> BTreeSet<Uuid> {
        self.outputs.iter().map(|(id, _, _)| *id).chain(self.spends.iter().map(|(id, _)| *id)).collect()
    }
}

/// Escrow scripts are P2WSH: keyed by their 32-byte program they need no
/// allocation, and an output of any other kind (most of a block) is passed
/// over without a lookup. Other scripts get a map of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ScriptKey {
    P2wsh([u8; 32]),
    Other(ScriptBuf),
}

fn p2wsh_program(script: &Script) -> Option<&[u8; 32]> {
    if script.is_p2wsh() {
        script.as_bytes().get(2..34)?.try_into().ok()
    } else {
        None
    }
}

impl ScriptKey {
    fn of(script: &Script) -> Self {
        match p2wsh_program(script) {
            Some(program) => ScriptKey::P2wsh(*program),
            None => ScriptKey::Other(script.to_owned()),
        }
    }
}

/// One bit per key in front of a map whose keys are already uniform hashes
/// (transaction ids, P2WSH programs), so the key's own first bytes pick the
/// bit. Almost every lookup of a block misses; the bit array (16 bits a key,
/// 2 MiB at a million keys) stays in the CPU cache where the maps cannot, and
/// only a set bit (a hit, or about 6 % of misses) goes on to the map. Written
/// here because a Bloom filter crate would hash the keys again and keep
/// several bits a key: what it would add is the cost this removes. A removed
/// key leaves its bit set (a false positive) until the next resize.
#[derive(Debug, Default)]
struct Prefilter {
    bits: Vec<u64>,
    /// Keys inserted since the last resize.
    inserted: usize,
}

impl Prefilter {
    const BITS_PER_KEY: usize = 16;

    fn slot(&self, key: &[u8; 32]) -> Option<(usize, u64)> {
        let n = self.bits.len().checked_mul(64)?.checked_sub(1)?;
        let mut first = [0u8; 8];
        first.copy_from_slice(&key[..8]);
        let bit = (u64::from_le_bytes(first) as usize) & n;
        Some((bit / 64, 1u64 << (bit % 64)))
    }

    fn may_contain(&self, key: &[u8; 32]) -> bool {
        self.slot(key).is_some_and(|(word, mask)| self.bits[word] & mask != 0)
    }

    /// Whether holding `keys` keys calls for a larger array.
    fn needs_resize(&self, keys: usize) -> bool {
        keys.max(self.inserted).saturating_mul(Self::BITS_PER_KEY) > self.bits.len() * 64
    }

    /// A fresh array sized for twice `keys`, holding exactly `all`.
    fn rebuild<'a>(&mut self, keys: usize, all: impl Iterator<Item = &'a [u8; 32]>) {
        let words = (keys.max(1024) * 2 * Self::BITS_PER_KEY / 64).next_power_of_two();
        self.bits = vec![0; words];
        self.inserted = 0;
        for key in all {
            self.insert(key);
        }
    }

    fn insert(&mut self, key: &[u8; 32]) {
        if let Some((word, mask)) = self.slot(key) {
            self.bits[word] |= mask;
            self.inserted += 1;
        }
    }
}

/// What the index keeps per order to undo its keys and answer reorgs.
#[derive(Debug)]
struct Stored {
    script: ScriptKey,
    outpoints: Box<[OutPoint]>,
    last_height: u64,
}

#[derive(Debug, Default)]
pub struct WatchIndex {
    by_p2wsh: Map<[u8; 32], Uuid>,
    by_other_script: Map<ScriptBuf, Uuid>,
    by_outpoint: Map<OutPoint, Uuid>,
    p2wsh_filter: Prefilter,
    /// Keyed by the outpoint's transaction id.
    outpoint_filter: Prefilter,
    entries: Map<Uuid, Stored>,
    /// The orders with a wake height, so a block visits them and not all.
    waking: Map<Uuid, u64>,
    refunds: BTreeSet<Uuid>,
    key_index_seen: Option<u32>,
    /// The chain cursor (height, block hash) the entries agree with.
    cursor: Option<(u64, String)>,
}

impl WatchIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(orders: usize) -> Self {
        Self {
            by_p2wsh: Map::with_capacity_and_hasher(orders, Default::default()),
            by_outpoint: Map::with_capacity_and_hasher(orders, Default::default()),
            entries: Map::with_capacity_and_hasher(orders, Default::default()),
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The chain cursor as of the last block this index followed. The
    /// watcher compares it with the stored one: if another watcher (an
    /// earlier or later leader) moved the chain since, the entries may be
    /// stale and the index is rebuilt.
    pub fn cursor(&self) -> Option<&(u64, String)> {
        self.cursor.as_ref()
    }

    pub fn set_cursor(&mut self, cursor: Option<(u64, String)>) {
        self.cursor = cursor;
    }

    pub fn contains(&self, id: Uuid) -> bool {
        self.entries.contains_key(&id)
    }

    /// The highest marketplace key index among the indexed orders. Key
    /// indexes are handed out as one above the highest committed one (a
    /// unique index rejects a second placement that picked the same), so an
    /// order committed after this was read has a higher one: asking for the
    /// orders above it finds every new order, however the placements
    /// interleave.
    pub fn key_index_seen(&self) -> Option<u32> {
        self.key_index_seen
    }

    /// Adds or replaces the entry of order `id`.
    pub fn upsert(&mut self, id: Uuid, entry: WatchEntry) {
        self.remove(id);
        let script = ScriptKey::of(&entry.script);
        match &script {
            ScriptKey::P2wsh(program) => {
                self.by_p2wsh.insert(*program, id);
                if self.p2wsh_filter.needs_resize(self.by_p2wsh.len()) {
                    self.p2wsh_filter.rebuild(self.by_p2wsh.len(), self.by_p2wsh.keys());
                } else {
                    self.p2wsh_filter.insert(program);
                }
            }
            ScriptKey::Other(s) => {
                self.by_other_script.insert(s.clone(), id);
            }
        }
        for o in &entry.outpoints {
            self.by_outpoint.insert(*o, id);
            if self.outpoint_filter.needs_resize(self.by_outpoint.len()) {
                self.outpoint_filter.rebuild(self.by_outpoint.len(), self.by_outpoint.keys().map(|o| o.txid.as_byte_array()));
            } else {
                self.outpoint_filter.insert(o.txid.as_byte_array());
            }
        }
        if let Some(w) = entry.wake_at {
            self.waking.insert(id, w);
        }
        if entry.refund_outstanding {
            self.refunds.insert(id);
        }
        self.key_index_seen = self.key_index_seen.max(Some(entry.key_index));
        let stored = Stored {
            script,
            outpoints: entry.outpoints.into_boxed_slice(),
            last_height: entry.last_height,
        };
        self.entries.insert(id, stored);
    }

    /// Drops order `id` (whether it was there); keys another order took over
    /// stay with it.
    pub fn remove(&mut self, id: Uuid) -> bool {
        let Some(old) = self.entries.remove(&id) else { return false };
        self.waking.remove(&id);
        self.refunds.remove(&id);
        match &old.script {
            ScriptKey::P2wsh(program) => {
                if self.by_p2wsh.get(program) == Some(&id) {
                    self.by_p2wsh.remove(program);
                }
            }
            ScriptKey::Other(script) => {
                if self.by_other_script.get(script) == Some(&id) {
                    self.by_other_script.remove(script);
                }
            }
        }
        for o in &old.outpoints {
            if self.by_outpoint.get(o) == Some(&id) {
                self.by_outpoint.remove(o);
            }
        }
        true
    }

    pub fn order_of_script(&self, script: &Script) -> Option<Uuid> {
        match p2wsh_program(script) {
            Some(program) if !self.p2wsh_filter.may_contain(program) => None,
            Some(program) => self.by_p2wsh.get(program).copied(),
            None if self.by_other_script.is_empty() => None,
            None => self.by_other_script.get(script).copied(),
        }
    }

    pub fn order_of_outpoint(&self, outpoint: &OutPoint) -> Option<Uuid> {
        if !self.outpoint_filter.may_contain(outpoint.txid.as_byte_array()) {
            return None;
        }
        self.by_outpoint.get(outpoint).copied()
    }

    /// Looks every output script and every spent outpoint of `block` up once.
    pub fn match_block(&self, block: &Block) -> BlockMatches {
        let mut matches = BlockMatches::default();
        for (t, tx) in block.txdata.iter().enumerate() {
            let first_spend = matches.spends.len();
            for input in &tx.input {
                if let Some(id) = self.order_of_outpoint(&input.previous_output) {
                    // A transaction spending several outputs of one escrow is one spend.
                    if !matches.spends[first_spend..].iter().any(|(o, _)| *o == id) {
                        matches.spends.push((id, t));
                    }
                }
            }
            for (vout, out) in tx.output.iter().enumerate() {
                if let Some(id) = self.order_of_script(&out.script_pubkey) {
                    matches.outputs.push((id, t, vout as u32));
                }
            }
        }
        matches
    }

    /// Orders to look at in the block at `height` whatever it holds.
    pub fn awake_at(&self, height: u64) -> BTreeSet<Uuid> {
        self.waking.iter().filter(|(_, w)| **w <= height).map(|(id, _)| *id).collect()
    }

    /// Orders with a chain fact from a block above `fork` (a walk over every
    /// entry: reorgs are rare).
    pub fn touched_above(&self, fork: u64) -> BTreeSet<Uuid> {
        self.entries.iter().filter(|(_, e)| e.last_height > fork).map(|(id, _)| *id).collect()
    }

    /// Orders with a stray refund prepared and not yet spent.
    pub fn refunds_outstanding(&self) -> BTreeSet<Uuid> {
        self.refunds.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{absolute, transaction, Amount, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

    fn script(n: u8) -> ScriptBuf {
        ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array([n; 32]))
    }

    fn outpoint(n: u8, vout: u32) -> OutPoint {
        OutPoint::new(Txid::from_byte_array([n; 32]), vout)
    }

    fn id(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn entry(n: u8, outpoints: Vec<OutPoint>) -> WatchEntry {
        WatchEntry {
            script: script(n),
            outpoints,
            wake_at: None,
            last_height: 0,
            refund_outstanding: false,
            key_index: u32::from(n),
        }
    }

    fn tx(spends: &[OutPoint], pays: &[ScriptBuf]) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: spends
                .iter()
                .map(|o| TxIn {
                    previous_output: *o,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                })
                .collect(),
            output: pays
                .iter()
                .map(|s| TxOut {
                    value: Amount::from_sat(10_000),
                    script_pubkey: s.clone(),
                })
                .collect(),
        }
    }

    fn block(txdata: Vec<Transaction>) -> Block {
        Block {
            header: bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest).header,
            txdata,
        }
    }

    #[test]
    fn a_block_matches_the_outputs_and_spends_of_indexed_orders_only() {
        let mut index = WatchIndex::new();
        index.upsert(id(1), entry(1, vec![outpoint(1, 0)]));
        index.upsert(id(2), entry(2, vec![]));
        let b = block(vec![
            // Pays nobody we watch, spends nothing we watch.
            tx(&[outpoint(9, 0)], &[script(9)]),
            // Spends order 1's output twice over (two inputs) and pays order 2.
            tx(&[outpoint(1, 0), outpoint(1, 0)], &[script(7), script(2)]),
            // Pays order 1 in its second output.
            tx(&[outpoint(8, 1)], &[script(8), script(1)]),
        ]);
        let m = index.match_block(&b);
        assert_eq!(m.spends, vec![(id(1), 1)]);
        assert_eq!(m.outputs, vec![(id(2), 1, 1), (id(1), 2, 1)]);
        assert_eq!(m.orders(), BTreeSet::from([id(1), id(2)]));
    }

    #[test]
    fn a_script_no_order_has_matches_nothing() {
        let mut index = WatchIndex::new();
        index.upsert(id(1), entry(1, vec![outpoint(1, 0)]));
        assert_eq!(index.order_of_script(&script(3)), None);
        assert_eq!(index.order_of_outpoint(&outpoint(1, 1)), None);
        let m = index.match_block(&block(vec![tx(&[outpoint(3, 0)], &[script(3)])]));
        assert!(m.outputs.is_empty() && m.spends.is_empty());
        // An empty index matches nothing either.
        assert!(WatchIndex::new().match_block(&block(vec![tx(&[outpoint(1, 0)], &[script(1)])])).orders().is_empty());
    }

    #[test]
    fn scripts_of_other_kinds_than_p2wsh_are_matched_too() {
        let mut index = WatchIndex::new();
        let p2wpkh = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([4; 20]));
        let mut other = entry(4, vec![]);
        other.script = p2wpkh.clone();
        index.upsert(id(4), other);
        index.upsert(id(5), entry(5, vec![]));
        // Same bytes as a P2WSH program but another kind of script: no match.
        let lookalike = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([5; 20]));
        let m = index.match_block(&block(vec![tx(&[], &[p2wpkh.clone(), script(5), lookalike, script(4)])]));
        assert_eq!(m.outputs, vec![(id(4), 0, 0), (id(5), 0, 1)]);
        assert!(index.remove(id(4)));
        assert_eq!(index.order_of_script(&p2wpkh), None);
        assert_eq!(index.order_of_script(&script(5)), Some(id(5)));
    }

    #[test]
    fn every_key_is_found_while_the_filters_grow_and_after_removals() {
        let mut index = WatchIndex::new();
        let n = 5_000u32;
        let key = |i: u32| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            b[31] = 1;
            b
        };
        let uuid = |i: u32| Uuid::from_u128(u128::from(i) + 1);
        for i in 0..n {
            let e = WatchEntry {
                script: ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array(key(i))),
                outpoints: vec![OutPoint::new(Txid::from_byte_array(key(i)), i % 3)],
                wake_at: None,
                last_height: 0,
                refund_outstanding: false,
                key_index: i,
            };
            index.upsert(uuid(i), e);
        }
        for i in (0..n).step_by(2) {
            assert!(index.remove(uuid(i)));
        }
        for i in 0..n {
            let script = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array(key(i)));
            let outpoint = OutPoint::new(Txid::from_byte_array(key(i)), i % 3);
            let expected = (i % 2 == 1).then(|| uuid(i));
            assert_eq!(index.order_of_script(&script), expected, "script {i}");
            assert_eq!(index.order_of_outpoint(&outpoint), expected, "outpoint {i}");
            // Same transaction, another output: never watched.
            assert_eq!(index.order_of_outpoint(&OutPoint::new(outpoint.txid, 3)), None);
        }
        assert_eq!(index.len(), n as usize / 2);
    }

    #[test]
    fn replacing_an_entry_forgets_the_outpoints_it_no_longer_has() {
        let mut index = WatchIndex::new();
        index.upsert(id(1), entry(1, vec![outpoint(1, 0), outpoint(1, 1)]));
        // A reorg took one funding output away; a stray arrived.
        index.upsert(id(1), entry(1, vec![outpoint(1, 1), outpoint(5, 0)]));
        assert_eq!(index.order_of_outpoint(&outpoint(1, 0)), None);
        assert_eq!(index.order_of_outpoint(&outpoint(1, 1)), Some(id(1)));
        assert_eq!(index.order_of_outpoint(&outpoint(5, 0)), Some(id(1)));
        assert_eq!(index.order_of_script(&script(1)), Some(id(1)));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn removing_an_order_keeps_what_another_order_took_over() {
        let mut index = WatchIndex::new();
        index.upsert(id(1), entry(1, vec![outpoint(1, 0)]));
        // Two rows claiming one script or outpoint would be corrupt data;
        // the later wins, and dropping the earlier must not drop it.
        index.upsert(id(2), entry(1, vec![outpoint(1, 0)]));
        assert!(index.remove(id(1)));
        assert_eq!(index.order_of_script(&script(1)), Some(id(2)));
        assert_eq!(index.order_of_outpoint(&outpoint(1, 0)), Some(id(2)));
        assert!(index.remove(id(2)));
        assert_eq!(index.order_of_script(&script(1)), None);
        assert!(index.is_empty());
        assert!(!index.remove(id(2)));
    }

    #[test]
    fn an_order_that_settles_leaves_the_per_block_set_but_keeps_its_script() {
        let mut index = WatchIndex::new();
        let mut funded = entry(1, vec![outpoint(1, 0)]);
        funded.wake_at = Some(0);
        funded.last_height = 120;
        index.upsert(id(1), funded);
        let mut timelocked = entry(2, vec![outpoint(2, 0)]);
        timelocked.wake_at = Some(300);
        index.upsert(id(2), timelocked);
        assert_eq!(index.awake_at(121), BTreeSet::from([id(1)]));
        assert_eq!(index.awake_at(300), BTreeSet::from([id(1), id(2)]));
        assert_eq!(index.touched_above(119), BTreeSet::from([id(1)]));
        assert!(index.touched_above(120).is_empty());
        // Settled: nothing left to count, but a later deposit is a stray.
        let mut settled = entry(1, vec![outpoint(1, 0)]);
        settled.last_height = 125;
        index.upsert(id(1), settled);
        assert_eq!(index.awake_at(1_000), BTreeSet::from([id(2)]));
        let m = index.match_block(&block(vec![tx(&[outpoint(4, 0)], &[script(1)])]));
        assert_eq!(m.outputs, vec![(id(1), 0, 0)]);
    }

    #[test]
    fn a_rebuilt_index_matches_like_the_one_kept_up_to_date() {
        let entries: Vec<(Uuid, WatchEntry)> = (1..=20u8)
            .map(|n| (id(n), entry(n, vec![outpoint(n, 0), outpoint(n, 3)])))
            .collect();
        let mut kept = WatchIndex::new();
        for (i, e) in &entries[..10] {
            kept.upsert(*i, e.clone());
        }
        assert_eq!(kept.key_index_seen(), Some(10));
        for (i, e) in &entries[10..] {
            kept.upsert(*i, e.clone());
        }
        kept.upsert(id(3), entry(3, vec![outpoint(3, 7)]));
        let mut rebuilt = WatchIndex::with_capacity(entries.len());
        for (i, e) in &entries {
            if *i == id(3) {
                rebuilt.upsert(*i, entry(3, vec![outpoint(3, 7)]));
            } else {
                rebuilt.upsert(*i, e.clone());
            }
        }
        let b = block(
            (0..=21u8)
                .map(|n| tx(&[outpoint(n, 0), outpoint(n, 7)], &[script(n), script(n.wrapping_add(100))]))
                .collect(),
        );
        assert_eq!(kept.match_block(&b), rebuilt.match_block(&b));
        assert_eq!(kept.key_index_seen(), Some(20));
        // Order 3's old outpoint is gone, its new one is seen.
        assert!(kept.match_block(&b).spends.contains(&(id(3), 3)));
        assert_eq!(kept.order_of_outpoint(&outpoint(3, 0)), None);
    }
}
