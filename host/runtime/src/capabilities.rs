//! Capabilities the operator grants a plugin: outbound HTTP origins.
//!
//! A pattern is `scheme://host[:port]`. `host` may use `*` wildcards (`*.slack.com`,
//! `*`), `port` may be `*`; without a port only the scheme's default port matches.
//! A plugin with no patterns has no network at all.

use std::fmt;

use wildmatch::WildMatch;

/// One granted origin pattern.
#[derive(Debug, Clone)]
pub struct HostPattern {
    text: String,
    scheme: String,
    host: WildMatch,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq)]
enum PortPattern {
    Default,
    Any,
    Exact(u16),
}

impl PartialEq for HostPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl HostPattern {
    /// Parses `scheme://host[:port]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?} is not of the form scheme://host[:port]"))?;
        let scheme = scheme.to_ascii_lowercase();
        if default_port(&scheme).is_none() {
            return Err(format!("{text:?}: scheme must be http or https"));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') {
            return Err(format!("{text:?}: give an origin only, without a path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, "*")) => (h, PortPattern::Any),
            Some((h, p)) => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{text:?}: port {p:?} is not a number or *"))?;
                (h, PortPattern::Exact(port))
            }
            None => (rest, PortPattern::Default),
        };
        if host.is_empty() {
            return Err(format!("{text:?}: host is empty"));
        }
        Ok(Self {
            text: text.to_string(),
            scheme,
            host: WildMatch::new(&host.to_ascii_lowercase()),
            port,
        })
    }

    /// Whether a request to `scheme://host:port` is allowed by this pattern.
    pub fn matches(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme = scheme.to_ascii_lowercase();
        if scheme != self.scheme {
            return false;
        }
        let Some(port) = port.or_else(|| default_port(&scheme)) else {
            return false;
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(p) => p == port,
            PortPattern::Default => default_port(&scheme) == Some(port),
        };
        port_ok && self.host.matches(&host.to_ascii_lowercase())
    }
}

/// Whether any of `patterns` allows `uri`.
pub fn http_allowed(patterns: &[HostPattern], uri: &http::Uri) -> bool {
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return false;
    };
    patterns
        .iter()
        .any(|p| p.matches(scheme, host, uri.port_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str], uri: &str) -> bool {
        let ps: Vec<_> = patterns
            .iter()
            .map(|p| HostPattern::parse(p).unwrap())
            .collect();
        http_allowed(&ps, &uri.parse().unwrap())
    }

    #[test]
    fn matches_scheme_host_and_port() {
        assert!(allowed(
            &["https://hooks.slack.com"],
            "https://hooks.slack.com/x"
        ));
        assert!(!allowed(
            &["https://hooks.slack.com"],
            "http://hooks.slack.com/x"
        ));
        assert!(!allowed(
            &["https://hooks.slack.com"],
            "https://hooks.slack.com:8443/x"
        ));
        assert!(allowed(
            &["https://*.slack.com"],
            "https://hooks.slack.com/"
        ));
        assert!(!allowed(
            &["https://*.slack.com"],
            "https://slack.com.evil.io/"
        ));
        assert!(allowed(&["http://127.0.0.1:*"], "http://127.0.0.1:5555/"));
        assert!(allowed(
            &["http://127.0.0.1:5555"],
            "http://127.0.0.1:5555/"
        ));
        assert!(!allowed(
            &["http://127.0.0.1:5555"],
            "http://127.0.0.1:5556/"
        ));
        assert!(!allowed(&[], "http://127.0.0.1:5556/"));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(HostPattern::parse("hooks.slack.com").is_err());
        assert!(HostPattern::parse("ftp://x").is_err());
        assert!(HostPattern::parse("https://x/path").is_err());
        assert!(HostPattern::parse("https://x:port").is_err());
    }
}
