//! The thin tokio layer: one UDP socket and one driver task per BMC, moving bytes
//! between the socket and a sans-IO [`ClientSession`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::cmd::{self, BootFlags, ChassisControl, DeviceId, PowerState};
use super::error::IpmiError;
use super::session::{ClientSession, Event, SessionConfig, Stats};
use super::wire::IpmiResponse;

type Reply = oneshot::Sender<Result<IpmiResponse, IpmiError>>;

enum Req {
    Cmd {
        netfn: u8,
        cmd: u8,
        data: Vec<u8>,
        reply: Reply,
    },
    Close(oneshot::Sender<()>),
}

/// Shared view of the session for observers.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientInfo {
    pub stats: Stats,
    pub suite: Option<u8>,
    pub active: bool,
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

    /// Close the session and stop the driver task.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Req::Close(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
    }
}

fn publish(info: &Mutex<ClientInfo>, s: &ClientSession) {
    if let Ok(mut g) = info.lock() {
        *g = ClientInfo {
            stats: s.stats(),
            suite: s.negotiated_suite(),
            active: s.is_active(),
        };
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
    loop {
        while let Some(d) = s.poll_transmit() {
            if let Err(e) = sock.send(&d).await {
                tracing::debug!("send to BMC failed: {e}");
            }
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                Event::Response { id, result } => {
                    if let Some(w) = waiters.remove(&id) {
                        let _ = w.send(result);
                    }
                }
                Event::Established {
                    suite,
                    bmc_session_id,
                } => {
                    tracing::debug!(suite, bmc_session_id, "IPMI session established");
                }
                Event::Closed => {
                    publish(&info, &s);
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
        publish(&info, &s);
        let deadline = s.poll_timeout();
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending().await,
            }
        };
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
                None => {
                    rx_open = false;
                    s.close(Instant::now());
                }
            },
            r = sock.recv(&mut buf) => match r {
                Ok(n) => s.handle_input(Instant::now(), &buf[..n]),
                // ICMP errors (port unreachable) surface here; the session's
                // timers decide what they mean.
                Err(e) => tracing::debug!("recv from BMC failed: {e}"),
            },
            _ = sleep => s.handle_timeout(Instant::now()),
        }
    }
}
