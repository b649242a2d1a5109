//! The agent's consoles: one bridge per enabled node, on a port from
//! `[console] port_range` at `[console] host`, with its line task.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use super::bridge::{Bridge, BridgeConfig, BridgeStats};
use super::line;
use super::log::LogConfig;
use crate::config::ConsoleConfig;
use crate::ipmi::{IpmiClient, SolOptions};

/// What feeds a console.
pub enum LineSpec {
    Sol {
        client: IpmiClient,
        opts: SolOptions,
    },
    Serial {
        device: PathBuf,
        baud: u32,
    },
}

impl LineSpec {
    fn kind(&self) -> &'static str {
        match self {
            LineSpec::Sol { .. } => "ipmi-sol",
            LineSpec::Serial { .. } => "serial",
        }
    }
}

/// Where a running console listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleInfo {
    pub host: String,
    pub port: u16,
    pub kind: &'static str,
}

impl ConsoleInfo {
    /// Ironic's `console_info` for a socat-style console, as
    /// nova.virt.ironic's `get_serial_console` parses it.
    pub fn ironic(&self) -> serde_json::Value {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        serde_json::json!({"type": "socat", "url": format!("tcp://{host}:{}", self.port)})
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("no free console port in {0}")]
    NoPort(String),
    #[error("console configuration: {0}")]
    Config(String),
}

struct Running {
    bridge: Bridge,
    task: tokio::task::JoinHandle<()>,
    info: ConsoleInfo,
}

pub struct ConsoleManager {
    cfg: ConsoleConfig,
    ip: IpAddr,
    first: u16,
    last: u16,
    token: Option<Arc<Zeroizing<String>>>,
    running: Mutex<HashMap<String, Running>>,
}

/// `"10000-10999"` as (10000, 10999).
pub fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("port_range {s:?} is not FIRST-LAST"))?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("port_range {s:?}: bad first port"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("port_range {s:?}: bad last port"))?;
    if a == 0 || b < a {
        return Err(format!("port_range {s:?}: need 1 <= FIRST <= LAST"));
    }
    Ok((a, b))
}

/// The token file must be the agent's own secret, as the store's key file is.
#[cfg(unix)]
fn check_private(p: &std::path::Path) -> Result<(), ConsoleError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p)
        .map_err(|e| ConsoleError::Config(format!("cannot read {}: {e}", p.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConsoleError::Config(format!(
            "token_file {} has mode {mode:o}; it must not be readable by group or others (chmod 600)",
            p.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_p: &std::path::Path) -> Result<(), ConsoleError> {
    Ok(())
}

impl ConsoleManager {
    pub fn new(cfg: ConsoleConfig) -> Result<ConsoleManager, ConsoleError> {
        let ip: IpAddr = cfg.host.parse().map_err(|_| {
            ConsoleError::Config(format!("host {:?} is not an IP address", cfg.host))
        })?;
        let (first, last) = parse_range(&cfg.port_range).map_err(ConsoleError::Config)?;
        let token = match &cfg.token_file {
            Some(p) => {
                check_private(p)?;
                let raw = crate::cli::read_secret_file(p).map_err(ConsoleError::Config)?;
                let t = String::from_utf8(raw.to_vec())
                    .map_err(|_| ConsoleError::Config("token_file is not UTF-8".into()))?;
                if t.is_empty() {
                    return Err(ConsoleError::Config("token_file is empty".into()));
                }
                Some(Arc::new(Zeroizing::new(t)))
            }
            None => None,
        };
        Ok(ConsoleManager {
            cfg,
            ip,
            first,
            last,
            token,
            running: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &ConsoleConfig {
        &self.cfg
    }

    /// The node's console log directory.
    pub fn log_dir(&self, node: &str) -> PathBuf {
        self.cfg.log_dir.join(node)
    }

    /// Start (or restart) the node's console. `preferred` is tried first,
    /// so a console keeps its port across agent restarts when it can.
    pub async fn start(
        &self,
        node: &str,
        spec: LineSpec,
        preferred: Option<u16>,
    ) -> Result<ConsoleInfo, ConsoleError> {
        let mut running = self.running.lock().await;
        let mut keep_port = None;
        if let Some(old) = running.remove(node) {
            keep_port = Some(old.info.port);
            stop_one(old).await;
        }
        let taken: Vec<u16> = running.values().map(|r| r.info.port).collect();
        let want = keep_port
            .or(preferred)
            .filter(|p| (self.first..=self.last).contains(p));
        let candidates = want
            .into_iter()
            .chain(self.first..=self.last)
            .filter(|p| !taken.contains(p));
        let mut listener = None;
        for port in candidates {
            if let Ok(l) = TcpListener::bind(SocketAddr::new(self.ip, port)).await {
                listener = Some((l, port));
                break;
            }
        }
        let Some((listener, port)) = listener else {
            return Err(ConsoleError::NoPort(self.cfg.port_range.clone()));
        };
        let kind = spec.kind();
        let (ends, task) = match spec {
            LineSpec::Sol { client, opts } => line::sol(client, opts, node.to_string()),
            LineSpec::Serial { device, baud } => line::serial(device, baud, node.to_string()),
        };
        let cfg = BridgeConfig {
            name: node.to_string(),
            replay_bytes: self.cfg.replay_bytes,
            max_viewers: self.cfg.max_viewers,
            token: self.token.clone(),
            log: Some(LogConfig {
                dir: self.log_dir(node),
                max_bytes: self.cfg.log_max_bytes,
                keep: self.cfg.log_keep,
            }),
            ..BridgeConfig::default()
        };
        let bridge = match Bridge::start(listener, ends, cfg) {
            Ok(b) => b,
            Err(e) => {
                task.abort();
                return Err(ConsoleError::Config(format!("console listener: {e}")));
            }
        };
        let info = ConsoleInfo {
            host: self.cfg.host.clone(),
            port,
            kind,
        };
        tracing::info!(node, port, kind, "console enabled");
        running.insert(
            node.to_string(),
            Running {
                bridge,
                task,
                info: info.clone(),
            },
        );
        Ok(info)
    }

    /// Stop the node's console; false when none was running.
    pub async fn stop(&self, node: &str) -> bool {
        let r = self.running.lock().await.remove(node);
        match r {
            Some(r) => {
                stop_one(r).await;
                tracing::info!(node, "console disabled");
                true
            }
            None => false,
        }
    }

    pub async fn info(&self, node: &str) -> Option<ConsoleInfo> {
        self.running.lock().await.get(node).map(|r| r.info.clone())
    }

    pub async fn stats(&self, node: &str) -> Option<BridgeStats> {
        self.running
            .lock()
            .await
            .get(node)
            .map(|r| r.bridge.stats())
    }

    pub async fn stop_all(&self) {
        let all: Vec<Running> = self.running.lock().await.drain().map(|(_, r)| r).collect();
        for r in all {
            stop_one(r).await;
        }
    }
}

async fn stop_one(r: Running) {
    r.bridge.stop().await;
    // The line task ends once the bridge drops its channel ends (SOL is
    // deactivated on the way out); bound the wait.
    let mut task = r.task;
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_console_info() {
        assert_eq!(parse_range("10000-10999").unwrap(), (10000, 10999));
        assert_eq!(parse_range(" 5 - 5 ").unwrap(), (5, 5));
        assert!(parse_range("10-5").is_err());
        assert!(parse_range("0-5").is_err());
        assert!(parse_range("10000").is_err());
        assert!(parse_range("a-b").is_err());
        let i = ConsoleInfo {
            host: "10.0.0.5".into(),
            port: 10001,
            kind: "ipmi-sol",
        };
        assert_eq!(
            i.ironic(),
            serde_json::json!({"type": "socat", "url": "tcp://10.0.0.5:10001"})
        );
        let i = ConsoleInfo {
            host: "fd00::5".into(),
            port: 10001,
            kind: "serial",
        };
        assert_eq!(i.ironic()["url"], "tcp://[fd00::5]:10001");
    }
}
