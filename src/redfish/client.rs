//! The Redfish client: transport (auth, retries, task monitors), discovery and
//! the Redfish-level operations ironrack needs.
//!
//! Transport rules:
//!
//! * one pooled `reqwest::Client` per BMC; redirects followed only within the
//!   BMC's own origin (the auth token is a custom header reqwest would not
//!   strip on a cross-origin redirect);
//! * SessionService login when the service root advertises it, HTTP basic
//!   otherwise or when login fails; a session is re-created once on 401 and
//!   deleted by [`RedfishClient::close`];
//! * connection failures, resets, timeouts (except on POST, which the BMC may
//!   still carry out) and 500/502/503/504 are retried with bounded
//!   exponential backoff; 409 and the quirk's "busy" MessageIds are
//!   retried with a longer backoff; everything is bounded by
//!   `operation_timeout`;
//! * 202 + `Location` task monitors are followed until the task ends.
//!
//! Secrets (password, session token) are never logged; request bodies are
//! never logged.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, CONNECTION, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION,
    RETRY_AFTER, USER_AGENT,
};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::{Mutex, OnceCell};
use tokio::time::Instant;
use tracing::{debug, warn};
use zeroize::Zeroizing;

use super::model::{
    from_body, ActionInfo, BootSource, BootSourceOverrideEnabled, BootSourceOverrideMode,
    Collection, ComputerSystem, ErrorResponse, Manager, PowerState, ResetType, ServiceRoot, Task,
    VirtualMedia,
};
use super::RedfishConfig;
use crate::bmc::BmcError;

/// Largest response body accepted.
const MAX_BODY: usize = 8 << 20;
/// Most pages of one collection followed through `Members@odata.nextLink`.
const MAX_PAGES: usize = 64;
/// Most systems fetched one by one when matching `system_id` by `Id`/`UUID`.
const MAX_SYSTEM_LOOKUPS: usize = 64;
/// Content type of request bodies (see `RedfishQuirks::content_type_no_charset`).
const JSON: &str = "application/json";

static X_AUTH_TOKEN: HeaderName = HeaderName::from_static("x-auth-token");
static ODATA_VERSION: HeaderName = HeaderName::from_static("odata-version");

/// Retry and polling knobs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryPolicy {
    /// Tries for connection failures, timeouts and 5xx.
    pub transient_tries: u32,
    pub transient_base: Duration,
    /// Tries for 409 Conflict and "busy" MessageIds.
    pub busy_tries: u32,
    pub busy_base: Duration,
    pub max_delay: Duration,
    /// Interval for task monitors and power-state polling.
    pub poll: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            transient_tries: 3,
            transient_base: Duration::from_millis(500),
            busy_tries: 6,
            busy_base: Duration::from_secs(2),
            max_delay: Duration::from_secs(15),
            poll: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, base: Duration, attempt: u32) -> Duration {
        let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        // Up to +20 % jitter so a rack of BMCs is not hammered in lockstep.
        capped.mul_f64(1.0 + rand::random::<f64>() * 0.2)
    }
}

/// The CD/DVD virtual media device as last read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VirtualMediaStatus {
    /// `@odata.id` of the device.
    pub path: String,
    /// The image URL; `None` when empty.
    pub image: Option<String>,
    pub inserted: bool,
    pub write_protected: Option<bool>,
}

/// Where discovery found things.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    pub system_path: String,
    /// `Links.ManagedBy[0]` of the system.
    pub manager_path: Option<String>,
}

/// The reset action of a system.
#[derive(Clone, Debug)]
pub struct ResetInfo {
    pub target: String,
    /// `None`: the BMC does not say (everything is tried).
    pub allowed: Option<Vec<ResetType>>,
}

impl ResetInfo {
    pub fn allows(&self, t: &ResetType) -> bool {
        self.allowed.as_ref().is_none_or(|l| l.contains(t))
    }
}

/// A failed exchange, with the HTTP status when there was one.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: Option<StatusCode>,
    pub error: BmcError,
}

impl Failure {
    fn plain(error: BmcError) -> Failure {
        Failure {
            status: None,
            error,
        }
    }
}

impl From<Failure> for BmcError {
    fn from(f: Failure) -> BmcError {
        f.error
    }
}

impl From<BmcError> for Failure {
    fn from(error: BmcError) -> Failure {
        Failure::plain(error)
    }
}

/// A complete HTTP answer.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub retry_after: Option<Duration>,
    pub auth_token: Option<Zeroizing<String>>,
    pub body: Vec<u8>,
}

enum Transport {
    Connect(String),
    Io(String),
    Timeout,
    /// The operation's overall deadline passed.
    Deadline,
    Invalid(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AuthMode {
    /// No credentials (service root, session login).
    None,
    /// HTTP basic, whatever the session state.
    Basic,
    /// The session if there is one, else basic.
    Managed,
}

enum Credential {
    None,
    Basic,
    Token {
        token: Zeroizing<String>,
        generation: u64,
    },
}

enum AuthState {
    Unknown,
    Basic,
    Session {
        token: Zeroizing<String>,
        location: Option<String>,
        generation: u64,
    },
}

struct Req<'a> {
    method: Method,
    path: &'a str,
    body: Option<&'a [u8]>,
    if_match: Option<&'a str>,
}

impl<'a> Req<'a> {
    fn get(path: &'a str) -> Req<'a> {
        Req {
            method: Method::GET,
            path,
            body: None,
            if_match: None,
        }
    }
}

#[derive(Serialize)]
struct Login<'a> {
    #[serde(rename = "UserName")]
    user: &'a str,
    #[serde(rename = "Password")]
    password: &'a str,
}

/// A Redfish client for one BMC.
pub struct RedfishClient {
    http: reqwest::Client,
    base: Url,
    cfg: RedfishConfig,
    retry: RetryPolicy,
    auth: Mutex<AuthState>,
    generation: AtomicU64,
    root: OnceCell<ServiceRoot>,
    discovery: OnceCell<Discovery>,
    cd_path: OnceCell<String>,
    needs_reassert: AtomicBool,
}

impl fmt::Debug for RedfishClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedfishClient")
            .field("base", &self.base.as_str())
            .field("config", &self.cfg)
            .field("discovery", &self.discovery.get())
            .finish_non_exhaustive()
    }
}

/// Parse the configured BMC address into an origin-only base URL.
pub(crate) fn parse_base(raw: &str) -> Result<Url, BmcError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(BmcError::Config("Redfish URL is empty".into()));
    }
    let text = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("https://{raw}")
    };
    let mut url = Url::parse(&text)
        .map_err(|e| BmcError::Config(format!("invalid Redfish URL {raw:?}: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(BmcError::Config(format!(
            "Redfish URL {raw:?} must be http or https"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(BmcError::Config(format!("Redfish URL {raw:?} has no host")));
    }
    // Credentials never travel in the URL.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_path("/");
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Whole error chain of a transport error (reqwest hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A short, printable excerpt of a body.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &flat[..i]),
        None => flat,
    }
}

/// Map an HTTP error answer to a typed error, using the Redfish error body.
pub(crate) fn http_error(method: &Method, path: &str, status: StatusCode, body: &[u8]) -> BmcError {
    let parsed: Option<ErrorResponse> = from_body(body).ok();
    let code = parsed.as_ref().and_then(ErrorResponse::code);
    let text = parsed
        .as_ref()
        .and_then(ErrorResponse::text)
        .unwrap_or_else(|| snippet(body));
    let mut message = format!("{method} {path}: HTTP {status}");
    if !text.is_empty() {
        message.push_str(": ");
        message.push_str(&text);
    }
    match status.as_u16() {
        401 | 403 => {
            if let Some(code) = code {
                message.push_str(&format!(" ({code})"));
            }
            BmcError::AuthFailed(message)
        }
        405 | 501 => BmcError::Unsupported(message),
        _ => BmcError::Rejected {
            code: Some(code.unwrap_or_else(|| status.as_u16().to_string())),
            message,
        },
    }
}

fn parse_json<T: DeserializeOwned>(
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<T, BmcError> {
    from_body(body).map_err(|e| BmcError::Protocol(format!("{method} {path}: malformed JSON: {e}")))
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)?
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The last path segment of an `@odata.id`.
fn last_segment(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

fn join_display<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The targets assumed when a BMC does not list `BootSourceOverrideTarget`'s
/// allowed values.
pub fn default_boot_targets() -> Vec<BootSource> {
    vec![
        BootSource::Pxe,
        BootSource::Hdd,
        BootSource::Cd,
        BootSource::BiosSetup,
    ]
}

/// Allowed boot override targets of a system.
pub fn allowed_boot_targets(system: &ComputerSystem) -> Vec<BootSource> {
    system
        .boot
        .as_ref()
        .and_then(|b| b.target_allowable.clone())
        .filter(|l| !l.is_empty())
        .unwrap_or_else(default_boot_targets)
}

impl RedfishClient {
    /// Build a client. No request is sent until the first operation.
    pub fn new(cfg: RedfishConfig) -> Result<RedfishClient, BmcError> {
        let base = parse_base(&cfg.url)?;
        if cfg.request_timeout.is_zero() || cfg.operation_timeout.is_zero() {
            return Err(BmcError::Config("Redfish timeouts must be positive".into()));
        }

        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(ODATA_VERSION.clone(), HeaderValue::from_static("4.0"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("ironrack/", env!("CARGO_PKG_VERSION"))),
        );
        if cfg.quirks.connection_close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }

        let origin = base.origin();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else if attempt.url().origin() == origin {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });

        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            // BMCs sit on the rack's management network: never route their
            // traffic (and credentials) through an environment proxy.
            .no_proxy()
            .default_headers(headers)
            .redirect(redirects)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(15)))
            .pool_idle_timeout(Duration::from_secs(30));
        if cfg.quirks.connection_close {
            builder = builder.pool_max_idle_per_host(0);
        }
        if !cfg.verify_tls {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &cfg.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                BmcError::Config(format!("cannot read CA bundle {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                BmcError::Config(format!("invalid CA bundle {}: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(BmcError::Config(format!(
                    "CA bundle {} holds no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| {
            BmcError::Config(format!("cannot build HTTP client: {}", error_chain(&e)))
        })?;

        Ok(RedfishClient {
            http,
            base,
            cfg,
            retry: RetryPolicy::default(),
            auth: Mutex::new(AuthState::Unknown),
            generation: AtomicU64::new(0),
            root: OnceCell::new(),
            discovery: OnceCell::new(),
            cd_path: OnceCell::new(),
            needs_reassert: AtomicBool::new(false),
        })
    }

    #[cfg(test)]
    pub(crate) fn with_retry_policy(mut self, retry: RetryPolicy) -> RedfishClient {
        self.retry = retry;
        self
    }

    /// The origin requests go to.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// True once a persistent boot override was refused and a one-time
    /// override set instead: the caller must set the boot device again before
    /// every boot.
    pub fn needs_reassert(&self) -> bool {
        self.needs_reassert.load(Ordering::Relaxed)
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.cfg.operation_timeout
    }

    /// Resolve a path (or a URL the BMC gave) against the BMC's origin. A URL
    /// naming another origin keeps only its path: requests (and the token)
    /// never leave the configured BMC.
    fn url(&self, path: &str) -> Result<Url, BmcError> {
        let joined = self
            .base
            .join(path)
            .map_err(|e| BmcError::Protocol(format!("invalid resource path {path:?}: {e}")))?;
        if joined.origin() == self.base.origin() {
            return Ok(joined);
        }
        let mut url = self.base.clone();
        url.set_path(joined.path());
        url.set_query(joined.query());
        Ok(url)
    }

    /// A path (and query) for a `Location` header or `@odata.id`.
    fn to_path(&self, location: &str) -> Option<String> {
        let url = self.url(location).ok()?;
        Some(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        })
    }

    // ---------------------------------------------------------------- transport

    async fn exchange(
        &self,
        req: &Req<'_>,
        cred: &Credential,
        deadline: Instant,
    ) -> Result<Reply, Transport> {
        let now = Instant::now();
        if now >= deadline {
            return Err(Transport::Deadline);
        }
        let url = self
            .url(req.path)
            .map_err(|e| Transport::Invalid(e.to_string()))?;
        let mut rb = self
            .http
            .request(req.method.clone(), url)
            .timeout(self.cfg.request_timeout.min(deadline - now));
        match cred {
            Credential::None => {}
            Credential::Basic => {
                rb = rb.basic_auth(&self.cfg.username, Some(self.cfg.password.as_str()));
            }
            Credential::Token { token, .. } => {
                let mut value = HeaderValue::from_str(token).map_err(|_| {
                    Transport::Invalid("session token is not a header value".into())
                })?;
                value.set_sensitive(true);
                rb = rb.header(X_AUTH_TOKEN.clone(), value);
            }
        }
        if let Some(tag) = req.if_match {
            if let Ok(v) = HeaderValue::from_str(tag) {
                rb = rb.header(IF_MATCH, v);
            }
        }
        if let Some(body) = req.body {
            // Plain `application/json` (no charset) whether or not the
            // `content_type_no_charset` quirk is set; see RedfishQuirks.
            rb = rb.header(CONTENT_TYPE, JSON).body(body.to_vec());
        }

        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                if Instant::now() >= deadline {
                    Transport::Deadline
                } else {
                    Transport::Timeout
                }
            } else if e.is_connect() {
                Transport::Connect(error_chain(&e))
            } else {
                Transport::Io(error_chain(&e))
            }
        };

        let mut resp = rb.send().await.map_err(classify)?;
        let status = resp.status();
        let headers = resp.headers();
        let etag = header_text(headers, &ETAG);
        let location = header_text(headers, &LOCATION);
        let retry_after = header_text(headers, &RETRY_AFTER)
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs);
        let auth_token = header_text(headers, &X_AUTH_TOKEN).map(Zeroizing::new);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Transport::Invalid(format!(
                    "{} {}: response larger than {MAX_BODY} bytes",
                    req.method, req.path
                )));
            }
            body.extend_from_slice(&chunk);
        }
        debug!(method = %req.method, path = req.path, status = status.as_u16(), "redfish");
        Ok(Reply {
            status,
            etag,
            location,
            retry_after,
            auth_token,
            body,
        })
    }

    fn is_busy(&self, reply: &Reply) -> bool {
        let wanted = &self.cfg.quirks.retryable_error_ids;
        if wanted.is_empty() || reply.body.is_empty() {
            return false;
        }
        let Ok(parsed) = from_body::<ErrorResponse>(&reply.body) else {
            return false;
        };
        parsed.message_ids().iter().any(|id| {
            wanted.iter().any(|w| {
                *id == w.as_str()
                    || id
                        .strip_suffix(w.as_str())
                        .is_some_and(|p| p.ends_with('.'))
            })
        })
    }

    /// Send with the retry, re-authentication and deadline rules.
    async fn send(
        &self,
        req: &Req<'_>,
        mode: AuthMode,
        deadline: Instant,
    ) -> Result<Reply, Failure> {
        let policy = self.retry;
        let mut transient = 0u32;
        let mut busy = 0u32;
        let mut reauthed = false;
        loop {
            let cred = match mode {
                AuthMode::None => Credential::None,
                AuthMode::Basic => Credential::Basic,
                AuthMode::Managed => self.credential(deadline).await?,
            };
            let (delay, last) = match self.exchange(req, &cred, deadline).await {
                Err(t) => {
                    let error = match t {
                        Transport::Deadline => {
                            return Err(BmcError::Timeout(self.cfg.operation_timeout).into())
                        }
                        Transport::Invalid(m) => return Err(BmcError::Protocol(m).into()),
                        // A POST that timed out may still be carried out (a
                        // reset, say): sending it again could do it twice.
                        Transport::Timeout if req.method == Method::POST => {
                            return Err(BmcError::Timeout(self.cfg.request_timeout).into())
                        }
                        Transport::Timeout => BmcError::Timeout(self.cfg.request_timeout),
                        Transport::Connect(m) | Transport::Io(m) => {
                            BmcError::Unreachable(format!("{} {}: {m}", req.method, req.path))
                        }
                    };
                    transient += 1;
                    if transient >= policy.transient_tries {
                        return Err(error.into());
                    }
                    (
                        policy.backoff(policy.transient_base, transient),
                        Failure::plain(error),
                    )
                }
                Ok(reply) if reply.status.is_success() => return Ok(reply),
                Ok(reply) => {
                    let failure = Failure {
                        status: Some(reply.status),
                        error: http_error(&req.method, req.path, reply.status, &reply.body),
                    };
                    let code = reply.status.as_u16();
                    if code == 401 {
                        if let Credential::Token { generation, .. } = cred {
                            if !reauthed {
                                reauthed = true;
                                debug!("session rejected (401); logging in again");
                                self.invalidate(generation).await;
                                continue;
                            }
                        }
                        return Err(failure);
                    }
                    let floor = reply.retry_after.unwrap_or_default().min(policy.max_delay);
                    if code == 409 || self.is_busy(&reply) {
                        busy += 1;
                        if busy >= policy.busy_tries {
                            return Err(failure);
                        }
                        (policy.backoff(policy.busy_base, busy).max(floor), failure)
                    } else if matches!(code, 500 | 502 | 503 | 504) {
                        transient += 1;
                        if transient >= policy.transient_tries {
                            return Err(failure);
                        }
                        (
                            policy.backoff(policy.transient_base, transient).max(floor),
                            failure,
                        )
                    } else {
                        return Err(failure);
                    }
                }
            };
            if Instant::now() + delay >= deadline {
                return Err(last);
            }
            warn!(
                method = %req.method,
                path = req.path,
                error = %last.error,
                retry_in_ms = delay.as_millis() as u64,
                "redfish request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    // --------------------------------------------------------------------- auth

    async fn credential(&self, deadline: Instant) -> Result<Credential, BmcError> {
        let mut state = self.auth.lock().await;
        if matches!(*state, AuthState::Unknown) {
            // Boxed: login sends requests itself (recursion through `send`).
            *state = Box::pin(self.login(deadline)).await?;
        }
        Ok(match &*state {
            AuthState::Session {
                token, generation, ..
            } => Credential::Token {
                token: token.clone(),
                generation: *generation,
            },
            _ => Credential::Basic,
        })
    }

    /// Drop a session the BMC no longer accepts (unless another request
    /// already replaced it).
    async fn invalidate(&self, generation: u64) {
        let mut state = self.auth.lock().await;
        if let AuthState::Session { generation: g, .. } = &*state {
            if *g == generation {
                *state = AuthState::Unknown;
            }
        }
    }

    /// Open a session, or settle for basic auth.
    async fn login(&self, deadline: Instant) -> Result<AuthState, BmcError> {
        let root = self.root().await?;
        let sessions = root
            .links
            .as_ref()
            .and_then(|l| l.sessions.as_ref())
            .and_then(|s| s.odata_id.clone())
            .or_else(|| {
                root.session_service
                    .as_ref()
                    .map(|_| "/redfish/v1/SessionService/Sessions".to_owned())
            });
        let Some(sessions) = sessions else {
            debug!("no SessionService; using HTTP basic auth");
            return Ok(AuthState::Basic);
        };
        let body = Zeroizing::new(
            serde_json::to_vec(&Login {
                user: &self.cfg.username,
                password: &self.cfg.password,
            })
            .map_err(|e| BmcError::Protocol(format!("cannot encode login: {e}")))?,
        );
        let req = Req {
            method: Method::POST,
            path: &sessions,
            body: Some(&body),
            if_match: None,
        };
        match self.send(&req, AuthMode::None, deadline).await {
            Ok(reply) => {
                let token = reply
                    .auth_token
                    .filter(|t| HeaderValue::from_str(t).is_ok());
                let Some(token) = token else {
                    warn!("session login returned no usable X-Auth-Token; using HTTP basic auth");
                    return Ok(AuthState::Basic);
                };
                let location = reply
                    .location
                    .as_deref()
                    .and_then(|l| self.to_path(l))
                    .or_else(|| {
                        from_body::<super::model::OdataRef>(&reply.body)
                            .ok()
                            .and_then(|r| r.odata_id)
                    });
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                debug!(session = location.as_deref(), "redfish session opened");
                Ok(AuthState::Session {
                    token,
                    location,
                    generation,
                })
            }
            Err(Failure {
                error: e @ (BmcError::Unreachable(_) | BmcError::Timeout(_)),
                ..
            }) => Err(e),
            Err(f) => {
                warn!(error = %f.error, "session login failed; falling back to HTTP basic auth");
                Ok(AuthState::Basic)
            }
        }
    }

    /// Delete the session, if any. Best effort: errors are logged.
    pub async fn close(&self) {
        let mut state = self.auth.lock().await;
        let old = std::mem::replace(&mut *state, AuthState::Unknown);
        let AuthState::Session {
            token, location, ..
        } = old
        else {
            return;
        };
        let Some(location) = location else {
            debug!("session has no URI; cannot delete it");
            return;
        };
        let req = Req {
            method: Method::DELETE,
            path: &location,
            body: None,
            if_match: None,
        };
        let deadline = Instant::now() + self.cfg.request_timeout.min(Duration::from_secs(10));
        let cred = Credential::Token {
            token,
            generation: 0,
        };
        match self.exchange(&req, &cred, deadline).await {
            Ok(r) if r.status.is_success() || r.status == StatusCode::NOT_FOUND => {
                debug!("redfish session deleted")
            }
            Ok(r) => warn!(status = r.status.as_u16(), "cannot delete redfish session"),
            Err(_) => warn!("cannot delete redfish session: BMC did not answer"),
        }
    }

    // ------------------------------------------------------------ JSON helpers

    /// GET a document and its ETag (header, else `@odata.etag`).
    pub(crate) async fn get_doc<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, Option<String>), BmcError> {
        let reply = self
            .send(&Req::get(path), AuthMode::Managed, self.deadline())
            .await?;
        let doc: T = parse_json(&Method::GET, path, &reply.body)?;
        let etag = match reply.etag {
            Some(e) => Some(e),
            None => serde_json::from_slice::<Value>(&reply.body)
                .ok()
                .and_then(|v| v.get("@odata.etag")?.as_str().map(str::to_owned)),
        };
        Ok((doc, etag))
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, BmcError> {
        Ok(self.get_doc(path).await?.0)
    }

    /// POST or PATCH a JSON body; follow a 202 task monitor.
    async fn write(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<(), Failure> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| BmcError::Protocol(format!("cannot encode request: {e}")))?;
        let deadline = self.deadline();
        let req = Req {
            method,
            path,
            body: Some(&bytes),
            if_match,
        };
        let reply = self.send(&req, AuthMode::Managed, deadline).await?;
        if reply.status == StatusCode::ACCEPTED {
            if let Some(monitor) = reply.location.as_deref().and_then(|l| self.to_path(l)) {
                self.follow_task(&monitor, reply.retry_after, deadline)
                    .await?;
            }
        }
        Ok(())
    }

    /// Poll a task monitor until the task ends.
    async fn follow_task(
        &self,
        monitor: &str,
        first_delay: Option<Duration>,
        deadline: Instant,
    ) -> Result<(), BmcError> {
        let mut delay = first_delay.unwrap_or(self.retry.poll);
        loop {
            let delay_now = delay.min(self.retry.max_delay);
            if Instant::now() + delay_now >= deadline {
                return Err(BmcError::Timeout(self.cfg.operation_timeout));
            }
            tokio::time::sleep(delay_now).await;
            let reply = match self
                .send(&Req::get(monitor), AuthMode::Managed, deadline)
                .await
            {
                Ok(r) => r,
                Err(Failure {
                    status: Some(StatusCode::NOT_FOUND),
                    ..
                }) => {
                    debug!(monitor, "task monitor gone; assuming the task completed");
                    return Ok(());
                }
                Err(f) => return Err(f.error),
            };
            delay = reply.retry_after.unwrap_or(self.retry.poll);
            let task: Option<Task> = from_body(&reply.body).ok();
            let state = task.as_ref().and_then(|t| t.task_state.clone());
            match state {
                Some(s) if s.is_failure() => {
                    let task = task.unwrap_or_default();
                    let code = task
                        .messages
                        .iter()
                        .find_map(|m| m.message_id.clone())
                        .unwrap_or_else(|| format!("Task{s}"));
                    let text: Vec<String> = task
                        .messages
                        .iter()
                        .filter_map(|m| m.message.clone())
                        .collect();
                    return Err(BmcError::Rejected {
                        code: Some(code),
                        message: format!("task {monitor} ended {s}: {}", text.join("; ")),
                    });
                }
                Some(s) if s.is_terminal() => return Ok(()),
                Some(_) => continue,
                None if reply.status == StatusCode::ACCEPTED => continue,
                None => return Ok(()),
            }
        }
    }

    /// All member paths of a collection, following `nextLink` pages.
    async fn members(&self, path: &str) -> Result<Vec<String>, BmcError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(page) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                warn!(collection = path, "too many collection pages; stopping");
                break;
            }
            let c: Collection = self.get(&page).await?;
            out.extend(c.member_paths().map(str::to_owned));
            next = c.next_link;
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- discovery

    /// The service root; fetched once without credentials (basic when the
    /// service insists).
    pub async fn root(&self) -> Result<&ServiceRoot, BmcError> {
        self.root
            .get_or_try_init(|| async {
                let path = "/redfish/v1/";
                let req = Req::get(path);
                let deadline = self.deadline();
                let reply = match self.send(&req, AuthMode::None, deadline).await {
                    Ok(r) => r,
                    Err(Failure {
                        status: Some(s), ..
                    }) if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN => {
                        self.send(&req, AuthMode::Basic, deadline).await?
                    }
                    Err(f) => return Err(f.error),
                };
                parse_json::<ServiceRoot>(&Method::GET, path, &reply.body)
            })
            .await
    }

    /// Find the system and its manager (cached after the first success).
    pub async fn discovery(&self) -> Result<&Discovery, BmcError> {
        self.discovery.get_or_try_init(|| self.discover()).await
    }

    async fn discover(&self) -> Result<Discovery, BmcError> {
        let root = self.root().await?;
        let systems = root
            .systems
            .as_ref()
            .and_then(|s| s.odata_id.clone())
            .unwrap_or_else(|| "/redfish/v1/Systems".to_owned());
        let wanted = self
            .cfg
            .system_id
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| self.cfg.quirks.system_path.clone());

        let (system_path, system) = match wanted {
            Some(p) if p.starts_with('/') => {
                let sys: ComputerSystem = self.get(&p).await.map_err(|e| match e {
                    BmcError::Rejected { code, message } if code.as_deref() == Some("404") => {
                        BmcError::Config(format!("system {p} not found: {message}"))
                    }
                    other => other,
                })?;
                (p, sys)
            }
            Some(id) => {
                let members = self.members(&systems).await?;
                let mut found = None;
                if let Some(m) = members.iter().find(|m| last_segment(m) == id) {
                    let sys: ComputerSystem = self.get(m).await?;
                    found = Some((m.clone(), sys));
                } else {
                    for m in members.iter().take(MAX_SYSTEM_LOOKUPS) {
                        let sys: ComputerSystem = self.get(m).await?;
                        let hit = sys.id.as_deref() == Some(id.as_str())
                            || sys
                                .uuid
                                .as_deref()
                                .is_some_and(|u| u.eq_ignore_ascii_case(&id));
                        if hit {
                            found = Some((m.clone(), sys));
                            break;
                        }
                    }
                }
                found.ok_or_else(|| {
                    BmcError::Config(format!(
                        "system {id:?} not found in {systems}; members: [{}]",
                        members.join(", ")
                    ))
                })?
            }
            None => {
                let members = self.members(&systems).await?;
                match members.as_slice() {
                    [only] => {
                        let sys: ComputerSystem = self.get(only).await?;
                        (only.clone(), sys)
                    }
                    [] => return Err(BmcError::Protocol(format!("{systems} lists no system"))),
                    several => {
                        return Err(BmcError::Config(format!(
                            "{systems} lists {} systems; configure system_id to pick one of [{}]",
                            several.len(),
                            several.join(", ")
                        )))
                    }
                }
            }
        };
        let system_path = system
            .odata_id
            .as_deref()
            .and_then(|p| self.to_path(p))
            .unwrap_or(system_path);
        let manager_path = system.manager_path().map(str::to_owned);
        debug!(system = %system_path, manager = ?manager_path, "redfish discovery");
        Ok(Discovery {
            system_path,
            manager_path,
        })
    }

    /// GET the system and its ETag.
    pub async fn system(&self) -> Result<(ComputerSystem, Option<String>), BmcError> {
        let path = self.discovery().await?.system_path.clone();
        self.get_doc(&path).await
    }

    // -------------------------------------------------------------------- power

    /// Apply the `reset_substitutions` quirk.
    pub fn substitute(&self, t: &ResetType) -> ResetType {
        match self.cfg.quirks.reset_substitutions.get(t.as_str()) {
            Some(s) => ResetType::parse(s),
            None => t.clone(),
        }
    }

    /// The reset action's target and allowed values (from the annotation, else
    /// from `@Redfish.ActionInfo`).
    pub async fn reset_info(&self, system: &ComputerSystem) -> Result<ResetInfo, BmcError> {
        let system_path = &self.discovery().await?.system_path;
        let Some(action) = system.reset_action() else {
            return Err(BmcError::Unsupported(format!(
                "{system_path} has no #ComputerSystem.Reset action"
            )));
        };
        let target = action
            .target
            .as_deref()
            .and_then(|t| self.to_path(t))
            .unwrap_or_else(|| format!("{system_path}/Actions/ComputerSystem.Reset"));
        let mut allowed = action.allowable_values.clone();
        if allowed.is_none() {
            if let Some(info_path) = action.action_info.as_deref() {
                match self.get::<ActionInfo>(info_path).await {
                    Ok(info) => {
                        allowed = info
                            .allowable("ResetType")
                            .map(|l| l.iter().map(|s| ResetType::parse(s)).collect());
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot read the reset ActionInfo; not checking reset types")
                    }
                }
            }
        }
        Ok(ResetInfo { target, allowed })
    }

    /// POST one reset (already substituted and checked).
    pub async fn reset(&self, info: &ResetInfo, t: &ResetType) -> Result<(), BmcError> {
        debug!(reset = %t, "redfish reset");
        self.write(Method::POST, &info.target, &json!({ "ResetType": t }), None)
            .await
            .map_err(BmcError::from)
    }

    /// Poll `PowerState` until `done` holds, bounded by `deadline`.
    pub async fn wait_power(
        &self,
        done: impl Fn(&PowerState) -> bool,
        deadline: Instant,
    ) -> Result<PowerState, BmcError> {
        loop {
            let (sys, _) = self.system().await?;
            if let Some(state) = sys.power_state {
                if done(&state) {
                    return Ok(state);
                }
            }
            if Instant::now() + self.retry.poll >= deadline {
                return Err(BmcError::Timeout(self.cfg.operation_timeout));
            }
            tokio::time::sleep(self.retry.poll).await;
        }
    }

    /// A deadline for a compound operation.
    pub fn operation_deadline(&self) -> Instant {
        self.deadline()
    }

    // --------------------------------------------------------------------- boot

    /// Set (or with `target == None` clear) the boot override.
    ///
    /// A persistent override the BMC refuses with 400 is retried as a one-time
    /// override, and [`needs_reassert`](Self::needs_reassert) turns true.
    pub async fn set_boot_override(
        &self,
        target: Option<BootSource>,
        persistent: bool,
        mode: Option<BootSourceOverrideMode>,
    ) -> Result<(), BmcError> {
        let (system, system_etag) = self.system().await?;
        let boot = system.boot.clone().unwrap_or_default();
        if let Some(t) = &target {
            let allowed = allowed_boot_targets(&system);
            if !allowed.contains(t) {
                return Err(BmcError::Unsupported(format!(
                    "boot target {t} is not offered by the BMC (allowed: {})",
                    join_display(&allowed)
                )));
            }
        }
        if let (Some(m), Some(allowed)) = (&mode, &boot.mode_allowable) {
            if !allowed.is_empty() && !allowed.contains(m) {
                return Err(BmcError::Unsupported(format!(
                    "boot mode {m} is not offered by the BMC (allowed: {})",
                    join_display(allowed)
                )));
            }
        }
        let continuous_offered = boot
            .enabled_allowable
            .as_ref()
            .is_none_or(|l| l.is_empty() || l.contains(&BootSourceOverrideEnabled::Continuous));
        let mut enabled = match target {
            None => BootSourceOverrideEnabled::Disabled,
            Some(_) if persistent && continuous_offered && !self.needs_reassert() => {
                BootSourceOverrideEnabled::Continuous
            }
            Some(_) => BootSourceOverrideEnabled::Once,
        };
        let mut fell_back = target.is_some() && persistent && !continuous_offered;
        let full = self.cfg.quirks.boot_patch_full_object;
        let send_mode = mode.or_else(|| if full { boot.mode.clone() } else { None });

        let system_path = self.discovery().await?.system_path.clone();
        let (path, mut etag) = match system.settings_object().and_then(|p| self.to_path(p)) {
            Some(settings) => {
                let (_, etag) = self.get_doc::<Value>(&settings).await?;
                (settings, etag)
            }
            None => (system_path, system_etag),
        };

        let mut refreshed = false;
        loop {
            let body = boot_body(target.as_ref(), &enabled, send_mode.as_ref(), full);
            match self
                .write(Method::PATCH, &path, &body, etag.as_deref())
                .await
            {
                Ok(()) => {
                    if fell_back {
                        warn!("persistent boot override refused; set once, must be re-asserted before each boot");
                        self.needs_reassert.store(true, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Err(Failure {
                    status: Some(StatusCode::BAD_REQUEST),
                    error,
                }) if enabled == BootSourceOverrideEnabled::Continuous => {
                    debug!(%error, "Continuous boot override refused; trying Once");
                    enabled = BootSourceOverrideEnabled::Once;
                    fell_back = true;
                }
                Err(Failure {
                    status: Some(StatusCode::PRECONDITION_FAILED),
                    ..
                }) if !refreshed => {
                    refreshed = true;
                    etag = self.get_doc::<Value>(&path).await?.1;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    // ------------------------------------------------------------ virtual media

    /// The CD/DVD virtual media device: from the manager's `VirtualMedia`
    /// collection, else the system's (cached after the first success).
    pub async fn cd_device(&self) -> Result<&str, BmcError> {
        self.cd_path
            .get_or_try_init(|| self.find_cd_device())
            .await
            .map(String::as_str)
    }

    async fn find_cd_device(&self) -> Result<String, BmcError> {
        let discovery = self.discovery().await?.clone();
        let mut collections = Vec::new();
        if let Some(manager) = &discovery.manager_path {
            let m: Manager = self.get(manager).await?;
            if let Some(p) = m.virtual_media.and_then(|r| r.odata_id) {
                collections.push(p);
            }
        }
        let (system, _) = self.system().await?;
        if let Some(p) = system.virtual_media.and_then(|r| r.odata_id) {
            if !collections.contains(&p) {
                collections.push(p);
            }
        }
        if collections.is_empty() {
            return Err(BmcError::Unsupported(
                "neither the manager nor the system has VirtualMedia".into(),
            ));
        }
        for collection in &collections {
            for member in self.members(collection).await? {
                let vm: VirtualMedia = self.get(&member).await?;
                if vm.is_cd() {
                    return Ok(member);
                }
            }
        }
        Err(BmcError::Unsupported(format!(
            "no CD/DVD virtual media device in {}",
            collections.join(", ")
        )))
    }

    async fn cd(&self) -> Result<(String, VirtualMedia, Option<String>), BmcError> {
        let path = self.cd_device().await?.to_owned();
        let (vm, etag) = self.get_doc::<VirtualMedia>(&path).await?;
        Ok((path, vm, etag))
    }

    /// The CD device's current image and state.
    pub async fn virtual_media_status(&self) -> Result<VirtualMediaStatus, BmcError> {
        let (path, vm, _) = self.cd().await?;
        Ok(status_of(path, &vm))
    }

    /// Insert an image URL into the virtual CD (ejecting another image first).
    pub async fn insert_virtual_media(&self, url: &str) -> Result<(), BmcError> {
        if url.trim().is_empty() || url.chars().any(char::is_whitespace) {
            return Err(BmcError::Config(format!("invalid image URL {url:?}")));
        }
        let (path, vm, etag) = self.cd().await?;
        let status = status_of(path.clone(), &vm);
        if status.inserted && status.image.as_deref() == Some(url) {
            debug!("image already inserted");
            return Ok(());
        }
        let (vm, etag) = if status.inserted || status.image.is_some() {
            self.eject_device(&path, &vm, etag.as_deref()).await?;
            self.get_doc::<VirtualMedia>(&path).await?
        } else {
            (vm, etag)
        };
        match vm.insert_target().and_then(|t| self.to_path(t)) {
            Some(target) => self
                .write(
                    Method::POST,
                    &target,
                    &json!({ "Image": url, "Inserted": true, "WriteProtected": true }),
                    None,
                )
                .await
                .map_err(BmcError::from),
            None => self
                .write(
                    Method::PATCH,
                    &path,
                    &json!({ "Image": url, "Inserted": true }),
                    etag.as_deref(),
                )
                .await
                .map_err(BmcError::from),
        }
    }

    /// Eject the virtual CD (nothing to do when it is empty).
    pub async fn eject_virtual_media(&self) -> Result<(), BmcError> {
        let (path, vm, etag) = self.cd().await?;
        let status = status_of(path.clone(), &vm);
        if !status.inserted && status.image.is_none() {
            debug!("virtual CD already empty");
            return Ok(());
        }
        self.eject_device(&path, &vm, etag.as_deref()).await
    }

    async fn eject_device(
        &self,
        path: &str,
        vm: &VirtualMedia,
        etag: Option<&str>,
    ) -> Result<(), BmcError> {
        match vm.eject_target().and_then(|t| self.to_path(t)) {
            Some(target) => self
                .write(Method::POST, &target, &json!({}), None)
                .await
                .map_err(BmcError::from),
            None => self
                .write(
                    Method::PATCH,
                    path,
                    &json!({ "Image": null, "Inserted": false }),
                    etag,
                )
                .await
                .map_err(BmcError::from),
        }
    }
}

fn status_of(path: String, vm: &VirtualMedia) -> VirtualMediaStatus {
    VirtualMediaStatus {
        path,
        image: vm.image.clone().filter(|s| !s.trim().is_empty()),
        inserted: vm.inserted.unwrap_or(false),
        write_protected: vm.write_protected,
    }
}

/// The `{"Boot": {...}}` PATCH body.
fn boot_body(
    target: Option<&BootSource>,
    enabled: &BootSourceOverrideEnabled,
    mode: Option<&BootSourceOverrideMode>,
    full: bool,
) -> Value {
    let mut boot = Map::new();
    match target {
        Some(t) => {
            boot.insert("BootSourceOverrideTarget".into(), json!(t));
        }
        None if full => {
            boot.insert("BootSourceOverrideTarget".into(), json!(BootSource::None));
        }
        None => {}
    }
    boot.insert("BootSourceOverrideEnabled".into(), json!(enabled));
    if let Some(m) = mode {
        boot.insert("BootSourceOverrideMode".into(), json!(m));
    }
    json!({ "Boot": boot })
}

#[cfg(test)]
mod tests;
