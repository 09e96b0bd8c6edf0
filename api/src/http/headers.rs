//! Headers on every response: security headers, and CORS for the configured
//! origins only (`http.cors_allowed_origins`). Preflights from other origins
//! get no CORS headers, so browsers refuse the cross-origin call.

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};

/// The origins allowed to call the API from a browser.
#[derive(Debug, Clone, Default)]
pub struct CorsOrigins(pub Arc<Vec<String>>);

impl CorsOrigins {
    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

/// The API answers JSON only: nothing of it may run, be framed or sniffed.
/// GraphiQL sets its own `Content-Security-Policy`, which is kept.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn set_default(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    if !headers.contains_key(&name) {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

fn security_headers(headers: &mut HeaderMap) {
    set_default(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set_default(headers, header::X_FRAME_OPTIONS, "DENY");
    set_default(headers, header::REFERRER_POLICY, "no-referrer");
    set_default(headers, header::CONTENT_SECURITY_POLICY, API_CSP);
    set_default(headers, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    set_default(headers, HeaderName::from_static("permissions-policy"), "camera=(), microphone=(), geolocation=()");
}

fn cors_headers(headers: &mut HeaderMap, origin: &HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// The middleware (see `actix_web::middleware::from_fn`).
pub async fn apply(req: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<BoxBody>, Error> {
    let origins = req.app_data::<actix_web::web::Data<CorsOrigins>>().map(|d| d.get_ref().clone()).unwrap_or_default();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| origins.allows(o));
    let preflight = req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut response = HttpResponse::build(if allowed { StatusCode::NO_CONTENT } else { StatusCode::FORBIDDEN }).finish();
        let headers = response.headers_mut();
        if let (true, Some(origin)) = (allowed, &origin) {
            cors_headers(headers, origin);
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type, accept"),
            );
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
        security_headers(headers);
        return Ok(req.into_response(response));
    }
    let mut response = next.call(req).await?.map_into_boxed_body();
    let headers = response.headers_mut();
    if let (true, Some(origin)) = (allowed, &origin) {
        cors_headers(headers, origin);
    }
    security_headers(headers);
    Ok(response)
}
