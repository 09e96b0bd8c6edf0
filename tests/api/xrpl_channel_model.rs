//! The adversarial model test of metered XRPL sessions on a payment channel:
//! one consultation on the local ledger, driven by the real watcher, through
//! random actions from fixed seeds — usage, claims or none, the provider
//! redeeming on the ledger at any moment (or closing the channel itself), the
//! watcher silent while ledgers pass, the clock moving, extra deposits, the
//! buyer signing the escrow's transactions late or never. After each step the
//! invariants hold; then everyone left cooperates (the provider may have
//! vanished) and the order must reach its rightful payout, to the drop.
//!
//! Invariants checked after every step:
//! - a funded order's escrow account is locked (2-of-3 signer list, master key disabled);
//! - the provider never received more than the buyer's latest claim;
//! - the order never ends without a cause (no CANCELLED/EXPIRED/REFUNDED).

use agora_domain::clock::Clock;
use agora_tests::xrpl::{self, BUYER_SEED, PROVIDER_ADDRESS, PROVIDER_SEED};
use agora_tests::{Backend, Session, TestApp};
use chrono::Duration;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::chains_xrpl::{catch_up, pay_deposit, tick};
use crate::xrpl_channels::{
    channel, claim_everything, close_session, destination_claim, drops, funded_on_the_ledger, minutes, order_of, sign_awaiting, sign_channel,
};

type Watcher = agora_api::watcher::xrpl::XrplWatcher<agora_escrow::source::rippled::RippledSource>;

struct World {
    app: TestApp,
    watcher: Watcher,
    provider: Session,
    buyer: Session,
    order: Value,
    escrow: String,
    provider_start: u64,
    /// Fees the provider paid for its own claims on the ledger.
    provider_fees: u64,
    /// The buyer's latest accepted claim: (drops, commission, signature).
    latest: Option<(u64, u64, String)>,
    /// The provider stopped acting (closed the session or vanished).
    provider_gone: bool,
    /// What the last payout shown paid the marketplace (it is not shown once settled).
    marketplace_paid: Option<u64>,
    log: Vec<String>,
}

impl World {
    async fn view(&self) -> Value {
        order_of(&self.app, &self.buyer, &self.order).await
    }

    fn provider_received(&self) -> u64 {
        let now = self.app.chains().xrpl.account(PROVIDER_ADDRESS).map_or(0, |a| a.balance_drops);
        (now + self.provider_fees).saturating_sub(self.provider_start)
    }

    async fn check(&mut self) {
        let v = self.view().await;
        if let Some(txs) = v["payout"]["xrplTransactions"].as_array() {
            self.marketplace_paid = Some(txs.iter().filter(|t| t["recipient"] == "marketplace").map(|t| drops(&t["amount"])).sum());
        }
        let status = v["status"].as_str().unwrap();
        assert!(!["CANCELLED", "EXPIRED", "REFUNDED"].contains(&status), "{:?}\n{v}", self.log);
        if status != "AWAITING_FUNDING" {
            let info = self.app.chains().xrpl.account(&self.escrow).expect("the escrow account exists");
            assert!(info.master_disabled && info.signer_quorum == Some(2), "{status} with an unlocked account: {:?}", self.log);
        }
        let claimed = self.latest.as_ref().map_or(0, |l| l.0);
        assert!(self.provider_received() <= claimed, "the provider received {} > its latest claim {claimed}: {:?}", self.provider_received(), self.log);
    }

    fn session_open(v: &Value) -> bool {
        ["FUNDED", "DELIVERED"].contains(&v["status"].as_str().unwrap()) && channel(v)["status"] == "OPEN"
    }

    async fn claim(&mut self) {
        let c = claim_everything(&self.app, &self.buyer, &self.order).await;
        let (amount, commission) = (drops(&c["channel"]["amount"]), drops(&c["commission"]));
        let id = c["channel"]["channelId"].as_str().unwrap();
        self.latest = Some((amount, commission, xrpl::sign_claim(BUYER_SEED, id, amount)));
    }

    /// The provider's own claim of the latest amount, straight to the ledger.
    fn redeem_on_ledger(&mut self, id: &str, close: bool) {
        let Some((amount, _, signature)) = self.latest.clone() else { return };
        let sequence = self.app.chains().xrpl.account(PROVIDER_ADDRESS).unwrap().sequence;
        let blob = destination_claim(PROVIDER_SEED, id, amount, &signature, close, sequence);
        if self.app.chains().xrpl.submit(&blob).accepted() {
            self.provider_fees += 12;
        }
        self.app.chains().xrpl.close_ledger();
    }

    async fn step(&mut self, rng: &mut StdRng) {
        let v = self.view().await;
        let open = Self::session_open(&v) && !self.provider_gone;
        let id = channel(&v)["id"].as_str().unwrap_or_default().to_owned();
        // Pick among the moves that make sense now (the rest would only tick).
        let mut enabled = vec![3, 4, 9, 10];
        if open {
            enabled.extend([0, 0, 5, 8]);
            if self.latest.is_some() {
                enabled.extend([2, 7]);
            }
            if v["status"] == "FUNDED" {
                enabled.push(6);
            }
        }
        if Self::session_open(&v) {
            enabled.extend([1, 1]);
        }
        match enabled[rng.gen_range(0..enabled.len())] {
            0 if open => {
                let n = rng.gen_range(1..4);
                self.log.push(format!("{n} minutes"));
                minutes(&self.app, &self.provider, &self.order, n).await;
            }
            1 if Self::session_open(&v) && drops(&v["xrplEscrow"]["channel"]["amount"]) > 0 => {
                self.log.push("buyer claims".into());
                let next = crate::xrpl_channels::next_claim(&self.app, &self.buyer, &self.order).await;
                if next.error_code().is_none() {
                    self.claim().await;
                }
            }
            2 if open && self.latest.is_some() => {
                self.log.push("provider redeems on the ledger".into());
                self.redeem_on_ledger(&id, false);
            }
            3 => {
                let n = rng.gen_range(1..10);
                self.log.push(format!("watcher silent for {n} ledgers"));
                for _ in 0..n {
                    self.app.chains().xrpl.close_ledger();
                }
            }
            4 => {
                let m = rng.gen_range(1..30);
                self.log.push(format!("{m} minutes pass"));
                self.app.clock.advance(Duration::minutes(m));
            }
            5 if open => {
                self.log.push("an extra deposit".into());
                pay_deposit(&self.app, &self.escrow, 1_000_000).await;
            }
            6 if open && v["status"] == "FUNDED" => {
                self.log.push("markDelivered".into());
                crate::orders_xrpl::action(&self.app, "markDelivered", &self.order, &self.provider.access_token).await;
            }
            7 if open && self.latest.is_some() => {
                if rng.gen_bool(0.5) {
                    self.log.push("provider closes the session with its claim".into());
                    let (amount, _, signature) = self.latest.clone().unwrap();
                    let blob = destination_claim(PROVIDER_SEED, &id, amount, &signature, true, self.app.chains().xrpl.account(PROVIDER_ADDRESS).unwrap().sequence);
                    if close_session(&self.app, &self.provider, &self.order, Some(vec![blob])).await.error_code().is_none() {
                        self.provider_fees += 12;
                    }
                } else {
                    self.log.push("provider closes the channel on the ledger".into());
                    self.redeem_on_ledger(&id, true);
                }
                self.provider_gone = true;
            }
            8 if open => {
                self.log.push("provider vanishes".into());
                self.provider_gone = true;
            }
            9 => {
                self.log.push("buyer signs what waits".into());
                let _ = sign_channel(&self.app, &self.buyer, &self.order, &sign_awaiting(&v, BUYER_SEED)).await;
            }
            _ => {
                self.log.push("tick".into());
                tick(&self.app, &self.watcher).await;
            }
        }
    }

    /// The buyer (and the provider, unless it is gone) do the right thing.
    async fn finish(&mut self) {
        let mut waited = false;
        for round in 0..40 {
            let v = self.view().await;
            let ch = channel(&v);
            match v["status"].as_str().unwrap() {
                "SETTLED" => return,
                "FUNDED" | "DELIVERED" if ch["status"] == "PROPOSED" => {
                    let _ = sign_channel(&self.app, &self.buyer, &self.order, &sign_awaiting(&v, BUYER_SEED)).await;
                }
                "FUNDED" | "DELIVERED" if ch["status"] == "OPEN" && self.latest.is_none() => {
                    minutes(&self.app, &self.provider, &self.order, 1).await;
                    self.claim().await;
                }
                "FUNDED" if !self.provider_gone => {
                    crate::orders_xrpl::action(&self.app, "markDelivered", &self.order, &self.provider.access_token).await;
                }
                "FUNDED" | "DELIVERED" if !waited => {
                    // The provider is gone: the service's outcome once it is due.
                    self.app.clock.advance(Duration::days(40));
                    waited = true;
                    agora_api::metered::settle_abandoned(&self.app.state, self.app.clock.now()).await.unwrap();
                    agora_api::orders::scheduler::sweep(&self.app.state, self.app.clock.now()).await.unwrap();
                }
                "FUNDED" | "DELIVERED" => {}
                _ => {
                    if ch["transactions"].as_array().is_some_and(|t| t.iter().any(|t| t["awaitingSignature"] == true)) {
                        let _ = sign_channel(&self.app, &self.buyer, &self.order, &sign_awaiting(&v, BUYER_SEED)).await;
                    }
                    if ch["status"] == "OPEN" && ch["expiration"].is_u64() {
                        self.app.chains().xrpl.advance_time(ch["settleDelaySecs"].as_u64().unwrap() as u32 + 30);
                    }
                    if v["payout"]["complete"] == false {
                        let blobs: Vec<String> = v["payout"]["xrplTransactions"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter(|t| t["finalBlob"].is_null())
                            .map(|t| xrpl::sign(BUYER_SEED, t["txJson"].as_str().unwrap()))
                            .collect();
                        let q = "mutation($i: SubmitPayoutSignatureInput!) { submitPayoutSignature(input: $i) { payout { complete } } }";
                        let _ = self.app.gql(q, json!({"i": {"orderId": self.order["id"], "signedTransactions": blobs}}), Some(&self.buyer.access_token)).await;
                    }
                }
            }
            tick(&self.app, &self.watcher).await;
            self.check().await;
            assert!(round < 39, "the order did not settle: {:?}\n{}", self.log, self.view().await);
        }
    }
}

async fn run(seed: u64) {
    if !xrpl::available() {
        return;
    }
    let (app, watcher, provider, buyer, order, escrow) = funded_on_the_ledger(Backend::Sqlite).await;
    let provider_start = app.chains().xrpl.account(PROVIDER_ADDRESS).unwrap().balance_drops;
    let mut w = World {
        app,
        watcher,
        provider,
        buyer,
        order,
        escrow,
        provider_start,
        provider_fees: 0,
        latest: None,
        provider_gone: false,
        marketplace_paid: None,
        log: Vec::new(),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..30 {
        w.step(&mut rng).await;
        catch_up(&w.watcher).await;
        w.check().await;
    }
    Box::pin(w.finish()).await;
    let settled = w.view().await;
    let (claimed, commission, _) = w.latest.clone().expect("a claim was signed");
    println!("seed {seed}: claimed {claimed}, log {:?}", w.log);
    assert_eq!(w.provider_received(), claimed, "seed {seed}: the provider gets exactly its latest claim: {:?}\n{settled}", w.log);
    let history = w
        .app
        .gql("query($id: ID!) { order(id: $id) { history { event detail } } }", json!({"id": w.order["id"]}), Some(&w.buyer.access_token))
        .await
        .ok();
    assert_eq!(w.marketplace_paid, Some(commission), "seed {seed}: the marketplace gets the commission of the latest claim: {:?}\n{history}", w.log);
    // Nothing is left behind: the escrow account keeps only its reserve.
    let left = w.app.chains().xrpl.account(&w.escrow).unwrap();
    assert_eq!(left.owner_count, 1, "seed {seed}: the channel is closed: {:?}", w.log);
    assert_eq!(left.balance_drops, 1_000_000 + 200_000, "seed {seed}: only the reserve stays: {:?}\n{history}", w.log);
}

macro_rules! seeds {
    ($($name:ident = $seed:expr),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                Box::pin(run($seed)).await
            }
        )+
    };
}

seeds!(seed_1 = 1, seed_2 = 2, seed_3 = 3, seed_4 = 4, seed_5 = 5, seed_6 = 6);
