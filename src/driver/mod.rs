//! The Nova-side driver layer: what nova.virt.ironic.driver does with an
//! Ironic API, as a Rust client of ours. It maps Ironic power states to Nova's
//! (RUNNING / SHUTDOWN / NOSTATE) and carries out power on, power off with a
//! soft-then-hard fallback, and reboot with a soft-to-hard fallback, waiting
//! for `target_power_state` to clear at a retry interval. `provision` adds
//! spawn, destroy and rebuild (instance info, VIFs, provision states).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// Microversion the driver asks for: soft power and power timeouts (1.27),
/// VIF attach/detach (1.28), NMI (1.29) and a config drive with `rebuild`
/// (1.35) are the newest features it uses.
pub const API_VERSION: &str = "1.38";

mod provision;
pub use provision::*;

/// Nova's `nova.compute.power_state` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NovaPowerState {
    NoState = 0,
    Running = 1,
    Shutdown = 4,
}

impl NovaPowerState {
    pub fn name(self) -> &'static str {
        match self {
            NovaPowerState::NoState => "NOSTATE",
            NovaPowerState::Running => "RUNNING",
            NovaPowerState::Shutdown => "SHUTDOWN",
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Ironic power state → Nova power state; anything unknown is NOSTATE (and
/// logged, as Nova does).
pub fn map_power_state(state: Option<&str>) -> NovaPowerState {
    match state {
        Some("power on") => NovaPowerState::Running,
        Some("power off") => NovaPowerState::Shutdown,
        None => NovaPowerState::NoState,
        Some(other) => {
            tracing::warn!(state = other, "power state not found; reporting NOSTATE");
            NovaPowerState::NoState
        }
    }
}

/// The node fields the driver reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct NodeView {
    pub uuid: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub power_state: Option<String>,
    #[serde(default)]
    pub target_power_state: Option<String>,
    #[serde(default)]
    pub provision_state: Option<String>,
    #[serde(default)]
    pub target_provision_state: Option<String>,
    #[serde(default)]
    pub instance_uuid: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub maintenance: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriverError {
    #[error("node {0} not found")]
    NotFound(String),
    /// 400: e.g. soft power is not supported by the node's driver.
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("API error {status}: {message}")]
    Api { status: u16, message: String },
    #[error("cannot reach the API: {0}")]
    Http(String),
    #[error("{0}")]
    Timeout(String),
    /// Nova's InstanceDeployFailure: the node went to `deploy failed` (or
    /// `error`) while deploying, or refused the instance info; the message
    /// carries the node's last_error.
    #[error("{0}")]
    DeployFailed(String),
    /// Nova's InstanceNotFound while waiting for ACTIVE: the node no longer
    /// carries the instance, is being torn down, or is gone.
    #[error("{0}")]
    InstanceRemoved(String),
    /// Nova's ValidationError: the node's deploy or power interface failed
    /// `GET /v1/nodes/{id}/validate`.
    #[error("{0}")]
    ValidationFailed(String),
    /// Nova's VirtualInterfacePlugException: a VIF attach answered 400.
    #[error("{0}")]
    VifPlugFailed(String),
}

/// The faultstring out of an Ironic error body (whose `error_message` is JSON
/// inside a string), or the raw body.
pub fn error_message(body: &str) -> String {
    let outer: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return body.trim().chars().take(500).collect(),
    };
    let inner = &outer["error_message"];
    let parsed = match inner {
        Value::String(s) => serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.clone())),
        other => other.clone(),
    };
    match &parsed["faultstring"] {
        Value::String(s) => s.clone(),
        _ => match parsed {
            Value::String(s) => s,
            v => v.to_string(),
        },
    }
}

/// A small client of the Ironic API (ours or Ironic's).
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    auth: Option<(String, Zeroizing<String>)>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .field("auth", &self.auth.as_ref().map(|(u, _)| (u, "******")))
            .finish()
    }
}

impl ApiClient {
    /// `base` is the endpoint, e.g. `http://127.0.0.1:6385`; every request
    /// is bounded by `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<ApiClient, DriverError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| DriverError::Http(e.to_string()))?;
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            auth: None,
        })
    }

    /// HTTP basic credentials (`http_basic` auth).
    pub fn with_basic_auth(mut self, user: &str, password: Zeroizing<String>) -> ApiClient {
        self.auth = Some((user.to_string(), password));
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut b = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-OpenStack-Ironic-API-Version", API_VERSION)
            .header("Accept", "application/json");
        if let Some((u, p)) = &self.auth {
            b = b.basic_auth(u, Some(p.as_str()));
        }
        b
    }

    async fn send(&self, b: reqwest::RequestBuilder, node: &str) -> Result<String, DriverError> {
        let resp = b.send().await.map_err(|e| {
            if e.is_timeout() {
                DriverError::Timeout(format!("the API did not answer: {e}"))
            } else {
                DriverError::Http(e.to_string())
            }
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| DriverError::Http(e.to_string()))?;
        match status {
            200..=299 => Ok(body),
            404 => Err(DriverError::NotFound(node.to_string())),
            400 => Err(DriverError::BadRequest(error_message(&body))),
            409 => Err(DriverError::Conflict(error_message(&body))),
            s => Err(DriverError::Api {
                status: s,
                message: error_message(&body),
            }),
        }
    }

    /// The node, or `None` when the API says 404.
    pub async fn get_node(&self, ident: &str) -> Result<Option<NodeView>, DriverError> {
        let path = format!("/v1/nodes/{}", path_segment(ident));
        match self
            .send(self.request(reqwest::Method::GET, &path), ident)
            .await
        {
            Ok(body) => serde_json::from_str(&body)
                .map(Some)
                .map_err(|e| DriverError::Http(format!("unreadable node document: {e}"))),
            Err(DriverError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /v1/nodes/{id}/states/power` with an Ironic target string.
    pub async fn set_power_state(
        &self,
        ident: &str,
        target: &str,
        timeout: Option<u64>,
    ) -> Result<(), DriverError> {
        let mut body = json!({ "target": target });
        if let Some(t) = timeout {
            body["timeout"] = json!(t);
        }
        let path = format!("/v1/nodes/{}/states/power", path_segment(ident));
        self.send(self.request(reqwest::Method::PUT, &path).json(&body), ident)
            .await
            .map(|_| ())
    }

    /// `GET path` (under the endpoint) as JSON; errors as for the node
    /// calls, with 404 naming `ident`.
    pub async fn get_json(&self, path: &str, ident: &str) -> Result<Value, DriverError> {
        let body = self
            .send(self.request(reqwest::Method::GET, path), ident)
            .await?;
        serde_json::from_str(&body)
            .map_err(|e| DriverError::Http(format!("unreadable JSON document: {e}")))
    }

    /// `PUT path` with a JSON body; the answer's body is ignored.
    pub async fn put_json(&self, path: &str, body: &Value, ident: &str) -> Result<(), DriverError> {
        self.send(self.request(reqwest::Method::PUT, path).json(body), ident)
            .await
            .map(|_| ())
    }
}

/// Percent-encode a node name or uuid for a URL path.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `get_info`'s answer.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceInfo {
    pub state: NovaPowerState,
    /// The Ironic power state behind it (`None` when unknown or no node).
    pub power_state: Option<String>,
}

impl InstanceInfo {
    pub fn json(&self) -> Value {
        json!({ "state": self.state.name(), "power_state": self.power_state })
    }
}

/// How the driver rebooted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootType {
    Soft,
    Hard,
}

/// The Nova-side operations, after nova.virt.ironic.driver.IronicDriver.
#[derive(Clone, Debug)]
pub struct IronicDriver {
    pub api: ApiClient,
    /// Nova's `[ironic] api_retry_interval`.
    pub retry_interval: Duration,
    /// Nova's `[ironic] api_max_retries`: polls before a wait gives up.
    pub max_retries: u32,
}

impl IronicDriver {
    pub fn new(api: ApiClient) -> IronicDriver {
        IronicDriver {
            api,
            retry_interval: Duration::from_secs(2),
            max_retries: 60,
        }
    }

    async fn node(&self, ident: &str) -> Result<NodeView, DriverError> {
        self.api
            .get_node(ident)
            .await?
            .ok_or_else(|| DriverError::NotFound(ident.to_string()))
    }

    /// NOSTATE for an unknown node, never an error for that.
    pub async fn get_info(&self, ident: &str) -> Result<InstanceInfo, DriverError> {
        Ok(match self.api.get_node(ident).await? {
            None => InstanceInfo {
                state: NovaPowerState::NoState,
                power_state: None,
            },
            Some(n) => InstanceInfo {
                state: map_power_state(n.power_state.as_deref()),
                power_state: n.power_state,
            },
        })
    }

    /// Poll until the node's target_power_state clears; return the node.
    pub async fn wait_for_power_state(
        &self,
        ident: &str,
        what: &str,
    ) -> Result<NodeView, DriverError> {
        for attempt in 0..=self.max_retries {
            let node = self.node(ident).await?;
            if node.target_power_state.is_none() {
                return Ok(node);
            }
            tracing::debug!(
                node = %node.uuid,
                attempt,
                power_state = ?node.power_state,
                target_power_state = ?node.target_power_state,
                "still waiting for the node to {what}"
            );
            tokio::time::sleep(self.retry_interval).await;
        }
        Err(DriverError::Timeout(format!(
            "node {ident} did not {what} within {} polls of {:?}",
            self.max_retries, self.retry_interval
        )))
    }

    pub async fn power_on(&self, ident: &str) -> Result<NodeView, DriverError> {
        let node = self.node(ident).await?;
        self.api
            .set_power_state(&node.uuid, "power on", None)
            .await?;
        let node = self.wait_for_power_state(&node.uuid, "power on").await?;
        tracing::info!(node = %node.uuid, "successfully powered on");
        Ok(node)
    }

    /// With a timeout: soft power off first, and hard power off when it fails
    /// or does not finish in time. Without one: hard power off.
    pub async fn power_off(
        &self,
        ident: &str,
        timeout: Option<u64>,
    ) -> Result<NodeView, DriverError> {
        let node = self.node(ident).await?;
        if let Some(t) = timeout.filter(|t| *t > 0) {
            let soft = async {
                self.api
                    .set_power_state(&node.uuid, "soft power off", Some(t))
                    .await?;
                self.wait_for_power_state(&node.uuid, "soft power off")
                    .await
            };
            match soft.await {
                Ok(n) if n.power_state.as_deref() == Some("power off") => {
                    tracing::info!(node = %n.uuid, "successfully soft powered off");
                    return Ok(n);
                }
                Ok(n) => tracing::info!(
                    node = %n.uuid,
                    timeout = t,
                    reason = ?n.last_error,
                    "failed to soft power off within the timeout; attempting hard power off"
                ),
                Err(e) => tracing::info!(
                    node = %node.uuid,
                    error = %e,
                    "soft power off failed; attempting hard power off"
                ),
            }
        }
        self.api
            .set_power_state(&node.uuid, "power off", None)
            .await?;
        let n = self.wait_for_power_state(&node.uuid, "power off").await?;
        tracing::info!(node = %n.uuid, "successfully powered off");
        Ok(n)
    }

    /// A SOFT reboot falls back to HARD when the node's driver answers 400.
    pub async fn reboot(
        &self,
        ident: &str,
        kind: RebootType,
    ) -> Result<(RebootType, NodeView), DriverError> {
        let node = self.node(ident).await?;
        let mut done = RebootType::Hard;
        if kind == RebootType::Soft {
            match self
                .api
                .set_power_state(&node.uuid, "soft rebooting", None)
                .await
            {
                Ok(()) => done = RebootType::Soft,
                Err(DriverError::BadRequest(m)) => tracing::info!(
                    node = %node.uuid,
                    reason = %m,
                    "soft reboot is not supported by the node's driver; falling back to hard reboot"
                ),
                Err(e) => return Err(e),
            }
        }
        if done == RebootType::Hard {
            self.api
                .set_power_state(&node.uuid, "rebooting", None)
                .await?;
        }
        let n = self.wait_for_power_state(&node.uuid, "reboot").await?;
        tracing::info!(node = %n.uuid, kind = ?done, "successfully rebooted");
        Ok((done, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_states_map_like_nova() {
        assert_eq!(map_power_state(Some("power on")), NovaPowerState::Running);
        assert_eq!(map_power_state(Some("power off")), NovaPowerState::Shutdown);
        assert_eq!(map_power_state(None), NovaPowerState::NoState);
        assert_eq!(map_power_state(Some("rebooting")), NovaPowerState::NoState);
        assert_eq!(map_power_state(Some("error")), NovaPowerState::NoState);
        assert_eq!(NovaPowerState::Running.code(), 1);
        assert_eq!(NovaPowerState::Shutdown.code(), 4);
        assert_eq!(NovaPowerState::NoState.code(), 0);
    }

    #[test]
    fn ironic_error_bodies_are_read() {
        let body = json!({
            "error_message": json!({
                "faultstring": "Node x is locked by host h.",
                "faultcode": "Client",
                "debuginfo": null
            }).to_string()
        })
        .to_string();
        assert_eq!(error_message(&body), "Node x is locked by host h.");
        assert_eq!(
            error_message(r#"{"error_message": {"faultstring": "plain"}}"#),
            "plain"
        );
        assert_eq!(error_message("not json"), "not json");
        assert_eq!(error_message(r#"{"error_message": "text"}"#), "text");
    }

    #[test]
    fn names_are_path_safe() {
        assert_eq!(path_segment("node-1_a.b~c"), "node-1_a.b~c");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}

/// Where Nova's serial console proxy connects: nova.virt.ironic's
/// `ConsoleSerial(host, port)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialConsole {
    pub host: String,
    pub port: u16,
}

/// Why a serial console cannot be handed out (Nova's
/// `ConsoleTypeUnavailable(console_type='serial')`), with the reason.
fn console_unavailable(why: impl std::fmt::Display) -> DriverError {
    DriverError::Api {
        status: 0,
        message: format!("console unavailable: serial ({why})"),
    }
}

/// `tcp://HOST:PORT` (IPv6 hosts in brackets) as host and port; anything
/// else is refused, as nova.virt.ironic does.
pub fn parse_console_url(url: &str) -> Option<SerialConsole> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (h, tail) = inner.split_once(']')?;
        (h, tail.strip_prefix(':')?)
    } else {
        authority.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 {
        return None;
    }
    Some(SerialConsole {
        host: host.to_string(),
        port,
    })
}

impl IronicDriver {
    async fn console_doc(&self, ident: &str) -> Result<Value, DriverError> {
        let path = format!("/v1/nodes/{}/states/console", path_segment(ident));
        self.api.get_json(&path, ident).await
    }

    /// Ask for the console mode, then poll until the node shows it (Nova's
    /// `_enable_console` with its state wait).
    async fn set_console(&self, ident: &str, enabled: bool) -> Result<Value, DriverError> {
        let path = format!("/v1/nodes/{}/states/console", path_segment(ident));
        self.api
            .put_json(&path, &json!({ "enabled": enabled }), ident)
            .await?;
        for _ in 0..self.max_retries.max(1) {
            let doc = self.console_doc(ident).await?;
            if doc["console_enabled"].as_bool() == Some(enabled) {
                return Ok(doc);
            }
            tokio::time::sleep(self.retry_interval).await;
        }
        Err(DriverError::Timeout(format!(
            "console of node {ident} did not become {} after {} polls",
            if enabled { "enabled" } else { "disabled" },
            self.max_retries
        )))
    }

    /// nova.virt.ironic's `get_serial_console`: an enabled console is reset
    /// (disabled, then enabled) to take it over from whoever holds it; it
    /// must be of type `socat` with a `tcp://host:port` URL.
    pub async fn get_serial_console(&self, ident: &str) -> Result<SerialConsole, DriverError> {
        let mut doc = self.console_doc(ident).await.map_err(console_unavailable)?;
        if doc["console_enabled"].as_bool() == Some(true) {
            doc = match self.set_console(ident, false).await {
                Ok(_) => self.set_console(ident, true).await,
                // Recover: try to leave the console enabled.
                Err(_) => self.set_console(ident, true).await,
            }
            .map_err(console_unavailable)?;
        }
        if doc["console_enabled"].as_bool() != Some(true) {
            return Err(console_unavailable("the console is disabled"));
        }
        let info = &doc["console_info"];
        let kind = info["type"].as_str().unwrap_or("");
        if kind != "socat" {
            return Err(console_unavailable(format!(
                "console type {kind:?} does not support the Nova serial console"
            )));
        }
        let url = info["url"].as_str().unwrap_or("");
        parse_console_url(url)
            .ok_or_else(|| console_unavailable(format!("invalid console URL {url:?}")))
    }
}

#[cfg(test)]
mod console_tests {
    use super::*;

    #[test]
    fn console_urls_parse_as_nova_needs() {
        assert_eq!(
            parse_console_url("tcp://10.0.0.5:10001"),
            Some(SerialConsole {
                host: "10.0.0.5".into(),
                port: 10001
            })
        );
        assert_eq!(
            parse_console_url("tcp://[fd00::5]:10001/"),
            Some(SerialConsole {
                host: "fd00::5".into(),
                port: 10001
            })
        );
        for bad in [
            "tcp://host",
            "tcp://:10001",
            "10.0.0.5:10001",
            "tcp://h:0",
            "tcp://h:99999",
            "://h:1",
            "",
        ] {
            assert_eq!(parse_console_url(bad), None, "{bad}");
        }
    }
}
