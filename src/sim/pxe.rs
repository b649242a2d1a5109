//! The tokio side of simulated network boot: one [`NetbootHost`] per
//! simulated machine watches its boots and, for a PXE boot, runs what the
//! firmware, the loader and a deploy ramdisk would do on the network:
//!
//! 1. fetch the per-MAC config from the boot server over TFTP (file not
//!    found: boot the disk);
//! 2. download the kernel and initrds it names over TFTP or HTTP, counting
//!    and discarding the bytes, and check the sizes (TFTP `tsize`, HTTP
//!    Content-Length);
//! 3. POST heartbeats to `{ipa-api-url}/v1/heartbeat/{ipa-node-uuid}`, the
//!    first at once, then every interval, until the machine powers off or
//!    boots again (a new boot aborts the old task).
//!
//! Every network step is bounded by a timeout. The decisions and the config
//! parsing live in [`super::netboot`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::task::JoinHandle;

use crate::boot::tftp::client::{self, ClientError, ClientOptions};
use crate::boot::tftp::packet::code;
use crate::ipmi::cmd::BootFlags;

use super::netboot::{
    self, check_http_size, decide, ConfigEnv, Fetch, FirmwareAction, Ipa, Mac, NetbootConfig,
    NetbootStats, Parsed, HEARTBEAT_API_VERSION,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The HTTP client every simulated machine of a process shares (one
/// connection pool): bounded connects, no redirects to other schemes.
pub fn http_client() -> std::io::Result<reqwest::Client> {
    crate::util::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(std::io::Error::other)
}

#[derive(Default)]
struct Counters {
    netboots: AtomicU64,
    disk_boots: AtomicU64,
    disk_fallbacks: AtomicU64,
    configs_fetched: AtomicU64,
    config_errors: AtomicU64,
    tftp_files: AtomicU64,
    tftp_bytes: AtomicU64,
    http_files: AtomicU64,
    http_bytes: AtomicU64,
    download_failures: AtomicU64,
    heartbeats_sent: AtomicU64,
    heartbeats_accepted: AtomicU64,
    heartbeats_refused: AtomicU64,
    heartbeat_errors: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Default)]
struct Status {
    state: String,
    last_config: Option<String>,
    node_uuid: Option<String>,
    api_url: Option<String>,
    callback_url: Option<String>,
    last_error: Option<String>,
    last_heartbeat_status: Option<u16>,
}

#[derive(Default)]
struct Run {
    /// Boots seen so far (the machine's count).
    seen_boots: u64,
    was_on: bool,
    task: Option<JoinHandle<()>>,
}

/// The network side of one simulated machine.
pub struct NetbootHost {
    mac: Mac,
    /// The BMC's address: its IP is the callback host when no route to the
    /// API can be found.
    bmc_addr: SocketAddr,
    /// The `callback_url` port.
    callback_port: u16,
    cfg: Mutex<NetbootConfig>,
    counters: Counters,
    status: Mutex<Status>,
    run: Mutex<Run>,
    http: reqwest::Client,
}

impl NetbootHost {
    /// The machine with PXE NIC `mac` behind the BMC at `bmc_addr`; its
    /// ramdisk's `callback_url` names `callback_port`.
    pub fn new(
        mac: Mac,
        bmc_addr: SocketAddr,
        callback_port: u16,
        cfg: NetbootConfig,
        http: reqwest::Client,
    ) -> NetbootHost {
        NetbootHost {
            mac,
            bmc_addr,
            callback_port,
            cfg: Mutex::new(cfg),
            counters: Counters::default(),
            status: Mutex::new(Status {
                state: "off".into(),
                ..Status::default()
            }),
            run: Mutex::new(Run::default()),
            http,
        }
    }

    pub fn mac(&self) -> Mac {
        self.mac
    }

    pub fn config(&self) -> NetbootConfig {
        lock(&self.cfg).clone()
    }

    /// Change the settings; they apply from the next boot.
    pub fn update(&self, f: impl FnOnce(&mut NetbootConfig)) {
        f(&mut lock(&self.cfg))
    }

    /// Counters and state now.
    pub fn stats(&self) -> NetbootStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = lock(&self.status);
        NetbootStats {
            netboots: g(&c.netboots),
            disk_boots: g(&c.disk_boots),
            disk_fallbacks: g(&c.disk_fallbacks),
            configs_fetched: g(&c.configs_fetched),
            config_errors: g(&c.config_errors),
            tftp_files: g(&c.tftp_files),
            tftp_bytes: g(&c.tftp_bytes),
            http_files: g(&c.http_files),
            http_bytes: g(&c.http_bytes),
            download_failures: g(&c.download_failures),
            heartbeats_sent: g(&c.heartbeats_sent),
            heartbeats_accepted: g(&c.heartbeats_accepted),
            heartbeats_refused: g(&c.heartbeats_refused),
            heartbeat_errors: g(&c.heartbeat_errors),
            last_heartbeat_status: s.last_heartbeat_status,
            state: s.state.clone(),
            last_config: s.last_config.clone(),
            node_uuid: s.node_uuid.clone(),
            api_url: s.api_url.clone(),
            callback_url: s.callback_url.clone(),
            last_error: s.last_error.clone(),
        }
    }

    fn set_state(&self, state: &str) {
        lock(&self.status).state = state.to_string();
    }

    /// The run ends with `state` and `error` (logged).
    fn fail(&self, state: &str, error: String) {
        tracing::info!(mac = %self.mac, "sim netboot: {error}");
        let mut s = lock(&self.status);
        s.state = state.to_string();
        s.last_error = Some(error);
    }

    /// Whether the machine has a netboot task running (downloading or
    /// heartbeating).
    pub fn busy(&self) -> bool {
        lock(&self.run)
            .task
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Stop the running netboot, if any (the fleet is going away).
    pub fn abort(&self) {
        if let Some(t) = lock(&self.run).task.take() {
            t.abort();
        }
    }

    /// Tell the host what its machine looks like now: `boots` boots so far,
    /// the last one with `flags` in effect, powered `on`. A new boot aborts
    /// the previous netboot and, with PXE in the flags, starts another;
    /// powering off aborts it. Call from a tokio runtime.
    pub fn observe(self: &Arc<Self>, boots: u64, flags: Option<&BootFlags>, on: bool) {
        let mut run = lock(&self.run);
        let new_boot = boots > run.seen_boots;
        let powered_off = run.was_on && !on;
        run.seen_boots = run.seen_boots.max(boots);
        run.was_on = on;
        if new_boot || powered_off {
            if let Some(t) = run.task.take() {
                t.abort();
            }
        }
        if !on {
            if powered_off || new_boot {
                self.set_state("off");
            }
            return;
        }
        if !new_boot {
            return;
        }
        let cfg = self.config();
        match decide(flags, cfg.loader, self.mac) {
            FirmwareAction::Disk => {
                inc(&self.counters.disk_boots);
                self.set_state("disk");
            }
            FirmwareAction::Network { kind, path } => {
                inc(&self.counters.netboots);
                {
                    let mut s = lock(&self.status);
                    s.last_error = None;
                    s.last_heartbeat_status = None;
                    s.state = "config".into();
                    s.last_config = Some(path.clone());
                }
                let Some(server) = cfg.boot_server else {
                    inc(&self.counters.disk_fallbacks);
                    self.fail(
                        "disk",
                        "PXE boot with no boot server configured (--boot-server): booted from disk"
                            .into(),
                    );
                    return;
                };
                let host = self.clone();
                run.task = Some(tokio::spawn(async move {
                    host.netboot(cfg, server, kind, path).await
                }));
            }
        }
    }

    fn tftp_options(cfg: &NetbootConfig) -> ClientOptions {
        ClientOptions {
            blksize: cfg.tftp.blksize,
            windowsize: cfg.tftp.windowsize.filter(|w| *w > 1),
            tsize: true,
            server_timeout: None,
            timeout: cfg.tftp.timeout,
            max_retries: cfg.tftp.retries,
        }
    }

    async fn netboot(
        self: Arc<Self>,
        cfg: NetbootConfig,
        server: SocketAddr,
        kind: crate::boot::render::ConfigKind,
        path: String,
    ) {
        let c = &self.counters;
        let opts = Self::tftp_options(&cfg);
        // 1. The per-MAC config.
        let mut sink = CapSink::new(netboot::MAX_CONFIG_LEN, &c.tftp_bytes);
        let fetched = tokio::time::timeout(
            cfg.config_timeout,
            client::get_to(server, &path, &opts, &mut sink),
        )
        .await;
        let bytes = match fetched {
            Ok(Ok(_)) => sink.buf,
            Ok(Err(e)) if e.server_code() == Some(code::FILE_NOT_FOUND) => {
                inc(&c.disk_fallbacks);
                return self.fail(
                    "disk",
                    format!("tftp://{server}/{path}: file not found: booted from disk"),
                );
            }
            Ok(Err(e)) => {
                inc(&c.download_failures);
                return self.fail("failed", format!("config tftp://{server}/{path}: {e}"));
            }
            Err(_) => {
                inc(&c.download_failures);
                return self.fail(
                    "failed",
                    format!(
                        "config tftp://{server}/{path}: no complete answer in {:?}",
                        cfg.config_timeout
                    ),
                );
            }
        };
        inc(&c.configs_fetched);
        let env = ConfigEnv {
            mac: self.mac,
            config_path: path.clone(),
        };
        let entry = match netboot::parse_config(kind, &bytes, &env) {
            Ok(Parsed::Boot(e)) => e,
            Ok(Parsed::LocalBoot) => {
                inc(&c.disk_fallbacks);
                return self.fail("disk", format!("{path}: the config boots the local disk"));
            }
            Err(e) => {
                inc(&c.config_errors);
                return self.fail("failed", format!("{path}: {e}"));
            }
        };
        let ipa = entry.ipa();
        if let Ok(ipa) = &ipa {
            let mut s = lock(&self.status);
            s.node_uuid = Some(ipa.node_uuid.clone());
            s.api_url = Some(ipa.api_url.clone());
        }
        // 2. Kernel and initrds.
        self.set_state("downloading");
        if cfg.fail_download {
            let f = entry.kernel.failing();
            let what = f.describe(Some(server));
            let r = self.download(&cfg, server, &opts, &f).await;
            inc(&c.download_failures);
            let why = match r {
                Ok(_) => "fetched, but the fault fails it anyway".to_string(),
                Err(e) => e,
            };
            return self.fail("failed", format!("{what}: {why} (fail_download fault)"));
        }
        for f in entry.files() {
            if let Err(e) = self.download(&cfg, server, &opts, f).await {
                inc(&c.download_failures);
                return self.fail("failed", format!("{}: {e}", f.describe(Some(server))));
            }
        }
        // 3. The ramdisk runs.
        if cfg.no_heartbeat {
            self.set_state("booted");
            tracing::info!(mac = %self.mac, "sim netboot: booted, not heartbeating (no_heartbeat fault)");
            return;
        }
        let ipa = match ipa {
            Ok(i) => i,
            Err(e) => return self.fail("booted", format!("{path}: {e}: no heartbeat")),
        };
        self.heartbeat(&cfg, &ipa).await
    }

    /// One kernel / initrd; the bytes received.
    async fn download(
        &self,
        cfg: &NetbootConfig,
        boot_server: SocketAddr,
        opts: &ClientOptions,
        f: &Fetch,
    ) -> Result<u64, String> {
        let c = &self.counters;
        let work = async {
            match f {
                Fetch::Tftp { server, path } => {
                    let server = server.unwrap_or(boot_server);
                    let mut sink = CountSink::new(&c.tftp_bytes);
                    match client::get_to(server, path, opts, &mut sink).await {
                        Ok(got) => {
                            inc(&c.tftp_files);
                            Ok(got.bytes)
                        }
                        Err(e @ ClientError::SizeMismatch { .. }) => {
                            Err(format!("size check: {e}"))
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                Fetch::Http { url } => {
                    let n =
                        http_discard(&self.http, url, cfg.http_idle_timeout, &c.http_bytes).await?;
                    inc(&c.http_files);
                    Ok(n)
                }
            }
        };
        match tokio::time::timeout(cfg.download_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!("not complete in {:?}", cfg.download_timeout)),
        }
    }

    /// The `callback_url` host: configured, else the local address of the
    /// route to the API, else the BMC's address.
    async fn callback_host(&self, cfg: &NetbootConfig, ipa: &Ipa) -> IpAddr {
        if let Some(h) = cfg.callback_host {
            return h;
        }
        let fallback = match self.bmc_addr.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        let Ok(url) = reqwest::Url::parse(&ipa.api_url) else {
            return fallback;
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return fallback;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let probe = async {
            let addr = tokio::net::lookup_host((host.as_str(), port))
                .await
                .ok()?
                .next()?;
            let bind: SocketAddr = match addr {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            // Connecting a UDP socket sends nothing; it only picks the route.
            let s = tokio::net::UdpSocket::bind(bind).await.ok()?;
            s.connect(addr).await.ok()?;
            s.local_addr().ok().map(|a| a.ip())
        };
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Some(ip)) if !ip.is_unspecified() => ip,
            _ => fallback,
        }
    }

    /// Heartbeat until aborted.
    async fn heartbeat(&self, cfg: &NetbootConfig, ipa: &Ipa) {
        let c = &self.counters;
        let url = ipa.heartbeat_url();
        let callback =
            netboot::callback_url(self.callback_host(cfg, ipa).await, self.callback_port);
        lock(&self.status).callback_url = Some(callback.clone());
        let body = netboot::heartbeat_body(&callback);
        self.set_state("heartbeating");
        let interval = cfg.heartbeat_interval.max(Duration::from_millis(10));
        let mut last_status: Option<u16> = None;
        loop {
            inc(&c.heartbeats_sent);
            let sent = self
                .http
                .post(&url)
                .header("X-OpenStack-Ironic-API-Version", HEARTBEAT_API_VERSION)
                .json(&body)
                .timeout(cfg.heartbeat_timeout)
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    lock(&self.status).last_heartbeat_status = Some(status);
                    if resp.status().is_success() {
                        inc(&c.heartbeats_accepted);
                        if last_status != Some(status) {
                            tracing::info!(mac = %self.mac, %url, status, "sim netboot: heartbeat accepted");
                        }
                    } else {
                        inc(&c.heartbeats_refused);
                        let text = tokio::time::timeout(cfg.heartbeat_timeout, resp.text())
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or_default();
                        let text: String = text.chars().take(300).collect();
                        let msg = format!("heartbeat {url}: HTTP {status}: {}", text.trim());
                        if last_status != Some(status) {
                            tracing::warn!(mac = %self.mac, "sim netboot: {msg}");
                        } else {
                            tracing::debug!(mac = %self.mac, "sim netboot: {msg}");
                        }
                        lock(&self.status).last_error = Some(msg);
                    }
                    last_status = Some(status);
                }
                Err(e) => {
                    inc(&c.heartbeat_errors);
                    let msg = format!("heartbeat {url}: {}", error_chain(&e));
                    if last_status.is_some() || c.heartbeat_errors.load(Ordering::Relaxed) == 1 {
                        tracing::warn!(mac = %self.mac, "sim netboot: {msg}");
                    } else {
                        tracing::debug!(mac = %self.mac, "sim netboot: {msg}");
                    }
                    lock(&self.status).last_error = Some(msg);
                    last_status = None;
                }
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// An error with its sources ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(x) = cur {
        let m = x.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = x.source();
    }
    s
}

/// GET `url`, count the body into `counter` and throw it away; check it
/// against Content-Length. Each step (connect and answer, every chunk) is
/// bounded by `idle`.
async fn http_discard(
    http: &reqwest::Client,
    url: &str,
    idle: Duration,
    counter: &AtomicU64,
) -> Result<u64, String> {
    let mut resp = match tokio::time::timeout(idle, http.get(url).send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(error_chain(&e)),
        Err(_) => return Err(format!("no answer in {idle:?}")),
    };
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let announced = resp.content_length();
    let mut got = 0u64;
    loop {
        match tokio::time::timeout(idle, resp.chunk()).await {
            Ok(Ok(Some(b))) => {
                got += b.len() as u64;
                counter.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(format!("after {got} bytes: {}", error_chain(&e))),
            Err(_) => return Err(format!("stalled for {idle:?} after {got} bytes")),
        }
    }
    check_http_size(announced, got)?;
    Ok(got)
}

/// Counts what is written into a shared counter and drops it.
struct CountSink<'a> {
    counter: &'a AtomicU64,
}

impl<'a> CountSink<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        CountSink { counter }
    }
}

impl AsyncWrite for CountSink<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.counter.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Keeps up to `cap` bytes (a config), counting them; more is an error.
struct CapSink<'a> {
    buf: Vec<u8>,
    cap: usize,
    counter: &'a AtomicU64,
}

impl<'a> CapSink<'a> {
    fn new(cap: usize, counter: &'a AtomicU64) -> Self {
        CapSink {
            buf: Vec::new(),
            cap,
            counter,
        }
    }
}

impl AsyncWrite for CapSink<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.counter.fetch_add(buf.len() as u64, Ordering::Relaxed);
        if self.buf.len() + buf.len() > self.cap {
            return Poll::Ready(Err(std::io::Error::other(format!(
                "larger than {} bytes: not a loader config",
                self.cap
            ))));
        }
        self.buf.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
