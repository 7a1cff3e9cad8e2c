//! `GET /readyz`: whether this node serves what it is for, with every check named.
//!
//! - **shutdown**: a host shutting down is not ready (so a load balancer drains it).
//! - **plugins**: the plugins folder was loaded (the admin API starts after it is);
//!   informs how many are loaded and disabled.
//! - **webhook**: the receiver accepts requests. A node with a webhook receiver is ready
//!   whether or not its event WebSocket is up: it must not drop out of a load balancer
//!   just when the WebSocket is down.
//! - **websocket**: the event WebSocket is connected. Required only on a node without a
//!   webhook receiver that holds the WebSocket (standalone, or the cluster's ingress
//!   leader); a standby ingress node reports it as not held, without failing.
//! - **cluster**: the NATS link is up (a cluster member of any role).

use serde::Serialize;
use zoomhost_zoom::events::ConnectionState;

use super::HostView;

/// One check.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// What is checked: `shutdown`, `plugins`, `webhook`, `websocket`, `cluster`.
    pub name: &'static str,
    /// Whether it passes.
    pub ok: bool,
    /// Whether readiness depends on it.
    pub required: bool,
    /// What was seen, in words.
    pub detail: String,
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Readiness {
    /// Whether every required check passes.
    pub ready: bool,
    /// The names of the required checks that fail.
    pub not_ready: Vec<&'static str>,
    /// Every check.
    pub checks: Vec<Check>,
}

/// Evaluates the checks now.
pub async fn evaluate(view: &HostView) -> Readiness {
    let mut checks = Vec::new();
    let stopping = *view.stopping.borrow();
    checks.push(Check {
        name: "shutdown",
        ok: !stopping,
        required: true,
        detail: if stopping {
            "shutting down".into()
        } else {
            "running".into()
        },
    });
    let loaded = view.plugins.plugins().await.len();
    let disabled = view.plugins.disabled().len();
    checks.push(Check {
        name: "plugins",
        ok: true,
        required: true,
        detail: format!("{loaded} loaded, {disabled} disabled by the operator"),
    });
    if view.webhook.is_some() {
        checks.push(Check {
            name: "webhook",
            ok: !stopping,
            required: true,
            detail: if stopping {
                "closing".into()
            } else {
                "accepting".into()
            },
        });
    }
    if view.websocket.is_some() {
        let leading = view.cluster.as_ref().map(|c| *c.leading.borrow());
        let check = match (leading, view.event_stream()) {
            (Some(false), _) => Check {
                name: "websocket",
                ok: true,
                required: false,
                detail: "standby: another node holds the event WebSocket".into(),
            },
            (_, None) => Check {
                name: "websocket",
                ok: false,
                required: view.webhook.is_none(),
                detail: "not started".into(),
            },
            (_, Some(watch)) => {
                let state = watch.state.borrow().clone();
                Check {
                    name: "websocket",
                    ok: matches!(state, ConnectionState::Connected),
                    required: view.webhook.is_none(),
                    detail: describe(&state),
                }
            }
        };
        checks.push(check);
    }
    if let Some(cluster) = &view.cluster {
        let state = cluster.nats.connection_state();
        checks.push(Check {
            name: "cluster",
            ok: state == async_nats::connection::State::Connected,
            required: true,
            detail: format!("NATS {state}"),
        });
    }
    let not_ready: Vec<&'static str> = checks
        .iter()
        .filter(|c| c.required && !c.ok)
        .map(|c| c.name)
        .collect();
    Readiness {
        ready: not_ready.is_empty(),
        not_ready,
        checks,
    }
}

fn describe(state: &ConnectionState) -> String {
    match state {
        ConnectionState::Idle => "not started".into(),
        ConnectionState::Connecting => "connecting".into(),
        ConnectionState::Connected => "connected".into(),
        ConnectionState::Reconnecting { delay, reason } => {
            format!("reconnecting in {} ms after: {reason}", delay.as_millis())
        }
        ConnectionState::Stopped => "stopped".into(),
    }
}
