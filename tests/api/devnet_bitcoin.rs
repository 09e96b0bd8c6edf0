//! The Bitcoin devnet through both chain sources, Bitcoin Core JSON-RPC and
//! Esplora, against its servers on port 0. Every scenario runs once per adapter
//! on a fresh devnet; the wire formats are checked on the raw HTTP level too.

use std::future::Future;

use agora_api::devnet::bitcoin::{BitcoinDevnet, BitcoinDevnetServers};
use agora_domain::escrow::payout::PayoutTerms;
use agora_domain::money::BasisPoints;
use agora_escrow::btc::{
    build_payout, build_refund, finalize_payout, finalize_refund, sign_escrow_input,
    EscrowDescriptor, EscrowKeys, FundingUtxo, PayoutAddresses,
};
use agora_escrow::source::bitcoin_rpc::BitcoinCoreRpc;
use agora_escrow::source::esplora::Esplora;
use agora_escrow::source::{BitcoinSource, BlockId, SourceError, TxStatus};
use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    ecdsa, Address, Amount, Block, BlockHash, CompressedPublicKey, Network, OutPoint, PublicKey,
    ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};
use serde_json::{json, Value};

const RPC_USER: &str = "agora";
const RPC_PASSWORD: &str = "devnet-only";

/// One of the two adapters, so a scenario is written once.
enum Source {
    Rpc(BitcoinCoreRpc),
    Esplora(Esplora),
}

impl BitcoinSource for Source {
    async fn tip(&self) -> Result<BlockId, SourceError> {
        match self {
            Source::Rpc(s) => s.tip().await,
            Source::Esplora(s) => s.tip().await,
        }
    }

    async fn block_hash(&self, height: u64) -> Result<BlockHash, SourceError> {
        match self {
            Source::Rpc(s) => s.block_hash(height).await,
            Source::Esplora(s) => s.block_hash(height).await,
        }
    }

    async fn block(&self, hash: BlockHash) -> Result<Block, SourceError> {
        match self {
            Source::Rpc(s) => s.block(hash).await,
            Source::Esplora(s) => s.block(hash).await,
        }
    }

    async fn broadcast(&self, tx: &Transaction) -> Result<Txid, SourceError> {
        match self {
            Source::Rpc(s) => s.broadcast(tx).await,
            Source::Esplora(s) => s.broadcast(tx).await,
        }
    }

    async fn fee_rate(&self, target_blocks: u16) -> Result<u64, SourceError> {
        match self {
            Source::Rpc(s) => s.fee_rate(target_blocks).await,
            Source::Esplora(s) => s.fee_rate(target_blocks).await,
        }
    }

    async fn tx_status(&self, txid: Txid) -> Result<Option<TxStatus>, SourceError> {
        match self {
            Source::Rpc(s) => s.tx_status(txid).await,
            Source::Esplora(s) => s.tx_status(txid).await,
        }
    }
}

/// A fresh devnet and one adapter on its servers.
struct Net {
    devnet: BitcoinDevnet,
    source: Source,
    name: &'static str,
}

async fn start() -> (BitcoinDevnet, BitcoinDevnetServers) {
    let devnet = BitcoinDevnet::new();
    let servers = devnet
        .serve(
            "127.0.0.1:0",
            "127.0.0.1:0",
            Some((RPC_USER.into(), RPC_PASSWORD.into())),
        )
        .await
        .unwrap();
    (devnet, servers)
}

fn rpc(servers: &BitcoinDevnetServers) -> BitcoinCoreRpc {
    BitcoinCoreRpc::new(
        &servers.rpc_url,
        Some((RPC_USER.into(), RPC_PASSWORD.into())),
    )
}

/// Runs `scenario` through the JSON-RPC adapter, then through Esplora.
async fn each_source<F, Fut>(scenario: F)
where
    F: Fn(Net) -> Fut,
    Fut: Future<Output = ()>,
{
    for name in ["rpc", "esplora"] {
        let (devnet, servers) = start().await;
        let source = match name {
            "rpc" => Source::Rpc(rpc(&servers)),
            _ => Source::Esplora(Esplora::new(&servers.esplora_url)),
        };
        scenario(Net {
            devnet,
            source,
            name,
        })
        .await;
        // Held here: the servers stop when dropped.
        servers.stop().await;
    }
}

/// A P2WPKH key the test holds.
struct Key {
    secret: SecretKey,
    public: CompressedPublicKey,
}

impl Key {
    fn new(seed: u8) -> Key {
        let mut bytes = [seed; 32];
        bytes[0] = 0x5a;
        let secret = SecretKey::from_slice(&bytes).unwrap();
        Key {
            secret,
            public: CompressedPublicKey(secret.public_key(&Secp256k1::new())),
        }
    }

    fn public_key(&self) -> PublicKey {
        PublicKey::new(self.public.0)
    }

    fn address(&self) -> Address {
        Address::p2wpkh(&self.public, Network::Regtest)
    }

    /// Signs input `index` (which spends `coin`, an output of this key) with
    /// `signer`'s secret, putting this key's public key in the witness.
    fn sign_as(&self, tx: &mut Transaction, index: usize, coin: &TxOut, signer: &SecretKey) {
        let sighash = SighashCache::new(&*tx)
            .p2wpkh_signature_hash(
                index,
                &coin.script_pubkey,
                coin.value,
                EcdsaSighashType::All,
            )
            .unwrap();
        let signature = Secp256k1::new().sign_ecdsa(&Message::from(sighash), signer);
        tx.input[index].witness =
            Witness::p2wpkh(&ecdsa::Signature::sighash_all(signature), &self.public.0);
    }

    /// A signed spend of `coin` paying `value` to `to`.
    fn spend(&self, coin: &(OutPoint, TxOut), to: &Address, value: u64) -> Transaction {
        let mut tx = unsigned(coin.0, to, value);
        self.sign_as(&mut tx, 0, &coin.1, &self.secret);
        tx
    }
}

fn unsigned(outpoint: OutPoint, to: &Address, value: u64) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: to.script_pubkey(),
        }],
    }
}

/// The output of transaction `txid` paying `address`.
fn coin_of(devnet: &BitcoinDevnet, txid: Txid, address: &Address) -> (OutPoint, TxOut) {
    let tx = devnet.transaction(&txid).unwrap();
    let (vout, output) = tx
        .output
        .iter()
        .enumerate()
        .find(|(_, o)| o.script_pubkey == address.script_pubkey())
        .unwrap();
    (OutPoint::new(txid, vout as u32), output.clone())
}

/// Pays `sats` to `key` from the faucet and mines it; returns the coin.
fn funded(devnet: &BitcoinDevnet, key: &Key, sats: u64) -> (OutPoint, TxOut) {
    let txid = devnet.faucet(&key.address(), sats).unwrap();
    devnet.mine(1);
    coin_of(devnet, txid, &key.address())
}

fn rejected(result: Result<Txid, SourceError>, reason: &str, name: &str) {
    match result {
        Err(SourceError::Rejected(message)) => {
            assert!(
                message.contains(reason),
                "{name}: expected {reason:?}, got {message:?}"
            )
        }
        other => panic!("{name}: expected a rejection ({reason}), got {other:?}"),
    }
}

// ---- the chain as both sources see it ----

#[tokio::test]
async fn rpc_esplora_and_the_devnet_agree_on_the_chain() {
    let (devnet, servers) = start().await;
    let key = Key::new(1);
    devnet.faucet(&key.address(), 10_000).unwrap();
    devnet.mine(2);
    let sources = [
        Source::Rpc(rpc(&servers)),
        Source::Esplora(Esplora::new(&servers.esplora_url)),
    ];
    let tip = devnet.tip();
    assert_eq!(tip.height, 103);
    for source in &sources {
        assert_eq!(source.tip().await.unwrap(), tip);
        for height in [0, 1, tip.height - 1, tip.height] {
            let hash = source.block_hash(height).await.unwrap();
            let block = source.block(hash).await.unwrap();
            assert_eq!(block.block_hash(), hash);
            assert!(block.check_merkle_root() && block.check_witness_commitment());
            if height > 0 {
                assert_eq!(
                    block.header.prev_blockhash,
                    source.block_hash(height - 1).await.unwrap()
                );
            }
        }
        assert_eq!(source.block_hash(tip.height).await.unwrap(), tip.hash);
        assert_eq!(
            source.block_hash(tip.height + 1).await,
            Err(SourceError::NotFound)
        );
        assert_eq!(
            source.block(BlockHash::all_zeros()).await,
            Err(SourceError::NotFound)
        );
    }
    for height in 0..=tip.height {
        let [a, b] = [&sources[0], &sources[1]];
        let hash = a.block_hash(height).await.unwrap();
        assert_eq!(b.block_hash(height).await.unwrap(), hash, "height {height}");
        if height >= tip.height - 2 {
            assert_eq!(a.block(hash).await.unwrap(), b.block(hash).await.unwrap());
        }
    }
}

#[tokio::test]
async fn both_sources_report_the_devnet_fee_rate_never_below_one_sat_per_vbyte() {
    each_source(|net| async move {
        net.devnet.set_fee_rate(7);
        for target in [1, 2, 6, 144, 1008, u16::MAX] {
            assert_eq!(
                net.source.fee_rate(target).await,
                Ok(7),
                "{} target {target}",
                net.name
            );
        }
        net.devnet.set_fee_rate(1);
        assert_eq!(net.source.fee_rate(6).await, Ok(1));
    })
    .await;
}

// ---- transactions ----

#[tokio::test]
async fn a_faucet_payment_is_in_the_mempool_then_confirmed_in_the_next_block() {
    each_source(|net| async move {
        let key = Key::new(2);
        let txid = net.devnet.faucet(&key.address(), 123_456).unwrap();
        assert_eq!(
            net.source.tx_status(txid).await,
            Ok(Some(TxStatus::Mempool)),
            "{}",
            net.name
        );
        let hash = net.devnet.mine(1)[0];
        let tip = net.source.tip().await.unwrap();
        assert_eq!(tip.hash, hash);
        assert_eq!(
            net.source.tx_status(txid).await,
            Ok(Some(TxStatus::Confirmed { height: tip.height }))
        );
        let block = net.source.block(hash).await.unwrap();
        let tx = block
            .txdata
            .iter()
            .find(|t| t.compute_txid() == txid)
            .unwrap();
        assert!(tx.output.iter().any(
            |o| o.script_pubkey == key.address().script_pubkey() && o.value.to_sat() == 123_456
        ));
        net.devnet.mine(2);
        assert_eq!(
            net.source.tx_status(txid).await,
            Ok(Some(TxStatus::Confirmed { height: tip.height })),
            "the height stays that of the block"
        );
        assert_eq!(net.source.tx_status(Txid::all_zeros()).await, Ok(None));
    })
    .await;
}

#[tokio::test]
async fn a_spend_with_a_bad_signature_is_rejected() {
    each_source(|net| async move {
        let key = Key::new(3);
        let coin = funded(&net.devnet, &key, 100_000);
        let mut forged = unsigned(coin.0, &Key::new(4).address(), 99_000);
        key.sign_as(&mut forged, 0, &coin.1, &Key::new(4).secret);
        rejected(
            net.source.broadcast(&forged).await,
            "mandatory-script-verify-flag-failed",
            net.name,
        );
        assert_eq!(net.source.tx_status(forged.compute_txid()).await, Ok(None));
        let honest = key.spend(&coin, &Key::new(4).address(), 99_000);
        assert_eq!(
            net.source.broadcast(&honest).await,
            Ok(honest.compute_txid())
        );
    })
    .await;
}

#[tokio::test]
async fn a_double_spend_is_rejected_and_a_known_transaction_counts_as_sent() {
    each_source(|net| async move {
        let key = Key::new(5);
        let next = Key::new(6);
        let coin = funded(&net.devnet, &key, 100_000);
        let first = key.spend(&coin, &next.address(), 99_000);
        let second = key.spend(&coin, &Key::new(7).address(), 98_000);
        let txid = net.source.broadcast(&first).await.unwrap();
        rejected(
            net.source.broadcast(&second).await,
            "txn-mempool-conflict",
            net.name,
        );
        assert_eq!(
            net.source.broadcast(&first).await,
            Ok(txid),
            "again, from the mempool"
        );

        net.devnet.mine(1);
        rejected(
            net.source.broadcast(&second).await,
            "bad-txns-inputs-missingorspent",
            net.name,
        );
        assert_eq!(
            net.source.broadcast(&first).await,
            Ok(txid),
            "again, once mined"
        );

        // Once its only output is spent, the node no longer calls it "in chain":
        // the adapter still recognises it.
        let onward = next.spend(
            &(OutPoint::new(txid, 0), first.output[0].clone()),
            &key.address(),
            98_000,
        );
        net.source.broadcast(&onward).await.unwrap();
        net.devnet.mine(1);
        assert_eq!(net.source.broadcast(&first).await, Ok(txid), "{}", net.name);
    })
    .await;
}

#[tokio::test]
async fn an_immature_coinbase_cannot_be_spent() {
    each_source(|net| async move {
        let key = Key::new(8);
        let hash = net.devnet.mine_to(&key.address(), 1).unwrap()[0];
        let block = net.source.block(hash).await.unwrap();
        let coinbase = &block.txdata[0];
        let coin = (
            OutPoint::new(coinbase.compute_txid(), 0),
            coinbase.output[0].clone(),
        );
        let spend = key.spend(
            &coin,
            &Key::new(9).address(),
            coin.1.value.to_sat() - 10_000,
        );
        rejected(
            net.source.broadcast(&spend).await,
            "premature-spend-of-coinbase",
            net.name,
        );
        net.devnet.mine(98);
        rejected(net.source.broadcast(&spend).await, "at depth 99", net.name);
        net.devnet.mine(1);
        assert_eq!(
            net.source.broadcast(&spend).await,
            Ok(spend.compute_txid()),
            "{}",
            net.name
        );
    })
    .await;
}

// ---- the escrow's two paths ----

const TIMELOCK: u16 = 6;

struct Escrow {
    buyer: Key,
    buyer_refund: Key,
    provider: Key,
    arbitrator: Key,
    descriptor: EscrowDescriptor,
}

fn escrow() -> Escrow {
    let (buyer, buyer_refund, provider, arbitrator) =
        (Key::new(20), Key::new(21), Key::new(22), Key::new(23));
    let keys = EscrowKeys::new(
        buyer.public_key(),
        buyer_refund.public_key(),
        provider.public_key(),
        arbitrator.public_key(),
        TIMELOCK,
    )
    .unwrap();
    Escrow {
        descriptor: EscrowDescriptor::new(keys).unwrap(),
        buyer,
        buyer_refund,
        provider,
        arbitrator,
    }
}

/// Funds the escrow from the faucet and mines it; returns the funding and its height.
async fn fund_escrow(net: &Net, escrow: &Escrow, sats: u64) -> (FundingUtxo, u64) {
    let address = escrow.descriptor.address(Network::Regtest);
    let txid = net.devnet.faucet(&address, sats).unwrap();
    net.devnet.mine(1);
    let height = match net.source.tx_status(txid).await.unwrap() {
        Some(TxStatus::Confirmed { height }) => height,
        other => panic!("funding not confirmed: {other:?}"),
    };
    let (outpoint, output) = coin_of(&net.devnet, txid, &address);
    (
        FundingUtxo {
            outpoint,
            value: output.value,
        },
        height,
    )
}

#[tokio::test]
async fn the_buyers_refund_is_refused_before_the_timelock_and_accepted_after() {
    each_source(|net| async move {
        let escrow = escrow();
        let (funding, funded_at) = fund_escrow(&net, &escrow, 100_000).await;
        let plan =
            build_refund(&escrow.descriptor, &[funding], &escrow.buyer.address(), 2).unwrap();
        let mut psbt = plan.psbt.clone();
        sign_escrow_input(
            &Secp256k1::new(),
            &mut psbt,
            0,
            &escrow.descriptor,
            &escrow.buyer_refund.secret,
        )
        .unwrap();
        let refund = finalize_refund(&escrow.descriptor, &plan.expected, &psbt).unwrap();

        // BIP68: spendable in the block TIMELOCK blocks after the funding's.
        let spendable_at = funded_at + u64::from(TIMELOCK);
        while net.source.tip().await.unwrap().height + 1 < spendable_at {
            rejected(
                net.source.broadcast(&refund).await,
                "non-BIP68-final",
                net.name,
            );
            net.devnet.mine(1);
        }
        assert_eq!(
            net.source.broadcast(&refund).await,
            Ok(refund.compute_txid()),
            "{}",
            net.name
        );
        net.devnet.mine(1);
        assert_eq!(
            net.source.tx_status(refund.compute_txid()).await,
            Ok(Some(TxStatus::Confirmed {
                height: spendable_at
            }))
        );
    })
    .await;
}

#[tokio::test]
async fn a_payout_signed_by_two_of_three_is_accepted_at_once() {
    each_source(|net| async move {
        let escrow = escrow();
        let (funding, funded_at) = fund_escrow(&net, &escrow, 250_000).await;
        let to = PayoutAddresses {
            provider: escrow.provider.address(),
            buyer: escrow.buyer.address(),
            marketplace: Key::new(30).address(),
        };
        let terms = PayoutTerms {
            provider_bps: BasisPoints::FULL,
            commission_bps: BasisPoints::new(500).unwrap(),
            arbitration_fee: 0,
        };
        let fee_rate = net.source.fee_rate(6).await.unwrap();
        let plan = build_payout(&escrow.descriptor, &[funding], &to, &terms, fee_rate).unwrap();
        let secp = Secp256k1::new();
        let mut psbt = plan.psbt.clone();
        for signer in [&escrow.buyer, &escrow.arbitrator] {
            sign_escrow_input(&secp, &mut psbt, 0, &escrow.descriptor, &signer.secret).unwrap();
        }
        let payout = finalize_payout(&escrow.descriptor, &plan.expected, &psbt).unwrap();
        assert_eq!(
            net.source.broadcast(&payout).await,
            Ok(payout.compute_txid()),
            "{}",
            net.name
        );
        net.devnet.mine(1);
        assert_eq!(
            net.source.tx_status(payout.compute_txid()).await,
            Ok(Some(TxStatus::Confirmed {
                height: funded_at + 1
            }))
        );

        // The same escrow script with one signature swapped for a stranger's fails the interpreter.
        let (funding, _) = fund_escrow(&net, &escrow, 250_000).await;
        let plan = build_payout(&escrow.descriptor, &[funding], &to, &terms, fee_rate).unwrap();
        let mut psbt = plan.psbt.clone();
        for signer in [&escrow.provider, &escrow.arbitrator] {
            sign_escrow_input(&secp, &mut psbt, 0, &escrow.descriptor, &signer.secret).unwrap();
        }
        let mut tampered = finalize_payout(&escrow.descriptor, &plan.expected, &psbt).unwrap();
        let mut items: Vec<Vec<u8>> = tampered.input[0]
            .witness
            .iter()
            .map(<[u8]>::to_vec)
            .collect();
        let signature = items
            .iter_mut()
            .find(|i| i.len() >= 70 && i.len() <= 73)
            .unwrap();
        signature[10] ^= 1;
        tampered.input[0].witness = Witness::from_slice(&items);
        rejected(
            net.source.broadcast(&tampered).await,
            "mandatory-script-verify-flag-failed",
            net.name,
        );
    })
    .await;
}

// ---- reorgs ----

#[tokio::test]
async fn a_reorg_that_drops_the_funding_removes_it_until_it_is_broadcast_again() {
    each_source(|net| async move {
        let key = Key::new(40);
        let txid = net.devnet.faucet(&key.address(), 70_000).unwrap();
        let tx = net.devnet.transaction(&txid).unwrap();
        let old = net.devnet.mine(1)[0];
        let height = net.devnet.tip().height;
        assert_eq!(
            net.source.tx_status(txid).await,
            Ok(Some(TxStatus::Confirmed { height }))
        );

        let new = net.devnet.reorg(1, &[txid]).unwrap();
        assert_eq!(new.len(), 2);
        assert_eq!(net.source.tx_status(txid).await, Ok(None), "{}", net.name);
        let tip = net.source.tip().await.unwrap();
        assert_eq!((tip.height, tip.hash), (height + 1, new[1]));
        assert_ne!(net.source.block_hash(height).await.unwrap(), old);
        assert_eq!(net.source.block_hash(height).await.unwrap(), new[0]);
        let replacement = net.source.block(new[0]).await.unwrap();
        assert_eq!(
            replacement.header.prev_blockhash,
            net.source.block_hash(height - 1).await.unwrap()
        );
        assert!(replacement.txdata.iter().all(|t| t.compute_txid() != txid));

        // Still valid: broadcast again, it confirms again.
        assert_eq!(net.source.broadcast(&tx).await, Ok(txid));
        net.devnet.mine(1);
        assert_eq!(
            net.source.tx_status(txid).await,
            Ok(Some(TxStatus::Confirmed { height: height + 2 }))
        );
    })
    .await;
}

#[tokio::test]
async fn a_reorg_without_drops_mines_the_transactions_again() {
    each_source(|net| async move {
        let key = Key::new(41);
        let txid = net.devnet.faucet(&key.address(), 70_000).unwrap();
        net.devnet.mine(3);
        let tip = net.devnet.tip();
        let old = net.source.block_hash(tip.height - 2).await.unwrap();
        let new = net.devnet.reorg(3, &[]).unwrap();
        assert_eq!(new.len(), 4);
        assert_ne!(net.source.block_hash(tip.height - 2).await.unwrap(), old);
        assert_eq!(
            net.source.tx_status(txid).await,
            Ok(Some(TxStatus::Confirmed {
                height: tip.height - 2
            })),
            "{}",
            net.name
        );
    })
    .await;
}

// ---- the wire formats ----

async fn rpc_call(servers: &BitcoinDevnetServers, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(&servers.rpc_url)
        .basic_auth(RPC_USER, Some(RPC_PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn rpc_result(servers: &BitcoinDevnetServers, method: &str, params: Value) -> Value {
    let (status, body) = rpc_call(
        servers,
        json!({"jsonrpc": "1.0", "id": "t", "method": method, "params": params}),
    )
    .await;
    assert_eq!(status, 200, "{method}: {body}");
    assert_eq!(body["id"], "t");
    body["result"].clone()
}

#[tokio::test]
async fn json_rpc_refuses_a_wrong_password_with_401() {
    let (devnet, servers) = start().await;
    let client = reqwest::Client::new();
    let body = json!({"jsonrpc": "1.0", "id": 1, "method": "getblockcount", "params": []});
    let wrong = client
        .post(&servers.rpc_url)
        .basic_auth(RPC_USER, Some("guess"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));
    let anonymous = client
        .post(&servers.rpc_url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let right = client
        .post(&servers.rpc_url)
        .basic_auth(RPC_USER, Some(RPC_PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 200);
    assert_eq!(
        right.json::<Value>().await.unwrap()["result"],
        devnet.tip().height
    );

    let wrong_adapter =
        BitcoinCoreRpc::new(&servers.rpc_url, Some((RPC_USER.into(), "guess".into())));
    assert!(matches!(
        wrong_adapter.tip().await,
        Err(SourceError::Unavailable(_))
    ));
}

#[tokio::test]
async fn json_rpc_answers_like_bitcoin_core() {
    let (devnet, servers) = start().await;
    let key = Key::new(50);
    let tip = devnet.tip();

    let info = rpc_result(&servers, "getblockchaininfo", json!([])).await;
    assert_eq!(info["chain"], "regtest");
    assert_eq!(info["blocks"], tip.height);
    assert_eq!(info["bestblockhash"], tip.hash.to_string());
    assert_eq!(
        rpc_result(&servers, "getbestblockhash", json!([])).await,
        tip.hash.to_string()
    );

    // Devnet extras, then a look at what they did.
    let address = key.address().to_string();
    let txid = rpc_result(&servers, "agora_faucet", json!([address, 40_000])).await;
    let mempool = rpc_result(&servers, "getrawmempool", json!([])).await;
    assert_eq!(mempool, json!([txid]));
    let raw = rpc_result(&servers, "getrawtransaction", json!([txid, true])).await;
    assert_eq!(raw["txid"], txid);
    assert!(raw.get("blockhash").is_none() && raw.get("confirmations").is_none());
    let hashes = rpc_result(&servers, "generatetoaddress", json!([2, address])).await;
    let first = hashes[0].as_str().unwrap();

    let block = rpc_result(&servers, "getblock", json!([first, 1])).await;
    assert_eq!(block["height"], tip.height + 1);
    assert_eq!(block["confirmations"], 2);
    assert_eq!(block["previousblockhash"], tip.hash.to_string());
    assert_eq!(block["nextblockhash"], hashes[1]);
    assert_eq!(block["tx"][1], txid);
    let hex = rpc_result(&servers, "getblock", json!([first, 0])).await;
    let decoded: Block =
        bitcoin::consensus::encode::deserialize_hex(hex.as_str().unwrap()).unwrap();
    assert_eq!(decoded.block_hash().to_string(), first);
    let header = rpc_result(&servers, "getblockheader", json!({"blockhash": first})).await;
    assert_eq!(header["height"], tip.height + 1);
    assert_eq!(header["bits"], "207fffff");

    let raw = rpc_result(&servers, "getrawtransaction", json!([txid, true])).await;
    assert_eq!(raw["blockhash"], first);
    assert_eq!(raw["confirmations"], 2);
    assert!(raw["vout"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["scriptPubKey"]["address"] == address && o["value"] == 0.0004));
    let hex = rpc_result(&servers, "getrawtransaction", json!([txid])).await;
    assert!(hex.is_string());

    let fee = rpc_result(&servers, "estimatesmartfee", json!([6])).await;
    assert_eq!(
        (fee["feerate"].as_f64(), fee["blocks"].as_u64()),
        (Some(0.00002), Some(6))
    );

    // Errors: HTTP status and code as Core gives them.
    let (status, body) = rpc_call(
        &servers,
        json!({"id": 1, "method": "getblockhash", "params": [100_000]}),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_i64()), (500, Some(-8)));
    let (status, body) = rpc_call(
        &servers,
        json!({"id": 1, "method": "nosuchmethod", "params": []}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (404, Some(-32601))
    );
    let (status, body) = rpc_call(
        &servers,
        json!({"jsonrpc": "2.0", "id": 1, "method": "getblockhash", "params": [-1]}),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_i64()), (200, Some(-8)));
    let (_, body) = rpc_call(
        &servers,
        json!({"id": 1, "method": "sendrawtransaction", "params": ["00"]}),
    )
    .await;
    assert_eq!(body["error"]["code"], -22);
    let (_, body) = rpc_call(
        &servers,
        json!({"id": 1, "method": "getblock", "params": ["00"]}),
    )
    .await;
    assert_eq!(body["error"]["code"], -8);
    let (_, body) = rpc_call(
        &servers,
        json!({"id": 1, "method": "getblock", "params": [BlockHash::all_zeros()]}),
    )
    .await;
    assert_eq!(body["error"]["code"], -5);
    let (_, body) = rpc_call(&servers, json!({"id": 1, "method": "agora_faucet", "params": ["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", 1000]})).await;
    assert_eq!(body["error"]["code"], -5, "a mainnet address: {body}");
    // A batch answers each request.
    let (status, body) = rpc_call(
        &servers,
        json!([{"id": 1, "method": "getblockcount"}, {"id": 2, "method": "getblockhash", "params": [0]}]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body[0]["result"], tip.height + 2);
    assert_eq!(body[1]["id"], 2);

    // A reorg through RPC.
    let new = rpc_result(&servers, "agora_reorg", json!([1])).await;
    assert_eq!(new.as_array().unwrap().len(), 2);
    let stale = rpc_result(&servers, "getblockheader", json!([hashes[1]])).await;
    assert_eq!(stale["confirmations"], -1);
}

async fn esplora_get(servers: &BitcoinDevnetServers, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{}{path}", servers.esplora_url))
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn esplora_json(servers: &BitcoinDevnetServers, path: &str) -> Value {
    let (status, body) = esplora_get(servers, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn esplora_answers_like_electrs() {
    let (devnet, servers) = start().await;
    let key = Key::new(60);
    let address = key.address();
    let txid = devnet.faucet(&address, 55_555).unwrap();

    let utxos = esplora_json(&servers, &format!("/address/{address}/utxo")).await;
    assert_eq!(utxos[0]["txid"], txid.to_string());
    assert_eq!(utxos[0]["value"], 55_555);
    assert_eq!(utxos[0]["status"]["confirmed"], false);
    let tx = esplora_json(&servers, &format!("/tx/{txid}")).await;
    assert_eq!(tx["status"]["confirmed"], false);
    assert!(tx["fee"].as_u64().unwrap() > 0);
    assert!(tx["vin"][0]["prevout"]["value"].as_u64().unwrap() > 55_555);

    let hash = devnet.mine(1)[0];
    let tip = devnet.tip();
    assert_eq!(
        esplora_get(&servers, "/blocks/tip/height").await,
        (200, tip.height.to_string())
    );
    assert_eq!(
        esplora_get(&servers, "/blocks/tip/hash").await,
        (200, hash.to_string())
    );
    assert_eq!(
        esplora_get(&servers, &format!("/block-height/{}", tip.height)).await,
        (200, hash.to_string())
    );
    assert_eq!(esplora_get(&servers, "/block-height/99999").await.0, 404);

    let utxos = esplora_json(&servers, &format!("/address/{address}/utxo")).await;
    assert_eq!(utxos[0]["status"]["confirmed"], true);
    assert_eq!(utxos[0]["status"]["block_height"], tip.height);
    assert_eq!(utxos[0]["status"]["block_hash"], hash.to_string());
    let status = esplora_json(&servers, &format!("/tx/{txid}/status")).await;
    assert_eq!(status["block_height"], tip.height);
    let tx = esplora_json(&servers, &format!("/tx/{txid}")).await;
    assert!(tx["vout"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["scriptpubkey_address"] == address.to_string()
            && o["scriptpubkey_type"] == "v0_p2wpkh"));
    let (status, hex) = esplora_get(&servers, &format!("/tx/{txid}/hex")).await;
    assert_eq!(status, 200);
    assert_eq!(
        bitcoin::consensus::encode::deserialize_hex::<Transaction>(&hex)
            .unwrap()
            .compute_txid(),
        txid
    );

    let block = esplora_json(&servers, &format!("/block/{hash}")).await;
    assert_eq!(block["id"], hash.to_string());
    assert_eq!(block["height"], tip.height);
    assert_eq!(block["tx_count"], 2);
    let (_, header) = esplora_get(&servers, &format!("/block/{hash}/header")).await;
    assert_eq!(header.len(), 160);
    let status = esplora_json(&servers, &format!("/block/{hash}/status")).await;
    assert_eq!(
        status,
        json!({"in_best_chain": true, "height": tip.height, "next_best": null})
    );
    let (_, parent_hash) =
        esplora_get(&servers, &format!("/block-height/{}", tip.height - 1)).await;
    let parent = esplora_json(&servers, &format!("/block/{parent_hash}/status")).await;
    assert_eq!(parent["next_best"], hash.to_string());

    // Unknown things.
    let unknown = Txid::all_zeros();
    assert_eq!(
        esplora_get(&servers, &format!("/tx/{unknown}")).await.0,
        404
    );
    assert_eq!(
        esplora_json(&servers, &format!("/tx/{unknown}/status")).await,
        json!({"confirmed": false}),
        "electrs does not tell unknown from unconfirmed here"
    );
    assert_eq!(
        esplora_get(&servers, &format!("/block/{}", BlockHash::all_zeros()))
            .await
            .0,
        404
    );
    assert_eq!(esplora_get(&servers, "/block/nothex").await.0, 400);

    // Broadcasts.
    let client = reqwest::Client::new();
    let refused = client
        .post(format!("{}/tx", servers.esplora_url))
        .body("00")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    assert!(refused
        .text()
        .await
        .unwrap()
        .starts_with("sendrawtransaction RPC error: {\"code\":-22"));
    let coin = coin_of(&devnet, txid, &address);
    let spend = key.spend(&coin, &Key::new(61).address(), 50_000);
    let accepted = client
        .post(format!("{}/tx", servers.esplora_url))
        .body(bitcoin::consensus::encode::serialize_hex(&spend))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 200);
    assert_eq!(
        accepted.text().await.unwrap(),
        spend.compute_txid().to_string()
    );
    assert_eq!(
        esplora_json(&servers, &format!("/address/{address}/utxo")).await,
        json!([])
    );

    let estimates = esplora_json(&servers, "/fee-estimates").await;
    assert_eq!(estimates["6"], 2.0);
    assert_eq!(estimates["1008"], 2.0);

    // After a reorg the old block is no longer in the best chain.
    devnet.reorg(1, &[]).unwrap();
    let status = esplora_json(&servers, &format!("/block/{hash}/status")).await;
    assert_eq!(status["in_best_chain"], false);
}
