//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Two kinds of values live here:
//! - what only this process sees, counted as it happens: GraphQL request
//!   latency by operation, GraphQL errors by `extensions.code`, HTTP responses
//!   by route and status, scheduler sweep runs;
//! - what the database knows, read at scrape time so that every replica reports
//!   the same numbers and no code path needs a hook: orders by status, the
//!   notification outbox (depth and oldest message), the marketplace key's
//!   signatures by policy rule (the audit log), the watchers' cursors, and the
//!   connection pool. A watcher's lag is the chain tip it last saw minus the
//!   cursor in the database, so only the replica that holds a chain's
//!   election reports it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Response, ServerResult, Variables};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use sea_orm::{DatabaseConnection, DbBackend};

use crate::graphql::context::AppState;

/// Distinct operation names kept as labels; later ones are counted as `other`,
/// so a client inventing names cannot grow the metrics without bound.
const MAX_OPERATION_NAMES: usize = 200;

/// The chains Agora watches, as they are named in the cursor table.
const CHAINS: [&str; 2] = ["bitcoin", "xrpl"];

/// Every metric of the process, registered in one registry.
pub struct Metrics {
    registry: Registry,
    graphql_duration: HistogramVec,
    graphql_errors: IntCounterVec,
    http_responses: IntCounterVec,
    sweeps: IntCounterVec,
    orders: IntGaugeVec,
    signatures: IntGaugeVec,
    outbox_pending: IntGauge,
    outbox_oldest_age: IntGauge,
    watcher_tip: IntGaugeVec,
    watcher_cursor: IntGaugeVec,
    watcher_lag: IntGaugeVec,
    db_pool: IntGaugeVec,
    scrape_errors: IntCounterVec,
    operation_names: Mutex<HashSet<String>>,
    /// One scrape at a time refreshes the database gauges, so two concurrent
    /// scrapes never interleave a reset with another's values.
    scrape: tokio::sync::Mutex<()>,
}

/// What a finished sweep reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepOutcome {
    Ok,
    Failed,
}

impl SweepOutcome {
    pub fn of<T, E>(result: &Result<T, E>) -> Self {
        if result.is_ok() {
            SweepOutcome::Ok
        } else {
            SweepOutcome::Failed
        }
    }
}

impl Metrics {
    pub fn new(max_connections: u32) -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("agora".into()), None)?;
        let graphql_duration = HistogramVec::new(
            HistogramOpts::new(
                "graphql_request_duration_seconds",
                "GraphQL requests from parse to response, by operation name and type",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["operation", "type"],
        )?;
        let graphql_errors = IntCounterVec::new(
            Opts::new("graphql_errors_total", "GraphQL errors returned, by extensions.code"),
            &["code"],
        )?;
        let http_responses = IntCounterVec::new(
            Opts::new("http_responses_total", "HTTP responses, by route and status"),
            &["route", "status"],
        )?;
        let sweeps = IntCounterVec::new(
            Opts::new("scheduler_sweeps_total", "Deadline scheduler sweeps run, by sweep and outcome"),
            &["sweep", "outcome"],
        )?;
        let orders = IntGaugeVec::new(Opts::new("orders", "Orders by chain and status"), &["chain", "status"])?;
        let signatures = IntGaugeVec::new(
            Opts::new(
                "marketplace_signatures",
                "Signatures the marketplace key made, by chain and policy rule (append-only audit log; only grows)",
            ),
            &["chain", "rule"],
        )?;
        let outbox_pending = IntGauge::new("outbox_pending", "Notification outbox messages not delivered yet")?;
        let outbox_oldest_age = IntGauge::new(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered outbox message (0 when the outbox is empty)",
        )?;
        let watcher_tip = IntGaugeVec::new(
            Opts::new("watcher_tip_height", "Chain tip the watcher of this replica last saw"),
            &["chain"],
        )?;
        let watcher_cursor = IntGaugeVec::new(
            Opts::new("watcher_cursor_height", "Last block (ledger) processed, from the database"),
            &["chain"],
        )?;
        let watcher_lag = IntGaugeVec::new(
            Opts::new(
                "watcher_lag_blocks",
                "Blocks (ledgers) the watcher is behind the tip; reported by the replica that watches the chain",
            ),
            &["chain"],
        )?;
        let db_pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state"),
            &["state"],
        )?;
        let db_pool_max = IntGauge::new("db_pool_max_connections", "Configured size of the database pool")?;
        db_pool_max.set(i64::from(max_connections));
        let scrape_errors = IntCounterVec::new(
            Opts::new("metrics_scrape_errors_total", "Database reads that failed while serving /metrics"),
            &["source"],
        )?;
        registry.register(Box::new(graphql_duration.clone()))?;
        registry.register(Box::new(graphql_errors.clone()))?;
        registry.register(Box::new(http_responses.clone()))?;
        registry.register(Box::new(sweeps.clone()))?;
        registry.register(Box::new(orders.clone()))?;
        registry.register(Box::new(signatures.clone()))?;
        registry.register(Box::new(outbox_pending.clone()))?;
        registry.register(Box::new(outbox_oldest_age.clone()))?;
        registry.register(Box::new(watcher_tip.clone()))?;
        registry.register(Box::new(watcher_cursor.clone()))?;
        registry.register(Box::new(watcher_lag.clone()))?;
        registry.register(Box::new(db_pool.clone()))?;
        registry.register(Box::new(db_pool_max))?;
        registry.register(Box::new(scrape_errors.clone()))?;
        Ok(Self {
            registry,
            graphql_duration,
            graphql_errors,
            http_responses,
            sweeps,
            orders,
            signatures,
            outbox_pending,
            outbox_oldest_age,
            watcher_tip,
            watcher_cursor,
            watcher_lag,
            db_pool,
            scrape_errors,
            operation_names: Mutex::new(HashSet::new()),
            scrape: tokio::sync::Mutex::new(()),
        })
    }

    /// Runs a scheduler sweep (`orders`, `disputes`, `metered`) and counts it.
    pub async fn sweep<T, E>(&self, sweep: &str, run: impl std::future::Future<Output = Result<T, E>>) -> Result<T, E> {
        let result = run.await;
        self.sweep_ran(sweep, SweepOutcome::of(&result));
        result
    }

    /// Counts one run of a scheduler sweep.
    pub fn sweep_ran(&self, sweep: &str, outcome: SweepOutcome) {
        let outcome = match outcome {
            SweepOutcome::Ok => "ok",
            SweepOutcome::Failed => "failed",
        };
        self.sweeps.with_label_values(&[sweep, outcome]).inc();
    }

    /// Counts one HTTP response. Unknown paths share one label.
    pub fn http_response(&self, path: &str, status: u16) {
        let route = match path {
            "/graphql" | "/graphql/ws" | "/healthz" | "/readyz" | "/metrics" => path,
            _ => "other",
        };
        self.http_responses
            .with_label_values(&[route, status.to_string().as_str()])
            .inc();
    }

    fn operation_label(&self, name: &str) -> String {
        let Ok(mut names) = self.operation_names.lock() else {
            return "other".into();
        };
        if names.contains(name) {
            return name.to_owned();
        }
        if names.len() < MAX_OPERATION_NAMES {
            names.insert(name.to_owned());
            return name.to_owned();
        }
        "other".into()
    }

    fn graphql_request(&self, operation: &str, kind: &str, seconds: f64, codes: &[String]) {
        let label = self.operation_label(operation);
        self.graphql_duration
            .with_label_values(&[label.as_str(), kind])
            .observe(seconds);
        for code in codes {
            self.graphql_errors.with_label_values(&[code.as_str()]).inc();
        }
    }

    /// Reads the database-backed values, then renders every metric.
    pub async fn render(&self, app: &AppState) -> Result<String, prometheus::Error> {
        let _one_at_a_time = self.scrape.lock().await;
        self.refresh(app).await;
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    async fn refresh(&self, app: &AppState) {
        use agora_persistence::stats;
        let db = &app.db;
        self.pool(db);
        match stats::orders_by_status(db).await {
            Ok(rows) => {
                self.orders.reset();
                for (chain, status, n) in rows {
                    self.orders.with_label_values(&[chain.as_str(), status.as_str()]).set(n);
                }
            }
            Err(e) => self.scrape_failed("orders", &e),
        }
        match stats::signatures_by_rule(db).await {
            Ok(rows) => {
                self.signatures.reset();
                for (chain, rule, n) in rows {
                    self.signatures.with_label_values(&[chain.as_str(), rule.as_str()]).set(n);
                }
            }
            Err(e) => self.scrape_failed("signatures", &e),
        }
        match stats::outbox_depth(db).await {
            Ok(depth) => {
                self.outbox_pending.set(depth.pending);
                let age = depth
                    .oldest
                    .map(|at| (app.clock.now() - at).num_seconds().max(0))
                    .unwrap_or(0);
                self.outbox_oldest_age.set(age);
            }
            Err(e) => self.scrape_failed("outbox", &e),
        }
        for chain in CHAINS {
            let tip = match chain {
                "bitcoin" => app.tips.bitcoin(),
                _ => app.tips.xrpl(),
            };
            match agora_persistence::chain::cursor(db, chain).await {
                Ok(cursor) => {
                    let cursor = cursor.map(|c| c.height);
                    if let Some(height) = cursor {
                        self.watcher_cursor.with_label_values(&[chain]).set(clamp(height));
                    }
                    // A tip of 0 means this replica does not watch the chain.
                    if tip > 0 {
                        self.watcher_tip.with_label_values(&[chain]).set(clamp(tip));
                        let lag = tip.saturating_sub(cursor.unwrap_or(0));
                        self.watcher_lag.with_label_values(&[chain]).set(clamp(lag));
                    }
                }
                Err(e) => self.scrape_failed("watcher", &e),
            }
        }
    }

    fn pool(&self, db: &DatabaseConnection) {
        let (size, idle) = match db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DbBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => return,
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        self.db_pool.with_label_values(&["idle"]).set(i64::from(idle));
        self.db_pool.with_label_values(&["in_use"]).set(i64::from(size - idle));
    }

    fn scrape_failed(&self, source: &str, error: &agora_persistence::StoreError) {
        tracing::warn!(metrics.source = source, error.cause = %error, "a metrics read failed");
        self.scrape_errors.with_label_values(&[source]).inc();
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `GET /metrics`.
pub async fn endpoint(state: web::Data<Arc<AppState>>) -> HttpResponse {
    match state.metrics.render(&state).await {
        Ok(body) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, prometheus::TEXT_FORMAT))
            .body(body),
        Err(e) => {
            tracing::error!(error.cause = %e, "cannot render the metrics");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// The async-graphql extension that times every request and counts its errors.
pub struct GraphqlMetrics(pub Arc<Metrics>);

impl ExtensionFactory for GraphqlMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestMetrics {
            metrics: self.0.clone(),
            seen: Mutex::new(Seen::default()),
        })
    }
}

/// What one request showed of itself before it executed.
#[derive(Default)]
struct Seen {
    /// The single operation of the document, or the one the request named.
    operation: Option<String>,
    kind: Option<&'static str>,
    parse_failed: bool,
    document: Option<ExecutableDocument>,
}

struct RequestMetrics {
    metrics: Arc<Metrics>,
    seen: Mutex<Seen>,
}

fn kind_of(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// The `extensions.code` an error has or will be given by the HTTP layer.
fn error_code(response: &Response, error: &async_graphql::ServerError, parse_failed: bool) -> String {
    if let Some(async_graphql::Value::String(code)) = error.extensions.as_ref().and_then(|ext| ext.get("code")) {
        return code.clone();
    }
    let before_execution = matches!(response.data, async_graphql::Value::Null) && error.path.is_empty();
    match (before_execution, parse_failed) {
        (true, true) => "GRAPHQL_PARSE_FAILED",
        (true, false) => "GRAPHQL_VALIDATION_FAILED",
        _ => "INTERNAL",
    }
    .to_owned()
}

#[async_graphql::async_trait::async_trait]
impl Extension for RequestMetrics {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let seconds = started.elapsed().as_secs_f64();
        let (operation, kind, parse_failed) = match self.seen.lock() {
            Ok(mut seen) => {
                seen.document = None;
                (
                    seen.operation.take().unwrap_or_else(|| "anonymous".into()),
                    seen.kind.unwrap_or("unknown"),
                    seen.parse_failed,
                )
            }
            Err(_) => ("anonymous".into(), "unknown", false),
        };
        let codes: Vec<String> = response
            .errors
            .iter()
            .map(|e| error_code(&response, e, parse_failed))
            .collect();
        self.metrics.graphql_request(&operation, kind, seconds, &codes);
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let parsed = next.run(ctx, query, variables).await;
        if let Ok(mut seen) = self.seen.lock() {
            match &parsed {
                Ok(document) => {
                    let mut operations = document.operations.iter();
                    if let (Some((name, op)), None) = (operations.next(), operations.next()) {
                        seen.operation = name.map(|n| n.to_string());
                        seen.kind = Some(kind_of(op.node.ty));
                    } else {
                        // Several operations: the request names one at execution.
                        seen.document = Some(document.clone());
                    }
                }
                Err(_) => seen.parse_failed = true,
            }
        }
        parsed
    }

    async fn execute(&self, ctx: &ExtensionContext<'_>, operation_name: Option<&str>, next: NextExecute<'_>) -> Response {
        if let (Some(name), Ok(mut seen)) = (operation_name, self.seen.lock()) {
            let kind = seen.document.as_ref().and_then(|doc| {
                doc.operations
                    .iter()
                    .find(|(n, _)| n.is_some_and(|n| n.as_str() == name))
                    .map(|(_, op)| kind_of(op.node.ty))
            });
            if kind.is_some() {
                seen.kind = kind;
            }
            seen.operation = Some(name.to_owned());
        }
        next.run(ctx, operation_name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_beyond_the_cap_share_one_label() {
        let metrics = Metrics::new(5).unwrap();
        for i in 0..MAX_OPERATION_NAMES {
            assert_eq!(metrics.operation_label(&format!("Op{i}")), format!("Op{i}"));
        }
        assert_eq!(metrics.operation_label("OneTooMany"), "other");
        assert_eq!(metrics.operation_label("Op0"), "Op0");
    }

    #[test]
    fn unknown_paths_share_one_route_label() {
        let metrics = Metrics::new(5).unwrap();
        metrics.http_response("/graphql", 200);
        metrics.http_response("/wp-admin/1", 404);
        metrics.http_response("/wp-admin/2", 404);
        let mut out = Vec::new();
        TextEncoder::new().encode(&metrics.registry.gather(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#"agora_http_responses_total{route="/graphql",status="200"} 1"#), "{text}");
        assert!(text.contains(r#"agora_http_responses_total{route="other",status="404"} 2"#), "{text}");
        assert!(!text.contains("wp-admin"), "{text}");
    }
}
