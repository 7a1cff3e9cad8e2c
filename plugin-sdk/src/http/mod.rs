//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! The host only lets a plugin reach the destinations its operator granted; anything
//! else fails with an [`HttpError`] whose [`is_denied`](HttpError::is_denied) is true.
//!
//! ```no_run
//! use zoomhost_sdk::http::{self, Request};
//! use std::time::Duration;
//!
//! # fn demo() -> Result<(), zoomhost_sdk::http::HttpError> {
//! let body = zoomhost_sdk::serde_json::json!({ "text": "meeting started" });
//! let response = http::post_json("https://hooks.example.com/x", &[("x-token", "s3cret")], &body)?;
//! zoomhost_sdk::info!("webhook answered {}", response.status);
//!
//! let response = Request::get("https://api.example.com/v1/status")
//!     .header("accept", "application/json")
//!     .timeout(Duration::from_secs(5))
//!     .send()?;
//! let status: zoomhost_sdk::serde_json::Value = response.json().unwrap_or_default();
//! # let _ = status;
//! # Ok(())
//! # }
//! ```

mod client;
mod error;
mod url;

use std::borrow::Cow;
use std::time::Duration;

use serde::de::DeserializeOwned;

pub use crate::bindings::wasi::http::types::{ErrorCode, HeaderError, Method};
pub use error::HttpError;

/// Transport timeouts, passed to the host as `request-options`. `None` leaves the
/// host's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Time to establish the connection.
    pub connect: Option<Duration>,
    /// Time from sending the request to the first byte of the response.
    pub first_byte: Option<Duration>,
    /// Longest gap between two chunks of the response.
    pub between_bytes: Option<Duration>,
}

impl Timeouts {
    /// The same limit for connect, first byte and between bytes.
    pub fn all(limit: Duration) -> Self {
        Timeouts {
            connect: Some(limit),
            first_byte: Some(limit),
            between_bytes: Some(limit),
        }
    }

    fn is_default(&self) -> bool {
        *self == Timeouts::default()
    }
}

/// An outbound request. Build it with [`Request::new`] (or [`get`](Request::get) /
/// [`post`](Request::post)) and the builder methods, or fill the fields directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// Header names and values, sent in order.
    pub headers: Vec<(String, String)>,
    /// The body; empty for none. A `content-length` header is added for a non-empty
    /// body unless one is given.
    pub body: Vec<u8>,
    /// Transport timeouts.
    pub timeouts: Timeouts,
}

impl Request {
    /// A request with no headers, no body and default timeouts.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeouts: Timeouts::default(),
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Request::new(Method::Get, url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Request::new(Method::Post, url)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and, unless already set, `content-type: application/json`.
    pub fn json(mut self, value: &serde_json::Value) -> Self {
        self.body = value.to_string().into_bytes();
        if !self.has_header("content-type") {
            self = self.header("content-type", "application/json");
        }
        self
    }

    /// Sets the same connect, first-byte and between-bytes timeout.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeouts = Timeouts::all(limit);
        self
    }

    /// Sends the request and reads the whole response, blocking the plugin meanwhile.
    pub fn send(&self) -> Result<Response, HttpError> {
        client::send(self)
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

/// A response, read to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case, as the host gives them) and values (lossily UTF-8).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// `GET`s `url` with extra `headers`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, HttpError> {
    with_headers(Request::get(url), headers).send()
}

/// `POST`s `body` as JSON to `url` with extra `headers`.
pub fn post_json(
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> Result<Response, HttpError> {
    with_headers(Request::post(url), headers).json(body).send()
}

fn with_headers(request: Request, headers: &[(&str, &str)]) -> Request {
    headers.iter().fold(request, |request, (name, value)| {
        request.header(*name, *value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_json_content_type_once() {
        let body = serde_json::json!({"a": 1});
        let req = Request::post("http://h/").json(&body);
        assert_eq!(req.body, br#"{"a":1}"#);
        assert_eq!(
            req.headers,
            vec![("content-type".into(), "application/json".into())]
        );

        let req = Request::post("http://h/")
            .header("Content-Type", "application/cloudevents+json")
            .json(&body);
        assert_eq!(req.headers.len(), 1);
    }

    #[test]
    fn response_helpers() {
        let resp = Response {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"ok":true}"#.to_vec(),
        };
        assert!(resp.is_success());
        assert_eq!(resp.header("Content-Type"), Some("application/json"));
        assert_eq!(resp.text(), r#"{"ok":true}"#);
        assert_eq!(resp.json::<serde_json::Value>().unwrap()["ok"], true);
    }

    #[test]
    fn timeouts() {
        assert!(Timeouts::default().is_default());
        let req = Request::get("http://h/").timeout(Duration::from_secs(2));
        assert_eq!(req.timeouts.between_bytes, Some(Duration::from_secs(2)));
    }
}
