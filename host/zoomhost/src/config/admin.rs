//! The `[admin]` section: the admin HTTP listener (metrics, health, readiness, the
//! `/v1` API; see [`crate::admin`]).
//!
//! ```toml
//! [admin]
//! bind = "127.0.0.1:9464"          # default; "" or enabled = false turns it off
//! # token = "${ZOOMHOST_ADMIN_TOKEN}"  # bearer token; required when bind is not loopback
//! ```
//!
//! Without the section `zoomhost run` serves the admin API on [`DEFAULT_BIND`]
//! (loopback). Bound to any other address, every request must carry
//! `Authorization: Bearer <token>`: a config without a token is rejected at load. The
//! token is a [`Secret`]: never printed by `Debug`, never logged. `ZOOMHOST_ADMIN_BIND`
//! and `ZOOMHOST_ADMIN_TOKEN` fill in what the file does not set.

use std::net::SocketAddr;

use serde::Deserialize;

use super::Secret;

/// Where the admin API listens by default: loopback only.
pub const DEFAULT_BIND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// The raw `[admin]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAdmin {
    enabled: Option<bool>,
    bind: Option<String>,
    token: Option<String>,
}

/// The validated `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where to listen; `None` turns the admin API off.
    pub bind: Option<SocketAddr>,
    /// The bearer token every request must carry (required off loopback; when set on
    /// loopback it is required there too).
    pub token: Option<Secret>,
}

impl Default for AdminConfig {
    /// Loopback on [`DEFAULT_BIND`], no token.
    fn default() -> Self {
        Self {
            bind: Some(DEFAULT_BIND),
            token: None,
        }
    }
}

impl AdminConfig {
    /// Listening on `bind`, with `token` when given.
    pub fn on(bind: SocketAddr, token: Option<Secret>) -> Self {
        Self {
            bind: Some(bind),
            token,
        }
    }

    /// Off.
    pub fn off() -> Self {
        Self {
            bind: None,
            token: None,
        }
    }

    /// Why this config may not run: a non-loopback bind without a token.
    pub fn problem(&self) -> Option<String> {
        let bind = self.bind?;
        let has_token = self.token.as_ref().is_some_and(|t| !t.expose().is_empty());
        (!bind.ip().is_loopback() && !has_token).then(|| {
            format!(
                "admin.token: the admin API binds {bind}, which is not a loopback address, so a bearer token is required (set admin.token, e.g. \"${{ZOOMHOST_ADMIN_TOKEN}}\", or bind 127.0.0.1)"
            )
        })
    }
}

/// Validates the section; `None` when the file has none and the environment sets no
/// bind (the command picks its default). Problems are pushed, naming their key.
pub fn resolve(
    raw: Option<RawAdmin>,
    env: &dyn Fn(&str) -> Option<String>,
    expand: &dyn Fn(&str) -> Result<String, String>,
    problems: &mut Vec<String>,
) -> Option<AdminConfig> {
    let env_bind = env("ZOOMHOST_ADMIN_BIND");
    if raw.is_none() && env_bind.is_none() {
        return None;
    }
    let raw = raw.unwrap_or_default();
    let token = match raw.token.or_else(|| env("ZOOMHOST_ADMIN_TOKEN")) {
        Some(text) => match expand(&text) {
            Ok(t) if t.is_empty() => None,
            Ok(t) => Some(Secret::new(t)),
            Err(e) => {
                problems.push(format!("admin.token: {e}"));
                None
            }
        },
        None => None,
    };
    if raw.enabled == Some(false) {
        return Some(AdminConfig::off());
    }
    let bind_text = match raw.bind.or(env_bind) {
        Some(text) => match expand(&text) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("admin.bind: {e}"));
                return Some(AdminConfig::off());
            }
        },
        None => DEFAULT_BIND.to_string(),
    };
    if bind_text.trim().is_empty() {
        return Some(AdminConfig::off());
    }
    let bind = match bind_text.trim().parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            problems.push(format!(
                "admin.bind: {bind_text:?} is not an address:port (e.g. \"127.0.0.1:9464\")"
            ));
            return Some(AdminConfig::off());
        }
    };
    let config = AdminConfig::on(bind, token);
    if let Some(problem) = config.problem() {
        problems.push(problem);
    }
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Option<AdminConfig>, Vec<String>> {
        #[derive(Deserialize)]
        struct File {
            admin: Option<RawAdmin>,
        }
        let file: File = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let expand = |v: &str| crate::config::expand_env(v, &lookup);
        let mut problems = Vec::new();
        let config = resolve(file.admin, &lookup, &expand, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    #[test]
    fn loopback_needs_no_token_and_off_is_off() {
        assert_eq!(parse("", &[]).unwrap(), None);
        assert_eq!(
            parse("[admin]\n", &[]).unwrap(),
            Some(AdminConfig::default())
        );
        let local = parse("[admin]\nbind = \"127.0.0.1:0\"\n", &[])
            .unwrap()
            .unwrap();
        assert_eq!(local.bind, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(
            parse("[admin]\nbind = \"\"\n", &[]).unwrap(),
            Some(AdminConfig::off())
        );
        assert_eq!(
            parse("[admin]\nenabled = false\nbind = \"0.0.0.0:1\"\n", &[]).unwrap(),
            Some(AdminConfig::off())
        );
    }

    #[test]
    fn a_public_bind_without_a_token_is_rejected_and_the_token_never_printed() {
        let err = parse("[admin]\nbind = \"0.0.0.0:9464\"\n", &[]).unwrap_err();
        assert!(
            err[0].contains("admin.token") && err[0].contains("0.0.0.0:9464"),
            "{err:?}"
        );
        let config = parse(
            "[admin]\nbind = \"0.0.0.0:9464\"\ntoken = \"${T}\"\n",
            &[("T", "very-secret-admin-token")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            config.token.as_ref().map(|t| t.expose().to_string()),
            Some("very-secret-admin-token".into())
        );
        assert!(!format!("{config:?}").contains("very-secret-admin-token"));
        // From the environment alone.
        let config = parse(
            "",
            &[
                ("ZOOMHOST_ADMIN_BIND", "[::]:9464"),
                ("ZOOMHOST_ADMIN_TOKEN", "tok"),
            ],
        )
        .unwrap()
        .unwrap();
        assert!(config.token.is_some());
        let err = parse("[admin]\nbind = \"nope\"\n", &[]).unwrap_err();
        assert!(err[0].contains("admin.bind"), "{err:?}");
    }
}
