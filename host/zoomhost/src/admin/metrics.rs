//! `GET /metrics`: the host's counters in Prometheus' text format (or OpenMetrics, when
//! the scraper asks for it), encoded by `prometheus-client`.
//!
//! Nothing is counted for the exporter's sake: each scrape takes a [`Scrape`] of what the
//! runtime, the sources and the RTMS client count anyway, and a collector writes it out.
//! Labels are bounded: plugin names (files an operator deployed), kinds, reasons, sources,
//! statuses and scenarios; never a stream, meeting or event id, a payload value or a
//! secret.
//!
//! | family | labels | from |
//! |---|---|---|
//! | `zoomhost_events_received_total` | source | event WebSocket events, webhook events accepted |
//! | `zoomhost_events_duplicate_total` | source | events dropped by the input path as already delivered |
//! | `zoomhost_plugin_deliveries_total` | plugin, kind (`event`, `media`) | the plugin's counters |
//! | `zoomhost_plugin_failures_total` | plugin, reason | failed calls: `handler_error`, `trap`, `deadline`, `memory`, a `[limits]` budget key |
//! | `zoomhost_plugin_dropped_total` | plugin, kind | events and media dropped for the plugin |
//! | `zoomhost_plugin_call_duration_seconds` | plugin, kind | histogram, buckets 1 µs to 16.8 s by powers of two |
//! | `zoomhost_plugin_restarts_total` | plugin | instances restarted after a crash |
//! | `zoomhost_plugin_quarantined` | plugin | gauge: 1 while an instance is quarantined |
//! | `zoomhost_plugin_http_denied_total` | plugin | outbound HTTP denied by the grants |
//! | `zoomhost_plugin_reloads_total` | plugin, result (`swapped`, `rejected`) | hot reloads |
//! | `zoomhost_plugin_queued` | plugin | gauge: deliveries waiting |
//! | `zoomhost_source_connected` | source (`websocket`, `webhook`, `nats`) | gauge |
//! | `zoomhost_source_reconnects_total` | source | outages that ended with a new connection |
//! | `zoomhost_source_outage_seconds_total` | source | time spent in outages, the one in progress included |
//! | `zoomhost_webhook_requests_total` | status | webhook answers |
//! | `zoomhost_rtms_streams_open` | | gauge |
//! | `zoomhost_rtms_streams_opened_total`, `zoomhost_rtms_streams_failed_total` | | stream lifecycle |
//! | `zoomhost_rtms_frames_total` | kind | frames handed to the plugins |
//! | `zoomhost_rtms_recoveries_total` | scenario (`failover`, `interruption`, `media_interruption`, `close_fallback`) | Zoom's failover scenarios recovered |
//! | `zoomhost_ready` | | gauge: what `/readyz` answers |
//! | `zoomhost_cluster_leading`, `zoomhost_cluster_partitions_owned` | | gauges (cluster members) |
//! | `zoomhost_cluster_published_total`, `zoomhost_cluster_publish_lost_total`, `zoomhost_cluster_publish_pending` | | the ingress publisher (events stored by JetStream, given up, queued) |
//! | `zoomhost_cluster_acked_total`, `zoomhost_cluster_redelivered_total` | | the worker: events delivered and acknowledged, of which redeliveries |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`, `process_threads`, `process_start_time_seconds` | | `/proc/self` |

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use zoomhost_runtime::{HistogramSnapshot, PluginInfo};
use zoomhost_zoom::events::ConnectionState;

use super::process::ProcessFigures;
use super::readiness::{self, Readiness};
use super::HostView;

/// The content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics text.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Failure reasons every plugin reports (at zero until they happen), so rates and
/// dashboards see the series from the start.
const FIXED_REASONS: [&str; 4] = ["handler_error", "trap", "deadline", "memory"];

/// Everything one scrape reports, read from the host's counters.
#[derive(Debug, Default)]
pub struct Scrape {
    plugins: Vec<PluginInfo>,
    websocket: Option<WebSocketFigures>,
    webhook: Option<WebhookFigures>,
    duplicates: crate::inputs::DuplicateCounts,
    nats_connected: Option<bool>,
    cluster: Option<ClusterFigures>,
    rtms: Option<RtmsFigures>,
    process: Option<ProcessFigures>,
    ready: bool,
}

#[derive(Debug, Default)]
struct WebSocketFigures {
    connected: bool,
    events: u64,
    reconnects: u64,
    outage_seconds: f64,
}

#[derive(Debug, Default)]
struct WebhookFigures {
    accepted: u64,
    answers: Vec<(&'static str, u64)>,
}

#[derive(Debug, Default)]
struct ClusterFigures {
    leading: bool,
    owned: usize,
    /// Published, lost, pending (ingress roles).
    publish: Option<(u64, u64, u64)>,
    /// Acknowledged, redelivered (worker roles).
    worker: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
struct RtmsFigures {
    open: usize,
    opened: u64,
    failed: u64,
    frames: Vec<(&'static str, u64)>,
    recoveries: [(&'static str, u64); 4],
}

impl Scrape {
    /// Reads the host's counters now.
    pub async fn take(view: &HostView) -> Scrape {
        let plugins = view.plugins.plugins().await;
        let readiness: Readiness = readiness::evaluate(view).await;
        let websocket = view.event_stream().map(|watch| {
            let stats = watch.stats.snapshot();
            WebSocketFigures {
                connected: matches!(*watch.state.borrow(), ConnectionState::Connected),
                events: stats.events,
                reconnects: stats.outages,
                // Ended outages plus the one in progress, so the counter grows during an
                // outage (and continues seamlessly when it ends).
                outage_seconds: (stats.outage_total + stats.current_outage.unwrap_or_default())
                    .as_secs_f64(),
            }
        });
        let webhook = view.webhook.as_ref().map(|receiver| WebhookFigures {
            accepted: receiver.stats().accepted(),
            answers: receiver.stats().answers().to_vec(),
        });
        let rtms = view.rtms.as_ref().map(|manager| {
            let stats = manager.stats();
            RtmsFigures {
                open: manager.active().len(),
                opened: stats.opened,
                failed: stats.failed,
                frames: view.streams.frames(),
                recoveries: [
                    ("failover", stats.failovers),
                    ("interruption", stats.interruptions),
                    ("media_interruption", stats.media_interruptions),
                    ("close_fallback", stats.close_fallbacks),
                ],
            }
        });
        Scrape {
            plugins,
            websocket,
            webhook,
            duplicates: view.inputs.duplicates(),
            nats_connected: view
                .cluster
                .as_ref()
                .map(|c| c.nats.connection_state() == async_nats::connection::State::Connected),
            cluster: view.cluster.as_ref().map(|c| {
                use std::sync::atomic::Ordering::Relaxed;
                ClusterFigures {
                    leading: *c.leading.borrow(),
                    owned: c.owned.borrow().len(),
                    publish: c
                        .publish
                        .as_ref()
                        .map(|p| (p.published.load(Relaxed), p.lost.load(Relaxed), p.pending())),
                    worker: c
                        .worker
                        .as_ref()
                        .map(|w| (w.acked.load(Relaxed), w.redelivered.load(Relaxed))),
                }
            }),
            rtms,
            process: super::process::read(),
            ready: readiness.ready,
        }
    }

    /// The text Prometheus reads (`openmetrics`: OpenMetrics 1.0 instead of 0.0.4).
    pub fn encode(self, openmetrics: bool) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::with_capacity(16 * 1024);
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
        }
        Ok(out)
    }
}

/// One family: its descriptor, then a sample per label set.
struct Family<'a, 'e> {
    encoder: &'a mut DescriptorEncoder<'e>,
}

impl<'e> Family<'_, 'e> {
    /// A counter family; `N` is `u64` for counts and `f64` for summed seconds.
    fn counters<L: EncodeLabelSet, N: EncodeCounterValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, N)>,
    ) -> std::fmt::Result {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in samples {
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn gauges<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) -> std::fmt::Result {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in samples {
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn histograms<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, HistogramSnapshot)>,
    ) -> std::fmt::Result {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, histogram) in samples {
            let buckets = histogram.cumulative_seconds();
            family
                .encode_family(&labels)?
                .encode_histogram::<Vec<(&str, &str)>>(
                    histogram.sum_micros as f64 / 1e6,
                    histogram.count(),
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn plugin_kind<'a>(plugin: &'a str, kind: &'a str) -> Labels<'a> {
    vec![("plugin", plugin), ("kind", kind)]
}

impl std::fmt::Debug for Family<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Family")
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut f = Family {
            encoder: &mut encoder,
        };
        self.encode_sources(&mut f)?;
        self.encode_plugins(&mut f)?;
        self.encode_rtms(&mut f)?;
        self.encode_cluster(&mut f)?;
        self.encode_process(&mut f)
    }
}

impl Scrape {
    fn encode_sources(&self, f: &mut Family) -> std::fmt::Result {
        let mut received: Vec<(Labels, u64)> = Vec::new();
        let mut connected: Vec<(Labels, f64)> = Vec::new();
        let mut reconnects: Vec<(Labels, u64)> = Vec::new();
        let mut outages: Vec<(Labels, f64)> = Vec::new();
        if let Some(ws) = &self.websocket {
            let source = vec![("source", "websocket")];
            received.push((source.clone(), ws.events));
            connected.push((source.clone(), f64::from(u8::from(ws.connected))));
            reconnects.push((source.clone(), ws.reconnects));
            outages.push((source, ws.outage_seconds));
        }
        if let Some(webhook) = &self.webhook {
            let source = vec![("source", "webhook")];
            received.push((source.clone(), webhook.accepted));
            // The receiver accepts while it serves (this view exists only then).
            connected.push((source, 1.0));
        }
        if let Some(up) = self.nats_connected {
            connected.push((vec![("source", "nats")], f64::from(u8::from(up))));
        }
        f.counters(
            "zoomhost_events_received",
            "Events received from Zoom, by source (webhook: accepted deliveries).",
            received,
        )?;
        let d = &self.duplicates;
        f.counters(
            "zoomhost_events_duplicate",
            "Events dropped by the input path as already delivered, by source.",
            [
                (vec![("source", "websocket")], d.websocket),
                (vec![("source", "webhook")], d.webhook),
            ],
        )?;
        f.gauges(
            "zoomhost_source_connected",
            "Whether a source is connected (1) or not (0).",
            connected,
        )?;
        f.counters(
            "zoomhost_source_reconnects",
            "Outages of a source that ended with a new connection.",
            reconnects,
        )?;
        f.counters(
            "zoomhost_source_outage_seconds",
            "Time a source spent in outages (the one in progress included), in seconds.",
            outages,
        )?;
        let answers = self
            .webhook
            .as_ref()
            .map(|w| w.answers.clone())
            .unwrap_or_default();
        f.counters(
            "zoomhost_webhook_requests",
            "Webhook requests answered, by HTTP status.",
            answers.into_iter().map(|(s, n)| (vec![("status", s)], n)),
        )?;
        f.gauges(
            "zoomhost_ready",
            "Whether this node is ready (what /readyz answers).",
            [(Vec::<(&str, &str)>::new(), f64::from(u8::from(self.ready)))],
        )
    }

    fn encode_plugins(&self, f: &mut Family) -> std::fmt::Result {
        let each = |g: &dyn Fn(&PluginInfo) -> Vec<(Labels<'_>, u64)>| -> Vec<(Labels<'_>, u64)> {
            self.plugins.iter().flat_map(g).collect()
        };
        f.counters(
            "zoomhost_plugin_deliveries",
            "Deliveries handed to a plugin, by kind (event or media).",
            each(&|p| {
                vec![
                    (plugin_kind(&p.name, "event"), p.stats.events_delivered),
                    (plugin_kind(&p.name, "media"), p.stats.media_delivered),
                ]
            }),
        )?;
        f.counters(
            "zoomhost_plugin_failures",
            "Failed plugin calls, by reason (handler_error, trap, deadline, memory, or a [limits] budget key).",
            each(&|p| {
                let mut out: Vec<(Labels, u64)> = FIXED_REASONS
                    .iter()
                    .map(|r| {
                        let n = p.stats.failures.get(*r).copied().unwrap_or(0);
                        (vec![("plugin", p.name.as_str()), ("reason", *r)], n)
                    })
                    .collect();
                for (reason, n) in &p.stats.failures {
                    if !FIXED_REASONS.contains(&reason.as_str()) {
                        out.push((
                            vec![("plugin", p.name.as_str()), ("reason", reason.as_str())],
                            *n,
                        ));
                    }
                }
                out
            }),
        )?;
        f.counters(
            "zoomhost_plugin_dropped",
            "Deliveries dropped for a plugin (congestion, quarantine), by kind.",
            each(&|p| {
                let s = &p.stats;
                vec![
                    (plugin_kind(&p.name, "event"), s.events_dropped),
                    (
                        plugin_kind(&p.name, "media"),
                        s.audio_dropped + s.media_dropped,
                    ),
                ]
            }),
        )?;
        f.histograms(
            "zoomhost_plugin_call_duration_seconds",
            "Duration of calls into a plugin, by kind.",
            self.plugins.iter().flat_map(|p| {
                [
                    (plugin_kind(&p.name, "event"), p.stats.event_calls.clone()),
                    (plugin_kind(&p.name, "media"), p.stats.media_calls.clone()),
                ]
            }),
        )?;
        f.counters(
            "zoomhost_plugin_restarts",
            "Plugin instances restarted after being killed.",
            each(&|p| vec![(vec![("plugin", p.name.as_str())], p.stats.restarts)]),
        )?;
        f.gauges(
            "zoomhost_plugin_quarantined",
            "Whether a plugin has a quarantined instance (1) or not (0).",
            self.plugins.iter().map(|p| {
                (
                    vec![("plugin", p.name.as_str())],
                    f64::from(u8::from(p.stats.quarantined)),
                )
            }),
        )?;
        f.counters(
            "zoomhost_plugin_http_denied",
            "Outbound HTTP requests of a plugin denied by its grants.",
            each(&|p| vec![(vec![("plugin", p.name.as_str())], p.stats.http_denied)]),
        )?;
        f.counters(
            "zoomhost_plugin_reloads",
            "Hot reloads of a plugin, by result (swapped or rejected).",
            each(&|p| {
                vec![
                    (
                        vec![("plugin", p.name.as_str()), ("result", "swapped")],
                        p.stats.swaps,
                    ),
                    (
                        vec![("plugin", p.name.as_str()), ("result", "rejected")],
                        p.stats.rejected_versions,
                    ),
                ]
            }),
        )?;
        f.gauges(
            "zoomhost_plugin_queued",
            "Deliveries waiting in a plugin's mailboxes.",
            self.plugins
                .iter()
                .map(|p| (vec![("plugin", p.name.as_str())], p.queued as f64)),
        )
    }

    fn encode_rtms(&self, f: &mut Family) -> std::fmt::Result {
        let none: Labels = Vec::new();
        let rtms = self.rtms.as_ref();
        f.gauges(
            "zoomhost_rtms_streams_open",
            "RTMS streams open now.",
            [(none.clone(), rtms.map_or(0, |r| r.open) as f64)],
        )?;
        f.counters(
            "zoomhost_rtms_streams_opened",
            "RTMS streams opened.",
            [(none.clone(), rtms.map_or(0, |r| r.opened))],
        )?;
        f.counters(
            "zoomhost_rtms_streams_failed",
            "RTMS streams given up (refused, not resumed in time, connection-failure stop).",
            [(none, rtms.map_or(0, |r| r.failed))],
        )?;
        let frames: Vec<(&str, u64)> = match rtms {
            Some(r) => r.frames.clone(),
            None => zoomhost_types::MediaKind::ALL
                .iter()
                .map(|k| (k.as_str(), 0))
                .collect(),
        };
        f.counters(
            "zoomhost_rtms_frames",
            "RTMS frames and segments handed to the plugins, by media kind.",
            frames.into_iter().map(|(k, n)| (vec![("kind", k)], n)),
        )?;
        let recoveries = rtms.map(|r| r.recoveries).unwrap_or([
            ("failover", 0),
            ("interruption", 0),
            ("media_interruption", 0),
            ("close_fallback", 0),
        ]);
        f.counters(
            "zoomhost_rtms_recoveries",
            "RTMS streams recovered, by Zoom's failover scenario.",
            recoveries.map(|(s, n)| (vec![("scenario", s)], n)),
        )
    }

    fn encode_cluster(&self, f: &mut Family) -> std::fmt::Result {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        let none = || Vec::<(&str, &str)>::new();
        f.gauges(
            "zoomhost_cluster_leading",
            "Whether this node holds the ingress lease (runs the event WebSocket).",
            [(none(), f64::from(u8::from(c.leading)))],
        )?;
        f.gauges(
            "zoomhost_cluster_partitions_owned",
            "Event partitions this node's worker owns.",
            [(none(), c.owned as f64)],
        )?;
        if let Some((published, lost, pending)) = c.publish {
            f.counters(
                "zoomhost_cluster_published",
                "Events stored by JetStream (not as duplicates).",
                [(none(), published)],
            )?;
            f.counters(
                "zoomhost_cluster_publish_lost",
                "Events given up after every publish attempt failed, or refused by a full queue.",
                [(none(), lost)],
            )?;
            f.gauges(
                "zoomhost_cluster_publish_pending",
                "Events queued for JetStream, not yet acknowledged.",
                [(none(), pending as f64)],
            )?;
        }
        if let Some((acked, redelivered)) = c.worker {
            f.counters(
                "zoomhost_cluster_acked",
                "Events this worker delivered and acknowledged.",
                [(none(), acked)],
            )?;
            f.counters(
                "zoomhost_cluster_redelivered",
                "Acknowledged events that JetStream had delivered before (after a crash or a late ack).",
                [(none(), redelivered)],
            )?;
        }
        Ok(())
    }

    fn encode_process(&self, f: &mut Family) -> std::fmt::Result {
        let Some(p) = self.process else {
            return Ok(());
        };
        let none = || Vec::<(&str, &str)>::new();
        f.counters(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds.",
            [(none(), p.cpu_seconds)],
        )?;
        f.gauges(
            "process_resident_memory_bytes",
            "Resident memory size, in bytes.",
            [(none(), p.resident_bytes as f64)],
        )?;
        f.gauges(
            "process_virtual_memory_bytes",
            "Virtual memory size, in bytes.",
            [(none(), p.virtual_bytes as f64)],
        )?;
        f.gauges(
            "process_open_fds",
            "Open file descriptors.",
            [(none(), p.open_fds as f64)],
        )?;
        f.gauges(
            "process_threads",
            "Operating-system threads.",
            [(none(), p.threads as f64)],
        )?;
        f.gauges(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            [(none(), p.start_time_seconds)],
        )
    }
}

/// The metric family names in a Prometheus text exposition (its `# TYPE` lines).
pub fn family_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                out.push(name.to_string());
            }
        }
    }
    out
}
