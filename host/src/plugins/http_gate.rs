//! The wasi-http `send_request` hook: a request leaves only if the operator granted its
//! origin to this plugin; anything else is answered with `HttpRequestDenied`, logged and
//! counted.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::capabilities::http_allowed;
use super::identity::PluginIdentity;
use super::stats::PluginStats;

/// Outbound HTTP gate of one plugin.
pub struct HttpGate {
    identity: Arc<PluginIdentity>,
    /// When the call in progress must end (set with each call's deadline).
    pub(crate) deadline: Instant,
}

impl HttpGate {
    /// A gate checking against `identity`'s current grant.
    pub fn new(identity: Arc<PluginIdentity>) -> Self {
        Self {
            identity,
            deadline: Instant::now(),
        }
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
            // Only the origin is logged: paths and queries may carry secrets.
            let origin = format!(
                "{}://{}",
                uri.scheme_str().unwrap_or("?"),
                uri.authority().map(|a| a.as_str()).unwrap_or("?")
            );
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
        let options = Some(within_deadline(options, self.deadline));
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
