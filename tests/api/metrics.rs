//! `/metrics`: scraped before and after real traffic (requests, an order taken
//! to a marketplace-signed refund, blocks the watcher falls behind on, the
//! outbox filling and draining), checking that each value moves as it should.

use agora_api::notifications::dispatch_once;
use agora_api::watcher::bitcoin::BitcoinWatcher;
use agora_tests::{for_both_backends, Backend, TestApp};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::chains_btc::{catch_up, rpc};
use crate::orders_btc::{action, fund, parties, place};

/// One sample: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// One scrape of `/metrics`, parsed into samples.
struct Scrape(Vec<Sample>);

impl Scrape {
    async fn take(app: &TestApp) -> Scrape {
        let resp = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        Scrape::parse(&resp.text().await.unwrap())
    }

    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').unwrap();
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), Vec::new()),
            };
            samples.push((name, labels, value));
        }
        Scrape(samples)
    }

    /// The value of the sample `name` whose labels include `labels`; 0 when absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).unwrap_or(0.0)
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .filter(|(n, have, _)| {
                n == name && labels.iter().all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, _, v)| *v)
            .reduce(|a, b| a + b)
    }
}

async fn metrics_move_with_real_traffic(backend: Backend) {
    let app = TestApp::spawn_with_chains(backend).await;
    let before = Scrape::take(&app).await;
    let watcher = BitcoinWatcher::new(app.state.clone(), rpc(&app));
    catch_up(&watcher).await;

    // Requests: a named query, a document that does not parse, a refused one.
    for _ in 0..3 {
        app.gql("query Categories { categories }", json!({}), None).await.ok();
    }
    let broken = app.gql("query Broken { categories", json!({}), None).await;
    assert_eq!(broken.error_code(), Some("GRAPHQL_PARSE_FAILED"));
    let anonymous = app.gql("{ myListings(first: 1) { totalCount } }", json!({}), None).await;
    assert_eq!(anonymous.error_code(), Some("UNAUTHENTICATED"));

    // An order funded, then refunded after its delivery deadline with the
    // marketplace key co-signing (a policy rule in the audit log).
    let p = parties(&app, json!({})).await;
    let order = place(&app, &p).await;
    let placed = Scrape::take(&app).await;
    assert_eq!(placed.get("agora_orders", &[("chain", "bitcoin"), ("status", "AwaitingFunding")]), 1.0);
    fund(&app, &order, 50_000, 1).await;
    let delivery_by: DateTime<Utc> = order["deadlines"]["deliveryBy"].as_str().unwrap().parse().unwrap();
    app.clock.advance(delivery_by - Utc::now() + Duration::minutes(1));
    action(&app, "requestRefund", &order, &p.buyer.access_token).await.ok();

    // The watcher falls four blocks behind, then catches up.
    app.chains().bitcoin.mine(5);
    watcher.step().await.unwrap();
    let after = Scrape::take(&app).await;

    let duration_count = "agora_graphql_request_duration_seconds_count";
    let categories = [("operation", "Categories"), ("type", "query")];
    assert_eq!(after.get(duration_count, &categories) - before.get(duration_count, &categories), 3.0);
    assert!(after.get("agora_graphql_request_duration_seconds_sum", &categories) > 0.0);
    assert!(after.get(duration_count, &[("operation", "anonymous"), ("type", "mutation")]) >= 4.0);
    let errors = |s: &Scrape, code: &str| s.get("agora_graphql_errors_total", &[("code", code)]);
    assert_eq!(errors(&after, "GRAPHQL_PARSE_FAILED") - errors(&before, "GRAPHQL_PARSE_FAILED"), 1.0);
    assert_eq!(errors(&after, "UNAUTHENTICATED") - errors(&before, "UNAUTHENTICATED"), 1.0);
    assert_eq!(errors(&after, "INTERNAL"), 0.0);
    let ok_graphql = [("route", "/graphql"), ("status", "200")];
    assert!(after.get("agora_http_responses_total", &ok_graphql) >= 10.0);
    assert!(before.get("agora_http_responses_total", &ok_graphql) == 0.0);

    // What the database knows.
    assert_eq!(after.get("agora_orders", &[("chain", "bitcoin"), ("status", "AwaitingFunding")]), 0.0);
    assert_eq!(after.get("agora_orders", &[("chain", "bitcoin"), ("status", "Refunding")]), 1.0);
    assert_eq!(
        after.get("agora_marketplace_signatures", &[("chain", "bitcoin"), ("rule", "delivery_deadline_passed")]),
        1.0
    );
    assert_eq!(before.find("agora_marketplace_signatures", &[]), None);
    let pending = after.get("agora_outbox_pending", &[]);
    assert!(pending >= 3.0, "placed, funded and refunding notify: {pending}");
    assert!(
        after.get("agora_outbox_oldest_pending_age_seconds", &[]) >= 47.0 * 3600.0,
        "the clock moved past the delivery deadline"
    );
    assert_eq!(before.get("agora_outbox_pending", &[]), 0.0);

    // The chain: tip and cursor, and the lag between them.
    let chain = [("chain", "bitcoin")];
    let tip = after.get("agora_watcher_tip_height", &chain);
    assert_eq!(after.get("agora_watcher_cursor_height", &chain), tip - 4.0);
    assert_eq!(after.get("agora_watcher_lag_blocks", &chain), 4.0);
    catch_up(&watcher).await;
    // The pool.
    assert_eq!(after.get("agora_db_pool_max_connections", &[]), 5.0);
    assert!(after.find("agora_db_pool_connections", &[("state", "idle")]).is_some());

    // The outbox drains; the scheduler's start-up sweeps are counted.
    for _ in 0..20 {
        if dispatch_once(&app.state).await.unwrap() == 0 {
            break;
        }
    }
    let mut last = Scrape::take(&app).await;
    for _ in 0..300 {
        if ["orders", "disputes", "metered"]
            .iter()
            .all(|s| last.get("agora_scheduler_sweeps_total", &[("sweep", s), ("outcome", "ok")]) >= 1.0)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        last = Scrape::take(&app).await;
    }
    for sweep in ["orders", "disputes", "metered"] {
        assert_eq!(last.get("agora_scheduler_sweeps_total", &[("sweep", sweep), ("outcome", "ok")]), 1.0, "{sweep}");
        assert_eq!(last.get("agora_scheduler_sweeps_total", &[("sweep", sweep), ("outcome", "failed")]), 0.0);
    }
    assert_eq!(last.get("agora_watcher_lag_blocks", &chain), 0.0);
    assert_eq!(last.get("agora_watcher_cursor_height", &chain), tip);
    assert_eq!(last.get("agora_outbox_pending", &[]), 0.0);
    assert_eq!(last.get("agora_outbox_oldest_pending_age_seconds", &[]), 0.0);
    assert!(last.get("agora_http_responses_total", &[("route", "/metrics"), ("status", "200")]) >= 3.0);

    // Every metric the Grafana dashboard plots is one the server serves.
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana-dashboard.json")).unwrap();
    let served: Vec<&str> = last.0.iter().map(|(name, _, _)| name.as_str()).collect();
    let mut plotted = 0;
    for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(name) = word.strip_prefix("agora_") {
            let family = format!("agora_{name}");
            assert!(served.iter().any(|s| s.starts_with(family.trim_end_matches("_bucket"))), "{family} is not served");
            plotted += 1;
        }
    }
    assert!(plotted >= 10, "the dashboard plots {plotted} series");
}

/// Metrics stay cheap to scrape and never leak a client's invented labels.
async fn metrics_label_only_known_routes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let probe = app.client.get(format!("{}/no-such-page/secret-token", app.address)).send().await.unwrap();
    assert_eq!(probe.status(), 404);
    let text = app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("secret-token"), "{text}");
    let scrape = Scrape::parse(&text);
    assert_eq!(scrape.get("agora_http_responses_total", &[("route", "other"), ("status", "404")]), 1.0);
}

for_both_backends!(metrics_move_with_real_traffic, metrics_label_only_known_routes);
