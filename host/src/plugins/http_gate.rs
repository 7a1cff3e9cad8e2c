//! The wasi-http `send_request` hook: a request leaves only if the operator granted its
//! origin to this plugin; anything else is answered with `HttpRequestDenied`, logged and
//! counted.

use std::future::Future;
use std::sync::Arc;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::capabilities::http_allowed;
use super::identity::PluginIdentity;
use super::stats::PluginStats;

/// Outbound HTTP gate of one plugin.
pub struct HttpGate {
    identity: Arc<PluginIdentity>,
}

impl HttpGate {
    /// A gate checking against `identity`'s current grant.
    pub fn new(identity: Arc<PluginIdentity>) -> Self {
        Self { identity }
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
