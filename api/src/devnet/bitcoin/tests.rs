//! The chain's rules, one at a time, with transactions signed by a test key.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::opcodes::all::OP_PUSHNUM_1;
use bitcoin::script::Builder;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxOut, Txid, WScriptHash, Witness,
};

use super::chain::{Chain, INITIAL_BLOCKS};
use super::validate::{RejectCode, Rejection, MEMPOOL_PACKAGE_LIMIT};
use super::wallet::DevnetWallet;
use super::DevnetError;

fn chain() -> Chain {
    Chain::new(DevnetWallet::random())
}

/// A key the test holds, and the faucet payment of `sats` to it, mined.
struct Funded {
    key: DevnetWallet,
    coin: (OutPoint, TxOut),
    /// Height of the block holding the coin.
    height: u32,
}

fn output_to(chain: &Chain, txid: Txid, script: &ScriptBuf) -> (OutPoint, TxOut) {
    let place = chain.find_tx(&txid).unwrap();
    let (vout, output) = place
        .tx()
        .output
        .iter()
        .enumerate()
        .find(|(_, o)| o.script_pubkey == *script)
        .unwrap();
    (OutPoint::new(txid, vout as u32), output.clone())
}

fn fund(chain: &mut Chain, sats: u64) -> Funded {
    let key = DevnetWallet::random();
    let txid = chain.faucet(key.script_pubkey(), sats).unwrap();
    chain.mine(1, None);
    let coin = output_to(chain, txid, key.script_pubkey());
    Funded {
        key,
        coin,
        height: chain.height(),
    }
}

/// A signed spend of `coins` by `key` paying `value` to a fresh key, with the
/// given version, locktime and sequence.
fn spend_with(
    key: &DevnetWallet,
    coins: &[(OutPoint, TxOut)],
    value: u64,
    version: Version,
    lock_time: LockTime,
    sequence: Sequence,
) -> Transaction {
    let to = DevnetWallet::random();
    let mut tx = DevnetWallet::unsigned(
        coins,
        vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: to.script_pubkey().clone(),
        }],
    );
    tx.version = version;
    tx.lock_time = lock_time;
    for input in &mut tx.input {
        input.sequence = sequence;
    }
    key.sign(&mut tx, coins).unwrap();
    tx
}

/// Spends `funded` paying all but 1,000 sats, RBF on, no locks.
fn spend(funded: &Funded) -> Transaction {
    spend_with(
        &funded.key,
        &[funded.coin.clone()],
        funded.coin.1.value.to_sat() - 1_000,
        Version::TWO,
        LockTime::ZERO,
        Sequence::ENABLE_RBF_NO_LOCKTIME,
    )
}

fn reason(result: Result<Txid, Rejection>) -> String {
    match result {
        Ok(txid) => panic!("{txid} was accepted"),
        Err(r) => r.reason,
    }
}

#[test]
fn a_new_chain_has_mature_coins_and_real_blocks() {
    let mut chain = chain();
    assert_eq!(chain.height(), INITIAL_BLOCKS);
    let funded = fund(&mut chain, 100_000);
    chain.accept(&spend(&funded), None).unwrap();
    chain.mine(1, None);

    let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest);
    assert_eq!(chain.hash_at(0), Some(genesis.block_hash()));
    for height in 1..=u64::from(chain.height()) {
        let hash = chain.hash_at(height).unwrap();
        let block = &chain.block(&hash).unwrap().block;
        assert_eq!(block.block_hash(), hash);
        assert_eq!(Some(block.header.prev_blockhash), chain.hash_at(height - 1));
        assert!(block.check_merkle_root(), "merkle root at {height}");
        assert!(
            block.check_witness_commitment(),
            "witness commitment at {height}"
        );
        // BIP34 as Core checks it: the scriptSig starts with `CScript() << height`
        // (OP_1..OP_16 up to 16, which the `bitcoin` crate's parser does not read).
        let expected = Builder::new().push_int(height as i64).into_script();
        assert!(block.txdata[0].input[0]
            .script_sig
            .as_bytes()
            .starts_with(expected.as_bytes()));
        if height > 16 {
            assert_eq!(block.bip34_block_height().unwrap(), height);
        }
        block.header.validate_pow(block.header.target()).unwrap();
        assert!(block.header.time > chain.median_time_past(&block.header.prev_blockhash));
    }
    // The last two blocks hold a segwit spend, so their commitments were checked for real.
    let last = chain.block(&chain.tip_hash()).unwrap();
    assert_eq!(last.block.txdata.len(), 2);
    assert!(!last.block.txdata[1].input[0].witness.is_empty());
}

#[test]
fn the_coinbase_pays_subsidy_plus_fees() {
    let mut chain = chain();
    let funded = fund(&mut chain, 100_000);
    let tx = spend(&funded);
    chain.accept(&tx, None).unwrap();
    let hash = chain.mine(1, None)[0];
    let block = &chain.block(&hash).unwrap().block;
    // Regtest halves every 150 blocks; this is block 103.
    assert_eq!(
        block.txdata[0].output[0].value,
        Amount::from_sat(50 * 100_000_000 + 1_000)
    );
}

#[test]
fn the_faucet_pays_into_the_mempool_and_the_next_block_takes_it() {
    let mut chain = chain();
    let key = DevnetWallet::random();
    let txid = chain.faucet(key.script_pubkey(), 50_000).unwrap();
    assert_eq!(chain.mempool_txids(), vec![txid]);
    // A second payment before mining spends the first one's change.
    let second = chain.faucet(key.script_pubkey(), 60_000).unwrap();
    let hash = chain.mine(1, None)[0];
    let txids: Vec<Txid> = chain.block(&hash).unwrap().block.txdata[1..]
        .iter()
        .map(Transaction::compute_txid)
        .collect();
    assert_eq!(txids, vec![txid, second]);
    assert!(chain.mempool_txids().is_empty());
    let utxos = chain.utxos_of(key.script_pubkey());
    let mut values: Vec<u64> = utxos.iter().map(|u| u.value.to_sat()).collect();
    values.sort_unstable();
    assert_eq!(values, vec![50_000, 60_000]);
}

#[test]
fn the_faucet_refuses_dust_and_more_than_it_has() {
    let mut chain = chain();
    let key = DevnetWallet::random();
    assert!(matches!(
        chain.faucet(key.script_pubkey(), 293),
        Err(DevnetError::Dust { limit: 294, .. })
    ));
    assert!(matches!(
        chain.faucet(key.script_pubkey(), 21_000_000 * 100_000_000),
        Err(DevnetError::InsufficientFunds { .. })
    ));
}

#[test]
fn a_coinbase_is_spendable_100_blocks_after_its_own() {
    let mut chain = chain();
    let key = DevnetWallet::random();
    let hash = chain.mine(1, Some(key.script_pubkey()))[0];
    let coinbase = chain.block(&hash).unwrap().block.txdata[0].clone();
    let coin = (
        OutPoint::new(coinbase.compute_txid(), 0),
        coinbase.output[0].clone(),
    );
    let tx = spend_with(
        &key,
        &[coin.clone()],
        coin.1.value.to_sat() - 1_000,
        Version::TWO,
        LockTime::ZERO,
        Sequence::ENABLE_RBF_NO_LOCKTIME,
    );
    assert!(reason(chain.accept(&tx, None)).starts_with("bad-txns-premature-spend-of-coinbase"));
    chain.mine(98, None);
    // The next block would be 99 blocks after the coinbase's.
    assert_eq!(
        reason(chain.accept(&tx, None)),
        "bad-txns-premature-spend-of-coinbase, tried to spend coinbase at depth 99"
    );
    chain.mine(1, None);
    chain.accept(&tx, None).unwrap();
}

#[test]
fn amounts_fees_and_dust_follow_core() {
    let mut chain = chain();
    let funded = fund(&mut chain, 100_000);
    let coins = [funded.coin.clone()];
    let rbf = Sequence::ENABLE_RBF_NO_LOCKTIME;
    let over = spend_with(
        &funded.key,
        &coins,
        100_001,
        Version::TWO,
        LockTime::ZERO,
        rbf,
    );
    assert!(reason(chain.accept(&over, None)).starts_with("bad-txns-in-belowout"));
    // 110 vB at less than 1 sat/vB.
    let cheap = spend_with(
        &funded.key,
        &coins,
        99_950,
        Version::TWO,
        LockTime::ZERO,
        rbf,
    );
    assert!(reason(chain.accept(&cheap, None)).starts_with("min relay fee not met"));
    let dust = spend_with(&funded.key, &coins, 293, Version::TWO, LockTime::ZERO, rbf);
    assert_eq!(reason(chain.accept(&dust, None)), "dust");
    // 1.7M sats over ~110 vB is above sendrawtransaction's default 10,000 sat/vB.
    let rich = fund(&mut chain, 2_000_000);
    let fat = spend_with(
        &rich.key,
        &[rich.coin.clone()],
        300_000,
        Version::TWO,
        LockTime::ZERO,
        rbf,
    );
    let refused = chain.accept(
        &fat,
        Some(super::validate::DEFAULT_MAX_FEE_RATE_SAT_PER_KVB),
    );
    assert_eq!(refused.unwrap_err().code, RejectCode::Verify);
    assert!(chain.clone_accepts(&fat), "no limit without a maxfeerate");
    let v3 = spend_with(&funded.key, &coins, 99_000, Version(3), LockTime::ZERO, rbf);
    assert_eq!(reason(chain.accept(&v3, None)), "version");
    chain.accept(&spend(&funded), None).unwrap();
}

#[test]
fn a_bad_signature_fails_bitcoinconsensus() {
    let mut chain = chain();
    let funded = fund(&mut chain, 100_000);
    let mut tx = spend(&funded);
    // Sign with another key but keep the right public key in the witness.
    let stranger = DevnetWallet::random();
    let mut forged = tx.clone();
    stranger.sign(&mut forged, &[funded.coin.clone()]).unwrap();
    let signature = forged.input[0].witness.nth(0).unwrap().to_vec();
    let public = tx.input[0].witness.nth(1).unwrap().to_vec();
    tx.input[0].witness = Witness::from_slice(&[signature, public]);
    let rejection = chain.accept(&tx, None).unwrap_err();
    assert_eq!(rejection.code, RejectCode::Rejected);
    assert!(
        rejection
            .reason
            .starts_with("mandatory-script-verify-flag-failed"),
        "{}",
        rejection.reason
    );
    // Without a witness at all.
    tx.input[0].witness = Witness::new();
    assert!(reason(chain.accept(&tx, None)).starts_with("mandatory-script-verify-flag-failed"));
}

#[test]
fn double_spends_are_refused_against_the_mempool_and_the_chain() {
    let mut chain = chain();
    let funded = fund(&mut chain, 100_000);
    let first = spend(&funded);
    let second = spend_with(
        &funded.key,
        &[funded.coin.clone()],
        90_000,
        Version::TWO,
        LockTime::ZERO,
        Sequence::ENABLE_RBF_NO_LOCKTIME,
    );
    let txid = chain.accept(&first, None).unwrap();
    // The same transaction again is fine, as with Core.
    assert_eq!(chain.accept(&first, None), Ok(txid));
    assert_eq!(reason(chain.accept(&second, None)), "txn-mempool-conflict");
    chain.mine(1, None);
    let spent = chain.accept(&second, None).unwrap_err();
    assert_eq!(
        (spent.code, spent.reason.as_str()),
        (RejectCode::Verify, "bad-txns-inputs-missingorspent")
    );
    assert_eq!(
        chain.accept(&first, None).unwrap_err().code,
        RejectCode::AlreadyInChain
    );
}

#[test]
fn nlocktime_holds_a_transaction_until_its_height() {
    let mut chain = chain();
    let funded = fund(&mut chain, 100_000);
    let coins = [funded.coin.clone()];
    let next = chain.height() + 1;
    let locked = spend_with(
        &funded.key,
        &coins,
        99_000,
        Version::TWO,
        LockTime::from_height(next).unwrap(),
        Sequence::ENABLE_RBF_NO_LOCKTIME,
    );
    assert_eq!(reason(chain.accept(&locked, None)), "non-final");
    // Final sequences switch the lock off.
    let unlocked = spend_with(
        &funded.key,
        &coins,
        99_000,
        Version::TWO,
        LockTime::from_height(next).unwrap(),
        Sequence::MAX,
    );
    assert!(chain.clone_accepts(&unlocked));
    chain.mine(1, None);
    chain.accept(&locked, None).unwrap();
}

#[test]
fn bip68_holds_a_spend_until_the_coin_is_deep_enough() {
    let mut chain = chain();
    let funded = fund(&mut chain, 100_000);
    let coins = [funded.coin.clone()];
    let csv = |v: Version, s: u32| {
        spend_with(&funded.key, &coins, 99_000, v, LockTime::ZERO, Sequence(s))
    };
    // Spendable in the block `funded.height + 5`.
    let tx = csv(Version::TWO, 5);
    for _ in 0..3 {
        assert_eq!(reason(chain.accept(&tx, None)), "non-BIP68-final");
        chain.mine(1, None);
    }
    assert_eq!(chain.height() + 1, funded.height + 4);
    assert_eq!(reason(chain.accept(&tx, None)), "non-BIP68-final");
    // Version 1 and the disable flag ignore the lock.
    assert!(chain.clone_accepts(&csv(Version::ONE, 5)));
    assert!(chain.clone_accepts(&csv(Version::TWO, 5 | 1 << 31)));
    chain.mine(1, None);
    assert_eq!(chain.height() + 1, funded.height + 5);
    chain.accept(&tx, None).unwrap();
}

#[test]
fn a_time_based_relative_lock_waits_for_median_time_past() {
    let mut chain = chain();
    let funded = fund(&mut chain, 100_000);
    // One unit is 512 seconds; the devnet's blocks are seconds apart.
    let tx = spend_with(
        &funded.key,
        &[funded.coin.clone()],
        99_000,
        Version::TWO,
        LockTime::ZERO,
        Sequence(1 | 1 << 22),
    );
    assert_eq!(reason(chain.accept(&tx, None)), "non-BIP68-final");
}

#[test]
fn mempool_outputs_are_spendable_but_count_as_unconfirmed_for_bip68() {
    let mut chain = chain();
    let funded = fund(&mut chain, 100_000);
    let parent = spend_with(
        &funded.key,
        &[funded.coin.clone()],
        99_000,
        Version::TWO,
        LockTime::ZERO,
        Sequence::ENABLE_RBF_NO_LOCKTIME,
    );
    // Re-sign the parent to a key we hold.
    let child_key = DevnetWallet::random();
    let mut parent = parent;
    parent.output[0].script_pubkey = child_key.script_pubkey().clone();
    funded
        .key
        .sign(&mut parent, &[funded.coin.clone()])
        .unwrap();
    let parent_txid = chain.accept(&parent, None).unwrap();
    let coin = (OutPoint::new(parent_txid, 0), parent.output[0].clone());
    let child = |s: u32| {
        spend_with(
            &child_key,
            &[coin.clone()],
            98_000,
            Version::TWO,
            LockTime::ZERO,
            Sequence(s),
        )
    };
    assert_eq!(reason(chain.accept(&child(1), None)), "non-BIP68-final");
    let txid = chain.accept(&child(0), None).unwrap();
    let hash = chain.mine(1, None)[0];
    assert_eq!(chain.block(&hash).unwrap().block.txdata.len(), 3);
    assert!(chain.find_tx(&txid).is_some());
}

#[test]
fn unconfirmed_chains_stop_at_25_transactions() {
    let mut chain = chain();
    let mut funded = fund(&mut chain, 1_000_000);
    for n in 1..=MEMPOOL_PACKAGE_LIMIT + 1 {
        let next = DevnetWallet::random();
        let mut tx = spend(&funded);
        tx.output[0].script_pubkey = next.script_pubkey().clone();
        funded.key.sign(&mut tx, &[funded.coin.clone()]).unwrap();
        let result = chain.accept(&tx, None);
        if n <= MEMPOOL_PACKAGE_LIMIT {
            let txid = result.unwrap();
            funded = Funded {
                key: next,
                coin: (OutPoint::new(txid, 0), tx.output[0].clone()),
                height: funded.height,
            };
        } else {
            assert!(reason(result).starts_with("too-long-mempool-chain"));
        }
    }
}

#[test]
fn taproot_spends_are_refused_because_libbitcoinconsensus_cannot_check_them() {
    let mut chain = chain();
    let key = DevnetWallet::random();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let keypair =
        bitcoin::secp256k1::Keypair::new(&secp, &mut bitcoin::secp256k1::rand::thread_rng());
    let (xonly, _) = keypair.x_only_public_key();
    let taproot = ScriptBuf::new_p2tr(&secp, xonly, None);
    let txid = chain.faucet(&taproot, 10_000).unwrap();
    chain.mine(1, None);
    let coin = output_to(&chain, txid, &taproot);
    let mut tx = DevnetWallet::unsigned(
        &[coin],
        vec![TxOut {
            value: Amount::from_sat(9_000),
            script_pubkey: key.script_pubkey().clone(),
        }],
    );
    tx.input[0].witness = Witness::from_slice(&[[0u8; 64]]);
    assert!(reason(chain.accept(&tx, None)).starts_with("devnet-cannot-verify-taproot"));
}

#[test]
fn a_csv_script_is_checked_by_the_interpreter_and_by_bip68() {
    // wsh(<3> OP_CSV OP_DROP OP_TRUE): anyone can spend once 3 blocks deep.
    let mut chain = chain();
    let witness_script = Builder::new()
        .push_int(3)
        .push_opcode(bitcoin::opcodes::all::OP_CSV)
        .push_opcode(bitcoin::opcodes::all::OP_DROP)
        .push_opcode(OP_PUSHNUM_1)
        .into_script();
    let spk = ScriptBuf::new_p2wsh(&WScriptHash::hash(witness_script.as_bytes()));
    let txid = chain.faucet(&spk, 50_000).unwrap();
    chain.mine(1, None);
    let funded_at = chain.height();
    let coin = output_to(&chain, txid, &spk);
    let to = DevnetWallet::random();
    let build = |sequence: u32| {
        let mut tx = DevnetWallet::unsigned(
            &[coin.clone()],
            vec![TxOut {
                value: Amount::from_sat(49_000),
                script_pubkey: to.script_pubkey().clone(),
            }],
        );
        tx.input[0].sequence = Sequence(sequence);
        tx.input[0].witness = Witness::from_slice(&[witness_script.as_bytes()]);
        tx
    };
    // A sequence below the script's 3 fails in the interpreter, whatever the depth.
    chain.mine(5, None);
    assert!(
        reason(chain.accept(&build(2), None)).starts_with("mandatory-script-verify-flag-failed")
    );
    chain.accept(&build(3), None).unwrap();
    assert!(chain.height() >= funded_at + 3);
}

#[test]
fn a_reorg_replaces_blocks_and_puts_their_transactions_back_except_dropped_ones() {
    let mut chain = chain();
    let kept = fund(&mut chain, 100_000);
    let dropped = fund(&mut chain, 200_000);
    // A child of the dropped payment, and an unrelated mempool spend.
    let child = spend(&dropped);
    let child_txid = chain.accept(&child, None).unwrap();
    chain.mine(1, None);
    let in_mempool = spend(&kept);
    let mempool_txid = chain.accept(&in_mempool, None).unwrap();
    let kept_txid = kept.coin.0.txid;
    let dropped_txid = dropped.coin.0.txid;
    let dropped_tx = chain.find_tx(&dropped_txid).unwrap().tx().clone();

    let old_tip = chain.height();
    let old_hashes: Vec<_> = (old_tip - 2..=old_tip)
        .map(|h| chain.hash_at(u64::from(h)).unwrap())
        .collect();
    let new = chain.reorg(3, &[dropped_txid]).unwrap();
    assert_eq!(new.len(), 4);
    assert_eq!(chain.height(), old_tip + 1);
    for (h, old) in (old_tip - 2..=old_tip).zip(&old_hashes) {
        assert_ne!(chain.hash_at(u64::from(h)).as_ref(), Some(old));
        let stale = chain.block(old).unwrap();
        assert_eq!(chain.confirmations(stale), -1);
    }
    assert!(chain.find_tx(&dropped_txid).is_none());
    assert!(chain.find_tx(&child_txid).is_none());
    // The kept payment and the mempool spend went into the first new block.
    let first_new = chain.block(&new[0]).unwrap();
    let txids: Vec<Txid> = first_new
        .block
        .txdata
        .iter()
        .map(Transaction::compute_txid)
        .collect();
    assert!(txids.contains(&kept_txid) && txids.contains(&mempool_txid));
    assert!(chain.mempool_txids().is_empty());
    // The dropped payment is still valid and can be broadcast again.
    assert_eq!(chain.accept(&dropped_tx, None), Ok(dropped_txid));
}

#[test]
fn a_reorg_refuses_to_drop_what_it_does_not_replace() {
    let mut chain = chain();
    let old = fund(&mut chain, 100_000);
    chain.mine(2, None);
    assert!(matches!(
        chain.reorg(2, &[old.coin.0.txid]),
        Err(DevnetError::NotReorgable { .. })
    ));
    assert!(matches!(chain.reorg(0, &[]), Err(DevnetError::EmptyReorg)));
    let height = chain.height();
    assert!(matches!(
        chain.reorg(height + 1, &[]),
        Err(DevnetError::ReorgTooDeep { .. })
    ));
    // Nothing changed.
    assert_eq!(chain.height(), height);
}

#[test]
fn a_reorg_drops_spends_of_replaced_coinbases() {
    let mut chain = chain();
    let key = DevnetWallet::random();
    let hash = chain.mine(1, Some(key.script_pubkey()))[0];
    let coinbase = chain.block(&hash).unwrap().block.txdata[0].clone();
    chain.mine(100, None);
    let coin = (
        OutPoint::new(coinbase.compute_txid(), 0),
        coinbase.output[0].clone(),
    );
    let tx = spend_with(
        &key,
        &[coin],
        1_000_000,
        Version::TWO,
        LockTime::ZERO,
        Sequence::MAX,
    );
    let txid = chain.accept(&tx, None).unwrap();
    chain.reorg(101, &[]).unwrap();
    assert!(chain.find_tx(&txid).is_none());
    assert!(chain.find_tx(&coinbase.compute_txid()).is_none());
}

#[test]
fn rejection_codes_are_cores() {
    assert_eq!(RejectCode::Verify.rpc_code(), -25);
    assert_eq!(RejectCode::Rejected.rpc_code(), -26);
    assert_eq!(RejectCode::AlreadyInChain.rpc_code(), -27);
}

impl Chain {
    /// Whether `tx` would be accepted now, without keeping it.
    fn clone_accepts(&mut self, tx: &Transaction) -> bool {
        let txid = tx.compute_txid();
        match self.accept(tx, None) {
            Ok(_) => {
                self.remove_from_mempool_for_tests(txid);
                true
            }
            Err(_) => false,
        }
    }
}

#[test]
fn auto_mining_mines_until_stopped() {
    let devnet = super::BitcoinDevnet::new();
    let start = devnet.tip().height;
    devnet.start_auto_mining(std::time::Duration::from_millis(10));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while devnet.tip().height < start + 3 {
        assert!(std::time::Instant::now() < deadline, "no blocks were mined");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    devnet.stop_auto_mining();
    // A block already being mined may still land.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let stopped = devnet.tip().height;
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(devnet.tip().height, stopped);
}
