//! GraphQL over HTTP (https://graphql.github.io/graphql-over-http/):
//!
//! - `POST /graphql` with `Content-Type: application/json`, else 415;
//! - the response type is negotiated on `Accept`: `application/graphql-response+json`
//!   (the spec's type; 400 for requests that fail to parse or validate) or
//!   `application/json` (the legacy type; 200 with `errors`, as the spec requires
//!   for it); a missing `Accept` or a wildcard (`*/*`, `application/*`) means
//!   `application/json`; neither acceptable → 406;
//! - bodies above `server.body_limit_bytes` get 413;
//! - `GET /graphql?query=…` runs queries (never mutations: 405); a browser's
//!   `GET /graphql` gets GraphiQL.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use async_graphql::parser::types::OperationType;
use async_graphql::{Request, Response, Value};
use serde::Deserialize;

use crate::graphql::context::{AppState, RequestAuth};
use crate::graphql::{guard, AgoraSchema};
use crate::http::socket::{SocketExecutor, SocketSession};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaType {
    GraphqlResponse,
    Json,
}

impl MediaType {
    fn content_type(self) -> &'static str {
        match self {
            MediaType::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            MediaType::Json => "application/json; charset=utf-8",
        }
    }
}

/// Picks the response type from `Accept`, honouring q-values; `None` → 406.
fn negotiate(req: &HttpRequest) -> Option<MediaType> {
    let Some(accept) = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(MediaType::Json);
    };
    let mut best: Option<(f32, u8, MediaType)> = None;
    for part in accept.split(',') {
        let mut params = part.split(';');
        let media = params.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        // Exact matches beat wildcards at the same q; the spec's type wins ties.
        // A wildcard means a client that names no GraphQL type, so it gets the
        // legacy `application/json` (spec §6.4.1, as for a missing `Accept`).
        let candidate = match media.as_str() {
            GRAPHQL_RESPONSE => Some((3, MediaType::GraphqlResponse)),
            JSON => Some((2, MediaType::Json)),
            "application/*" | "*/*" => Some((1, MediaType::Json)),
            _ => None,
        };
        if let Some((rank, media)) = candidate {
            if best.is_none_or(|(bq, br, _)| q > bq || (q == bq && rank > br)) {
                best = Some((q, rank, media));
            }
        }
    }
    best.map(|(_, _, m)| m)
}

fn bearer(req: &HttpRequest, state: &AppState) -> RequestAuth {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    RequestAuth::new(token.map(|t| state.jwt.verify(t.trim())))
}

/// An error response for a request that never reached execution.
fn request_error(status: StatusCode, media: MediaType, code: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, media.content_type()))
        .body(body.to_string())
}

/// Whether a response is a request error (the document did not parse or
/// validate, or variables did not coerce): no data and only path-less errors.
fn is_request_error(response: &Response) -> bool {
    !response.errors.is_empty()
        && matches!(response.data, Value::Null)
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// Whether async-graphql raised `message` while coercing an input value
/// (the prefixes of its `InputValueError`s).
fn is_input_coercion_error(message: &str) -> bool {
    ["Failed to parse \"", "Invalid value for argument", "Expected input type \""]
        .iter()
        .any(|prefix| message.starts_with(prefix))
}

/// Gives every error a stable `extensions.code` (over HTTP and on the
/// WebSocket alike: async-graphql's own parse and validation errors have none).
pub(crate) fn label_errors(response: &mut Response, query: &str) {
    let request_error = is_request_error(response);
    let parse_failed = request_error && async_graphql::parser::parse_query(query).is_err();
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|ext| ext.get("code").is_some());
        if has_code {
            continue;
        }
        let code = if parse_failed {
            "GRAPHQL_PARSE_FAILED"
        } else if request_error {
            "GRAPHQL_VALIDATION_FAILED"
        } else if is_input_coercion_error(&error.message) {
            // An argument that does not fit its type (an Int beyond 32 bits,
            // a negative where only positives go): the client's input.
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("reason", "INVALID_VALUE");
            "BAD_USER_INPUT"
        } else {
            // An error raised outside our resolvers (e.g. by async-graphql itself).
            tracing::error!(error.message = %error.message, "unlabelled GraphQL error");
            "INTERNAL"
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

async fn execute(
    schema: &AgoraSchema,
    state: &Arc<AppState>,
    req: &HttpRequest,
    media: MediaType,
    request: Request,
) -> HttpResponse {
    let query = request.query.clone();
    let mut request = request.data(bearer(req, state));
    if let Some(client) = state.trusted_proxies.client(req) {
        request = request.data(client);
    }
    let mut response = match guard::check_cached(&mut request, state.document_limits, &state.documents) {
        Ok(()) => schema.execute(request).await,
        Err(refusal) => Response::from_errors(vec![refusal.into_server_error()]),
    };
    label_errors(&mut response, &query);
    let failed_before_execution = is_request_error(&response);
    let status = if media == MediaType::GraphqlResponse && failed_before_execution {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    // A request that never executed has no `data` entry at all (spec §7.1.2).
    let serialized = if failed_before_execution {
        serde_json::to_string(&serde_json::json!({ "errors": response.errors }))
    } else {
        serde_json::to_string(&response)
    };
    let body = match serialized {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error.cause = %e, "cannot serialise a GraphQL response");
            return request_error(StatusCode::INTERNAL_SERVER_ERROR, media, "INTERNAL", "internal error");
        }
    };
    let mut http = HttpResponse::build(status);
    http.insert_header((header::CONTENT_TYPE, media.content_type()));
    if let Some(cache) = response.cache_control.value() {
        if let Ok(v) = HeaderValue::from_str(&cache) {
            http.insert_header((header::CACHE_CONTROL, v));
        }
    }
    http.body(body)
}

/// The body limit, set from `server.body_limit_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Reads the body up to `limit` bytes; `None` when it is larger.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Option<web::BytesMut>, actix_web::Error> {
    use futures_util::StreamExt;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

pub async fn post(
    req: HttpRequest,
    payload: web::Payload,
    schema: web::Data<AgoraSchema>,
    state: web::Data<Arc<AppState>>,
    limit: web::Data<BodyLimit>,
) -> HttpResponse {
    let Some(media) = negotiate(&req) else {
        return HttpResponse::NotAcceptable()
            .content_type("text/plain; charset=utf-8")
            .body("accept application/graphql-response+json or application/json");
    };
    let too_large = || {
        request_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            media,
            "BAD_REQUEST",
            &format!("the request body is larger than {} bytes", limit.0),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit.0) {
        return too_large();
    }
    let body = match read_body(payload, limit.0).await {
        Ok(Some(body)) => body,
        Ok(None) => return too_large(),
        Err(_) => return request_error(StatusCode::BAD_REQUEST, media, "BAD_REQUEST", "the request body could not be read"),
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !content_type.starts_with(JSON) {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            "BAD_REQUEST",
            "send the request as application/json",
        );
    }
    // serde would also read a request struct from a JSON array; a GraphQL
    // request is an object, so anything else is refused first.
    // A request without a `query` string is invalid whatever the media type
    // (spec: "MAY use 400 status code if parameters are invalid").
    let parsed = serde_json::from_slice::<serde_json::Value>(&body).and_then(|value| {
        if !value.is_object() {
            Err(serde::de::Error::custom("expected a JSON object"))
        } else if !value.get("query").is_some_and(serde_json::Value::is_string) {
            Err(serde::de::Error::custom("`query` must be a string"))
        } else {
            serde_json::from_value::<Request>(value)
        }
    });
    let request: Request = match parsed {
        Ok(request) => request,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                "BAD_REQUEST",
                &format!("the body is not a GraphQL request: {e}"),
            )
        }
    };
    execute(&schema, &state, &req, media, request).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
}

fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

pub async fn get(
    req: HttpRequest,
    params: web::Query<GetParams>,
    schema: web::Data<AgoraSchema>,
    state: web::Data<Arc<AppState>>,
) -> HttpResponse {
    let params = params.into_inner();
    let Some(query) = params.query.filter(|_| !wants_html(&req)) else {
        if state.graphiql {
            return graphiql();
        }
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("GraphiQL is disabled here; POST GraphQL requests to /graphql");
    };
    let Some(media) = negotiate(&req) else {
        return HttpResponse::NotAcceptable().finish();
    };
    // Mutations over GET would let a link change state.
    if let Ok(doc) = async_graphql::parser::parse_query(&query) {
        let is_mutation = doc.operations.iter().any(|(name, op)| {
            let selected = match (&params.operation_name, name) {
                (Some(wanted), Some(name)) => wanted.as_str() == name.as_str(),
                (Some(_), None) => false,
                (None, _) => true,
            };
            selected && op.node.ty != OperationType::Query
        });
        if is_mutation {
            return HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, Method::POST.as_str()))
                .insert_header((header::CONTENT_TYPE, media.content_type()))
                .body(
                    serde_json::json!({"errors": [{"message": "mutations must be sent with POST", "extensions": {"code": "BAD_REQUEST"}}]})
                        .to_string(),
                );
        }
    }
    let mut request = Request::new(query);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(vars) = params.variables {
        match serde_json::from_str(&vars) {
            Ok(vars) => request = request.variables(vars),
            Err(_) => {
                return request_error(StatusCode::BAD_REQUEST, media, "BAD_REQUEST", "variables must be a JSON object")
            }
        }
    }
    execute(&schema, &state, &req, media, request).await
}

/// `GET /graphql/ws`: subscriptions over WebSocket (graphql-transport-ws, and
/// the older graphql-ws). Authenticate in `connection_init`:
/// `{"Authorization": "Bearer <accessToken>"}`; renew the token before it
/// expires with a `ping` carrying the same payload (see `socket`).
pub async fn subscriptions(
    req: HttpRequest,
    payload: web::Payload,
    schema: web::Data<AgoraSchema>,
    state: web::Data<Arc<AppState>>,
) -> actix_web::Result<HttpResponse> {
    let app = state.get_ref().clone();
    let session = Arc::new(SocketSession::default());
    let executor = SocketExecutor {
        schema: AgoraSchema::clone(&schema),
        app: app.clone(),
        session: session.clone(),
    };
    let client = app.trusted_proxies.client(&req);
    let (init_app, init_session) = (app.clone(), session.clone());
    let (ping_app, ping_session) = (app, session);
    async_graphql_actix_web::GraphQLSubscription::new(executor)
        .on_connection_init(move |value| async move {
            init_session.start(socket_token(&value).map(|t| init_app.jwt.verify(t)));
            let mut data = async_graphql::Data::default();
            if let Some(client) = client {
                data.insert(client);
            }
            Ok(data)
        })
        .on_ping(move |_, payload| async move {
            let Some(token) = payload.as_ref().and_then(socket_token) else {
                return Ok(None);
            };
            let claims = ping_app
                .jwt
                .verify(token)
                .map_err(|e| async_graphql::Error::new(e.to_string()))?;
            ping_session.renew(claims).map_err(async_graphql::Error::new)?;
            Ok(None)
        })
        .start(&req, payload)
}

/// The bearer token of a `connection_init` or `ping` payload.
fn socket_token(value: &serde_json::Value) -> Option<&str> {
    value
        .get("Authorization")
        .or_else(|| value.get("authorization"))
        .and_then(|v| v.as_str())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// Any other method on `/graphql`.
pub async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "GET, POST"))
        .finish()
}

/// The page with its own policy: only its pinned, integrity-checked assets run.
fn graphiql() -> HttpResponse {
    let page = super::graphiql::page();
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, page.csp.as_str()))
        .body(page.html.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn accept(value: &str) -> Option<MediaType> {
        negotiate(&TestRequest::default().insert_header((header::ACCEPT, value)).to_http_request())
    }

    #[test]
    fn negotiation_follows_the_spec() {
        assert_eq!(negotiate(&TestRequest::default().to_http_request()), Some(MediaType::Json));
        assert_eq!(accept(GRAPHQL_RESPONSE), Some(MediaType::GraphqlResponse));
        assert_eq!(accept("application/json"), Some(MediaType::Json));
        assert_eq!(
            accept("application/json, application/graphql-response+json"),
            Some(MediaType::GraphqlResponse)
        );
        assert_eq!(
            accept("application/graphql-response+json;q=0.5, application/json"),
            Some(MediaType::Json)
        );
        assert_eq!(accept("*/*"), Some(MediaType::Json));
        assert_eq!(accept("application/*"), Some(MediaType::Json));
        assert_eq!(accept("*/*, application/graphql-response+json"), Some(MediaType::GraphqlResponse));
        assert_eq!(accept("application/graphql-response+json;q=0.1, */*"), Some(MediaType::Json));
        assert_eq!(accept("text/html"), None);
        assert_eq!(accept("application/json;q=0"), None);
    }
}
