//! The `/v1` JSON API: what the host holds, and what an operator may do to a plugin.
//!
//! - `GET /v1/plugins`: every loaded plugin with its state (`running`, `quarantined`),
//!   version, subscriptions, counters (summed, and per instance) and queue; plugins the
//!   operator disabled are listed with state `disabled`.
//! - `GET /v1/streams`: the RTMS streams open now, with the plugins they reach and their
//!   frames by kind, and the RTMS client's counters.
//! - `GET /v1/sources`: the event WebSocket (state, counters, last outage), the webhook
//!   receiver (answers by status), duplicates dropped, and the cluster link.
//! - `GET /v1/cluster`: the cluster's nodes, roles, leases, partitions and streams
//!   ([`crate::cluster::status::ClusterStatus`]); 404 outside a cluster.
//! - `POST /v1/plugins/NAME/reload`: re-read `NAME.wasm` (a changed file is swapped in; an
//!   unchanged one restarts fresh instances, `init` again, state handed over).
//! - `POST /v1/plugins/NAME/disable`: unload it from routing (after its mailboxes drain)
//!   and keep it out, whatever the folder watcher sees, until enabled. Remembered in
//!   memory only: a restart loads every plugin the config enables.
//! - `POST /v1/plugins/NAME/enable`: load it again from its file.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use zoomhost_runtime::{LoadOutcome, PluginInfo, StatsSnapshot};
use zoomhost_zoom::events::ConnectionState;

use super::HostView;

/// One plugin in `/v1/plugins`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginView {
    /// Its name (the file stem).
    pub name: String,
    /// `running`, `quarantined` (an instance is) or `disabled` (by the operator).
    pub state: String,
    /// The version its metadata declares (empty when disabled).
    #[serde(default)]
    pub version: String,
    /// Its event patterns.
    #[serde(default)]
    pub events: Vec<String>,
    /// Its media kinds.
    #[serde(default)]
    pub media: Vec<String>,
    /// Deliveries waiting.
    #[serde(default)]
    pub queued: usize,
    /// Its counters, summed over its instances.
    #[serde(default)]
    pub stats: Value,
    /// Each instance's deliveries, failures, drops, quarantine and queue.
    #[serde(default)]
    pub instances: Vec<Value>,
}

fn plugin_view(info: &PluginInfo) -> PluginView {
    let s = &info.stats;
    PluginView {
        name: info.name.clone(),
        state: if s.quarantined {
            "quarantined"
        } else {
            "running"
        }
        .into(),
        version: info.metadata.version.clone(),
        events: info.metadata.events.clone(),
        media: info
            .metadata
            .media
            .iter()
            .map(|k| k.as_str().to_string())
            .collect(),
        queued: info.queued,
        stats: stats_json(s),
        instances: info
            .instances
            .iter()
            .enumerate()
            .map(|(i, inst)| {
                let s = &inst.stats;
                json!({
                    "instance": i,
                    "queued": inst.queued,
                    "quarantined": s.quarantined,
                    "delivered": s.events_delivered + s.media_delivered,
                    "failed": s.events_failed + s.media_failed,
                    "dropped": s.events_dropped + s.audio_dropped + s.media_dropped,
                    "crashes": s.crashes,
                    "restarts": s.restarts,
                })
            })
            .collect(),
    }
}

/// The counters without the histograms' bucket arrays (`/metrics` has those), with the
/// calls' count and mean instead.
fn stats_json(s: &StatsSnapshot) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        for (key, h) in [
            ("event_calls", &s.event_calls),
            ("media_calls", &s.media_calls),
        ] {
            let count = h.count();
            let mean_us = if count > 0 {
                h.sum_micros as f64 / count as f64
            } else {
                0.0
            };
            map.insert(
                key.to_string(),
                json!({ "count": count, "sum_micros": h.sum_micros, "mean_micros": mean_us }),
            );
        }
    }
    v
}

/// `GET /v1/plugins`.
pub async fn plugins(State(view): State<HostView>) -> Json<Vec<PluginView>> {
    let mut out: Vec<PluginView> = view
        .plugins
        .plugins()
        .await
        .iter()
        .map(plugin_view)
        .collect();
    for name in view.plugins.disabled() {
        if !out.iter().any(|p| p.name == name) {
            out.push(PluginView {
                name,
                state: "disabled".into(),
                version: String::new(),
                events: Vec::new(),
                media: Vec::new(),
                queued: 0,
                stats: Value::Null,
                instances: Vec::new(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Json(out)
}

/// `GET /v1/streams`.
pub async fn streams(State(view): State<HostView>) -> Json<Value> {
    let rtms = view.rtms.as_ref().map(|m| {
        let s = m.stats();
        json!({
            "open": m.active().len(),
            "opened": s.opened,
            "stopped": s.stopped,
            "failed": s.failed,
            "frames": s.frames,
            "duplicates": s.duplicates,
            "reconnects": s.reconnects,
            "failovers": s.failovers,
            "interruptions": s.interruptions,
            "media_interruptions": s.media_interruptions,
            "close_fallbacks": s.close_fallbacks,
        })
    });
    Json(json!({ "rtms": rtms, "streams": view.streams.list() }))
}

/// `GET /v1/sources`.
pub async fn sources(State(view): State<HostView>) -> Json<Value> {
    let websocket = view.websocket.as_ref().map(|_| {
        let leading = view.cluster.as_ref().map(|c| *c.leading.borrow());
        match view.event_stream() {
            Some(watch) if leading != Some(false) => {
                let state = watch.state.borrow().clone();
                let s = watch.stats.snapshot();
                json!({
                    "held": true,
                    "connected": matches!(state, ConnectionState::Connected),
                    "state": state_name(&state),
                    "events": s.events,
                    "connects": s.connects,
                    "outages": s.outages,
                    "outage_total_ms": s.outage_total.as_millis() as u64,
                    "longest_outage_ms": s.longest_outage.as_millis() as u64,
                    "last_outage": s.last_outage.as_ref().map(|o| json!({
                        "cause": o.cause,
                        "duration_ms": o.duration.as_millis() as u64,
                        "attempts": o.attempts,
                    })),
                })
            }
            _ => json!({ "held": false, "connected": false, "state": "standby" }),
        }
    });
    let webhook = view.webhook.as_ref().map(|r| {
        let s = r.stats();
        let answers: BTreeMap<&str, u64> = s.answers().into_iter().collect();
        json!({
            "path": r.config().path,
            "accepted": s.accepted(),
            "rejected": s.rejected(),
            "retries": s.duplicates(),
            "validations": s.validations(),
            "answers": answers,
        })
    });
    let d = view.inputs.duplicates();
    let cluster = view.cluster.as_ref().map(|c| {
        use std::sync::atomic::Ordering::Relaxed;
        json!({
            "node": c.node,
            "role": crate::cluster::status::role_name(c.role),
            "nats": c.nats.connection_state().to_string(),
            "leading": *c.leading.borrow(),
            "partitions": c.owned.borrow().iter().copied().collect::<Vec<u32>>(),
            "published": c.publish.as_ref().map(|p| p.published.load(Relaxed)),
            "acked": c.worker.as_ref().map(|w| w.acked.load(Relaxed)),
        })
    });
    Json(json!({
        "websocket": websocket,
        "webhook": webhook,
        "duplicates": { "websocket": d.websocket, "webhook": d.webhook },
        "cluster": cluster,
    }))
}

fn state_name(state: &ConnectionState) -> &'static str {
    match state {
        ConnectionState::Idle => "idle",
        ConnectionState::Connecting => "connecting",
        ConnectionState::Connected => "connected",
        ConnectionState::Reconnecting { .. } => "reconnecting",
        ConnectionState::Stopped => "stopped",
    }
}

/// `GET /v1/cluster`.
pub async fn cluster(State(view): State<HostView>) -> Response {
    let Some(c) = &view.cluster else {
        return error(StatusCode::NOT_FOUND, "this host is not a cluster member");
    };
    match crate::cluster::status::snapshot(&c.jetstream).await {
        Ok(status) => Json(status).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("reading the cluster status: {e:#}"),
        ),
    }
}

/// `POST /v1/plugins/NAME/ACTION` (`reload`, `enable`, `disable`).
pub async fn plugin_action(
    State(view): State<HostView>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let known = view.plugins.stats(&name).await.is_some() || view.plugins.is_disabled(&name);
    let result = match action.as_str() {
        "disable" if known => {
            let was_loaded = view.plugins.disable(&name).await;
            Ok(if was_loaded {
                "disabled"
            } else {
                "already disabled"
            }
            .to_string())
        }
        "enable" if !view.plugins.is_disabled(&name) && known => Ok("already enabled".into()),
        "enable" => view.plugins.enable(&name).await.map(outcome),
        "reload" if known => view.plugins.reload(&name).await.map(outcome),
        "reload" | "disable" => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no plugin {name:?} is loaded"),
            )
        }
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("unknown action {action:?}: reload, enable or disable"),
            )
        }
    };
    match result {
        Ok(outcome) => {
            tracing::info!(
                plugin = name.as_str(),
                action = action.as_str(),
                outcome = outcome.as_str(),
                "admin API: plugin action"
            );
            Json(json!({ "plugin": name, "action": action, "outcome": outcome })).into_response()
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &format!("{e:#}")),
    }
}

fn outcome(o: LoadOutcome) -> String {
    match o {
        LoadOutcome::Loaded(m) => format!("loaded version {}", m.version),
        LoadOutcome::Swapped(m, r) => format!(
            "swapped to version {} in {} µs",
            m.version,
            r.took.as_micros()
        ),
        LoadOutcome::Disabled => "disabled (by the host config or the operator)".into(),
        LoadOutcome::Unchanged => "unchanged".into(),
        LoadOutcome::Superseded => "superseded by a newer file".into(),
    }
}

/// A JSON error body.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
