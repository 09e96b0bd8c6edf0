//! The devnet's WebSocket server: rippled's WebSocket API (`{"id", "command", …}`
//! answered with `{"id", "result", "status", "type": "response"}`), plus the
//! `ledger` stream (`subscribe` → a `ledgerClosed` message per close).
//!
//! Each connection pings its client periodically, as rippled does, and Pongs the
//! client's own Pings (tungstenite queues the Pong and sends it on the next read).
//! A client that cannot keep up with the stream skips the oldest messages rather
//! than slowing the ledger down.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value as Json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::commands::{dispatch, RpcError};
use super::{ledger, XrplDevnet, BASE_FEE_DROPS, BASE_RESERVE_DROPS, OWNER_RESERVE_DROPS};

/// Largest message a client may send: requests are small.
const MAX_MESSAGE: usize = 1024 * 1024;
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) async fn serve(
    listener: TcpListener,
    devnet: XrplDevnet,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, devnet.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "XRPL devnet: accepting a WebSocket connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn connection(stream: TcpStream, devnet: XrplDevnet, mut shutdown: watch::Receiver<()>) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let accepted = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_async_with_config(stream, Some(config)),
    )
    .await;
    let Ok(Ok(mut ws)) = accepted else {
        return;
    };
    // Subscribe to the stream before anything is answered, so no ledger closed
    // after a `subscribe` reply can be missed.
    let mut events = devnet.ledger_events();
    let mut kicks = devnet.kicks();
    kicks.mark_unchanged();
    let mut subscribed = false;
    let mut pings = tokio::time::interval(devnet.ws_ping_interval());
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    pings.tick().await;
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let reply = respond(&devnet, text.as_str(), &mut subscribed);
                    if ws.send(Message::text(reply.to_string())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let reply = json!({"error": "jsonInvalid", "error_code": 1,
                        "error_message": "Binary frames are not supported.", "status": "error", "type": "response"});
                    if ws.send(Message::text(reply.to_string())).await.is_err() {
                        return;
                    }
                }
                // Pings are answered by tungstenite; Pongs need nothing.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            },
            event = events.recv() => match event {
                Ok(message) => {
                    if subscribed && ws.send(Message::text(message.to_string())).await.is_err() {
                        return;
                    }
                }
                // This client fell behind: the skipped messages are older than
                // those still buffered, which carry the latest ledger.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = pings.tick() => {
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            // The test hook: drop the TCP connection without a closing handshake.
            _ = kicks.changed() => return,
            _ = shutdown.changed() => {
                let _ = ws.close(None).await;
                return;
            }
        }
    }
}

/// The reply to one text message.
fn respond(devnet: &XrplDevnet, text: &str, subscribed: &mut bool) -> Json {
    let request: Json = match serde_json::from_str(text) {
        Ok(Json::Object(m)) => Json::Object(m),
        _ => {
            return json!({"error": "jsonInvalid", "error_code": 1, "error_message": "Unable to parse request.",
                "status": "error", "type": "response", "value": text});
        }
    };
    let id = request.get("id").cloned();
    let command = request
        .get("command")
        .or_else(|| request.get("method"))
        .and_then(Json::as_str)
        .map(str::to_owned);
    let outcome = match command.as_deref() {
        None => Err(RpcError {
            error: "missingCommand",
            code: 2,
            message: "Missing command entry.".into(),
            exception: None,
        }),
        Some("subscribe") => subscribe(devnet, &request, subscribed),
        Some("unsubscribe") => unsubscribe(&request, subscribed),
        Some(command) => dispatch(devnet, command, &request),
    };
    let mut reply = Map::new();
    if let Some(id) = id {
        reply.insert("id".into(), id);
    }
    match outcome {
        Ok(result) => {
            reply.insert("result".into(), result);
            reply.insert("status".into(), "success".into());
        }
        Err(e) => {
            reply.extend(e.fields());
            reply.insert("request".into(), request);
            reply.insert("status".into(), "error".into());
        }
    }
    reply.insert("type".into(), "response".into());
    Json::Object(reply)
}

fn streams(request: &Json) -> Result<bool, RpcError> {
    if request.get("accounts").is_some() || request.get("books").is_some() {
        return Err(RpcError::not_supported("The devnet streams ledgers only."));
    }
    let Some(streams) = request.get("streams") else {
        return Ok(false);
    };
    let Some(streams) = streams.as_array() else {
        return Err(RpcError::invalid_params("'streams' must be an array."));
    };
    let mut ledger = false;
    for stream in streams {
        match stream.as_str() {
            Some("ledger") => ledger = true,
            _ => {
                return Err(RpcError {
                    error: "malformedStream",
                    code: 39,
                    message: "Stream malformed.".into(),
                    exception: None,
                })
            }
        }
    }
    Ok(ledger)
}

fn subscribe(devnet: &XrplDevnet, request: &Json, subscribed: &mut bool) -> Result<Json, RpcError> {
    if !streams(request)? {
        return Ok(json!({}));
    }
    *subscribed = true;
    let inner = devnet.inner();
    let last = inner.last();
    Ok(json!({
        "fee_base": BASE_FEE_DROPS,
        "fee_ref": BASE_FEE_DROPS,
        "ledger_hash": last.hash,
        "ledger_index": last.index,
        "ledger_time": last.close_time,
        "reserve_base": BASE_RESERVE_DROPS,
        "reserve_inc": OWNER_RESERVE_DROPS,
        "validated_ledgers": ledger::ledger_range(inner.first_index(), last.index),
    }))
}

fn unsubscribe(request: &Json, subscribed: &mut bool) -> Result<Json, RpcError> {
    if streams(request)? {
        *subscribed = false;
    }
    Ok(json!({}))
}
