//! `agora bench-watcher`: how much matching a block against the watch index
//! adds to decoding it. A deterministic block (a seeded generator, so every
//! run sees the same bytes) of ordinary segwit transactions, a few of which
//! pay or spend watched escrows, against an index of watched escrows (one
//! script and one funding outpoint each). Decoding alone and decoding plus
//! matching are timed in alternation in the same process, so both see the
//! same machine load; the medians and their ratio are reported.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::{absolute, block, transaction, Amount, Block, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::bitcoin_index::{WatchEntry, WatchIndex};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchWatcherArgs {
    /// Watched escrows (one script and one funding outpoint each).
    #[arg(long, default_value_t = 1_000_000)]
    pub scripts: usize,
    /// Transactions in the block (the coinbase included).
    #[arg(long, default_value_t = 3_000)]
    pub txs: usize,
    /// Timed rounds of each kind.
    #[arg(long, default_value_t = 200)]
    pub rounds: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub block_bytes: usize,
    pub index_build: Duration,
    /// How much the resident set grew while the index was built (Linux).
    pub index_resident_bytes: Option<u64>,
    pub decode: Duration,
    pub decode_and_match: Duration,
    pub matched_outputs: usize,
    pub matched_spends: usize,
}

impl BenchReport {
    pub fn ratio(&self) -> f64 {
        self.decode_and_match.as_secs_f64() / self.decode.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

fn bytes32(rng: &mut StdRng) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill(&mut b);
    b
}

fn p2wsh(rng: &mut StdRng) -> ScriptBuf {
    ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::from_byte_array(bytes32(rng)))
}

fn p2wpkh(rng: &mut StdRng) -> ScriptBuf {
    let mut h = [0u8; 20];
    rng.fill(&mut h);
    ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(h))
}

fn outpoint(rng: &mut StdRng) -> OutPoint {
    OutPoint::new(Txid::from_byte_array(bytes32(rng)), rng.gen_range(0..4))
}

/// A P2WPKH-style input: a 72-byte signature and a 33-byte key in the witness.
fn input(rng: &mut StdRng) -> TxIn {
    let previous_output = outpoint(rng);
    let mut sig = vec![0u8; 72];
    rng.fill(sig.as_mut_slice());
    let mut key = vec![0u8; 33];
    rng.fill(key.as_mut_slice());
    TxIn {
        previous_output,
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::from_slice(&[sig, key]),
    }
}

/// The watched escrows and a block that pays `hits` of them and spends the
/// funding of `hits` others.
fn generate(args: &BenchWatcherArgs, hits: usize) -> (Vec<(Uuid, WatchEntry)>, Block) {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let watched: Vec<(Uuid, WatchEntry)> = (0..args.scripts)
        .map(|i| {
            let id = Uuid::from_bytes(rng.gen());
            let entry = WatchEntry {
                script: p2wsh(&mut rng),
                outpoints: vec![outpoint(&mut rng)],
                wake_at: None,
                last_height: 0,
                refund_outstanding: false,
                key_index: u32::try_from(i).unwrap_or(u32::MAX),
            };
            (id, entry)
        })
        .collect();
    let coinbase = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes(vec![3, 1, 2, 3]),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[0u8; 32]]),
        }],
        output: vec![TxOut { value: Amount::from_sat(312_500_000), script_pubkey: p2wpkh(&mut rng) }],
    };
    let mut txdata = vec![coinbase];
    // Every `step`-th transaction is a hit, `hits` of them spread over the block.
    let step = (args.txs.saturating_sub(1) / hits.max(1)).max(1);
    for t in 1..args.txs.max(1) {
        let mut inputs = vec![input(&mut rng), input(&mut rng)];
        let mut outputs = vec![
            TxOut { value: Amount::from_sat(rng.gen_range(1_000..10_000_000)), script_pubkey: p2wpkh(&mut rng) },
            TxOut { value: Amount::from_sat(rng.gen_range(1_000..10_000_000)), script_pubkey: p2wsh(&mut rng) },
        ];
        // Spread the hits over the block.
        if !watched.is_empty() && t % step == 0 && t / step <= hits {
            let (_, paid) = &watched[rng.gen_range(0..watched.len())];
            outputs[1].script_pubkey = paid.script.clone();
            let (_, spent) = &watched[rng.gen_range(0..watched.len())];
            inputs[0].previous_output = spent.outpoints[0];
        }
        txdata.push(Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: inputs,
            output: outputs,
        });
    }
    let header = block::Header {
        version: block::Version::TWO,
        prev_blockhash: bitcoin::BlockHash::from_byte_array(bytes32(&mut rng)),
        merkle_root: bitcoin::TxMerkleNode::all_zeros(),
        time: 1_700_000_000,
        bits: bitcoin::CompactTarget::from_consensus(0x207f_ffff),
        nonce: 0,
    };
    (watched, Block { header, txdata })
}

/// The process's resident set size, from /proc (Linux only).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // 4 KiB pages: the size on every Linux target this runs on in practice.
    Some(pages * 4096)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Builds the index and the block, then times both kinds of round.
pub fn run(args: &BenchWatcherArgs) -> anyhow::Result<BenchReport> {
    let hits = (args.txs / 100).max(1);
    let (watched, block) = generate(args, hits);
    let bytes = bitcoin::consensus::encode::serialize(&block);
    drop(block);

    let resident_before = resident_bytes();
    let started = Instant::now();
    let mut index = WatchIndex::with_capacity(watched.len());
    for (id, entry) in &watched {
        index.upsert(*id, entry.clone());
    }
    let index_build = started.elapsed();
    let index_resident_bytes = resident_bytes().zip(resident_before).map(|(a, b)| a.saturating_sub(b));
    drop(watched);

    let decode = |bytes: &[u8]| -> anyhow::Result<Block> { Ok(bitcoin::consensus::encode::deserialize(bytes)?) };
    // The matched transactions' ids are part of matching (the watcher needs
    // them for those alone); the rest of the block never has its id computed.
    let match_block = |block: &Block| {
        let m = index.match_block(block);
        let ids: Vec<Txid> = m
            .outputs
            .iter()
            .map(|(_, t, _)| *t)
            .chain(m.spends.iter().map(|(_, t)| *t))
            .map(|t| block.txdata[t].compute_txid())
            .collect();
        (m, ids)
    };
    let (first, _) = match_block(&decode(&bytes)?);
    if args.scripts > 0 && (first.outputs.is_empty() || first.spends.is_empty()) {
        anyhow::bail!("the generated block matched nothing: the benchmark would time a stub");
    }
    let (mut decode_only, mut with_match) = (Vec::with_capacity(args.rounds), Vec::with_capacity(args.rounds));
    for _ in 0..args.rounds {
        let t = Instant::now();
        let block = decode(black_box(&bytes))?;
        black_box(&block);
        drop(block);
        decode_only.push(t.elapsed());

        let t = Instant::now();
        let block = decode(black_box(&bytes))?;
        black_box(match_block(&block));
        drop(block);
        with_match.push(t.elapsed());
    }
    Ok(BenchReport {
        block_bytes: bytes.len(),
        index_build,
        index_resident_bytes,
        decode: median(decode_only),
        decode_and_match: median(with_match),
        matched_outputs: first.outputs.len(),
        matched_spends: first.spends.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_block_is_the_same_every_time_and_hits_the_index() {
        let args = BenchWatcherArgs { scripts: 500, txs: 300, rounds: 1, seed: 3 };
        let (w1, b1) = generate(&args, 3);
        let (w2, b2) = generate(&args, 3);
        assert_eq!(b1, b2);
        assert_eq!(w1, w2);
        assert_eq!(b1.txdata.len(), 300);
        let mut index = WatchIndex::new();
        for (id, e) in w1 {
            index.upsert(id, e);
        }
        let m = index.match_block(&b1);
        assert_eq!((m.outputs.len(), m.spends.len()), (3, 3));
        let report = run(&args).expect("runs");
        assert_eq!((report.matched_outputs, report.matched_spends), (3, 3));
    }
}
