//! The XRPL devnet through Agora's own rippled adapter (`RippledSource`): ledgers
//! and accounts as a watcher sees them, the full escrow set-up and multisigned
//! payouts with the ledger's signature and quorum checks, and the WebSocket
//! stream surviving disconnects and bursts.

use std::time::{Duration, Instant};

use agora_api::devnet::xrpl::{reserves, XrplDevnet, XrplDevnetServers, BASE_FEE_DROPS};
use agora_domain::escrow::payout::PayoutTerms;
use agora_domain::money::BasisPoints;
use agora_escrow::source::rippled::{RippledOptions, RippledSource};
use agora_escrow::source::{SourceError, XrplSource};
use agora_escrow::xrpl::{
    combine_signer_blobs, plan_payout, sign_escrow_configuration, sign_funding_payment,
    sign_payout, sign_xrp_payment, ConfigurationParams, EscrowSigners, FundingParams,
    PayoutDestination, PayoutParams, PayoutParties, SignatureCollector, SigningKey, XrpPayment,
    XrplAddress, XrplKeyring,
};
use agora_tests::xrpl::{BUYER_SEED, OUTSIDER_SEED, PROVIDER_SEED};
use bitcoin::hashes::{hmac, sha512, Hash, HashEngine};

const XRP: u64 = 1_000_000;

struct Chain {
    devnet: XrplDevnet,
    source: RippledSource,
    _servers: XrplDevnetServers,
}

async fn chain() -> Chain {
    chain_with(|_| {}).await
}

async fn chain_with(tweak: impl FnOnce(&XrplDevnet)) -> Chain {
    let devnet = XrplDevnet::new();
    tweak(&devnet);
    let servers = devnet.serve("127.0.0.1:0", "127.0.0.1:0").await.unwrap();
    let options = RippledOptions {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..RippledOptions::default()
    };
    let source = RippledSource::connect_with(&servers.ws_url, &servers.rpc_url, options)
        .await
        .unwrap();
    Chain {
        devnet,
        source,
        _servers: servers,
    }
}

#[tokio::test]
async fn a_faucet_payment_shows_in_the_validated_ledger_and_the_account() {
    let c = chain().await;
    let alice = XrplKeyring::from_secret(&[1; 32])
        .unwrap()
        .operating_key()
        .unwrap();
    let hash = c.devnet.faucet(alice.address().as_str(), 30 * XRP).unwrap();
    assert_eq!(
        c.source
            .account_info(alice.address().as_str())
            .await
            .unwrap(),
        None
    );
    let next = c.source.validated_ledger().await.unwrap().index + 1;
    assert_eq!(
        c.source.ledger(next).await,
        Err(SourceError::NotFound),
        "not closed yet"
    );

    let closed = c.devnet.close_ledger();
    assert_eq!(closed.index, next);
    assert_eq!(c.source.validated_ledger().await.unwrap(), closed);
    let info = c
        .source
        .account_info(alice.address().as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.balance_drops, 30 * XRP);
    assert_eq!(
        info.sequence, closed.index,
        "a new account's Sequence is its ledger's index"
    );
    assert!(!info.master_disabled);

    let ledger = c.source.ledger(closed.index).await.unwrap();
    assert_eq!(ledger.hash, closed.hash);
    assert_eq!(ledger.transactions.len(), 1);
    let tx = &ledger.transactions[0];
    assert_eq!(tx.hash, hash);
    assert_eq!(tx.result, "tesSUCCESS");
    assert_eq!(tx.delivered_drops, Some(30 * XRP));
    assert_eq!(tx.tx["TransactionType"], "Payment");
    assert_eq!(tx.tx["Destination"], alice.address().as_str());
    assert!(tx.tx.get("hash").is_none() && tx.tx.get("metaData").is_none());

    let parent = c.source.ledger(closed.index - 1).await.unwrap();
    assert_eq!(ledger.parent_hash, parent.hash);
    assert_eq!(
        c.source.ledger(closed.index + 1).await,
        Err(SourceError::NotFound)
    );
    assert_eq!(c.source.base_fee().await.unwrap(), BASE_FEE_DROPS);
}

/// The escrow account's master key, derived as `XrplKeyring` documents it
/// (`HMAC-SHA512(secret, label)[..16]` as a secp256k1 family seed), independently
/// of the library: the seed is Base58Check with XRPL's alphabet, which is Bitcoin's
/// Base58 with the letters permuted.
fn escrow_master_key(secret: &[u8], index: u32) -> SigningKey {
    let mut engine = hmac::HmacEngine::<sha512::Hash>::new(secret);
    engine.input(b"agora/xrpl-escrow/");
    engine.input(&index.to_be_bytes());
    let mac = hmac::Hmac::<sha512::Hash>::from_engine(engine).to_byte_array();
    let mut payload = vec![0x21];
    payload.extend_from_slice(&mac[..16]);
    const BITCOIN: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    const XRPL: &[u8] = b"rpshnaf39wBUDNEGHJKLM4PQRST7VWXYZ2bcdeCg65jkm8oFqi1tuvAxyz";
    let seed: String = bitcoin::base58::encode_check(&payload)
        .bytes()
        .map(|c| XRPL[BITCOIN.iter().position(|b| *b == c).unwrap()] as char)
        .collect();
    SigningKey::from_seed(&seed).unwrap()
}

const SECRET: [u8; 32] = [0x5A; 32];
const ESCROW_INDEX: u32 = 7;

#[tokio::test]
async fn an_agora_escrow_is_set_up_and_paid_out_only_by_a_quorum_of_its_signers() {
    let c = chain().await;
    let keyring = XrplKeyring::from_secret(&SECRET).unwrap();
    let operating = keyring.operating_key().unwrap();
    let buyer = SigningKey::from_seed(BUYER_SEED).unwrap();
    let provider = SigningKey::from_seed(PROVIDER_SEED).unwrap();
    let outsider = SigningKey::from_seed(OUTSIDER_SEED).unwrap();
    let marketplace = XrplKeyring::from_secret(&[0x33; 32])
        .unwrap()
        .operating_key()
        .unwrap();
    let arbitrator = keyring.arbitrator_account().unwrap().address;
    let escrow = keyring.escrow_account(ESCROW_INDEX).unwrap().address;
    assert_eq!(escrow_master_key(&SECRET, ESCROW_INDEX).address(), &escrow);

    for account in [&operating, &provider, &marketplace] {
        c.devnet
            .faucet(account.address().as_str(), 100 * XRP)
            .unwrap();
    }
    c.devnet.close_ledger();

    // 1. The operating account creates the escrow account.
    let op = c
        .source
        .account_info(operating.address().as_str())
        .await
        .unwrap()
        .unwrap();
    let validated = c.source.validated_ledger().await.unwrap().index;
    let fee = c.source.base_fee().await.unwrap();
    let funding = sign_funding_payment(
        &operating,
        &escrow,
        &FundingParams {
            amount_drops: reserves().funding_amount_drops(fee).unwrap(),
            reserves: reserves(),
            configuration_fee_drops: fee,
            fee_drops: fee,
            sequence: op.sequence,
            last_ledger_sequence: validated + 10,
        },
    )
    .unwrap();
    let outcome = c.source.submit(&funding.blob).await.unwrap();
    assert_eq!(
        (outcome.engine_result.as_str(), outcome.hash.as_str()),
        ("tesSUCCESS", funding.hash.as_str())
    );
    let created = c.devnet.close_ledger().index;
    let info = c
        .source
        .account_info(escrow.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.sequence, created);

    // 2. Its master key installs the 2-of-3 list and disables itself.
    let signers = EscrowSigners::new(
        buyer.address().clone(),
        provider.address().clone(),
        arbitrator.clone(),
    )
    .unwrap();
    let config = sign_escrow_configuration(
        &keyring,
        ESCROW_INDEX,
        &signers,
        &ConfigurationParams {
            first_sequence: info.sequence,
            fee_drops: fee,
            last_ledger_sequence: created + 10,
            reserves: reserves(),
        },
    )
    .unwrap();
    for blob in [&config.signer_list_set.blob, &config.disable_master.blob] {
        assert_eq!(
            c.source.submit(blob).await.unwrap().engine_result,
            "tesSUCCESS"
        );
    }
    c.devnet.close_ledger();
    let info = c
        .source
        .account_info(escrow.as_str())
        .await
        .unwrap()
        .unwrap();
    let check = &config.buyer_check;
    assert!(info.master_disabled);
    assert_eq!(info.regular_key, None);
    assert_eq!(info.signer_quorum, Some(check.quorum));
    assert_eq!(
        info.signer_entries,
        check
            .signer_entries
            .iter()
            .map(|s| (s.account.to_string(), s.weight))
            .collect::<Vec<_>>()
    );
    assert_eq!(info.balance_drops, check.expected_reserve_drops);

    // 3. The buyer funds it.
    c.devnet.faucet(escrow.as_str(), 25 * XRP).unwrap();
    c.devnet.close_ledger();
    let info = c
        .source
        .account_info(escrow.as_str())
        .await
        .unwrap()
        .unwrap();
    let validated = c.source.validated_ledger().await.unwrap().index;

    // The master key can no longer move anything.
    let master = escrow_master_key(&SECRET, ESCROW_INDEX);
    let theft = sign_xrp_payment(
        &master,
        &XrpPayment {
            destination: outsider.address().clone(),
            destination_tag: None,
            amount_drops: 20 * XRP,
            fee_drops: fee,
            sequence: info.sequence,
            last_ledger_sequence: Some(validated + 5),
        },
    )
    .unwrap();
    assert_eq!(
        c.source.submit(&theft.blob).await.unwrap().engine_result,
        "tefMASTER_DISABLED"
    );

    // 4. A release: provider and marketplace paid by multisigned Payments.
    let destination = |key: &SigningKey| PayoutDestination {
        address: key.address().clone(),
        tag: None,
    };
    let params = |last| PayoutParams {
        funded_drops: 25 * XRP,
        terms: PayoutTerms {
            provider_bps: BasisPoints::new(10_000).unwrap(),
            commission_bps: BasisPoints::new(250).unwrap(),
            arbitration_fee: 0,
        },
        base_fee_drops: fee,
        first_sequence: info.sequence,
        last_ledger_sequence: last,
    };
    let parties = PayoutParties {
        provider: destination(&provider),
        buyer: destination(&buyer),
        marketplace: destination(&marketplace),
    };
    let plan = plan_payout(&escrow, &parties, &params(validated + 10)).unwrap();
    let [to_provider, to_marketplace] = &plan.transactions[..] else {
        panic!(
            "a release pays the provider and the marketplace: {:?}",
            plan.transactions
        );
    };

    // One signature is not a quorum; a signer outside the list is refused.
    let buyer_only = sign_payout(to_provider, &buyer).unwrap();
    assert_eq!(
        c.source.submit(&buyer_only).await.unwrap().engine_result,
        "tefBAD_QUORUM"
    );
    let with_outsider =
        combine_signer_blobs(&[&buyer_only, &sign_payout(to_provider, &outsider).unwrap()])
            .unwrap();
    assert_eq!(
        c.source.submit(&with_outsider).await.unwrap().engine_result,
        "tefBAD_SIGNATURE"
    );

    // A payout whose LastLedgerSequence has passed.
    let stale = plan_payout(&escrow, &parties, &params(validated)).unwrap();
    let mut collector = SignatureCollector::new(stale.transactions[0].clone(), signers.clone());
    collector
        .add_signer_blob(&sign_payout(&stale.transactions[0], &buyer).unwrap())
        .unwrap();
    collector
        .add_signer_blob(&sign_payout(&stale.transactions[0], &provider).unwrap())
        .unwrap();
    assert_eq!(
        c.source
            .submit(&collector.finalize().unwrap().blob)
            .await
            .unwrap()
            .engine_result,
        "tefMAX_LEDGER"
    );

    // Buyer and provider sign the provider's share, the arbitrator and buyer the
    // marketplace's.
    let mut finals = Vec::new();
    for (tx, second) in [(to_provider, None), (to_marketplace, Some(&keyring))] {
        let mut collector = SignatureCollector::new(tx.clone(), signers.clone());
        collector
            .add_signer_blob(&sign_payout(tx, &buyer).unwrap())
            .unwrap();
        let other = match second {
            Some(keyring) => keyring.sign_payout_as_arbitrator(tx).unwrap(),
            None => sign_payout(tx, &provider).unwrap(),
        };
        collector.add_signer_blob(&other).unwrap();
        let signed = collector.finalize().unwrap();
        let outcome = c.source.submit(&signed.blob).await.unwrap();
        assert_eq!(
            (outcome.engine_result.as_str(), outcome.hash.as_str()),
            ("tesSUCCESS", signed.hash.as_str())
        );
        finals.push(signed);
    }
    let paid = c.devnet.close_ledger();
    let ledger = c.source.ledger(paid.index).await.unwrap();
    let results: Vec<_> = ledger
        .transactions
        .iter()
        .map(|t| (t.hash.clone(), t.result.clone(), t.delivered_drops))
        .collect();
    assert_eq!(
        results,
        vec![
            (
                finals[0].hash.clone(),
                "tesSUCCESS".to_owned(),
                Some(to_provider.amount_drops())
            ),
            (
                finals[1].hash.clone(),
                "tesSUCCESS".to_owned(),
                Some(to_marketplace.amount_drops())
            ),
        ]
    );
    let balance = |key: &SigningKey| {
        let source = c.source.clone();
        let address = key.address().to_string();
        async move {
            source
                .account_info(&address)
                .await
                .unwrap()
                .unwrap()
                .balance_drops
        }
    };
    assert_eq!(
        balance(&provider).await,
        100 * XRP + to_provider.amount_drops()
    );
    assert_eq!(
        balance(&marketplace).await,
        100 * XRP + to_marketplace.amount_drops()
    );
    let after = c
        .source
        .account_info(escrow.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.balance_drops,
        check.expected_reserve_drops + plan.unallocated_drops
    );
    assert_eq!(after.sequence, info.sequence + 2);

    // Replaying a payout: its Sequence is used.
    assert_eq!(
        c.source
            .submit(&finals[0].blob)
            .await
            .unwrap()
            .engine_result,
        "tefPAST_SEQ"
    );
    // Garbage is refused before it reaches the ledger.
    assert!(matches!(
        c.source.submit("DEADBEEF").await,
        Err(SourceError::Rejected(_))
    ));
}

#[tokio::test]
async fn wait_for_ledger_resolves_on_the_next_close_or_at_its_timeout() {
    let c = chain().await;
    let start = c.source.validated_ledger().await.unwrap().index;
    assert_eq!(c.source.streamed_validated(), Some(start));
    let devnet = c.devnet.clone();
    let closer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        devnet.close_ledger()
    });
    let got = c
        .source
        .wait_for_ledger(start, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(got, start + 1);
    assert_eq!(closer.await.unwrap().index, start + 1);
    // Nothing new: the timeout returns the latest known.
    let waited = Instant::now();
    let got = c
        .source
        .wait_for_ledger(start + 1, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(got, start + 1);
    assert!(waited.elapsed() >= Duration::from_millis(300));
    // Already there: at once.
    assert_eq!(
        c.source
            .wait_for_ledger(start, Duration::from_secs(10))
            .await
            .unwrap(),
        start + 1
    );
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_stream_reconnects_after_the_node_drops_it_and_keeps_reporting_ledgers() {
    // The devnet pings every 50 ms: the source must keep answering.
    let c = chain_with(|d| d.set_ws_ping_interval(Duration::from_millis(50))).await;
    let start = c.source.validated_ledger().await.unwrap().index;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.source.stream_connections(),
        1,
        "pings did not break the stream"
    );

    c.devnet.disconnect_websocket_clients();
    // Ledgers closed while the stream is down are reported once it is back.
    c.devnet.close_ledger();
    c.devnet.close_ledger();
    eventually("the reconnection", || {
        c.source.stream_connections() >= 2 && c.source.stream_connected()
    })
    .await;
    assert_eq!(
        c.source
            .wait_for_ledger(start + 1, Duration::from_secs(10))
            .await
            .unwrap(),
        start + 2
    );
    let devnet = c.devnet.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        devnet.close_ledger();
    });
    assert_eq!(
        c.source
            .wait_for_ledger(start + 2, Duration::from_secs(10))
            .await
            .unwrap(),
        start + 3
    );

    // Twice more: the backoff restarts small after each good connection.
    for round in 0..2 {
        let before = c.source.stream_connections();
        c.devnet.disconnect_websocket_clients();
        eventually("another reconnection", || {
            c.source.stream_connections() > before
        })
        .await;
        let next = c.devnet.close_ledger().index;
        assert_eq!(
            c.source
                .wait_for_ledger(next - 1, Duration::from_secs(10))
                .await
                .unwrap(),
            next,
            "round {round}"
        );
    }
}

#[tokio::test]
async fn a_burst_of_closes_leaves_the_source_on_the_latest_ledger() {
    let c = chain().await;
    let mut last = 0;
    let started = Instant::now();
    for _ in 0..300 {
        last = c.devnet.close_ledger().index;
    }
    let got = c
        .source
        .wait_for_ledger(last - 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(got, last);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    eventually("the stream to settle on the latest", || {
        c.source.streamed_validated() == Some(last)
    })
    .await;
    assert!(c.source.stream_connected());
    assert_eq!(c.source.stream_connections(), 1);
    // Every ledger of the burst is there, chained.
    let (a, b) = (
        c.source.ledger(last - 1).await.unwrap(),
        c.source.ledger(last).await.unwrap(),
    );
    assert_eq!(b.parent_hash, a.hash);
}

#[tokio::test]
async fn connecting_to_nothing_fails_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("ws://127.0.0.1:{port}");
    let err = RippledSource::connect(&url, &format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Unavailable(_)), "{err:?}");
    assert!(matches!(
        RippledSource::connect("http://x", "http://x").await,
        Err(SourceError::Protocol(_))
    ));
}

#[tokio::test]
async fn look_ups_fail_as_unavailable_when_the_node_is_gone() {
    let Chain {
        devnet,
        source,
        _servers: servers,
    } = chain().await;
    servers.stop().await;
    assert!(matches!(
        source.validated_ledger().await,
        Err(SourceError::Unavailable(_))
    ));
    assert!(matches!(
        source
            .account_info(XrplAddress::from_account_id([1; 20]).as_str())
            .await,
        Err(SourceError::Unavailable(_))
    ));
    drop(devnet);
}
