//! The admin listener: the axum routes, the bearer-token check, and serving until the
//! host stops.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq as _;

use super::metrics::{Scrape, OPENMETRICS_TEXT, PROMETHEUS_TEXT};
use super::{api, readiness, HostView};
use crate::config::{AdminConfig, Secret};

/// The admin listener, bound, not yet serving.
#[derive(Debug)]
pub struct AdminServer {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    app: Router,
}

impl AdminServer {
    /// Binds `config.bind` (port 0 picks a free port). Errors when the config is off or
    /// may not run (a non-loopback bind without a token).
    pub async fn bind(config: &AdminConfig, view: HostView) -> anyhow::Result<AdminServer> {
        let bind = config.bind.context("the admin API is turned off")?;
        if let Some(problem) = config.problem() {
            anyhow::bail!("{problem}");
        }
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding the admin API on {bind} (admin.bind)"))?;
        let addr = listener
            .local_addr()
            .context("local address of the admin API")?;
        Ok(AdminServer {
            listener,
            addr,
            app: app(view, config.token.clone()),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, e.g. `http://127.0.0.1:9464`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.addr, "admin API listening (/metrics, /healthz, /readyz, /v1)");
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving the admin API")
    }
}

/// The routes over `view`. When `token` is given every request but the probes
/// (`/healthz`, `/readyz`, which a load balancer or supervisor calls without credentials
/// and which reveal no counters) needs it as a bearer token.
pub fn app(view: HostView, token: Option<Secret>) -> Router {
    let probes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/plugins", get(api::plugins))
        .route("/v1/plugins/{name}/{action}", post(api::plugin_action))
        .route("/v1/streams", get(api::streams))
        .route("/v1/sources", get(api::sources))
        .route("/v1/cluster", get(api::cluster))
        .route_layer(axum::middleware::from_fn_with_state(token, authorize))
        .merge(probes)
        .with_state(view)
}

/// Refuses a request without the bearer token (401), when a token is set.
async fn authorize(State(token): State<Option<Secret>>, request: Request, next: Next) -> Response {
    if let Some(token) = &token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let matches: bool = given.as_bytes().ct_eq(token.expose().as_bytes()).into();
        if !matches {
            tracing::warn!(
                path = %request.uri().path(),
                "admin API request refused: missing or wrong bearer token"
            );
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({ "error": "a valid bearer token is required" })),
            )
                .into_response();
        }
    }
    next.run(request).await
}

async fn metrics(State(view): State<HostView>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    match Scrape::take(&view).await.encode(openmetrics) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                if openmetrics {
                    OPENMETRICS_TEXT
                } else {
                    PROMETHEUS_TEXT
                },
            )],
            text,
        )
            .into_response(),
        Err(_) => api::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed",
        ),
    }
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn readyz(State(view): State<HostView>) -> Response {
    let readiness = readiness::evaluate(&view).await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(readiness)).into_response()
}
