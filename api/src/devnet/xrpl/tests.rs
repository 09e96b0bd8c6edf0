//! Unit tests of the devnet's engine and of its WebSocket and JSON-RPC shapes.
//! The end-to-end tests through `RippledSource` are in `tests/api/devnet_xrpl.rs`.

use std::time::Duration;

use agora_escrow::xrpl::{
    sign_escrow_configuration, sign_xrp_payment, ConfigurationParams, EscrowSigners, SigningKey,
    XrpPayment, XrplAddress, XrplKeyring,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use tokio_tungstenite::tungstenite::Message;

use super::*;

fn key(i: u8) -> SigningKey {
    XrplKeyring::from_secret(&[i; 32])
        .unwrap()
        .operating_key()
        .unwrap()
}

fn pay(
    from: &SigningKey,
    to: &XrplAddress,
    drops: u64,
    sequence: u32,
    fee: u64,
    last: Option<u32>,
) -> String {
    sign_xrp_payment(
        from,
        &XrpPayment {
            destination: to.clone(),
            destination_tag: None,
            amount_drops: drops,
            fee_drops: fee,
            sequence,
            last_ledger_sequence: last,
        },
    )
    .unwrap()
    .blob
}

/// A devnet with `key`'s account funded with `drops` and validated.
fn funded(key: &SigningKey, drops: u64) -> (XrplDevnet, u32) {
    let devnet = XrplDevnet::new();
    devnet.faucet(key.address().as_str(), drops).unwrap();
    let created = devnet.close_ledger().index;
    (devnet, created)
}

#[test]
fn the_genesis_seed_is_the_well_known_genesis_account() {
    let genesis = SigningKey::from_seed(GENESIS_SEED).unwrap();
    assert_eq!(genesis.address().as_str(), GENESIS_ADDRESS);
    assert_eq!(genesis.address().account_id(), &GENESIS_ACCOUNT_ID);
    let devnet = XrplDevnet::new();
    assert_eq!(devnet.validated().index, 2);
    let info = devnet.account(GENESIS_ADDRESS).unwrap();
    assert_eq!(info.balance_drops, TOTAL_DROPS);
}

#[test]
fn a_faucet_payment_creates_the_account_with_the_ledger_index_as_sequence() {
    let alice = key(1);
    let devnet = XrplDevnet::new();
    let hash = devnet.faucet(alice.address().as_str(), 50_000_000).unwrap();
    assert!(
        devnet.account(alice.address().as_str()).is_none(),
        "not validated yet"
    );
    let ledger = devnet.close_ledger();
    let info = devnet.account(alice.address().as_str()).unwrap();
    assert_eq!(info.balance_drops, 50_000_000);
    assert_eq!(info.sequence, ledger.index);
    let inner = devnet.inner();
    let record = inner.ledger(ledger.index).unwrap();
    assert_eq!(record.txs.len(), 1);
    assert_eq!(record.txs[0].hash, hash);
    assert_eq!(record.txs[0].meta["delivered_amount"], "50000000");
    assert_eq!(
        record.parent_hash,
        inner.ledger(ledger.index - 1).unwrap().hash
    );
    // Fees are destroyed.
    assert_eq!(inner.closed.total_drops, TOTAL_DROPS - BASE_FEE_DROPS);
}

#[test]
fn sequences_must_match_and_a_gap_is_held_until_filled() {
    let alice = key(1);
    let bob = key(2);
    let (devnet, seq) = funded(&alice, 100_000_000);
    let second = pay(&alice, bob.address(), 2_000_000, seq + 1, 10, None);
    let first = pay(&alice, bob.address(), 3_000_000, seq, 10, None);
    assert_eq!(devnet.submit(&second).engine_result, "terPRE_SEQ");
    assert_eq!(devnet.submit(&first).engine_result, "tesSUCCESS");
    let ledger = devnet.close_ledger();
    let record = devnet.inner().ledger(ledger.index).unwrap().clone();
    assert_eq!(
        record.txs.len(),
        2,
        "the held Payment followed the one it waited for"
    );
    assert_eq!(
        devnet
            .account(bob.address().as_str())
            .unwrap()
            .balance_drops,
        5_000_000
    );
    assert_eq!(
        devnet.account(alice.address().as_str()).unwrap().sequence,
        seq + 2
    );
    assert_eq!(devnet.submit(&first).engine_result, "tefPAST_SEQ");
}

#[test]
fn an_expired_last_ledger_sequence_and_a_low_fee_are_refused() {
    let alice = key(1);
    let bob = key(2);
    let (devnet, seq) = funded(&alice, 100_000_000);
    let validated = devnet.validated().index;
    let late = pay(&alice, bob.address(), 2_000_000, seq, 10, Some(validated));
    assert_eq!(devnet.submit(&late).engine_result, "tefMAX_LEDGER");
    let cheap = pay(&alice, bob.address(), 2_000_000, seq, 9, None);
    assert_eq!(devnet.submit(&cheap).engine_result, "telINSUF_FEE_P");
    let ok = pay(
        &alice,
        bob.address(),
        2_000_000,
        seq,
        10,
        Some(validated + 1),
    );
    assert_eq!(devnet.submit(&ok).engine_result, "tesSUCCESS");
}

#[test]
fn reserves_are_enforced_and_a_tec_still_costs_the_fee_and_sequence() {
    let alice = key(1);
    let bob = key(2);
    let (devnet, seq) = funded(&alice, 10_000_000);
    let too_small = pay(&alice, bob.address(), BASE_RESERVE_DROPS - 1, seq, 10, None);
    assert_eq!(
        devnet.submit(&too_small).engine_result,
        "tecNO_DST_INSUF_XRP"
    );
    devnet.close_ledger();
    let info = devnet.account(alice.address().as_str()).unwrap();
    assert_eq!(info.balance_drops, 10_000_000 - 10);
    assert_eq!(info.sequence, seq + 1);
    assert!(devnet.account(bob.address().as_str()).is_none());

    // Leaves 10 drops less than the reserve.
    let all = pay(
        &alice,
        bob.address(),
        10_000_000 - 10 - BASE_RESERVE_DROPS + 10,
        seq + 1,
        10,
        None,
    );
    assert_eq!(devnet.submit(&all).engine_result, "tecUNFUNDED_PAYMENT");
    let exact = pay(
        &alice,
        bob.address(),
        10_000_000 - 20 - BASE_RESERVE_DROPS,
        seq + 2,
        10,
        None,
    );
    assert_eq!(devnet.submit(&exact).engine_result, "tesSUCCESS");
    devnet.close_ledger();
    let info = devnet.account(alice.address().as_str()).unwrap();
    assert_eq!(info.balance_drops, BASE_RESERVE_DROPS - 10);
}

fn signers() -> EscrowSigners {
    EscrowSigners::new(
        key(11).address().clone(),
        key(12).address().clone(),
        key(13).address().clone(),
    )
    .unwrap()
}

#[test]
fn disabling_the_master_key_needs_another_way_to_sign() {
    let keyring = XrplKeyring::from_secret(&[9; 32]).unwrap();
    let escrow = keyring.escrow_account(4).unwrap().address;
    let devnet = XrplDevnet::new();
    devnet.faucet(escrow.as_str(), 5_000_000).unwrap();
    let created = devnet.close_ledger().index;
    // Signed so the AccountSet, not the SignerListSet, has the account's Sequence.
    let config = sign_escrow_configuration(
        &keyring,
        4,
        &signers(),
        &ConfigurationParams {
            first_sequence: created - 1,
            fee_drops: 10,
            last_ledger_sequence: created + 10,
            reserves: reserves(),
        },
    )
    .unwrap();
    assert_eq!(
        devnet.submit(&config.signer_list_set.blob).engine_result,
        "tefPAST_SEQ"
    );
    assert_eq!(
        devnet.submit(&config.disable_master.blob).engine_result,
        "tecNO_ALTERNATIVE_KEY"
    );
    devnet.close_ledger();
    let info = devnet.account(escrow.as_str()).unwrap();
    assert!(!info.master_disabled);
    assert_eq!(info.sequence, created + 1);
}

#[test]
fn blobs_that_fail_local_checks_never_reach_the_ledger() {
    let alice = key(1);
    let bob = key(2);
    let (devnet, seq) = funded(&alice, 100_000_000);
    let blob = pay(&alice, bob.address(), 2_000_000, seq, 10, None);
    // Flip a byte of the signature (the blob ends with Account and Destination,
    // so change a byte in the middle).
    let mut bytes = hex::decode(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let tampered = hex::encode_upper(bytes);
    let outcome = devnet.submit(&tampered);
    assert!(
        outcome.engine_result.starts_with("tem"),
        "{}",
        outcome.engine_result
    );
    assert_eq!(devnet.submit("00").engine_result, "temMALFORMED");
    assert!(matches!(
        devnet.submit_detailed(&tampered),
        Err(LocalCheckError { .. })
    ));
    let reply = rpc::answer(
        &devnet,
        &json!({"method": "submit", "params": [{"tx_blob": tampered}]}),
    );
    assert_eq!(reply["result"]["error"], "invalidTransaction");
    assert_eq!(reply["result"]["status"], "error");
    assert!(devnet.inner().open_txs.is_empty());
}

#[test]
fn json_rpc_answers_have_rippleds_shape() {
    let alice = key(1);
    let (devnet, seq) = funded(&alice, 25_000_000);
    let unknown = rpc::answer(
        &devnet,
        &json!({"method": "account_info", "params": [{"account": key(3).address().as_str(), "ledger_index": "validated"}]}),
    );
    assert_eq!(unknown["result"]["error"], "actNotFound");
    assert_eq!(unknown["result"]["error_code"], 19);
    assert_eq!(unknown["result"]["request"]["command"], "account_info");

    let info = rpc::answer(
        &devnet,
        &json!({"method": "account_info", "params": [{"account": alice.address().as_str(), "ledger_index": "validated", "signer_lists": true}]}),
    );
    let result = &info["result"];
    assert_eq!(result["status"], "success");
    assert_eq!(result["validated"], true);
    assert_eq!(result["account_data"]["Balance"], "25000000");
    assert_eq!(result["account_data"]["Sequence"], seq);
    assert_eq!(result["account_data"]["signer_lists"], json!([]));
    assert_eq!(result["account_flags"]["disableMasterKey"], false);

    let ledger = rpc::answer(
        &devnet,
        &json!({"method": "ledger", "params": [{"ledger_index": seq, "transactions": true, "expand": true}]}),
    );
    let l = &ledger["result"]["ledger"];
    assert_eq!(l["ledger_index"], seq.to_string());
    assert_eq!(l["transactions"][0]["TransactionType"], "Payment");
    assert_eq!(
        l["transactions"][0]["metaData"]["TransactionResult"],
        "tesSUCCESS"
    );
    assert_eq!(ledger["result"]["validated"], true);

    let future = rpc::answer(
        &devnet,
        &json!({"method": "ledger", "params": [{"ledger_index": seq + 5}]}),
    );
    assert_eq!(future["result"]["error"], "lgrNotFound");
    let fee = rpc::answer(&devnet, &json!({"method": "fee"}));
    assert_eq!(fee["result"]["drops"]["base_fee"], "10");
    let nope = rpc::answer(
        &devnet,
        &json!({"method": "wallet_propose", "params": [{}]}),
    );
    assert_eq!(nope["result"]["error"], "unknownCmd");
    let accept = rpc::answer(&devnet, &json!({"method": "ledger_accept", "params": [{}]}));
    assert_eq!(accept["result"]["ledger_current_index"], seq + 2);

    // API v2 shapes.
    let v2 = rpc::answer(
        &devnet,
        &json!({"method": "ledger", "params": [{"ledger_index": seq, "transactions": true, "expand": true, "api_version": 2}]}),
    );
    let tx = &v2["result"]["ledger"]["transactions"][0];
    assert_eq!(v2["result"]["ledger"]["ledger_index"], seq);
    assert_eq!(tx["tx_json"]["Destination"], alice.address().as_str());
    assert_eq!(tx["meta"]["delivered_amount"], "25000000");
    let hash = tx["hash"].as_str().unwrap().to_owned();

    let found = rpc::answer(
        &devnet,
        &json!({"method": "tx", "params": [{"transaction": hash.to_lowercase()}]}),
    );
    assert_eq!(found["result"]["hash"], hash);
    assert_eq!(found["result"]["ledger_index"], seq);
    assert_eq!(found["result"]["validated"], true);
    assert_eq!(found["result"]["meta"]["TransactionResult"], "tesSUCCESS");
    let missing = rpc::answer(
        &devnet,
        &json!({"method": "tx", "params": [{"transaction": "00".repeat(32)}]}),
    );
    assert_eq!(missing["result"]["error"], "txnNotFound");

    let bob = key(2);
    let paid = rpc::answer(
        &devnet,
        &json!({"method": "agora_faucet", "params": [{"destination": bob.address().as_str(), "amount": "7000000"}]}),
    );
    assert_eq!(paid["result"]["status"], "success");
    let pending = rpc::answer(
        &devnet,
        &json!({"method": "tx", "params": [{"transaction": paid["result"]["hash"]}]}),
    );
    assert_eq!(pending["result"]["validated"], false);
    let current = rpc::answer(
        &devnet,
        &json!({"method": "account_info", "params": [{"account": bob.address().as_str(), "ledger_index": "current"}]}),
    );
    assert_eq!(current["result"]["account_data"]["Balance"], "7000000");
    assert_eq!(current["result"]["validated"], false);
    let bad = rpc::answer(
        &devnet,
        &json!({"method": "agora_faucet", "params": [{"destination": "rNotAnAddress", "amount": 5}]}),
    );
    assert_eq!(bad["result"]["error"], "invalidParams");

    let objects = rpc::answer(
        &devnet,
        &json!({"method": "account_objects", "params": [{"account": alice.address().as_str(), "ledger_index": "validated"}]}),
    );
    assert_eq!(objects["result"]["account_objects"], json!([]));
}

#[test]
fn a_signer_list_shows_in_account_objects_and_metadata() {
    let keyring = XrplKeyring::from_secret(&[9; 32]).unwrap();
    let escrow = keyring.escrow_account(5).unwrap().address;
    let devnet = XrplDevnet::new();
    devnet.faucet(escrow.as_str(), 5_000_000).unwrap();
    let created = devnet.close_ledger().index;
    let config = sign_escrow_configuration(
        &keyring,
        5,
        &signers(),
        &ConfigurationParams {
            first_sequence: created,
            fee_drops: 10,
            last_ledger_sequence: created + 10,
            reserves: reserves(),
        },
    )
    .unwrap();
    assert_eq!(
        devnet.submit(&config.signer_list_set.blob).engine_result,
        "tesSUCCESS"
    );
    // Signed with the master key, which the list now backs up.
    assert_eq!(
        devnet.submit(&config.disable_master.blob).engine_result,
        "tesSUCCESS"
    );
    let closed = devnet.close_ledger().index;
    let objects = rpc::answer(
        &devnet,
        &json!({"method": "account_objects", "params": [{"account": escrow.as_str(), "ledger_index": "validated"}]}),
    );
    let list = &objects["result"]["account_objects"][0];
    assert_eq!(list["LedgerEntryType"], "SignerList");
    assert_eq!(list["SignerQuorum"], 2);
    assert_eq!(list["SignerEntries"].as_array().unwrap().len(), 3);
    let info = rpc::answer(
        &devnet,
        &json!({"method": "account_info", "params": [{"account": escrow.as_str(), "ledger_index": "validated", "signer_lists": true, "api_version": 2}]}),
    );
    assert_eq!(info["result"]["signer_lists"][0]["SignerQuorum"], 2);
    assert_eq!(info["result"]["account_flags"]["disableMasterKey"], true);
    assert_eq!(info["result"]["account_data"]["OwnerCount"], 1);

    let inner = devnet.inner();
    let record = inner.ledger(closed).unwrap();
    let nodes = record.txs[0].meta["AffectedNodes"].as_array().unwrap();
    assert!(nodes
        .iter()
        .any(|n| n["CreatedNode"]["LedgerEntryType"] == "SignerList"));
    let root = nodes
        .iter()
        .find(|n| n["ModifiedNode"]["LedgerEntryType"] == "AccountRoot")
        .unwrap();
    assert_eq!(root["ModifiedNode"]["FinalFields"]["OwnerCount"], 1);
    assert_eq!(root["ModifiedNode"]["PreviousFields"]["OwnerCount"], 0);
    assert_eq!(record.txs[1].result, "tesSUCCESS");
}

#[tokio::test]
async fn auto_close_closes_ledgers_until_stopped() {
    let devnet = XrplDevnet::new();
    let start = devnet.validated().index;
    devnet.start_auto_close(Duration::from_millis(20));
    tokio::time::sleep(Duration::from_millis(300)).await;
    devnet.stop_auto_close();
    let stopped = devnet.validated().index;
    assert!(stopped >= start + 3, "{start} → {stopped}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(devnet.validated().index, stopped);
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(ws: &mut Client) -> Json {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message in time")
            .expect("the connection is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

#[tokio::test]
async fn the_websocket_api_answers_streams_and_pings() {
    let devnet = XrplDevnet::new();
    devnet.set_ws_ping_interval(Duration::from_millis(100));
    let servers = devnet.serve("127.0.0.1:0", "127.0.0.1:0").await.unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(servers.ws_url.as_str())
        .await
        .unwrap();

    ws.send(Message::text(
        json!({"id": 7, "command": "subscribe", "streams": ["ledger"]}).to_string(),
    ))
    .await
    .unwrap();
    let reply = next_text(&mut ws).await;
    assert_eq!(reply["id"], 7);
    assert_eq!(reply["status"], "success");
    assert_eq!(reply["type"], "response");
    assert_eq!(reply["result"]["ledger_index"], 2);

    devnet.close_ledger();
    let closed = next_text(&mut ws).await;
    assert_eq!(closed["type"], "ledgerClosed");
    assert_eq!(closed["ledger_index"], 3);
    assert_eq!(closed["validated_ledgers"], "1-3");

    ws.send(Message::text(
        json!({"id": "x", "command": "nope"}).to_string(),
    ))
    .await
    .unwrap();
    let reply = next_text(&mut ws).await;
    assert_eq!(reply["id"], "x");
    assert_eq!(reply["error"], "unknownCmd");
    assert_eq!(reply["status"], "error");

    ws.send(Message::text(
        json!({"id": 8, "command": "subscribe", "streams": ["transactions"]}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await["error"], "malformedStream");

    // The server pings, and answers the client's Ping.
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    let (mut got_ping, mut got_pong) = (false, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !(got_ping && got_pong) && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => got_ping = true,
            Ok(Some(Ok(Message::Pong(payload)))) => {
                assert_eq!(payload.as_ref(), b"hi");
                got_pong = true;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("connection failed: {other:?}"),
        }
    }
    assert!(got_ping && got_pong);

    // The test hook drops the connection.
    devnet.disconnect_websocket_clients();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the server dropped the connection");
    servers.stop().await;
}

mod channels {
    //! PaymentChannelCreate / Fund / Claim on a 2-of-3 escrow account.
    use agora_escrow::xrpl::{
        sign_claim, sign_destination_claim, sign_payout, ChannelTx, ChannelTxKind, DestinationClaim,
        PayoutDestination, SignatureCollector,
    };

    use super::*;

    struct Fixture {
        devnet: XrplDevnet,
        escrow: XrplAddress,
        next: u32,
    }

    /// An escrow account with 20 XRP, its 2-of-3 list (buyer 11, provider 12,
    /// arbitrator 13) installed and its master key disabled; the provider funded.
    fn escrow() -> Fixture {
        let keyring = XrplKeyring::from_secret(&[9; 32]).unwrap();
        let escrow = keyring.escrow_account(4).unwrap().address;
        let devnet = XrplDevnet::new();
        devnet.faucet(escrow.as_str(), 20_000_000).unwrap();
        devnet.faucet(key(12).address().as_str(), 5_000_000).unwrap();
        let created = devnet.close_ledger().index;
        let config = sign_escrow_configuration(
            &keyring,
            4,
            &signers(),
            &ConfigurationParams { first_sequence: created, fee_drops: 10, last_ledger_sequence: created + 10, reserves: reserves() },
        )
        .unwrap();
        assert_eq!(devnet.submit(&config.signer_list_set.blob).engine_result, "tesSUCCESS");
        assert_eq!(devnet.submit(&config.disable_master.blob).engine_result, "tesSUCCESS");
        devnet.close_ledger();
        Fixture { devnet, escrow, next: created + 2 }
    }

    impl Fixture {
        /// Submits `kind` multisigned by the buyer and the provider.
        fn owner(&mut self, kind: ChannelTxKind) -> (String, ChannelTx) {
            let tx = ChannelTx::new(&self.escrow, kind, 10, self.next, None).unwrap();
            let mut c = SignatureCollector::new(tx.clone(), signers());
            for k in [key(11), key(12)] {
                c.add_signer_blob(&sign_payout(&tx, &k).unwrap()).unwrap();
            }
            let result = self.devnet.submit(&c.finalize().unwrap().blob).engine_result;
            if result.starts_with("tes") || result.starts_with("tec") {
                self.next += 1;
            }
            (result, tx)
        }

        fn create(&mut self, amount: u64) -> agora_escrow::xrpl::ChannelId {
            let (result, tx) = self.owner(ChannelTxKind::Create {
                destination: PayoutDestination { address: key(12).address().clone(), tag: None },
                amount_drops: amount,
                settle_delay: 3_600,
                public_key: key(11).public_key().clone(),
            });
            assert_eq!(result, "tesSUCCESS");
            self.devnet.close_ledger();
            tx.channel()
        }

        /// The provider redeems the buyer's claim of `drops`, signed by `signer`.
        fn redeem(&self, channel: agora_escrow::xrpl::ChannelId, drops: u64, signer: u8, close: bool) -> String {
            let provider = key(12);
            let sequence = self.devnet.account(provider.address().as_str()).unwrap().sequence;
            let blob = sign_destination_claim(
                &provider,
                &DestinationClaim {
                    channel,
                    balance_drops: drops,
                    public_key: key(11).public_key().clone(),
                    signature: sign_claim(&key(signer), &channel, drops).unwrap(),
                    close,
                    fee_drops: 10,
                    sequence,
                    last_ledger_sequence: None,
                },
            )
            .unwrap()
            .blob;
            self.devnet.submit(&blob).engine_result
        }

        fn balance(&self, k: u8) -> u64 {
            self.devnet.account(key(k).address().as_str()).unwrap().balance_drops
        }
    }

    #[test]
    fn a_claim_only_grows_never_passes_the_amount_and_needs_the_buyers_key() {
        let mut f = escrow();
        let channel = f.create(5_000_000);
        let ch = f.devnet.channel(&channel.to_hex()).unwrap();
        assert_eq!((ch["Amount"].as_str(), ch["Balance"].as_str(), ch["SettleDelay"].as_u64()), (Some("5000000"), Some("0"), Some(3_600)));
        let before = f.balance(12);
        assert_eq!(f.redeem(channel, 1_000_000, 11, false), "tesSUCCESS");
        f.devnet.close_ledger();
        assert_eq!(f.balance(12), before + 1_000_000 - 10);
        assert_eq!(f.redeem(channel, 1_000_000, 11, false), "tecUNFUNDED_PAYMENT", "an equal claim pays nothing");
        f.devnet.close_ledger();
        assert_eq!(f.redeem(channel, 6_000_000, 11, false), "tecUNFUNDED_PAYMENT", "above the channel");
        f.devnet.close_ledger();
        assert_eq!(f.redeem(channel, 2_000_000, 13, false), "temBAD_SIGNATURE", "not the claim key");
        f.devnet.close_ledger();
        let ch = f.devnet.channel(&channel.to_hex()).unwrap();
        assert_eq!(ch["Balance"], "1000000");
    }

    #[test]
    fn the_source_close_waits_for_the_settle_delay_and_returns_the_rest() {
        let mut f = escrow();
        let channel = f.create(5_000_000);
        let escrow_before = f.devnet.account(f.escrow.as_str()).unwrap().balance_drops;
        let (r, _) = f.owner(ChannelTxKind::Claim { channel, balance_drops: Some(700_000), close: true });
        assert_eq!(r, "tesSUCCESS");
        f.devnet.close_ledger();
        let ch = f.devnet.channel(&channel.to_hex()).expect("still open during the settle delay");
        assert_eq!(ch["Balance"], "700000");
        assert!(ch["Expiration"].is_u64());
        // The provider can still redeem a higher claim before expiration.
        assert_eq!(f.redeem(channel, 900_000, 11, false), "tesSUCCESS");
        f.devnet.close_ledger();
        f.devnet.advance_time(3_601);
        f.devnet.close_ledger();
        let (r, _) = f.owner(ChannelTxKind::Claim { channel, balance_drops: None, close: false });
        assert_eq!(r, "tesSUCCESS", "a transaction on an expired channel closes it");
        f.devnet.close_ledger();
        assert!(f.devnet.channel(&channel.to_hex()).is_none());
        let escrow_after = f.devnet.account(f.escrow.as_str()).unwrap().balance_drops;
        // Two owner transactions at 30 drops; 4.1 XRP came back.
        assert_eq!(escrow_after, escrow_before - 60 + 4_100_000);
        // A claim on a closed channel.
        assert_eq!(f.redeem(channel, 1_000_000, 11, false), "tecNO_TARGET");
    }

    #[test]
    fn the_destination_closes_at_once_and_funding_is_the_owners_alone() {
        let mut f = escrow();
        let channel = f.create(5_000_000);
        let (r, _) = f.owner(ChannelTxKind::Fund { channel, amount_drops: 1_000_000 });
        assert_eq!(r, "tesSUCCESS");
        f.devnet.close_ledger();
        assert_eq!(f.devnet.channel(&channel.to_hex()).unwrap()["Amount"], "6000000");
        let (r, _) = f.owner(ChannelTxKind::Fund { channel, amount_drops: 100_000_000 });
        assert_eq!(r, "tecUNFUNDED");
        let unknown = agora_escrow::xrpl::ChannelId::from_bytes([7; 32]);
        let (r, _) = f.owner(ChannelTxKind::Fund { channel: unknown, amount_drops: 1 });
        assert_eq!(r, "tecNO_ENTRY");
        f.devnet.close_ledger();
        let escrow_before = f.devnet.account(f.escrow.as_str()).unwrap().balance_drops;
        assert_eq!(f.redeem(channel, 2_000_000, 11, true), "tesSUCCESS");
        f.devnet.close_ledger();
        assert!(f.devnet.channel(&channel.to_hex()).is_none(), "closed at once");
        let escrow_after = f.devnet.account(f.escrow.as_str()).unwrap().balance_drops;
        assert_eq!(escrow_after, escrow_before + 4_000_000);
    }

    #[test]
    fn a_channel_above_the_reserve_is_refused() {
        let mut f = escrow();
        let (r, _) = f.owner(ChannelTxKind::Create {
            destination: PayoutDestination { address: key(12).address().clone(), tag: None },
            amount_drops: 19_000_000,
            settle_delay: 0,
            public_key: key(11).public_key().clone(),
        });
        assert_eq!(r, "tecUNFUNDED", "the owner reserve of the signer list and the channel stay");
    }
}
