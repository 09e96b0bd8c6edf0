//! The XRPL side of the adversarial model test: one XRP order on the local
//! ledger, driven by the real watcher, through random actions from fixed
//! seeds — deposits early, late, short and over; the watcher silent while
//! ledgers pass (signing windows expire); the provider's account requiring a
//! destination tag at random moments (so its Payment is refused with `tec`);
//! the parties signing, or not, in any order. After each step the invariants
//! hold; then everyone cooperates and the order must reach its rightful
//! payout, to the drop.
//!
//! Invariants checked after every step:
//! - an order past AWAITING_FUNDING has an escrow account the ledger shows
//!   locked (2-of-3 signer list, master key disabled);
//! - nobody is ever paid more than its share (no Payment applies twice, a
//!   rebuild never pays a share already paid);
//! - the order never leaves the lifecycle (no CANCELLED/EXPIRED without a cause).

use agora_tests::xrpl::{self, BUYER_SEED, PROVIDER_ADDRESS, PROVIDER_SEED};
use agora_tests::{Backend, TestApp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::chains_xrpl::{catch_up, pay_deposit, start_with, tick};
use crate::orders_xrpl::{action, place, sign_all, submit, view, Parties, FIELDS};

type Watcher = agora_api::watcher::xrpl::XrplWatcher<agora_escrow::source::rippled::RippledSource>;

struct World {
    app: TestApp,
    watcher: Watcher,
    p: Parties,
    order: Value,
    escrow: String,
    marketplace: String,
    due: u64,
    deposited: u64,
    /// Fees the provider itself paid (its AccountSet transactions).
    provider_fees: u64,
    provider_start: u64,
    marketplace_start: u64,
    require_tag: bool,
    /// The last payout the order showed (it is not shown once settled).
    breakdown: Option<Value>,
    log: Vec<String>,
}

fn balance(app: &TestApp, address: &str) -> u64 {
    app.chains().xrpl.account(address).map_or(0, |a| a.balance_drops)
}

fn drops(v: &Value) -> u64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

impl World {
    async fn view(&self) -> Value {
        view(&self.app, &self.order, &self.p.buyer.access_token).await
    }

    async fn set_require_tag(&mut self, on: bool) {
        let seq = self.app.chains().xrpl.account(PROVIDER_ADDRESS).unwrap().sequence;
        let flag = if on { "SetFlag" } else { "ClearFlag" };
        let tx = json!({"TransactionType": "AccountSet", "Account": PROVIDER_ADDRESS, flag: 1, "Fee": "12", "Flags": 0, "Sequence": seq});
        let outcome = self.app.chains().xrpl.submit(&xrpl::sign_single(PROVIDER_SEED, &tx.to_string()));
        assert!(outcome.accepted(), "{outcome:?}");
        self.app.chains().xrpl.close_ledger();
        self.provider_fees += 12;
        self.require_tag = on;
    }

    async fn sign(&self, seed: &str, token: &str) {
        let v = self.view().await;
        if v["payout"].is_null() || v["payout"]["complete"] == true {
            return;
        }
        // Refusals (already signed, nothing open) are part of the game.
        let _ = submit(&self.app, &self.order, &sign_all(&v, seed), token).await;
    }

    async fn redirect(&self) {
        let set = format!("mutation($i: SetPayoutDestinationInput!) {{ setPayoutDestination(input: $i) {{ order {{ {FIELDS} }} }} }}");
        let _ = self
            .app
            .gql(&set, json!({"i": {"orderId": self.order["id"], "account": PROVIDER_ADDRESS, "destinationTag": 7}}), Some(&self.p.provider.access_token))
            .await;
    }

    /// What the provider and the marketplace received from the escrow so far.
    /// The marketplace's account is also the operating account here, which
    /// paid the escrow account's reserve and set-up fees once it was created.
    async fn received(&self) -> (u64, u64) {
        let provider = (balance(&self.app, PROVIDER_ADDRESS) + self.provider_fees).saturating_sub(self.provider_start);
        let created = self.view().await["xrplEscrow"]["setupStatus"] != "AWAITING_ACCOUNT";
        let setup_cost = if created {
            agora_api::devnet::xrpl::reserves().funding_amount_drops(BASE_FEE).unwrap() + BASE_FEE
        } else {
            0
        };
        let marketplace = (balance(&self.app, &self.marketplace) + setup_cost).saturating_sub(self.marketplace_start);
        (provider, marketplace)
    }

    async fn check(&mut self) {
        let v = self.view().await;
        if v["payout"]["breakdown"].is_object() {
            self.breakdown = Some(v["payout"]["breakdown"].clone());
        }
        let status = v["status"].as_str().unwrap().to_owned();
        assert!(!["CANCELLED", "EXPIRED", "REFUNDED"].contains(&status.as_str()), "{:?}\n{v}", self.log);
        if status != "AWAITING_FUNDING" {
            let info = self.app.chains().xrpl.account(&self.escrow).expect("a funded escrow account exists");
            assert!(info.master_disabled && info.signer_quorum == Some(2), "{status} with an unlocked account: {:?}", self.log);
        }
        let (provider, marketplace) = self.received().await;
        if let Some(b) = &self.breakdown {
            let commission = drops(&b["commission"]) + drops(&b["arbitrationFee"]);
            assert!(provider <= drops(&b["provider"]), "provider paid {provider} > its share: {:?}\n{v}", self.log);
            assert!(marketplace <= commission, "marketplace paid {marketplace} > {commission}: {:?}", self.log);
        } else {
            assert_eq!((provider, marketplace), (0, 0), "paid without a payout: {:?}\n{v}", self.log);
        }
    }

    async fn step(&mut self, rng: &mut StdRng) {
        let what = rng.gen_range(0..10);
        let status = self.view().await["status"].as_str().unwrap().to_owned();
        match what {
            0 if self.deposited < 2 * self.due && ["AWAITING_FUNDING", "FUNDED", "DELIVERED"].contains(&status.as_str()) => {
                let amount = [self.due / 2, self.due, 1_000_000, self.due - self.deposited.min(self.due) + 1][rng.gen_range(0..4)].max(1_000_000);
                self.log.push(format!("deposit {amount}"));
                pay_deposit(&self.app, &self.escrow, amount).await;
                self.deposited += amount;
            }
            1 => {
                let n = rng.gen_range(1..30);
                self.log.push(format!("watcher silent for {n} ledgers"));
                for _ in 0..n {
                    self.app.chains().xrpl.close_ledger();
                }
            }
            2 => {
                let on = !self.require_tag;
                self.log.push(format!("provider requires a tag: {on}"));
                self.set_require_tag(on).await;
            }
            3 if status == "FUNDED" => {
                self.log.push("markDelivered".into());
                action(&self.app, "markDelivered", &self.order, &self.p.provider.access_token).await;
            }
            4 if status == "DELIVERED" => {
                self.log.push("releaseFunds".into());
                action(&self.app, "releaseFunds", &self.order, &self.p.buyer.access_token).await;
            }
            5 => {
                self.log.push("buyer signs".into());
                self.sign(BUYER_SEED, &self.p.buyer.access_token.clone()).await;
            }
            6 => {
                self.log.push("provider signs".into());
                self.sign(PROVIDER_SEED, &self.p.provider.access_token.clone()).await;
            }
            7 => {
                self.log.push("provider names a tagged destination".into());
                self.redirect().await;
            }
            _ => {
                self.log.push("tick".into());
                tick(&self.app, &self.watcher).await;
            }
        }
    }

    /// Everyone does the right thing, one move per round.
    async fn finish(&mut self) {
        for round in 0..40 {
            let v = self.view().await;
            match v["status"].as_str().unwrap() {
                "SETTLED" => return,
                "AWAITING_FUNDING" if v["xrplEscrow"]["setupStatus"] == "READY" => {
                    let missing = self.due.saturating_sub(drops(&v["xrplEscrow"]["depositDrops"]));
                    if missing > 0 {
                        pay_deposit(&self.app, &self.escrow, missing.max(1_000_000)).await;
                        self.deposited += missing.max(1_000_000);
                    }
                }
                "FUNDED" => {
                    action(&self.app, "markDelivered", &self.order, &self.p.provider.access_token).await;
                }
                "DELIVERED" => {
                    action(&self.app, "releaseFunds", &self.order, &self.p.buyer.access_token).await;
                }
                _ => {
                    let refused = v["payout"]["xrplTransactions"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|t| !t["refusedWith"].is_null()));
                    if refused {
                        self.redirect().await;
                    } else if v["payout"]["complete"] == false {
                        self.sign(BUYER_SEED, &self.p.buyer.access_token.clone()).await;
                        self.sign(PROVIDER_SEED, &self.p.provider.access_token.clone()).await;
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
    let Some((app, watcher, p)) = start_with(Backend::Sqlite, |s| s.xrpl.signing_window_minutes = 1).await else { return };
    let order = place(&app, &p).await;
    let escrow = order["xrplEscrow"]["account"].as_str().unwrap().to_owned();
    let marketplace = order["xrplEscrow"]["payoutDestinations"]["marketplace"]["address"].as_str().unwrap().to_owned();
    let due = drops(&order["amountDue"]);
    let (provider_start, marketplace_start) = (balance(&app, PROVIDER_ADDRESS), balance(&app, &marketplace));
    let mut w = World {
        app,
        watcher,
        p,
        order,
        escrow,
        marketplace,
        due,
        deposited: 0,
        provider_fees: 0,
        provider_start,
        marketplace_start,
        require_tag: false,
        breakdown: None,
        log: Vec::new(),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..30 {
        w.step(&mut rng).await;
        catch_up(&w.watcher).await;
        w.check().await;
    }
    w.finish().await;
    // The rightful payout, to the drop: the provider its share (less the fee
    // of a Payment the ledger refused, if its share had to be redirected), the
    // marketplace its commission, each once.
    let settled = w.view().await;
    assert_eq!(settled["status"], "SETTLED");
    let b = w.breakdown.clone().expect("a payout was shown");
    let burned: u64 = w
        .app
        .gql("query($id: ID!) { order(id: $id) { history { event } } }", json!({"id": w.order["id"]}), Some(&w.p.buyer.access_token))
        .await
        .body["data"]["order"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "PayoutShareRefused")
        .count() as u64
        * PAYMENT_FEE;
    println!("seed {seed}: {} refused Payments, log {:?}", burned / PAYMENT_FEE, w.log);
    let (provider, marketplace) = w.received().await;
    assert_eq!(provider + burned, drops(&b["provider"]), "seed {seed}: {:?}", w.log);
    assert_eq!(marketplace, drops(&b["commission"]) + drops(&b["arbitrationFee"]), "seed {seed}: {:?}", w.log);
    // Nothing of the buyer's is left behind: late deposits went back with its
    // share; what stays is the reserve and at most the unused fee budget.
    let left = balance(&w.app, &w.escrow);
    let reserve = agora_api::devnet::xrpl::reserves().escrow_reserve_drops().unwrap();
    assert!(left >= reserve && left - reserve <= drops(&b["networkFee"]), "seed {seed}: {left} left in the escrow: {:?}", w.log);
}

/// The devnet's base fee, and the fee of one multisigned payout Payment (× 3).
const BASE_FEE: u64 = 10;
const PAYMENT_FEE: u64 = 3 * BASE_FEE;

macro_rules! seeds {
    ($($name:ident = $seed:expr),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run($seed).await
            }
        )+
    };
}

seeds!(seed_1 = 1, seed_2 = 2, seed_3 = 3, seed_4 = 4, seed_5 = 5, seed_6 = 6);
