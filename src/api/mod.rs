//! The Ironic-compatible REST API: a subset of the Bare Metal API v1 that
//! python-ironicclient (`baremetal ...`) and openstacksdk drive unchanged.
//!
//! - `version`: microversion negotiation (1.1 to 1.109) and headers.
//! - `error`: Ironic's error body (`error_message` holding a JSON document).
//! - `auth`: `noauth` (loopback only) or HTTP basic with a bcrypt htpasswd.
//! - `nodes`, `patch`, `ports`, `drivers`: the resources.
//! - `boot`: `/v1/nodes/{id}/boot_config`, an ironrack extension.
//! - `console`: `/v1/nodes/{id}/states/console`.
//! - `metrics`: `GET /metrics` for Prometheus.
//!
//! Reads (node and port GETs) go to the store directly and never wait on a
//! conductor lock; changes go through the conductor. Every synchronous store
//! or conductor call runs on the blocking pool. Secrets in `driver_info` and
//! `instance_info` are masked in every response and never logged.

mod auth;
mod boot;
mod console;
mod drivers;
pub(crate) mod error;
mod metrics;
pub(crate) mod nodes;
pub(crate) mod params;
pub(crate) mod patch;
pub(crate) mod ports;
mod provision;
pub(crate) mod version;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use crate::conductor::Conductor;
use crate::store::Store;

pub use auth::{parse_htpasswd, BasicAuth};
pub use error::{error_body, ApiError};
pub use metrics::install_recorder;
pub use version::{Version, MAX_MINOR, MIN_MINOR};

/// Everything the handlers share.
pub struct ApiState {
    pub conductor: Arc<Conductor>,
    pub store: Store,
    /// Most items per list page (`[api] max_limit`).
    pub max_limit: usize,
    /// `[api] public_url`, without a trailing slash; links are built from the
    /// request's Host header (or the listening address) when unset.
    pub public_url: Option<String>,
    /// HTTP basic authentication; `None` for noauth.
    pub auth: Option<Arc<BasicAuth>>,
    /// The Prometheus recorder's handle (`None`: `/metrics` answers 503).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

pub type Shared = Arc<ApiState>;

/// The address a listener is bound to (a fallback for links).
#[derive(Clone, Copy, Debug)]
pub struct ListenAddr(pub SocketAddr);

/// Per-request context: the negotiated version and the base URL for links.
pub struct Ctx {
    pub v: Version,
    pub base: String,
}

fn host_header_ok(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        })
}

impl FromRequestParts<Shared> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Ctx, ApiError> {
        let v = parts
            .extensions
            .get::<Version>()
            .copied()
            .unwrap_or(Version::MIN);
        let base = match &state.public_url {
            Some(u) => u.clone(),
            None => {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .filter(|h| host_header_ok(h));
                match (host, parts.extensions.get::<ListenAddr>()) {
                    (Some(h), _) => format!("http://{h}"),
                    (None, Some(a)) => format!("http://{}", a.0),
                    (None, None) => "http://localhost".to_string(),
                }
            }
        };
        Ok(Ctx { v, base })
    }
}

/// A JSON request body (an empty body reads as `null`). Wrong content types
/// and malformed documents are Ironic-style 415 / 400 errors.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<JsonBody, ApiError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.to_ascii_lowercase());
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(JsonBody(Value::Null));
        }
        if let Some(ct) = ct {
            let mime = ct.split(';').next().unwrap_or("").trim().to_string();
            if !(mime == "application/json" || mime.ends_with("+json")) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "The request body has Content-Type {mime:?}; \
                         expected \"application/json\""
                    ),
                ));
            }
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("Malformed JSON request body: {e}")))
    }
}

/// Run a synchronous store or conductor call on the blocking pool.
pub async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("internal task failed: {e}")))?
}

/// Ironic's link pair: `self` under `/v1`, `bookmark` without it.
pub fn links(base: &str, resource: &str, args: &str) -> Value {
    json!([
        {"href": format!("{base}/v1/{resource}/{args}"), "rel": "self"},
        {"href": format!("{base}/{resource}/{args}"), "rel": "bookmark"},
    ])
}

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v1",
        "links": [{"href": format!("{base}/v1/"), "rel": "self"}],
        "status": "CURRENT",
        "min_version": version::min_string(),
        "version": version::max_string(),
    })
}

async fn root(ctx: Ctx) -> Json<Value> {
    Json(json!({
        "name": "OpenStack Ironic API",
        "description": "Ironic is an OpenStack project which enables the provision and \
                        management of baremetal machines. (served by ironrack)",
        "default_version": version_doc(&ctx.base),
        "versions": [version_doc(&ctx.base)],
    }))
}

async fn root_v1(ctx: Ctx) -> Json<Value> {
    let b = &ctx.base;
    let controller = |name: &str| {
        json!([
            {"href": format!("{b}/v1/{name}/"), "rel": "self"},
            {"href": format!("{b}/{name}/"), "rel": "bookmark"},
        ])
    };
    Json(json!({
        "id": "v1",
        "links": [
            {"href": format!("{b}/v1/"), "rel": "self"},
            {"href": "https://docs.openstack.org/ironic/latest/contributor/webapi.html",
             "rel": "describedby", "type": "text/html"},
        ],
        "media_types": {
            "base": "application/json",
            "type": "application/vnd.openstack.ironic.v1+json",
        },
        "nodes": controller("nodes"),
        "ports": controller("ports"),
        "drivers": controller("drivers"),
        "version": version_doc(b),
    }))
}

async fn not_found() -> ApiError {
    ApiError::not_found("The resource could not be found.")
}

/// Negotiate the version (406 outside the range) and put the version and
/// request-id headers on every response.
async fn versions(mut req: Request, next: Next) -> Response {
    let is_metrics = req.uri().path() == "/metrics";
    let (mut resp, v) = match version::negotiate(req.headers()) {
        Ok(v) => {
            req.extensions_mut().insert(v);
            (next.run(req).await, Some(v))
        }
        Err(_) if is_metrics => (next.run(req).await, None),
        Err(e) => (e.into_response(), None),
    };
    let h = resp.headers_mut();
    for (k, val) in version::response_headers(v.unwrap_or(Version::MIN)) {
        if v.is_none() && k.as_str() == version::HDR_VERSION {
            continue;
        }
        if v.is_none() && k.as_str() == version::HDR_OPENSTACK {
            continue;
        }
        h.insert(k, val);
    }
    let rid = format!("req-{}", uuid::Uuid::new_v4());
    if let Ok(val) = HeaderValue::from_str(&rid) {
        h.insert("x-openstack-request-id", val.clone());
        h.insert("openstack-request-id", val);
    }
    resp
}

async fn authenticate(State(st): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(a) = &st.auth {
        if !auth::is_public(req.method(), req.uri().path()) {
            if let Err(e) = a.check(req.headers().get(header::AUTHORIZATION)).await {
                return e.into_response();
            }
        }
    }
    next.run(req).await
}

/// Like Ironic's ParsableErrorMiddleware: any error response that is not
/// already an Ironic error document (axum's 404/405/413, extractor
/// rejections) gets one, with its text as the faultstring.
async fn parsable_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if status.as_u16() < 400 || resp.extensions().get::<error::IronicError>().is_some() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let msg = if !text.is_empty() {
        text
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        "The method is not allowed for the requested URL.".to_string()
    } else if status == StatusCode::NOT_FOUND {
        "The resource could not be found.".to_string()
    } else {
        status.canonical_reason().unwrap_or("Error").to_string()
    };
    let mut out = ApiError::new(status, msg).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// One line per request: method, path (never the query or a body), status,
/// duration.
async fn access_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    tracing::info!(
        target: "ironrack::api::access",
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        duration_ms = (start.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        "{method} {path} {}",
        resp.status().as_u16()
    );
    resp
}

/// The whole API for one listener.
pub fn app(state: Shared, bound: SocketAddr) -> Router {
    let routes = Router::new()
        .route("/", get(root))
        .route("/v1", get(root_v1))
        .route("/v1/nodes", get(nodes::list).post(nodes::create))
        .route("/v1/nodes/detail", get(nodes::list_detail))
        .route(
            "/v1/nodes/{ident}",
            get(nodes::show).patch(nodes::update).delete(nodes::delete),
        )
        .route("/v1/nodes/{ident}/states", get(nodes::states))
        .route("/v1/nodes/{ident}/states/power", put(nodes::set_power))
        .route(
            "/v1/nodes/{ident}/states/provision",
            put(provision::set_provision),
        )
        .route(
            "/v1/nodes/{ident}/vifs",
            get(provision::vif_list).post(provision::vif_attach),
        )
        .route(
            "/v1/nodes/{ident}/vifs/{vif}",
            axum::routing::delete(provision::vif_detach),
        )
        .route("/v1/heartbeat/{ident}", post(provision::heartbeat))
        .route(
            "/v1/nodes/{ident}/states/console",
            get(console::show).put(console::update),
        )
        .route(
            "/v1/nodes/{ident}/maintenance",
            put(nodes::maintenance_on).delete(nodes::maintenance_off),
        )
        .route(
            "/v1/nodes/{ident}/management/boot_device",
            get(nodes::get_boot_device).put(nodes::set_boot_device),
        )
        .route(
            "/v1/nodes/{ident}/management/boot_device/supported",
            get(nodes::supported_boot_devices),
        )
        .route(
            "/v1/nodes/{ident}/management/inject_nmi",
            put(nodes::inject_nmi),
        )
        .route("/v1/nodes/{ident}/validate", get(nodes::validate))
        .route(
            "/v1/nodes/{ident}/boot_config",
            get(boot::show).put(boot::update),
        )
        .route("/v1/nodes/{ident}/ports", get(ports::list_for_node))
        .route(
            "/v1/nodes/{ident}/ports/detail",
            get(ports::list_for_node_detail),
        )
        .route("/v1/ports", get(ports::list).post(ports::create))
        .route("/v1/ports/detail", get(ports::list_detail))
        .route("/v1/ports/{ident}", get(ports::show).delete(ports::delete))
        .route("/v1/drivers", get(drivers::list))
        .route("/v1/drivers/{name}", get(drivers::show))
        .route(
            "/v1/drivers/{name}/properties",
            get(drivers::driver_properties),
        )
        .route("/metrics", get(metrics::scrape))
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), authenticate))
        .layer(from_fn(versions))
        .layer(from_fn(parsable_errors))
        .layer(from_fn(access_log))
        .layer(Extension(ListenAddr(bound)))
        .with_state(state);
    // Trailing slashes are dropped before routing, as pecan does:
    // python-ironicclient lists with `/v1/nodes/?maintenance=True`.
    Router::new()
        .fallback_service(routes)
        .layer(from_fn(strip_trailing_slash))
}

/// `/v1/nodes/` is `/v1/nodes` (the root stays `/`).
async fn strip_trailing_slash(mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    next.run(req).await
}

/// Headers helper for handlers answering 202 with a Location.
pub fn accepted_with_location(location: &str) -> Response {
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}
