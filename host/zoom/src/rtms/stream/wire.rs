//! Sockets and messages: connecting, sending JSON, reading a handshake reply, closing.
//!
//! The RTMS sockets run on `tokio-websockets`: it reads into the spare capacity of its
//! buffer (tokio-util's codec: no zero-fill before a read) and is polled by tokio
//! directly (no waker adapter between an `std::io` socket and the task). On tungstenite
//! (zero-filling its read buffer before every read, waking through a proxy waker) the
//! media read path took about 25% of the host's CPU samples at 500 streams, 15 points of
//! them outside the recv syscall; here about 18.5%, 5.5 outside it. Pings are answered
//! by the crate (the pong goes out with the next read or send); so is a close frame from
//! the server. Connecting resolves, connects TCP and sets up TLS (rustls, the webpki
//! roots) here, then hands the stream to the crate for the upgrade.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_websockets::{
    ClientBuilder, CloseCode, Connector, Limits, MaybeTlsStream, Message, WebSocketStream,
};

use super::super::protocol;
use zoomhost_protocol::rtms::msg;

/// An RTMS socket.
pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The largest message an RTMS socket takes (a video or share frame is tens to hundreds
/// of KiB of base64 JSON); a bigger one ends the connection as a protocol error (close
/// 1009) instead of growing the buffer without bound.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// How long [`close`] waits for the server's close after sending its own.
const CLOSE_DRAIN: Duration = Duration::from_millis(500);

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

/// The TLS connector of every `wss://` RTMS socket: rustls with the webpki roots and the
/// process's crypto provider ([`crate::oauth::ensure_tls_provider`]), built once.
fn tls_connector() -> Result<&'static Connector, String> {
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    if let Some(connector) = CONNECTOR.get() {
        return Ok(connector);
    }
    crate::oauth::ensure_tls_provider();
    let connector =
        Connector::new().map_err(|e| format!("setting up TLS for the RTMS sockets: {e}"))?;
    Ok(CONNECTOR.get_or_init(|| connector))
}

/// Opens the WebSocket at `url` (`ws://` or `wss://`) within `timeout`.
pub(super) async fn connect(url: &str, timeout: Duration) -> Result<Ws, String> {
    match tokio::time::timeout(timeout, open(url)).await {
        Err(_) => Err(format!("connecting to {url}: timed out after {timeout:?}")),
        Ok(Err(e)) => Err(format!("connecting to {url}: {e}")),
        Ok(Ok(ws)) => Ok(ws),
    }
}

async fn open(url: &str) -> Result<Ws, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("not a WebSocket URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("wss") => true,
        Some(scheme) if scheme.eq_ignore_ascii_case("ws") => false,
        _ => return Err("not a ws:// or wss:// URL".into()),
    };
    // IPv6 literals come in brackets, which neither resolving nor TLS takes.
    let host = uri
        .host()
        .ok_or("the URL names no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    // Each address the name resolves to in turn (the crate's own connect tries only the
    // first).
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let connector = if tls {
        tls_connector()?
    } else {
        &Connector::Plain
    };
    let stream = connector
        .wrap(&host, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (ws, _) = ClientBuilder::from_uri(uri)
        .limits(Limits::default().max_payload_len(Some(MAX_MESSAGE)))
        .connect_on(stream)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
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

/// Sends `message` as JSON in a text frame, or a binary one when `binary`.
pub(super) async fn send(ws: &mut Ws, message: &Value, binary: bool) -> Result<(), String> {
    let text = message.to_string();
    let frame = if binary {
        Message::binary(text.into_bytes())
    } else {
        Message::text(text)
    };
    ws.send(frame).await.map_err(|e| e.to_string())
}

/// Sends close 1000 (without waiting for the server's).
pub(super) async fn send_close(ws: &mut Ws) -> Result<(), String> {
    ws.send(Message::close(Some(CloseCode::NORMAL_CLOSURE), ""))
        .await
        .map_err(|e| e.to_string())
}

/// Sends close 1000 and waits briefly for the server's close.
pub(super) async fn close(ws: &mut Ws) {
    if send_close(ws).await.is_err() {
        return;
    }
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout(CLOSE_DRAIN, drain).await;
}

/// What a WebSocket message carries for the RTMS client.
pub(super) enum Frame<'a> {
    /// JSON, from a text or a binary frame.
    Data(&'a [u8]),
    /// The peer's close frame (`None`: without a code).
    Close(Option<Closing<'a>>),
    /// Ping, pong.
    Other,
}

/// The code and reason of a close frame.
pub(super) struct Closing<'a> {
    pub code: u16,
    pub reason: &'a str,
}

pub(super) fn frame(message: &Message) -> Frame<'_> {
    if message.is_text() || message.is_binary() {
        return Frame::Data(message.as_payload());
    }
    match message.as_close() {
        // A close frame without a body reads as 1005 ("no status received").
        Some((code, _)) if code == CloseCode::NO_STATUS_RECEIVED => Frame::Close(None),
        Some((code, reason)) => Frame::Close(Some(Closing {
            code: code.into(),
            reason,
        })),
        None => Frame::Other,
    }
}

/// A JSON value as text: a string as it is (borrowed), any other value as its JSON.
pub(super) fn value_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        other => Cow::Owned(other.to_string()),
    }
}

pub(super) fn close_text(frame: Option<Closing<'_>>) -> String {
    match frame {
        Some(f) if f.reason.is_empty() => format!(" (close {})", f.code),
        Some(f) => format!(" (close {}: {})", f.code, f.reason),
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
                reason: incoming.reason.as_ref().map(|r| value_text(r).into_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_frames_carry_their_bytes_text_or_binary() {
        for message in [
            Message::text("{\"a\":1}"),
            Message::binary(&b"{\"a\":1}"[..]),
        ] {
            match frame(&message) {
                Frame::Data(bytes) => assert_eq!(bytes, b"{\"a\":1}"),
                _ => panic!("not data"),
            }
        }
        assert!(matches!(frame(&Message::ping(&b"x"[..])), Frame::Other));
    }

    #[test]
    fn close_frames_read_with_code_and_reason() {
        let away = Message::close(Some(CloseCode::GOING_AWAY), "bye");
        let Frame::Close(closing) = frame(&away) else {
            panic!("not a close")
        };
        assert_eq!(close_text(closing), " (close 1001: bye)");
        let normal = Message::close(Some(CloseCode::NORMAL_CLOSURE), "");
        let Frame::Close(closing) = frame(&normal) else {
            panic!("not a close")
        };
        assert_eq!(close_text(closing), " (close 1000)");
        let bare = Message::close(None, "");
        let Frame::Close(closing) = frame(&bare) else {
            panic!("not a close")
        };
        assert_eq!(close_text(closing), "");
    }

    #[tokio::test]
    async fn only_websocket_urls_are_connected() {
        let e = connect("https://127.0.0.1:1/x", Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert!(e.contains("not a ws:// or wss:// URL"), "{e}");
        assert!(e.contains("https://127.0.0.1:1/x"), "{e}");
    }

    #[test]
    fn the_tls_connector_builds_once() {
        let first = tls_connector().expect("TLS connector");
        let again = tls_connector().expect("TLS connector");
        assert!(std::ptr::eq(first, again));
    }
}
