//! The devnet's JSON-RPC server: rippled's HTTP API, `POST /` with
//! `{"method": …, "params": [{…}]}`, answered with `{"result": {…, "status": …}}`
//! (HTTP 200 for API errors too, as rippled does).

use std::net::SocketAddr;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{Map, Value as Json};

use super::commands::{dispatch, RpcError};
use super::XrplDevnet;

/// Largest request body accepted (rippled's limit is far larger; the devnet's
/// requests are small, a signed blob being the biggest).
const MAX_BODY: usize = 1024 * 1024;

pub(crate) struct RpcServer {
    pub addr: SocketAddr,
    pub handle: actix_web::dev::ServerHandle,
}

/// Binds and starts the server on the current Tokio runtime.
pub(crate) fn serve(bind: &str, devnet: XrplDevnet) -> std::io::Result<RpcServer> {
    let listener = std::net::TcpListener::bind(bind)?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(devnet.clone()))
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .route("/", web::post().to(handle))
    })
    .workers(1)
    // The host process owns signal handling (the API server, the CLI).
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "the XRPL devnet's JSON-RPC server stopped");
        }
    });
    Ok(RpcServer { addr, handle })
}

async fn handle(devnet: web::Data<XrplDevnet>, body: web::Bytes) -> HttpResponse {
    let request: Json = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return HttpResponse::BadRequest()
                .content_type("text/plain")
                .body(format!("Unable to parse request: {e}"))
        }
    };
    let response = answer(&devnet, &request);
    HttpResponse::Ok().json(response)
}

/// The JSON-RPC answer to one request.
pub(crate) fn answer(devnet: &XrplDevnet, request: &Json) -> Json {
    let Some(method) = request.get("method").and_then(Json::as_str) else {
        return error_result(
            &RpcError::invalid_params("Missing field 'method'."),
            &Json::Null,
        );
    };
    let params = match request.get("params") {
        None | Some(Json::Null) => Json::Object(Map::new()),
        Some(Json::Array(list)) => match list.first() {
            None => Json::Object(Map::new()),
            Some(p @ Json::Object(_)) => p.clone(),
            Some(_) => {
                return error_result(
                    &RpcError::invalid_params("params must be an array holding one object."),
                    &Json::Null,
                )
            }
        },
        Some(_) => {
            return error_result(
                &RpcError::invalid_params("params must be an array holding one object."),
                &Json::Null,
            )
        }
    };
    match dispatch(devnet, method, &params) {
        Ok(mut result) => {
            if let Some(m) = result.as_object_mut() {
                m.insert("status".into(), "success".into());
            }
            serde_json::json!({ "result": result })
        }
        Err(e) => {
            let mut request_echo = params.clone();
            if let Some(m) = request_echo.as_object_mut() {
                m.insert("command".into(), method.into());
            }
            error_result(&e, &request_echo)
        }
    }
}

fn error_result(e: &RpcError, request: &Json) -> Json {
    let mut m = e.fields();
    m.insert("request".into(), request.clone());
    m.insert("status".into(), "error".into());
    serde_json::json!({ "result": m })
}
