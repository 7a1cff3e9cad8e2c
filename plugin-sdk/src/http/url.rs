//! Just enough URL parsing to fill an `outgoing-request`: scheme, authority and
//! path-with-query. No percent-decoding, no normalisation; the host validates the rest.

use super::HttpError;
use crate::bindings::wasi::http::types::Scheme;

/// A URL split into the parts `wasi:http` wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub scheme: Scheme,
    pub authority: String,
    pub path_with_query: String,
}

/// Splits `scheme://authority/path?query#fragment`; the fragment is dropped and an
/// empty path becomes `/`.
pub(crate) fn parse(url: &str) -> Result<Url, HttpError> {
    let invalid = |reason: &'static str| HttpError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace or control characters"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("missing `scheme://`"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        "" => return Err(invalid("empty scheme")),
        other if is_scheme(other) => Scheme::Other(other.to_string()),
        _ => return Err(invalid("invalid scheme")),
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() {
        return Err(invalid("missing host"));
    }
    if authority.contains('@') {
        return Err(invalid("user info in URLs is not supported"));
    }
    let path_with_query = match path.chars().next() {
        None => "/".to_string(),
        Some('?') => format!("/{path}"),
        Some(_) => path.to_string(),
    };
    Ok(Url {
        scheme,
        authority: authority.to_string(),
        path_with_query,
    })
}

/// RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> (Scheme, String, String) {
        let u = parse(url).unwrap();
        (u.scheme, u.authority, u.path_with_query)
    }

    #[test]
    fn splits_urls() {
        assert_eq!(
            ok("https://hooks.slack.com/services/T0/B1?x=1#frag"),
            (
                Scheme::Https,
                "hooks.slack.com".into(),
                "/services/T0/B1?x=1".into()
            )
        );
        assert_eq!(
            ok("http://127.0.0.1:9"),
            (Scheme::Http, "127.0.0.1:9".into(), "/".into())
        );
        assert_eq!(
            ok("HTTP://h?q=1"),
            (Scheme::Http, "h".into(), "/?q=1".into())
        );
        assert_eq!(
            ok("http://[::1]:8080/a"),
            (Scheme::Http, "[::1]:8080".into(), "/a".into())
        );
        assert_eq!(
            ok("ws+x://h/"),
            (Scheme::Other("ws+x".into()), "h".into(), "/".into())
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for url in [
            "hooks.slack.com/x",
            "://h/",
            "1x://h/",
            "http:///path",
            "http://user:pw@h/",
            "http://h/a b",
            "",
        ] {
            assert!(
                matches!(parse(url), Err(HttpError::InvalidUrl { .. })),
                "{url:?} parsed"
            );
        }
    }
}
