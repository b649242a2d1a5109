//! The console bridge: one TCP listener per enabled console, many viewers.
//!
//! Host output goes to the console log, the replay tail, and every viewer
//! through a bounded broadcast; a viewer that falls behind (its queue
//! overflows, or a write stalls past `write_timeout`) is dropped with a
//! notice, so a slow viewer never blocks the line or the others. One viewer
//! holds write access (the first to connect, or whoever takes it with
//! `Ctrl-E c f`); the others are read-only and told so.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use zeroize::Zeroizing;

use super::escape::{Command, EscapeFilter, HELP};
use super::log::{ConsoleLog, LogConfig, Replay};

/// What the line (SOL, a serial port) hands the bridge.
#[derive(Debug)]
pub enum HostEvent {
    /// Bytes from the host.
    Data(Vec<u8>),
    /// Something viewers should know (line lost, reconnected); logged too.
    Notice(String),
}

/// What the bridge hands the line.
#[derive(Debug, PartialEq, Eq)]
pub enum ToHost {
    Data(Vec<u8>),
    Break,
}

/// The line's side of a bridge.
pub struct LineEnds {
    pub from_host: mpsc::Receiver<HostEvent>,
    pub to_host: mpsc::Sender<ToHost>,
}

#[derive(Clone)]
pub struct BridgeConfig {
    /// The node, for notices and logs.
    pub name: String,
    /// Bytes of recent output a new viewer is shown first.
    pub replay_bytes: usize,
    /// Output chunks a viewer may lag behind before it is dropped.
    pub viewer_queue: usize,
    pub max_viewers: usize,
    /// A viewer whose socket takes no output for this long is dropped.
    pub write_timeout: Duration,
    /// When set, a viewer's first line must be this token.
    pub token: Option<Arc<Zeroizing<String>>>,
    pub log: Option<LogConfig>,
}

impl std::fmt::Debug for BridgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeConfig")
            .field("name", &self.name)
            .field("replay_bytes", &self.replay_bytes)
            .field("token", &self.token.as_ref().map(|_| "******"))
            .finish()
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            name: String::new(),
            replay_bytes: 16 * 1024,
            viewer_queue: 1024,
            max_viewers: 32,
            write_timeout: Duration::from_secs(10),
            token: None,
            log: None,
        }
    }
}

/// What tests and the API can see of a running bridge.
#[derive(Clone, Debug, Default)]
pub struct BridgeStats {
    pub viewers: usize,
    /// The writer's viewer number, if any.
    pub writer: Option<u64>,
    pub host_bytes: u64,
    pub dropped_viewers: u64,
}

pub struct Bridge {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<Mutex<BridgeStats>>,
}

enum ViewerMsg {
    Input(u64, Vec<u8>),
    Command(u64, Command),
    Gone(u64, &'static str),
}

enum Ctl {
    Notice(String),
    Close(String),
}

struct Viewer {
    ctl: mpsc::Sender<Ctl>,
    peer: SocketAddr,
    warned: bool,
}

fn notice(text: &str) -> String {
    format!("\r\n[ironrack console] {text}\r\n")
}

impl Bridge {
    /// Serve viewers on `listener` for the line behind `line`.
    pub fn start(
        listener: TcpListener,
        line: LineEnds,
        cfg: BridgeConfig,
    ) -> std::io::Result<Bridge> {
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(Mutex::new(BridgeStats::default()));
        let hub = Hub {
            cfg,
            stats: stats.clone(),
            viewers: BTreeMap::new(),
            writer: None,
            next_id: 1,
        };
        let task = tokio::spawn(hub.run(listener, line, stop_rx));
        Ok(Bridge {
            addr,
            stop,
            task,
            stats,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> BridgeStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Tell viewers, close them and the listener, and wait for the hub.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

struct Hub {
    cfg: BridgeConfig,
    stats: Arc<Mutex<BridgeStats>>,
    viewers: BTreeMap<u64, Viewer>,
    writer: Option<u64>,
    next_id: u64,
}

impl Hub {
    fn publish(&self) {
        if let Ok(mut s) = self.stats.lock() {
            s.viewers = self.viewers.len();
            s.writer = self.writer;
        }
    }

    fn tell(&mut self, id: u64, text: &str) {
        if let Some(v) = self.viewers.get(&id) {
            let _ = v.ctl.try_send(Ctl::Notice(notice(text)));
        }
    }

    fn set_writer(&mut self, id: Option<u64>) {
        if self.writer == id {
            return;
        }
        if let Some(old) = self.writer {
            self.tell(
                old,
                "write access taken by another viewer; you are read-only now",
            );
        }
        self.writer = id;
        if let Some(new) = id {
            self.tell(new, "you have write access");
            if let Some(v) = self.viewers.get_mut(&new) {
                v.warned = false;
            }
        }
        self.publish();
    }

    fn remove(&mut self, id: u64, why: &str) {
        if let Some(v) = self.viewers.remove(&id) {
            tracing::debug!(node = %self.cfg.name, peer = %v.peer, viewer = id, "console viewer left: {why}");
            if why == "lagging" {
                if let Ok(mut s) = self.stats.lock() {
                    s.dropped_viewers += 1;
                }
            }
        }
        if self.writer == Some(id) {
            self.writer = None;
            // Write access passes to the longest-connected viewer.
            let next = self.viewers.keys().next().copied();
            self.set_writer(next);
        }
        self.publish();
    }

    async fn run(
        mut self,
        listener: TcpListener,
        mut line: LineEnds,
        mut stop: watch::Receiver<bool>,
    ) {
        let (out_tx, _) = broadcast::channel::<Arc<[u8]>>(self.cfg.viewer_queue.max(1));
        let (in_tx, mut in_rx) = mpsc::channel::<ViewerMsg>(256);
        let (join_tx, mut join_rx) = mpsc::channel::<(TcpStream, SocketAddr)>(16);
        let pending = Arc::new(tokio::sync::Semaphore::new(self.cfg.max_viewers.max(1)));
        let mut log = self.cfg.log.clone().map(ConsoleLog::new);
        let mut replay = Replay::new(self.cfg.replay_bytes);
        let mut line_open = true;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                acc = listener.accept() => {
                    let (stream, peer) = match acc {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(node = %self.cfg.name, "console accept: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    // Connections still owing the token are bounded: one
                    // that sends nothing holds its slot for the token
                    // timeout, and a wrong token for the refusal delay.
                    let Ok(permit) = pending.clone().try_acquire_owned() else {
                        tracing::warn!(node = %self.cfg.name, %peer, "console viewer refused: too many pending logins");
                        let mut stream = stream;
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            stream.write_all(notice("too many pending logins; try again later").as_bytes()),
                        )
                        .await;
                        continue;
                    };
                    let token = self.cfg.token.clone();
                    let join_tx = join_tx.clone();
                    let name = self.cfg.name.clone();
                    tokio::spawn(async move {
                        let admitted = handshake(stream, peer, token, &name).await;
                        drop(permit);
                        if let Some(stream) = admitted {
                            let _ = join_tx.send((stream, peer)).await;
                        }
                    });
                }
                Some((mut stream, peer)) = join_rx.recv() => {
                    if self.viewers.len() >= self.cfg.max_viewers {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            stream.write_all(notice("too many viewers; try again later").as_bytes()),
                        ).await;
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    // Subscribing here, between two chunks of output, makes
                    // the replay and the live stream meet without a gap or
                    // an overlap.
                    let rx = out_tx.subscribe();
                    let (ctl_tx, ctl_rx) = mpsc::channel(16);
                    let mut first = Vec::new();
                    first.extend_from_slice(&replay.snapshot());
                    self.viewers.insert(id, Viewer { ctl: ctl_tx, peer, warned: false });
                    tracing::info!(node = %self.cfg.name, %peer, viewer = id, "console viewer connected");
                    tokio::spawn(viewer(stream, id, first, rx, ctl_rx, in_tx.clone(), self.cfg.write_timeout));
                    if !line_open {
                        self.tell(id, "the console line is closed");
                    }
                    if self.writer.is_none() {
                        self.set_writer(Some(id));
                    } else {
                        self.tell(id, "read-only: another viewer has write access (Ctrl-E c f takes it, Ctrl-E c ? for help)");
                    }
                    self.publish();
                }
                ev = line.from_host.recv(), if line_open => match ev {
                    Some(HostEvent::Data(d)) => {
                        if d.is_empty() { continue; }
                        if let Some(l) = log.as_mut() { l.append(&d); }
                        replay.push(&d);
                        if let Ok(mut s) = self.stats.lock() { s.host_bytes += d.len() as u64; }
                        let _ = out_tx.send(Arc::from(d));
                    }
                    Some(HostEvent::Notice(n)) => {
                        let text = notice(&n);
                        if let Some(l) = log.as_mut() { l.append(text.as_bytes()); }
                        let _ = out_tx.send(Arc::from(text.into_bytes()));
                    }
                    None => {
                        line_open = false;
                        let _ = out_tx.send(Arc::from(notice("the console line is closed").into_bytes()));
                    }
                },
                Some(msg) = in_rx.recv() => match msg {
                    ViewerMsg::Input(id, bytes) => {
                        if self.writer == Some(id) {
                            if line.to_host.try_send(ToHost::Data(bytes)).is_err() {
                                self.tell(id, "input dropped: the console line is busy or closed");
                            }
                        } else if let Some(v) = self.viewers.get_mut(&id) {
                            if !v.warned {
                                v.warned = true;
                                self.tell(id, "read-only: input not forwarded (Ctrl-E c f takes write access)");
                            }
                        }
                    }
                    ViewerMsg::Command(id, c) => match c {
                        Command::TakeWrite => self.set_writer(Some(id)),
                        Command::GiveUpWrite => {
                            if self.writer == Some(id) {
                                self.writer = None;
                                self.tell(id, "you are read-only now");
                                self.publish();
                            }
                        }
                        Command::Help => self.tell(id, HELP.trim()),
                        Command::Break => {
                            if self.writer == Some(id) {
                                let _ = line.to_host.try_send(ToHost::Break);
                            } else {
                                self.tell(id, "read-only: break not sent");
                            }
                        }
                        Command::Disconnect => {
                            if let Some(v) = self.viewers.get(&id) {
                                let _ = v.ctl.try_send(Ctl::Close(notice("bye")));
                            }
                            self.remove(id, "disconnect");
                        }
                    },
                    ViewerMsg::Gone(id, why) => self.remove(id, why),
                },
            }
        }
        for v in self.viewers.values() {
            let _ = v.ctl.try_send(Ctl::Close(notice("console disabled")));
        }
        self.viewers.clear();
        self.writer = None;
        self.publish();
    }
}

/// How long a viewer that sent a wrong token (or none) waits for its refusal.
const REFUSAL_DELAY: Duration = Duration::from_secs(1);
/// How long a viewer has to send the token.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The token check, when one is configured: the first line must match.
async fn handshake(
    mut stream: TcpStream,
    peer: SocketAddr,
    token: Option<Arc<Zeroizing<String>>>,
    name: &str,
) -> Option<TcpStream> {
    let Some(token) = token else {
        return Some(stream);
    };
    let _ = stream.write_all(b"token: ").await;
    let mut line = Zeroizing::new(Vec::new());
    let read = {
        let mut r = BufReader::new(&mut stream).take(512);
        tokio::time::timeout(TOKEN_TIMEOUT, r.read_until(b'\n', &mut line)).await
    };
    let ok = match read {
        Ok(Ok(_)) => {
            let got = String::from_utf8_lossy(&line);
            let got = got.trim_end_matches(['\r', '\n']);
            use subtle::ConstantTimeEq;
            bool::from(got.as_bytes().ct_eq(token.as_bytes()))
        }
        _ => false,
    };
    if ok {
        Some(stream)
    } else {
        tracing::warn!(node = %name, %peer, "console viewer refused: bad or missing token");
        // A guess costs a second (and a pending-login slot meanwhile).
        tokio::time::sleep(REFUSAL_DELAY).await;
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            stream.write_all(notice("access denied").as_bytes()),
        )
        .await;
        None
    }
}

async fn viewer(
    stream: TcpStream,
    id: u64,
    first: Vec<u8>,
    mut out: broadcast::Receiver<Arc<[u8]>>,
    mut ctl: mpsc::Receiver<Ctl>,
    hub: mpsc::Sender<ViewerMsg>,
    write_timeout: Duration,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut filter = EscapeFilter::new();
    let mut buf = vec![0u8; 4096];
    let mut out_open = true;
    macro_rules! put {
        ($bytes:expr) => {
            match tokio::time::timeout(write_timeout, wr.write_all($bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    let _ = hub.send(ViewerMsg::Gone(id, "closed")).await;
                    return;
                }
                Err(_) => {
                    let _ = hub.send(ViewerMsg::Gone(id, "lagging")).await;
                    return;
                }
            }
        };
    }
    if !first.is_empty() {
        put!(&first);
    }
    loop {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = hub.send(ViewerMsg::Gone(id, "closed")).await;
                    return;
                }
                Ok(n) => {
                    let f = filter.feed(&buf[..n]);
                    if !f.forward.is_empty() && hub.send(ViewerMsg::Input(id, f.forward)).await.is_err() {
                        return;
                    }
                    for c in f.commands {
                        if hub.send(ViewerMsg::Command(id, c)).await.is_err() {
                            return;
                        }
                    }
                }
            },
            o = out.recv(), if out_open => match o {
                Ok(chunk) => put!(&chunk),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let text = notice(&format!("dropped: this viewer fell {n} chunks behind the console"));
                    let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(text.as_bytes())).await;
                    let _ = hub.send(ViewerMsg::Gone(id, "lagging")).await;
                    return;
                }
                // The hub is stopping; its farewell comes on `ctl`.
                Err(broadcast::error::RecvError::Closed) => out_open = false,
            },
            c = ctl.recv() => {
                let bye = match c {
                    Some(Ctl::Notice(t)) => {
                        put!(t.as_bytes());
                        continue;
                    }
                    Some(Ctl::Close(t)) => t,
                    None => String::new(),
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(bye.as_bytes())).await;
                let _ = wr.shutdown().await;
                return;
            }
        }
    }
}

#[cfg(test)]
#[path = "bridge_tests.rs"]
mod tests;
