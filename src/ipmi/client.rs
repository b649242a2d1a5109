//! The thin tokio layer: one UDP socket and one driver task per BMC, moving bytes
//! between the socket and a sans-IO [`ClientSession`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::cmd::{
    self, BootFlags, ChassisControl, DeviceId, PayloadActivation, PayloadActivationStatus,
    PowerState,
};
use super::crypto::{ConfAlg, IntegrityAlg};
use super::error::IpmiError;
use super::session::{ClientSession, Event, SessionConfig, Stats};
use super::sol::{Role, SolConfig, SolEndpoint, SolEvent, SolOperation, SolStats};
use super::wire::{IpmiResponse, PayloadType};

type Reply = oneshot::Sender<Result<IpmiResponse, IpmiError>>;
type Done = oneshot::Sender<Result<(), IpmiError>>;

enum Req {
    Cmd {
        netfn: u8,
        cmd: u8,
        data: Vec<u8>,
        reply: Reply,
    },
    Close(oneshot::Sender<()>),
    SolStart {
        endpoint: Box<SolEndpoint>,
        events: mpsc::Sender<SolEvent>,
        payload_sock: Option<Arc<UdpSocket>>,
        keepalive: Option<Duration>,
        instance: u8,
        reply: oneshot::Sender<u64>,
    },
    SolWrite {
        generation: u64,
        bytes: Vec<u8>,
        reply: Done,
    },
    SolOp {
        generation: u64,
        op: SolOperation,
        reply: Done,
    },
    SolFlush {
        generation: u64,
        reply: Done,
    },
    SolStop {
        generation: u64,
        reply: oneshot::Sender<()>,
    },
}

/// Shared view of the session for observers.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientInfo {
    pub stats: Stats,
    pub suite: Option<u8>,
    pub active: bool,
    /// Counters of the SOL link, while one is active.
    pub sol: Option<SolStats>,
}

/// How to activate Serial-over-LAN ([`IpmiClient::sol_activate`]).
#[derive(Debug, Clone)]
pub struct SolOptions {
    /// When the BMC says the SOL payload is already active (another console,
    /// or a stale session of ours), deactivate it and try again, as Ironic
    /// does before `sol activate`. Otherwise that is an error.
    pub force: bool,
    /// The SOL payload instance (1 on nearly every BMC).
    pub instance: u8,
    /// Interval between sends of an unACKed SOL packet.
    pub retransmit: Duration,
    /// Resends of one SOL packet before the link counts as lost.
    pub retries: u32,
    /// Session keepalive while SOL is active, so a BMC that went silent is
    /// noticed even when nobody types (`None` keeps the session's own).
    pub keepalive: Option<Duration>,
    /// Characters `send` may queue ahead of the BMC's ACKs.
    pub send_buffer: usize,
    /// Host output held for `recv` before the BMC is slowed down.
    pub recv_buffer: usize,
}

impl Default for SolOptions {
    fn default() -> Self {
        SolOptions {
            force: true,
            instance: 1,
            retransmit: Duration::from_millis(500),
            retries: 6,
            keepalive: Some(Duration::from_secs(5)),
            send_buffer: 64 * 1024,
            recv_buffer: 1024 * 1024,
        }
    }
}

/// An active Serial-over-LAN console on one BMC ([`IpmiClient::sol_activate`]).
///
/// It shares the client's RMCP+ session: power and other commands keep
/// working, and the session keepalive goes on. Host output arrives through
/// [`SolConsole::recv`] in order and exactly once. When the link goes away
/// (no ACK after the retries, the session lost or closed) `recv` yields
/// [`SolEvent::Lost`] with the characters that were never ACKed, then `None`;
/// a caller may activate again (with `force`) to resume.
#[derive(Debug)]
pub struct SolConsole {
    generation: u64,
    instance: u8,
    client: IpmiClient,
    events: mpsc::Receiver<SolEvent>,
    activation: PayloadActivation,
}

impl SolConsole {
    /// What the BMC answered to Activate Payload (payload sizes and port).
    pub fn activation(&self) -> PayloadActivation {
        self.activation
    }

    pub fn instance(&self) -> u8 {
        self.instance
    }

    /// The next thing that happened on the line: host output, a break, the
    /// BMC deactivating SOL, or the link lost. `None` after the end.
    pub async fn recv(&mut self) -> Option<SolEvent> {
        self.events.recv().await
    }

    /// Queue keystrokes for the host. Returns once all of them are queued
    /// (not yet ACKed: see [`SolConsole::flush`]); waits while the send buffer
    /// is full.
    pub async fn send(&self, bytes: &[u8]) -> Result<(), IpmiError> {
        let (reply, rx) = oneshot::channel();
        self.client
            .request(Req::SolWrite {
                generation: self.generation,
                bytes: bytes.to_vec(),
                reply,
            })
            .await?;
        rx.await.map_err(|_| sol_gone())?
    }

    /// Ask the BMC to send a break to the host's serial port.
    pub async fn send_break(&self) -> Result<(), IpmiError> {
        self.send_operation(SolOperation::Break).await
    }

    /// Any console operation: break, ring, CTS or DCD/DSR, flushes.
    pub async fn send_operation(&self, op: SolOperation) -> Result<(), IpmiError> {
        let (reply, rx) = oneshot::channel();
        self.client
            .request(Req::SolOp {
                generation: self.generation,
                op,
                reply,
            })
            .await?;
        rx.await.map_err(|_| sol_gone())?
    }

    /// Wait until the BMC has ACKed every character sent so far.
    pub async fn flush(&self) -> Result<(), IpmiError> {
        let (reply, rx) = oneshot::channel();
        self.client
            .request(Req::SolFlush {
                generation: self.generation,
                reply,
            })
            .await?;
        rx.await.map_err(|_| sol_gone())?
    }

    /// Stop SOL: characters not yet ACKed are dropped, then Deactivate
    /// Payload is sent. An instance the BMC already dropped is not an error.
    pub async fn deactivate(self) -> Result<(), IpmiError> {
        let (reply, rx) = oneshot::channel();
        if self
            .client
            .request(Req::SolStop {
                generation: self.generation,
                reply,
            })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        self.client.sol_deactivate(self.instance).await.map(|_| ())
    }
}

fn sol_gone() -> IpmiError {
    IpmiError::Protocol("SOL is no longer active (lost or deactivated)".into())
}

/// A long-lived client of one BMC. Commands are serialised onto one RMCP+
/// session, which is opened lazily, kept alive, re-opened when lost, and closed
/// on [`IpmiClient::close`] or when the last handle is dropped.
#[derive(Clone)]
pub struct IpmiClient {
    addr: SocketAddr,
    tx: mpsc::Sender<Req>,
    info: Arc<Mutex<ClientInfo>>,
    timeout: Duration,
}

impl std::fmt::Debug for IpmiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpmiClient")
            .field("addr", &self.addr)
            .finish()
    }
}

impl IpmiClient {
    /// Bind a socket for `addr` and start the driver task. No packet is sent
    /// until the first command.
    pub async fn new(addr: SocketAddr, cfg: SessionConfig) -> Result<IpmiClient, IpmiError> {
        let timeout = cfg.command_timeout;
        let session = ClientSession::new(cfg, Instant::now())?;
        let sock = bind_connected(addr).await?;
        let (tx, rx) = mpsc::channel(64);
        let info = Arc::new(Mutex::new(ClientInfo::default()));
        tokio::spawn(drive(sock, session, rx, info.clone()));
        Ok(IpmiClient {
            addr,
            tx,
            info,
            timeout,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn request(&self, r: Req) -> Result<(), IpmiError> {
        self.tx.send(r).await.map_err(|_| IpmiError::Closed)
    }

    pub fn info(&self) -> ClientInfo {
        match self.info.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }

    /// Send a raw command and return the response whatever its completion code.
    pub async fn raw(&self, netfn: u8, cmd: u8, data: Vec<u8>) -> Result<IpmiResponse, IpmiError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Req::Cmd {
                netfn,
                cmd,
                data,
                reply,
            })
            .await
            .map_err(|_| IpmiError::Closed)?;
        // The session enforces the bound; this is a safety net on top.
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(IpmiError::Closed),
            Err(_) => Err(IpmiError::Timeout(self.timeout)),
        }
    }

    /// Send a command; a non-zero completion code becomes an error naming it.
    pub async fn command(
        &self,
        name: &'static str,
        netfn: u8,
        cmd: u8,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, IpmiError> {
        let rs = self.raw(netfn, cmd, data).await?;
        if rs.completion != 0 {
            return Err(IpmiError::Completion {
                command: name,
                code: rs.completion,
                name: cmd::completion_name(rs.completion),
            });
        }
        Ok(rs.data)
    }

    pub async fn device_id(&self) -> Result<DeviceId, IpmiError> {
        let d = self
            .command(
                "Get Device ID",
                cmd::NETFN_APP,
                cmd::CMD_GET_DEVICE_ID,
                vec![],
            )
            .await?;
        DeviceId::parse(&d)
            .ok_or_else(|| IpmiError::Protocol("short Get Device ID response".into()))
    }

    pub async fn power_state(&self) -> Result<PowerState, IpmiError> {
        let d = self
            .command(
                "Get Chassis Status",
                cmd::NETFN_CHASSIS,
                cmd::CMD_CHASSIS_STATUS,
                vec![],
            )
            .await?;
        cmd::parse_chassis_status(&d)
            .ok_or_else(|| IpmiError::Protocol("empty Get Chassis Status response".into()))
    }

    pub async fn chassis_control(&self, ctl: ChassisControl) -> Result<(), IpmiError> {
        self.command(
            "Chassis Control",
            cmd::NETFN_CHASSIS,
            cmd::CMD_CHASSIS_CONTROL,
            vec![ctl as u8],
        )
        .await
        .map(|_| ())
    }

    pub async fn boot_flags(&self) -> Result<BootFlags, IpmiError> {
        let d = self
            .command(
                "Get System Boot Options",
                cmd::NETFN_CHASSIS,
                cmd::CMD_GET_BOOT_OPTIONS,
                cmd::get_boot_option_request(5),
            )
            .await?;
        BootFlags::parse_get_response(&d)
            .ok_or_else(|| IpmiError::Protocol("malformed boot flags parameter".into()))
    }

    /// Write boot flags (parameter 5). With `disable_timeout`, parameter 3 is
    /// written first so the BMC keeps the flags past its 60-second timeout.
    pub async fn set_boot_flags(
        &self,
        flags: BootFlags,
        disable_timeout: bool,
    ) -> Result<(), IpmiError> {
        if disable_timeout {
            self.command(
                "Set System Boot Options (parameter 3)",
                cmd::NETFN_CHASSIS,
                cmd::CMD_SET_BOOT_OPTIONS,
                cmd::disable_boot_flag_timeout_request(),
            )
            .await?;
        }
        self.command(
            "Set System Boot Options",
            cmd::NETFN_CHASSIS,
            cmd::CMD_SET_BOOT_OPTIONS,
            flags.set_request(),
        )
        .await
        .map(|_| ())
    }

    /// Activate Serial-over-LAN (payload type 1) on this client's session.
    ///
    /// The SOL payload is encrypted and authenticated whenever the session's
    /// cipher suite can (suites 3 and 17). With `opts.force`, an instance that
    /// is already active (completion code 0x80) is deactivated and activation
    /// tried again. When the BMC names another UDP port for the payload, SOL
    /// packets go to that port.
    pub async fn sol_activate(&self, opts: SolOptions) -> Result<SolConsole, IpmiError> {
        if !(1..=15).contains(&opts.instance) {
            return Err(IpmiError::Config(format!(
                "SOL instance {} is out of range (1..15)",
                opts.instance
            )));
        }
        if self.info().suite.is_none() || !self.info().active {
            // Open the session first: the auxiliary data depends on its suite.
            self.raw(cmd::NETFN_APP, cmd::CMD_GET_DEVICE_ID, vec![])
                .await?;
        }
        let suite = self
            .info()
            .suite
            .and_then(super::crypto::CipherSuite::by_id)
            .ok_or(IpmiError::Closed)?;
        let mut aux = cmd::sol_aux::ALERTS_DEFERRED | cmd::sol_aux::BMC_ASSERTS_CTS_FALSE;
        if suite.conf != ConfAlg::None {
            aux |= cmd::sol_aux::ENCRYPT;
        }
        if suite.integrity != IntegrityAlg::None {
            aux |= cmd::sol_aux::AUTHENTICATE;
        }
        let request = cmd::activate_payload_request(cmd::PAYLOAD_SOL, opts.instance, aux);
        let mut rs = self
            .raw(cmd::NETFN_APP, cmd::CMD_ACTIVATE_PAYLOAD, request.clone())
            .await?;
        if rs.completion == 0x80 && opts.force {
            tracing::info!(
                bmc = %self.addr,
                instance = opts.instance,
                "SOL already active; deactivating the stale instance"
            );
            self.sol_deactivate(opts.instance).await?;
            rs = self
                .raw(cmd::NETFN_APP, cmd::CMD_ACTIVATE_PAYLOAD, request)
                .await?;
        }
        match rs.completion {
            0 => {}
            0x80 if !opts.force => {
                return Err(IpmiError::Completion {
                    command: "Activate Payload (SOL)",
                    code: 0x80,
                    name: "SOL payload already active on another session (not forced)",
                })
            }
            code => {
                return Err(IpmiError::Completion {
                    command: "Activate Payload (SOL)",
                    code,
                    name: cmd::activate_payload_completion_name(code),
                })
            }
        }
        let Some(activation) = PayloadActivation::parse(&rs.data) else {
            let _ = self.sol_deactivate(opts.instance).await;
            return Err(IpmiError::Protocol(format!(
                "Activate Payload answered {} data bytes, 12 expected",
                rs.data.len()
            )));
        };
        let ours = self.addr.port();
        let port = activation.port;
        let payload_sock = if port == 0 || port == ours || port.swap_bytes() == ours {
            None
        } else {
            // The BMC wants SOL on another port of the same address.
            let target = SocketAddr::new(self.addr.ip(), port);
            tracing::info!(bmc = %self.addr, %target, "SOL payload on its own UDP port");
            match bind_connected(target).await {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    let _ = self.sol_deactivate(opts.instance).await;
                    return Err(e);
                }
            }
        };
        let mut cfg = SolConfig::new(Role::Console);
        // ipmitool sends inbound-size minus the header; ipmi_sim's inbound
        // size is its whole 32-byte buffer, so that is the safe reading.
        cfg.max_data = (activation.inbound_size as usize)
            .saturating_sub(super::sol::HEADER_LEN)
            .clamp(1, super::sol::MAX_DATA);
        cfg.retransmit = opts.retransmit.max(Duration::from_millis(10));
        cfg.retries = opts.retries;
        cfg.send_capacity = opts.send_buffer.max(1);
        cfg.recv_capacity = opts.recv_buffer.max(1);
        let (events_tx, events) = mpsc::channel(256);
        let (reply, rx) = oneshot::channel();
        self.request(Req::SolStart {
            endpoint: Box::new(SolEndpoint::new(cfg)),
            events: events_tx,
            payload_sock,
            keepalive: opts.keepalive,
            instance: opts.instance,
            reply,
        })
        .await?;
        let generation = rx.await.map_err(|_| IpmiError::Closed)?;
        Ok(SolConsole {
            generation,
            instance: opts.instance,
            client: self.clone(),
            events,
            activation,
        })
    }

    /// Deactivate Payload for SOL `instance`, whichever session activated it.
    /// Returns false when it was not active (completion code 0x80).
    pub async fn sol_deactivate(&self, instance: u8) -> Result<bool, IpmiError> {
        let rs = self
            .raw(
                cmd::NETFN_APP,
                cmd::CMD_DEACTIVATE_PAYLOAD,
                cmd::deactivate_payload_request(cmd::PAYLOAD_SOL, instance),
            )
            .await?;
        match rs.completion {
            0 => Ok(true),
            0x80 => Ok(false),
            code => Err(IpmiError::Completion {
                command: "Deactivate Payload (SOL)",
                code,
                name: cmd::deactivate_payload_completion_name(code),
            }),
        }
    }

    /// Get Payload Activation Status for SOL.
    pub async fn sol_status(&self) -> Result<PayloadActivationStatus, IpmiError> {
        let d = self
            .command(
                "Get Payload Activation Status",
                cmd::NETFN_APP,
                cmd::CMD_GET_PAYLOAD_ACTIVATION_STATUS,
                vec![cmd::PAYLOAD_SOL],
            )
            .await?;
        PayloadActivationStatus::parse(&d).ok_or_else(|| {
            IpmiError::Protocol("short Get Payload Activation Status response".into())
        })
    }

    /// Close the session and stop the driver task.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Req::Close(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
    }
}

async fn bind_connected(addr: SocketAddr) -> Result<UdpSocket, IpmiError> {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().map_err(|_| IpmiError::Closed)?
    } else {
        "[::]:0".parse().map_err(|_| IpmiError::Closed)?
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| IpmiError::Protocol(format!("cannot bind a UDP socket: {e}")))?;
    sock.connect(addr)
        .await
        .map_err(|e| IpmiError::Protocol(format!("cannot reach {addr}: {e}")))?;
    Ok(sock)
}

fn publish(info: &Mutex<ClientInfo>, s: &ClientSession, sol: Option<&Sol>) {
    if let Ok(mut g) = info.lock() {
        *g = ClientInfo {
            stats: s.stats(),
            suite: s.negotiated_suite(),
            active: s.is_active(),
            sol: sol.map(|x| x.ep.stats()),
        };
    }
}

/// The SOL link the driver task runs next to the session.
struct Sol {
    generation: u64,
    instance: u8,
    ep: Box<SolEndpoint>,
    events: mpsc::Sender<SolEvent>,
    /// The session the payload was activated in: SOL ends with it.
    session_id: Option<u32>,
    /// A socket of its own when the BMC named another payload port.
    sock: Option<Arc<UdpSocket>>,
    /// Writes not yet fully taken by the endpoint (its buffer was full).
    writes: VecDeque<(Vec<u8>, usize, Done)>,
    flushes: Vec<Done>,
    /// The session's keepalive before SOL changed it.
    saved_keepalive: Option<Duration>,
}

impl Sol {
    /// Move queued writes into the endpoint and answer finished flushes.
    fn pump_writes(&mut self) {
        while let Some((bytes, off, _)) = self.writes.front_mut() {
            let rest = bytes.get(*off..).unwrap_or_default();
            match self.ep.write(rest) {
                Ok(n) => *off += n,
                Err(_) => break,
            }
            if *off < bytes.len() {
                break;
            }
            if let Some((_, _, reply)) = self.writes.pop_front() {
                let _ = reply.send(Ok(()));
            }
        }
        if self.ep.is_idle() && self.writes.is_empty() {
            for f in self.flushes.drain(..) {
                let _ = f.send(Ok(()));
            }
        }
    }

    /// Forward endpoint events while the console has room.
    fn forward_events(&mut self) {
        while self.ep.has_events() {
            match self.events.try_reserve() {
                Ok(permit) => {
                    if let Some(mut ev) = self.ep.poll_event() {
                        if let SolEvent::Lost(l) = &mut ev {
                            // Writes the endpoint never took are unsent too.
                            for (bytes, off, _) in &self.writes {
                                l.unsent
                                    .extend_from_slice(bytes.get(*off..).unwrap_or_default());
                            }
                        }
                        permit.send(ev);
                    }
                }
                Err(_) => break,
            }
        }
    }

    /// The link is over: answer everyone waiting.
    fn finish(&mut self) {
        for (_, _, reply) in self.writes.drain(..) {
            let _ = reply.send(Err(sol_gone()));
        }
        for f in self.flushes.drain(..) {
            let _ = f.send(Err(sol_gone()));
        }
    }
}

async fn recv_opt(sock: &Option<Arc<UdpSocket>>, buf: &mut [u8]) -> std::io::Result<usize> {
    match sock {
        Some(s) => s.recv(buf).await,
        None => std::future::pending().await,
    }
}

async fn drive(
    sock: UdpSocket,
    mut s: ClientSession,
    mut rx: mpsc::Receiver<Req>,
    info: Arc<Mutex<ClientInfo>>,
) {
    let mut waiters: HashMap<u64, Reply> = HashMap::new();
    let mut closers: Vec<oneshot::Sender<()>> = Vec::new();
    let mut rx_open = true;
    let mut buf = vec![0u8; 2048];
    let mut sol_buf = vec![0u8; 2048];
    let mut sol: Option<Sol> = None;
    let mut generation = 0u64;
    loop {
        while let Some(ev) = s.poll_event() {
            match ev {
                Event::Response { id, result } => {
                    if let Some(w) = waiters.remove(&id) {
                        // A caller may look at info() as soon as it has its answer.
                        publish(&info, &s, sol.as_ref());
                        let _ = w.send(result);
                    }
                }
                Event::Established {
                    suite,
                    bmc_session_id,
                } => {
                    tracing::debug!(suite, bmc_session_id, "IPMI session established");
                }
                Event::Payload { payload_type, data } => match &mut sol {
                    Some(x) if payload_type == PayloadType::Sol => {
                        if let Err(e) = x.ep.handle_packet(Instant::now(), &data) {
                            tracing::debug!("SOL packet dropped: {e}");
                        }
                    }
                    _ => tracing::debug!(?payload_type, "payload with no one to take it"),
                },
                Event::Closed => {
                    if let Some(x) = &mut sol {
                        x.ep.lose("the IPMI session was closed");
                        x.forward_events();
                        x.finish();
                    }
                    publish(&info, &s, None);
                    for c in closers.drain(..) {
                        let _ = c.send(());
                    }
                    for (_, w) in waiters.drain() {
                        let _ = w.send(Err(IpmiError::Closed));
                    }
                    return;
                }
            }
        }
        if let Some(x) = &mut sol {
            // SOL lives in the session that activated it: a lost or re-opened
            // session means the BMC no longer sends us anything.
            if !x.ep.is_closed() && s.bmc_session_id() != x.session_id {
                x.ep.lose(if s.is_closing() {
                    "the IPMI session was closed"
                } else {
                    "the IPMI session under SOL was lost (BMC unreachable or session dropped)"
                });
            }
            x.pump_writes();
            x.forward_events();
            if x.events.is_closed() && !x.ep.is_closed() {
                // The console was dropped without deactivate(): clean up.
                tracing::debug!("SOL console dropped; deactivating");
                x.ep.close();
                s.submit(
                    Instant::now(),
                    cmd::NETFN_APP,
                    cmd::CMD_DEACTIVATE_PAYLOAD,
                    cmd::deactivate_payload_request(cmd::PAYLOAD_SOL, x.instance),
                );
            }
            if x.ep.is_closed() && (!x.ep.has_events() || x.events.is_closed()) {
                x.finish();
                s.set_keepalive(x.saved_keepalive);
                sol = None;
                continue;
            }
        }
        // What SOL has to send (ACKs at once, new data, resends) rides on the
        // session as it is now.
        if let Some(x) = &mut sol {
            x.pump_writes();
            let now = Instant::now();
            while let Some(p) = x.ep.poll_transmit(now) {
                match s.send_payload(PayloadType::Sol, &p) {
                    Ok(d) => {
                        let r = match &x.sock {
                            Some(ps) => ps.send(&d).await,
                            None => sock.send(&d).await,
                        };
                        if let Err(e) = r {
                            tracing::debug!("SOL send to BMC failed: {e}");
                        }
                    }
                    Err(_) => {
                        x.ep.lose("the IPMI session under SOL is gone");
                        break;
                    }
                }
            }
        }
        while let Some(d) = s.poll_transmit() {
            if let Err(e) = sock.send(&d).await {
                tracing::debug!("send to BMC failed: {e}");
            }
        }
        publish(&info, &s, sol.as_ref());
        let deadline = match (
            s.poll_timeout(),
            sol.as_ref().and_then(|x| x.ep.poll_timeout()),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending().await,
            }
        };
        // Room in the console's queue for events the endpoint holds back.
        let waiting_tx = sol
            .as_ref()
            .filter(|x| x.ep.has_events())
            .map(|x| x.events.clone());
        let room = async {
            match &waiting_tx {
                Some(t) => t.reserve().await.map(drop).is_ok(),
                None => std::future::pending().await,
            }
        };
        let sol_sock = sol.as_ref().and_then(|x| x.sock.clone());
        tokio::select! {
            r = rx.recv(), if rx_open => match r {
                Some(Req::Cmd { netfn, cmd, data, reply }) => {
                    let id = s.submit(Instant::now(), netfn, cmd, data);
                    waiters.insert(id, reply);
                }
                Some(Req::Close(c)) => {
                    closers.push(c);
                    s.close(Instant::now());
                }
                Some(Req::SolStart { endpoint, events, payload_sock, keepalive, instance, reply }) => {
                    if let Some(mut old) = sol.take() {
                        old.ep.lose("SOL was activated again");
                        old.forward_events();
                        old.finish();
                        s.set_keepalive(old.saved_keepalive);
                    }
                    generation += 1;
                    let saved_keepalive = s.keepalive();
                    if let Some(k) = keepalive {
                        s.set_keepalive(Some(saved_keepalive.map_or(k, |c| c.min(k))));
                    }
                    sol = Some(Sol {
                        generation,
                        instance,
                        ep: endpoint,
                        events,
                        session_id: s.bmc_session_id(),
                        sock: payload_sock,
                        writes: VecDeque::new(),
                        flushes: Vec::new(),
                        saved_keepalive,
                    });
                    let _ = reply.send(generation);
                }
                Some(Req::SolWrite { generation: g, bytes, reply }) => match &mut sol {
                    Some(x) if x.generation == g && !x.ep.is_closed() => {
                        x.writes.push_back((bytes, 0, reply));
                    }
                    _ => {
                        let _ = reply.send(Err(sol_gone()));
                    }
                },
                Some(Req::SolOp { generation: g, op, reply }) => match &mut sol {
                    Some(x) if x.generation == g => {
                        let r = x.ep.send_operation(op).map_err(|e| match e {
                            super::sol::SolError::Closed => sol_gone(),
                            other => IpmiError::Config(other.to_string()),
                        });
                        let _ = reply.send(r);
                    }
                    _ => {
                        let _ = reply.send(Err(sol_gone()));
                    }
                },
                Some(Req::SolFlush { generation: g, reply }) => match &mut sol {
                    Some(x) if x.generation == g && !x.ep.is_closed() => x.flushes.push(reply),
                    _ => {
                        let _ = reply.send(Err(sol_gone()));
                    }
                },
                Some(Req::SolStop { generation: g, reply }) => {
                    if let Some(x) = &mut sol {
                        if x.generation == g {
                            x.ep.close();
                            x.finish();
                            s.set_keepalive(x.saved_keepalive);
                            sol = None;
                        }
                    }
                    let _ = reply.send(());
                }
                None => {
                    rx_open = false;
                    s.close(Instant::now());
                }
            },
            r = sock.recv(&mut buf) => match r {
                Ok(n) => s.handle_input(Instant::now(), buf.get(..n).unwrap_or_default()),
                // ICMP errors (port unreachable) surface here; the session's
                // timers decide what they mean.
                Err(e) => tracing::debug!("recv from BMC failed: {e}"),
            },
            r = recv_opt(&sol_sock, &mut sol_buf) => match r {
                Ok(n) => s.handle_input(Instant::now(), sol_buf.get(..n).unwrap_or_default()),
                Err(e) => tracing::debug!("recv on the SOL port failed: {e}"),
            },
            _ = room => {}
            _ = sleep => {
                let now = Instant::now();
                s.handle_timeout(now);
                if let Some(x) = &mut sol {
                    x.ep.handle_timeout(now);
                }
            }
        }
    }
}
