//! The wasi-http `send_request` hook: a request leaves only if the operator granted its
//! origin to this plugin; anything else is answered with `HttpRequestDenied`, logged and
//! counted.
//!
//! Two more bounds hold here, because a connection is a file descriptor and buffers the
//! plugin's memory cap does not see:
//! - at most `max_outbound_requests` requests of one plugin are in flight (a connection
//!   counts until it closes); one more fails at once with `connection-limit-reached`,
//!   nothing is queued;
//! - every request belongs to the call that made it: when that call returns or is killed,
//!   its unfinished requests and their connections are cancelled.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::capabilities::http_allowed;
use crate::identity::PluginIdentity;
use crate::limits::HTTP_BODY_CHUNK;
use crate::stats::PluginStats;

/// Outbound HTTP gate of one plugin.
pub struct HttpGate {
    identity: Arc<PluginIdentity>,
    /// When the call in progress must end (set with each call's deadline).
    pub(crate) deadline: Instant,
    /// Cancelled when the call in progress ends. Replaced only after a call that sent a
    /// request, so the per-frame path allocates nothing for calls that make none.
    call: CancellationToken,
    /// Whether the call in progress handed `call` to a request.
    call_used: bool,
    /// Whether this call has already logged a refused request (one line per call).
    refusal_logged: bool,
}

impl HttpGate {
    /// A gate checking against `identity`'s current grant.
    pub fn new(identity: Arc<PluginIdentity>) -> Self {
        Self {
            identity,
            deadline: Instant::now(),
            call: CancellationToken::new(),
            call_used: false,
            refusal_logged: false,
        }
    }

    /// A call starts: requests made from now on belong to it.
    pub(crate) fn begin_call(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if self.call_used || self.call.is_cancelled() {
            self.call = CancellationToken::new();
            self.call_used = false;
        }
        self.refusal_logged = false;
    }

    /// The call ended (returned or killed): cancel what it left running.
    pub(crate) fn end_call(&mut self) {
        if self.call_used {
            self.call.cancel();
        }
    }
}

impl Drop for HttpGate {
    fn drop(&mut self) {
        self.call.cancel();
    }
}

/// One in-flight request of a plugin; frees its slot when dropped.
struct OutboundSlot(Arc<AtomicUsize>);

impl OutboundSlot {
    /// Takes a slot if fewer than `cap` are taken.
    fn try_take(in_flight: &Arc<AtomicUsize>, cap: usize) -> Option<Self> {
        in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(in_flight.clone()))
    }
}

impl Drop for OutboundSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `scheme://host[:port]` of a URI: no userinfo (it may carry a password), path or query
/// (they may carry tokens).
pub(crate) fn loggable_origin(uri: &http::Uri) -> String {
    let host = uri.host().unwrap_or("?");
    match uri.port_u16() {
        Some(port) => format!("{}://{host}:{port}", uri.scheme_str().unwrap_or("?")),
        None => format!("{}://{host}", uri.scheme_str().unwrap_or("?")),
    }
}

/// Caps a request's timeouts so a slow server gives the plugin a timeout error while its
/// call still has time left, instead of the call overrunning its deadline (which kills
/// the instance). Connecting and waiting for the first byte each get at most 40% of the
/// time left, so both together leave the plugin a fifth of it to handle the error.
fn within_deadline(options: Option<RequestOptions>, deadline: Instant) -> RequestOptions {
    let left = deadline.saturating_duration_since(Instant::now());
    let budget = (left * 2 / 5).max(Duration::from_millis(1));
    let cap = |t: Option<Duration>| Some(t.map_or(budget, |t| t.min(budget)));
    let options = options.unwrap_or_default();
    RequestOptions {
        connect_timeout: cap(options.connect_timeout),
        first_byte_timeout: cap(options.first_byte_timeout),
        between_bytes_timeout: cap(options.between_bytes_timeout),
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let grant = self.identity.grant();
        let uri = request.uri().clone();
        if !http_allowed(&grant.allow_http, &uri) {
            PluginStats::bump(&self.identity.stats.http_denied);
            // Only the origin is logged: userinfo, paths and queries may carry secrets.
            let origin = loggable_origin(&uri);
            tracing::warn!(
                plugin = self.identity.name(),
                origin = origin.as_str(),
                "outbound HTTP denied: {origin} is not granted to plugin {} (grant it in [plugins.{}] allow_http)",
                self.identity.name(),
                self.identity.name(),
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        drop(fut);
        let cap = grant.limits.max_outbound_requests as usize;
        let Some(slot) = OutboundSlot::try_take(&self.identity.outbound_in_flight, cap) else {
            PluginStats::bump(&self.identity.stats.http_refused);
            if !self.refusal_logged {
                self.refusal_logged = true;
                tracing::warn!(
                    plugin = self.identity.name(),
                    limit = cap,
                    "outbound HTTP refused: plugin {} already has {cap} requests in flight (limits.max_outbound_requests)",
                    self.identity.name(),
                );
            }
            return Box::new(async { Err(HttpError::ConnectionLimitReached) });
        };
        let options = Some(within_deadline(options, self.deadline));
        self.call_used = true;
        let call = self.call.clone();
        let stats = self.identity.stats.clone();
        Box::new(async move {
            use http_body_util::BodyExt;
            let send = wasmtime_wasi_http::default_send_request(request, options);
            let (res, io) = tokio::select! {
                sent = send => sent?,
                () = call.cancelled() => {
                    PluginStats::bump(&stats.http_cancelled);
                    return Err(HttpError::ConnectionTerminated);
                }
            };
            // The connection keeps its slot until it closes, and closes when the call
            // that opened it ends.
            let io = async move {
                let _slot = slot;
                tokio::select! {
                    done = io => done,
                    () = call.cancelled() => {
                        PluginStats::bump(&stats.http_cancelled);
                        Ok(())
                    }
                }
            };
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        HTTP_BODY_CHUNK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_logged_without_userinfo_path_or_query() {
        let uri: http::Uri = "http://user:pass@example.com:8080/p?token=x"
            .parse()
            .unwrap();
        assert_eq!(loggable_origin(&uri), "http://example.com:8080");
        let uri: http::Uri = "https://example.com/secret".parse().unwrap();
        assert_eq!(loggable_origin(&uri), "https://example.com");
    }

    #[test]
    fn slots_are_capped_and_freed_on_drop() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let a = OutboundSlot::try_take(&in_flight, 2).unwrap();
        let _b = OutboundSlot::try_take(&in_flight, 2).unwrap();
        assert!(OutboundSlot::try_take(&in_flight, 2).is_none());
        drop(a);
        assert!(OutboundSlot::try_take(&in_flight, 2).is_some());
    }

    #[test]
    fn timeouts_are_capped_by_the_time_left() {
        let deadline = Instant::now() + Duration::from_millis(1000);
        let o = within_deadline(None, deadline);
        let connect = o.connect_timeout.unwrap();
        assert!(connect <= Duration::from_millis(400) && connect > Duration::from_millis(300));
        assert_eq!(o.first_byte_timeout, o.connect_timeout);
        // A shorter timeout the plugin asked for is kept.
        let asked = RequestOptions {
            first_byte_timeout: Some(Duration::from_millis(50)),
            ..RequestOptions::default()
        };
        let o = within_deadline(Some(asked), deadline);
        assert_eq!(o.first_byte_timeout, Some(Duration::from_millis(50)));
        // Past the deadline: the smallest timeout, never zero or negative.
        let o = within_deadline(None, Instant::now() - Duration::from_secs(1));
        assert_eq!(o.connect_timeout, Some(Duration::from_millis(1)));
    }
}
