//! Sockets and messages: connecting, sending JSON, reading a handshake reply, closing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::super::protocol;
use zoomhost_protocol::rtms::msg;

/// An RTMS socket.
pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer of every RTMS socket (bigger messages are still read, in more steps).
/// tungstenite zero-fills this much before every read, including the read that finds
/// the socket drained, so it costs twice per message: 4 KiB holds an audio message
/// (about 1.2 KiB for 20 ms of 16 kHz mono, 5 KiB for 48 kHz stereo in two reads).
const READ_BUFFER: usize = 4 * 1024;

/// Sequence numbers of handshakes: new for every attempt.
pub(super) fn next_sequence() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let base = rand::random::<u32>() as u64;
    base.wrapping_add(SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Milliseconds since the epoch (Zoom's timestamps).
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(super) async fn connect(url: &str, timeout: Duration) -> Result<Ws, String> {
    crate::oauth::ensure_tls_provider();
    // tungstenite zero-fills its whole read buffer (128 KiB by default) before every
    // read; RTMS messages are a few KiB at most (48 kHz stereo: about 5 KiB), and at
    // real-time rates the default buffer costs more CPU than everything else together
    // (see READ_BUFFER).
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(config), false);
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(format!("connecting to {url}: timed out after {timeout:?}")),
        Ok(Err(e)) => Err(format!("connecting to {url}: {e}")),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

/// Tries each signaling URL in turn.
pub(super) async fn connect_any(
    urls: &[String],
    timeout: Duration,
) -> Result<(Ws, String), String> {
    let mut errors = Vec::new();
    for url in urls {
        match connect(url, timeout).await {
            Ok(ws) => return Ok((ws, url.clone())),
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("; "))
}

pub(super) async fn send(ws: &mut Ws, message: &Value, binary: bool) -> Result<(), String> {
    let text = message.to_string();
    let frame = if binary {
        Message::binary(text.into_bytes())
    } else {
        Message::text(text)
    };
    ws.send(frame).await.map_err(|e| e.to_string())
}

/// Sends close 1000 and waits briefly for the server's close.
pub(super) async fn close(ws: &mut Ws) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    if ws.close(Some(frame)).await.is_err() {
        return;
    }
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

/// What a WebSocket message carries for the RTMS client.
pub(super) enum Frame<'a> {
    /// JSON, from a text or a binary frame.
    Data(&'a [u8]),
    /// The peer's close frame.
    Close(Option<&'a CloseFrame>),
    /// Ping, pong, raw frames.
    Other,
}

pub(super) fn frame(message: &Message) -> Frame<'_> {
    match message {
        Message::Text(t) => Frame::Data(t.as_bytes()),
        Message::Binary(b) => Frame::Data(&b[..]),
        Message::Close(f) => Frame::Close(f.as_ref()),
        _ => Frame::Other,
    }
}

pub(super) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn close_text(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) if f.reason.is_empty() => format!(" (close {})", u16::from(f.code)),
        Some(f) => format!(" (close {}: {})", u16::from(f.code), f.reason),
        None => String::new(),
    }
}

/// The handshake reply fields the client reads, owned.
pub(super) struct Reply {
    pub status_code: Option<i64>,
    pub reason: Option<String>,
    pub media_server: Option<Value>,
    pub media_params: Option<Value>,
}

/// Why no reply came.
pub(super) enum NoReply {
    /// The connection failed or timed out: worth another attempt.
    Lost(String),
    /// The server closed the socket or answered nonsense.
    Refused(String),
}

/// Reads until the message `want` arrives (within `limit`), answering keep-alives
/// meanwhile.
pub(super) async fn await_reply(
    ws: &mut Ws,
    want: u32,
    limit: Duration,
    binary: bool,
) -> Result<Reply, NoReply> {
    let deadline = Instant::now() + limit;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next()).await;
        let message = match next {
            Err(_) => return Err(NoReply::Lost(format!("no reply (msg_type {want}) in time"))),
            Ok(None) => {
                return Err(NoReply::Lost(
                    "connection closed during the handshake".into(),
                ))
            }
            Ok(Some(Err(e))) => return Err(NoReply::Lost(format!("during the handshake: {e}"))),
            Ok(Some(Ok(m))) => m,
        };
        let bytes = match frame(&message) {
            Frame::Data(bytes) => bytes,
            Frame::Close(f) => {
                return Err(NoReply::Refused(format!(
                    "the server closed the socket during the handshake{}",
                    close_text(f)
                )))
            }
            Frame::Other => continue,
        };
        let incoming = protocol::parse(bytes).map_err(NoReply::Refused)?;
        if incoming.msg_type == msg::KEEP_ALIVE_REQ {
            let reply = protocol::keep_alive_response(&incoming);
            send(ws, &reply, binary).await.map_err(NoReply::Lost)?;
            continue;
        }
        if incoming.msg_type == want {
            return Ok(Reply {
                status_code: incoming.status_code,
                reason: incoming.reason.as_ref().map(value_text),
                media_server: incoming.media_server,
                media_params: incoming.media_params,
            });
        }
        tracing::debug!(
            msg_type = incoming.msg_type,
            "RTMS message before the handshake reply; ignored"
        );
    }
}
