//! `ironrack serve` as a real process: a scratch directory with the config
//! and the database, stderr captured to a log file, the base URL taken from
//! the "listening" line, and a reqwest client that speaks the latest
//! microversion. Killed on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::{Scratch, PASSWORD, USER};

const LISTENING: &str = "ironrack: API listening on http://";
const TFTP_LISTENING: &str = "ironrack: TFTP listening on ";
const HTTP_BOOT_LISTENING: &str = "ironrack: HTTP boot listening on http://";

pub struct Agent {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` of the first listen address.
    pub url: String,
    /// Every bound address, in config order.
    pub addrs: Vec<SocketAddr>,
    /// The TFTP server's address, with `[tftp]` (latest run).
    pub tftp: Option<SocketAddr>,
    /// `http://ADDR` of the HTTP boot server, with `[http_boot]` (latest run).
    pub http_boot: Option<String>,
    pub config: PathBuf,
    pub log_path: PathBuf,
    pub scratch: Scratch,
    /// Sends `X-OpenStack-Ironic-API-Version: latest` on every request.
    pub http: reqwest::Client,
    /// HTTP basic credentials to send, if any.
    pub basic: Option<(String, String)>,
}

/// The `faultstring` of an Ironic error body (`error_message` holds a JSON
/// document as text).
pub fn faultstring(body: &Value) -> String {
    let inner = body["error_message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an Ironic error body: {body}"));
    let doc: Value = serde_json::from_str(inner)
        .unwrap_or_else(|e| panic!("error_message is not JSON text ({e}): {inner}"));
    doc["faultstring"]
        .as_str()
        .unwrap_or_else(|| panic!("no faultstring: {doc}"))
        .to_string()
}

/// `conf` (TOML) with the test defaults filled in: listen on an ephemeral
/// loopback port, the database in `dir`.
pub fn complete_config(conf: &str, dir: &std::path::Path) -> String {
    let mut t: toml::Table = conf
        .parse()
        .unwrap_or_else(|e| panic!("test config does not parse: {e}\n{conf}"));
    let api = t
        .entry("api")
        .or_insert_with(|| toml::Value::Table(Default::default()));
    if let Some(api) = api.as_table_mut() {
        api.entry("listen")
            .or_insert_with(|| toml::Value::String("127.0.0.1:0".into()));
    }
    let store = t
        .entry("store")
        .or_insert_with(|| toml::Value::Table(Default::default()));
    if let Some(store) = store.as_table_mut() {
        store
            .entry("path")
            .or_insert_with(|| toml::Value::String(dir.join("ironrack.db").display().to_string()));
    }
    toml::to_string(&t).unwrap()
}

fn client() -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        "X-OpenStack-Ironic-API-Version",
        reqwest::header::HeaderValue::from_static("latest"),
    );
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .unwrap()
}

fn listen_count(config_text: &str) -> usize {
    let t: toml::Table = config_text.parse().unwrap();
    match t.get("api").and_then(|a| a.get("listen")) {
        Some(toml::Value::Array(a)) => a.len(),
        _ => 1,
    }
}

impl Agent {
    /// Start with `conf` (partial TOML) and wait until every listen address
    /// is bound. Panics, with the log, when the agent exits instead.
    pub async fn start(conf: &str) -> Agent {
        match Agent::try_start(conf).await {
            Ok(a) => a,
            Err((status, log)) => {
                panic!("ironrack serve exited ({status}) before listening:\n{log}")
            }
        }
    }

    /// Like `start`, but an agent that exits before listening gives its exit
    /// status and log.
    pub async fn try_start(conf: &str) -> Result<Agent, (ExitStatus, String)> {
        let scratch = Scratch::new("agent");
        let text = complete_config(conf, &scratch.0);
        let config = scratch.file("ironrack.toml", &text);
        let log_path = scratch.0.join("agent.log");
        let mut a = Agent {
            child: None,
            url: String::new(),
            addrs: Vec::new(),
            tftp: None,
            http_boot: None,
            config,
            log_path,
            scratch,
            http: client(),
            basic: None,
        };
        a.spawn().await?;
        Ok(a)
    }

    async fn spawn(&mut self) -> Result<(), (ExitStatus, String)> {
        let before = self.log().matches(LISTENING).count();
        let want = listen_count(&std::fs::read_to_string(&self.config).unwrap());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ironrack"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info,ironrack=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        loop {
            let text = self.log();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(LISTENING))
                .skip(before)
                .collect();
            if lines.len() >= want {
                self.addrs = lines
                    .iter()
                    .map(|l| l[LISTENING.len()..].trim().parse().unwrap())
                    .collect();
                self.url = format!("http://{}", self.addrs[0]);
                // The boot servers announce themselves before the API.
                let last = |prefix: &str| {
                    text.lines()
                        .rev()
                        .find(|l| l.starts_with(prefix))
                        .map(|l| l[prefix.len()..].trim().to_string())
                };
                self.tftp = last(TFTP_LISTENING).map(|a| a.parse().unwrap());
                self.http_boot = last(HTTP_BOOT_LISTENING).map(|a| format!("http://{a}"));
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                self.child = None;
                return Err((status, self.log()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the agent wrote on stderr so far (every run).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent not running").id()
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for the exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("agent not running");
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Start again with the same config and database (after `kill9` or
    /// `terminate`); `url` may change (the port is ephemeral).
    pub async fn restart(&mut self) {
        self.kill9();
        if let Err((status, log)) = self.spawn().await {
            panic!("ironrack serve exited ({status}) on restart:\n{log}");
        }
    }

    /// Send these basic credentials with every request from now on (`None`:
    /// none).
    pub fn set_basic(&mut self, creds: Option<(&str, &str)>) {
        self.basic = creds.map(|(u, p)| (u.to_string(), p.to_string()));
    }

    /// One request: status, headers and body (JSON, or a string for text,
    /// or null when empty).
    pub async fn request_full(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut rb = self.http.request(method, format!("{}{path}", self.url));
        if let Some((u, p)) = &self.basic {
            rb = rb.basic_auth(u, Some(p));
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let hs = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, hs, v)
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (s, _, v) = self.request_full(method, path, body, &[]).await;
        (s, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.request(Method::DELETE, path, None).await
    }

    /// A GET that must succeed, as text (e.g. `/metrics`).
    pub async fn text(&self, path: &str) -> String {
        let mut rb = self.http.get(format!("{}{path}", self.url));
        if let Some((u, p)) = &self.basic {
            rb = rb.basic_auth(u, Some(p));
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let t = resp.text().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status}: {t}");
        t
    }

    /// The stock `baremetal` CLI pointed at this agent without credentials.
    pub fn baremetal(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(super::sushy::venv_bin("baremetal"));
        c.args(["--os-endpoint", &self.url, "--os-auth-type", "none"]);
        c
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Poll the node until `pred` holds; panic with the last document after `secs`.
pub async fn wait_node(
    agent: &Agent,
    node: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, n) = agent.get(&format!("/v1/nodes/{node}")).await;
        assert_eq!(status, 200, "{n}");
        if pred(&n) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "node {node} did not reach the expected state in {secs} s: {n:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn ipmi_node(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "driver": "ipmi",
        "driver_info": {
            "ipmi_address": "127.0.0.1",
            "ipmi_port": port,
            "ipmi_username": USER,
            "ipmi_password": PASSWORD,
        }
    })
}

pub async fn enroll(agent: &Agent, body: Value) -> String {
    let (status, n) = agent.post("/v1/nodes", &body).await;
    assert_eq!(status, 201, "{n}");
    n["uuid"].as_str().unwrap().to_string()
}
