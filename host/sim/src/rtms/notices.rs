//! What the simulated servers tell the rest of the simulated Zoom: the lifecycle webhooks
//! Zoom sends about a stream ([`SimNotice`]), and where each server generation listens.
//!
//! A stream starts on server generation 0 (the URLs of [`super::RtmsSim::signaling_url`]).
//! Each failover ([`super::Fault::Failover`]) moves it to the next generation: the other
//! of the simulator's two listeners, under the path prefix `/g{generation}`, so both the
//! port and the path change, and the URLs of every earlier generation stop serving that
//! stream.

use std::net::SocketAddr;

use serde_json::{json, Map, Value};
use tokio::sync::broadcast;
use zoomhost_protocol::rtms::media::key;
use zoomhost_protocol::rtms::product::{Lifecycle, Product};

use super::{MediaKind, MediaUrlMode};

/// A webhook Zoom would send about a stream (`{product}.rtms_started` after a failover,
/// `{product}.rtms_interrupted` when signaling was lost, `{product}.rtms_stopped` when
/// the simulator ended a stream on its own).
///
/// Streams are announced first by whoever registered them (the caller pushes the first
/// `rtms_started`), and ends that the caller asked for ([`super::SimStream::stop`],
/// [`super::End::AfterFrames`]) are the caller's to announce too; every other lifecycle
/// event comes from here.
#[derive(Debug, Clone, PartialEq)]
pub struct SimNotice {
    /// The event name, e.g. `meeting.rtms_interrupted`,
    /// `contact_center.voice_rtms_started`.
    pub name: String,
    /// The event's `event_ts` (ms since the Unix epoch), strictly increasing per stream.
    pub event_ts: u64,
    /// The flat `payload`: the product's id field(s) and `rtms_stream_id`, plus
    /// `server_urls` (started) or `stop_reason` (stopped).
    pub payload: Value,
}

/// Where the servers listen and where notices go; shared by every stream.
pub(crate) struct Hub {
    /// The two listeners: generation `g` is served by `addrs[g % 2]`.
    pub(crate) addrs: [SocketAddr; 2],
    pub(crate) media_urls: MediaUrlMode,
    pub(crate) notices: broadcast::Sender<SimNotice>,
}

impl Hub {
    fn base(&self, generation: u32) -> String {
        let addr = self.addrs[(generation % 2) as usize];
        if generation == 0 {
            format!("ws://{addr}")
        } else {
            format!("ws://{addr}/g{generation}")
        }
    }

    /// The signaling URL of server generation `generation`.
    pub(crate) fn signaling_url(&self, generation: u32) -> String {
        format!("{}/signaling", self.base(generation))
    }

    /// One media URL of server generation `generation`.
    pub(crate) fn media_url(&self, generation: u32, key: &str) -> String {
        format!("{}/media/{key}", self.base(generation))
    }

    /// `media_server.server_urls` of a signaling reply from generation `generation`.
    pub(crate) fn media_urls(&self, generation: u32) -> Value {
        let mut urls = Map::new();
        if self.media_urls == MediaUrlMode::PerType {
            for kind in MediaKind::ALL {
                urls.insert(
                    kind.key().into(),
                    self.media_url(generation, kind.key()).into(),
                );
            }
        }
        urls.insert(key::ALL.into(), self.media_url(generation, key::ALL).into());
        urls.into()
    }

    /// Sends a notice (nobody listening is fine).
    pub(crate) fn notify(&self, notice: SimNotice) {
        tracing::info!(event = %notice.name, payload = %notice.payload, "RTMS sim: notice");
        let _ = self.notices.send(notice);
    }
}

/// The id fields of a lifecycle payload: the product's key (Video SDK sessions add a
/// `session_key`) and `rtms_stream_id`.
pub(crate) fn id_fields(product: Product, id: &str, stream_id: &str) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert(product.id_key().into(), id.into());
    if product == Product::VideoSdk {
        payload.insert("session_key".into(), format!("sim-key-{id}").into());
    }
    payload.insert("rtms_stream_id".into(), stream_id.into());
    payload
}

/// A lifecycle notice for a stream.
pub(crate) fn lifecycle(
    product: Product,
    step: Lifecycle,
    id: &str,
    stream_id: &str,
    event_ts: u64,
    extra: Value,
) -> SimNotice {
    let mut payload = id_fields(product, id, stream_id);
    if let Value::Object(extra) = extra {
        payload.extend(extra);
    }
    SimNotice {
        name: product.event_name(step),
        event_ts,
        payload: Value::Object(payload),
    }
}

/// The `server_urls` field of an `rtms_started` payload.
pub(crate) fn started_extra(signaling_url: &str) -> Value {
    json!({ "server_urls": signaling_url })
}

/// The `stop_reason` field of an `rtms_stopped` payload.
pub(crate) fn stopped_extra(stop_reason: u32) -> Value {
    json!({ "stop_reason": stop_reason })
}
