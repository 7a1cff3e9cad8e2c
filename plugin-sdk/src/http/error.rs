//! [`HttpError`]: everything that can go wrong with an outbound request.

use std::fmt;

use crate::bindings::wasi::http::types::{ErrorCode, HeaderError};

/// Why an outbound request failed.
///
/// Errors reported by the host keep their `wasi:http` [`ErrorCode`]; in particular
/// [`ErrorCode::HttpRequestDenied`] means the operator's config does not grant this
/// plugin the destination (see [`HttpError::is_denied`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL could not be split into scheme, host and path.
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host rejected a header name or value.
    InvalidHeader {
        /// The header's name.
        name: String,
        /// The host's reason.
        error: HeaderError,
    },
    /// The host rejected part of the request (method, scheme, authority, path or a
    /// timeout) without an error code.
    Rejected(&'static str),
    /// The host or the network failed the request, with the `wasi:http` error code.
    Code(ErrorCode),
    /// A body stream failed without an HTTP error code.
    Stream(String),
}

impl HttpError {
    /// The `wasi:http` error code, when the failure came with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            HttpError::Code(code) => Some(code),
            _ => None,
        }
    }

    /// Whether the host refused the request because this plugin is not granted the
    /// destination (`HTTP-request-denied`).
    pub fn is_denied(&self) -> bool {
        matches!(self, HttpError::Code(ErrorCode::HttpRequestDenied))
    }

    /// Whether a connect, first-byte or between-bytes timeout (or a DNS timeout) hit.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            HttpError::Code(
                ErrorCode::DnsTimeout
                    | ErrorCode::ConnectionTimeout
                    | ErrorCode::ConnectionReadTimeout
                    | ErrorCode::ConnectionWriteTimeout
                    | ErrorCode::HttpResponseTimeout
            )
        )
    }
}

impl From<ErrorCode> for HttpError {
    fn from(code: ErrorCode) -> Self {
        HttpError::Code(code)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::InvalidUrl { url, reason } => write!(f, "invalid URL `{url}`: {reason}"),
            HttpError::InvalidHeader { name, error } => {
                let why = match error {
                    HeaderError::InvalidSyntax => "invalid syntax",
                    HeaderError::Forbidden => "forbidden",
                    HeaderError::Immutable => "headers are immutable",
                };
                write!(f, "header `{name}` rejected: {why}")
            }
            HttpError::Rejected(what) => write!(f, "request rejected: invalid {what}"),
            HttpError::Code(code) => describe(code, f),
            HttpError::Stream(message) => write!(f, "body stream failed: {message}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// A sentence for the codes a plugin author is likely to meet, the WIT case otherwise.
fn describe(code: &ErrorCode, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let text = match code {
        ErrorCode::HttpRequestDenied => {
            "request denied: the host config does not grant this plugin that destination"
        }
        ErrorCode::DnsTimeout => "DNS lookup timed out",
        ErrorCode::DnsError(payload) => {
            let rcode = payload.rcode.as_deref().unwrap_or("unknown");
            return write!(f, "DNS lookup failed ({rcode})");
        }
        ErrorCode::DestinationNotFound => "destination not found",
        ErrorCode::DestinationUnavailable => "destination unavailable",
        ErrorCode::DestinationIpProhibited => "destination IP address prohibited",
        ErrorCode::DestinationIpUnroutable => "destination IP address unroutable",
        ErrorCode::ConnectionRefused => "connection refused",
        ErrorCode::ConnectionTerminated => "connection terminated",
        ErrorCode::ConnectionTimeout => "connect timed out",
        ErrorCode::ConnectionReadTimeout => "read timed out",
        ErrorCode::ConnectionWriteTimeout => "write timed out",
        ErrorCode::HttpResponseTimeout => "timed out waiting for the response",
        ErrorCode::TlsProtocolError => "TLS protocol error",
        ErrorCode::TlsCertificateError => "TLS certificate error",
        ErrorCode::HttpRequestUriInvalid => "invalid request URI",
        ErrorCode::HttpResponseIncomplete => "incomplete response",
        ErrorCode::HttpProtocolError => "HTTP protocol error",
        ErrorCode::InternalError(Some(message)) => {
            return write!(f, "HTTP request failed: {message}");
        }
        other => return write!(f, "HTTP request failed: {other:?}"),
    };
    f.write_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_is_recognised_and_readable() {
        let err = HttpError::from(ErrorCode::HttpRequestDenied);
        assert!(err.is_denied());
        assert!(!err.is_timeout());
        assert_eq!(err.code(), Some(&ErrorCode::HttpRequestDenied));
        assert!(err.to_string().starts_with("request denied"));

        let err = HttpError::Code(ErrorCode::ConnectionRefused);
        assert!(!err.is_denied());
        assert_eq!(err.to_string(), "connection refused");
        assert_eq!(
            HttpError::Code(ErrorCode::InternalError(Some("boom".into()))).to_string(),
            "HTTP request failed: boom"
        );
    }
}
