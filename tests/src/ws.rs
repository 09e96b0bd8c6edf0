//! A minimal graphql-transport-ws client for tests.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::TestApp;

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a test waits for a message the server owes it before failing.
/// Not a timed assertion: the message is due at once; this only stops a hung test.
const OWED: Duration = Duration::from_secs(15);

/// Opens `/graphql/ws` and completes `connection_init` (with a bearer token when given).
pub async fn connect(app: &TestApp, token: Option<&str>) -> Socket {
    let url = format!("{}/graphql/ws", app.address.replace("http://", "ws://"));
    let mut request = url.into_client_request().expect("ws request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("ws connects");
    let payload = token.map_or(json!({}), |t| json!({"Authorization": format!("Bearer {t}")}));
    send(&mut socket, json!({"type": "connection_init", "payload": payload})).await;
    let ack = next(&mut socket).await.expect("connection_ack");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    socket
}

pub async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::Text(message.to_string().into())).await.expect("ws send");
}

/// Sends `subscribe` with `id`.
pub async fn subscribe(socket: &mut Socket, id: &str, query: &str, variables: Value) {
    send(socket, json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}})).await;
}

/// The next protocol message, pings answered and pongs skipped; `Err` when
/// the server closed the socket (with the close frame) or sent something
/// that is not JSON.
pub async fn next(socket: &mut Socket) -> Result<Value, String> {
    loop {
        let message = tokio::time::timeout(OWED, socket.next())
            .await
            .map_err(|_| "no message from the server".to_owned())?;
        match message {
            None => return Err("the socket ended".into()),
            Some(Err(e)) => return Err(format!("socket error: {e}")),
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))?;
                match value["type"].as_str() {
                    Some("ping") => send(socket, json!({"type": "pong"})).await,
                    Some("pong") => {}
                    _ => return Ok(value),
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("closed: {frame:?}"));
            }
            Some(Ok(_)) => {}
        }
    }
}
