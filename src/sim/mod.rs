//! The BMC fleet simulator (`ironrack sim`): one process serving N simulated BMCs
//! on consecutive UDP ports, with fault injection.
//!
//! The protocol lives in [`bmc`] (sans-IO); this module only moves datagrams,
//! runs the BMCs' timers (SOL resends, power transitions) and applies faults
//! (loss, latency, unresponsive BMCs, garbage answers) to every datagram, SOL
//! included.
//!
//! Behind each BMC is a machine that really network-boots: it has a MAC
//! (BMC i: the configured base plus i) and, when it boots with the boot
//! device PXE, fetches its per-MAC config from the boot server, downloads
//! the kernel and ramdisk, and heartbeats to the agent as a deploy ramdisk
//! would ([`netboot`] decides and parses, [`pxe`] does the network part).

pub mod bmc;
pub mod netboot;
pub mod pxe;
pub mod redfish;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::ipmi::sol::SolStats;

pub use bmc::{Bmc, BmcConfig, BmcStats, HostSerial, SolSimConfig};
pub use netboot::{
    Loader, Mac, NetbootConfig, NetbootStats, DEFAULT_MAC_BASE, DEFAULT_REDFISH_MAC_BASE,
};
pub use pxe::NetbootHost;

/// Faults applied to one BMC, changeable while it runs.
#[derive(Debug, Default)]
pub struct Faults {
    /// Probability (in millionths) that a datagram is lost, each way.
    loss_ppm: AtomicU32,
    /// Added latency per answer, milliseconds.
    latency_ms: AtomicU32,
    /// Random extra latency up to this many milliseconds.
    jitter_ms: AtomicU32,
    /// Swallow everything.
    unresponsive: AtomicBool,
    /// Answer every datagram with garbage (see [`garble`]).
    garbage: AtomicBool,
    /// Garbage datagrams sent.
    garbage_sent: AtomicU64,
}

impl Faults {
    pub fn set_loss(&self, fraction: f64) {
        let ppm = (fraction.clamp(0.0, 1.0) * 1_000_000.0) as u32;
        self.loss_ppm.store(ppm, Ordering::Relaxed);
    }
    pub fn set_latency(&self, base: Duration, jitter: Duration) {
        self.latency_ms.store(
            base.as_millis().min(u32::MAX as u128) as u32,
            Ordering::Relaxed,
        );
        self.jitter_ms.store(
            jitter.as_millis().min(u32::MAX as u128) as u32,
            Ordering::Relaxed,
        );
    }
    pub fn set_unresponsive(&self, v: bool) {
        self.unresponsive.store(v, Ordering::Relaxed);
    }
    pub fn is_unresponsive(&self) -> bool {
        self.unresponsive.load(Ordering::Relaxed)
    }
    /// Answer with garbage (broken firmware): every datagram the BMC sends,
    /// answers and SOL alike, is replaced by random bytes or malformed RMCP
    /// ([`garble`]). Loss and latency still apply.
    pub fn set_garbage(&self, v: bool) {
        self.garbage.store(v, Ordering::Relaxed);
    }
    pub fn is_garbage(&self) -> bool {
        self.garbage.load(Ordering::Relaxed)
    }
    /// Garbage datagrams sent so far.
    pub fn garbage_sent(&self) -> u64 {
        self.garbage_sent.load(Ordering::Relaxed)
    }
    fn lose(&self) -> bool {
        let ppm = self.loss_ppm.load(Ordering::Relaxed);
        ppm > 0 && rand::thread_rng().gen_range(0..1_000_000) < ppm
    }
    fn delay(&self) -> Duration {
        let base = self.latency_ms.load(Ordering::Relaxed) as u64;
        let jitter = self.jitter_ms.load(Ordering::Relaxed) as u64;
        let extra = if jitter > 0 {
            rand::thread_rng().gen_range(0..=jitter)
        } else {
            0
        };
        Duration::from_millis(base + extra)
    }
}

/// One running simulated BMC.
pub struct SimBmc {
    pub addr: SocketAddr,
    pub core: Mutex<Bmc>,
    pub faults: Faults,
    /// The machine's network side (PXE boots, downloads, heartbeats).
    pub netboot: Arc<NetbootHost>,
    /// Wakes the serving task when the BMC has something to send on its own.
    wake: Notify,
}

impl SimBmc {
    /// Run `f` on the BMC core. Whatever `f` leaves to send (host output on
    /// SOL, say) goes out at once.
    pub fn with<R>(&self, f: impl FnOnce(&mut Bmc) -> R) -> R {
        let r = {
            let mut g = match self.core.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            f(&mut g)
        };
        self.wake.notify_one();
        r
    }

    /// The BMC's counters, with the machine's network boots and the
    /// garbage sent.
    pub fn stats(&self) -> BmcStats {
        let mut s = self.with(|b| b.stats(Instant::now()));
        s.netboot = self.netboot.stats();
        s.garbage_sent = self.faults.garbage_sent();
        s
    }

    /// Change the password the BMC accepts (a rotated credential: consoles
    /// with the old one are refused in RAKP; sessions already open stay).
    pub fn set_password(&self, password: &[u8]) {
        self.with(|b| b.set_password(password))
    }

    /// The machine's PXE MAC, `aa:bb:cc:dd:ee:ff`.
    pub fn mac(&self) -> String {
        self.netboot.mac().to_string()
    }

    /// The machine's network boot counters and state.
    pub fn netboot_stats(&self) -> NetbootStats {
        self.netboot.stats()
    }

    /// Change how the machine network-boots (boot server, faults, ...); it
    /// applies from its next boot.
    pub fn update_netboot(&self, f: impl FnOnce(&mut NetbootConfig)) {
        self.netboot.update(f)
    }

    /// Tell the machine's network side about boots and power changes.
    fn observe_machine(&self) {
        let (boots, flags, on) = self.with_core(|b| {
            (
                b.machine.boots.len() as u64,
                b.machine.boots.last().copied(),
                b.machine.on,
            )
        });
        self.netboot.observe(boots, flags.as_ref(), on);
    }

    /// `with` without waking the serving task.
    fn with_core<R>(&self, f: impl FnOnce(&mut Bmc) -> R) -> R {
        let mut g = match self.core.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut g)
    }

    /// The simulated host writes to its serial port (see [`Bmc::host_write`]):
    /// it reaches the console with SOL active. Returns how many bytes SOL took.
    pub fn host_write(&self, bytes: &[u8]) -> usize {
        self.with(|b| b.host_write(bytes))
    }

    /// What the console typed, as the host reads it.
    pub fn host_read(&self) -> Vec<u8> {
        self.with(|b| b.host_read())
    }

    /// Make the simulated host echo keystrokes (or stop).
    pub fn set_host_echo(&self, on: bool) {
        self.with(|b| b.host.echo = on)
    }

    /// The host side of the serial port (counters, unread input).
    pub fn host(&self) -> HostSerial {
        self.with(|b| b.host.clone())
    }

    pub fn sol_active(&self) -> bool {
        self.with(|b| b.sol_active())
    }

    pub fn sol_stats(&self) -> Option<SolStats> {
        self.with(|b| b.sol_stats())
    }

    /// Host output not yet ACKed by the console.
    pub fn sol_pending(&self) -> usize {
        self.with(|b| b.sol_pending())
    }
}

/// Fleet-wide settings.
#[derive(Clone)]
pub struct FleetConfig {
    /// Address of the first BMC; the others take the following ports.
    pub first: SocketAddr,
    pub count: usize,
    pub bmc: BmcConfig,
    pub loss: f64,
    pub latency: Duration,
    pub jitter: Duration,
    /// Indexes of BMCs that start unresponsive.
    pub unresponsive: Vec<usize>,
}

/// A running fleet. Dropping it stops every BMC.
pub struct Fleet {
    pub bmcs: Vec<Arc<SimBmc>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Bind every BMC's socket and start serving. Port 0 as the first address
    /// gives each BMC its own ephemeral port (handy in tests).
    pub async fn start(cfg: FleetConfig) -> std::io::Result<Fleet> {
        let mut bmcs = Vec::with_capacity(cfg.count);
        let mut tasks = Vec::with_capacity(cfg.count);
        let http = pxe::http_client()?;
        let mac_base = cfg.bmc.mac.unwrap_or(DEFAULT_MAC_BASE);
        for i in 0..cfg.count {
            let mac = mac_base.checked_add(i as u64).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("BMC {i} would need a MAC beyond ff:ff:ff:ff:ff:ff (base {mac_base})"),
                )
            })?;
            let addr = if cfg.first.port() == 0 {
                cfg.first
            } else {
                let port = cfg.first.port() as usize + i;
                let port = u16::try_from(port).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("BMC {i} would need port {port}, beyond 65535"),
                    )
                })?;
                SocketAddr::new(cfg.first.ip(), port)
            };
            let sock = UdpSocket::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("binding simulated BMC {i} to {addr}: {e}"),
                )
            })?;
            let local = sock.local_addr()?;
            let mut bcfg = cfg.bmc.clone();
            bcfg.guid[..8].copy_from_slice(&(i as u64).to_le_bytes());
            bcfg.port = local.port();
            bcfg.mac = Some(mac);
            let netboot = Arc::new(NetbootHost::new(
                mac,
                local,
                local.port(),
                bcfg.netboot.clone(),
                http.clone(),
            ));
            let bmc = Arc::new(SimBmc {
                addr: local,
                core: Mutex::new(Bmc::new(bcfg, rand::random::<u64>() ^ i as u64)),
                faults: Faults::default(),
                netboot,
                wake: Notify::new(),
            });
            bmc.faults.set_loss(cfg.loss);
            bmc.faults.set_latency(cfg.latency, cfg.jitter);
            bmc.faults.set_unresponsive(cfg.unresponsive.contains(&i));
            tasks.push(tokio::spawn(serve(Arc::new(sock), bmc.clone())));
            bmcs.push(bmc);
        }
        Ok(Fleet { bmcs, tasks })
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.bmcs.iter().map(|b| b.addr).collect()
    }

    /// Every machine's PXE MAC, in BMC order.
    pub fn macs(&self) -> Vec<String> {
        self.bmcs.iter().map(|b| b.mac()).collect()
    }

    /// Point every machine at this TFTP boot server (from their next boot).
    pub fn set_boot_server(&self, server: Option<SocketAddr>) {
        for b in &self.bmcs {
            b.update_netboot(|n| n.boot_server = server);
        }
    }

    /// Change every machine's network boot settings (from their next boot).
    pub fn update_netboot(&self, f: impl Fn(&mut NetbootConfig)) {
        for b in &self.bmcs {
            b.update_netboot(&f);
        }
    }

    /// The sum of every machine's network boot counters (state, error and
    /// the other per-machine strings are left empty).
    pub fn netboot_totals(&self) -> NetbootStats {
        let mut t = NetbootStats::default();
        for b in &self.bmcs {
            let s = b.netboot_stats();
            t.netboots += s.netboots;
            t.disk_boots += s.disk_boots;
            t.disk_fallbacks += s.disk_fallbacks;
            t.configs_fetched += s.configs_fetched;
            t.config_errors += s.config_errors;
            t.tftp_files += s.tftp_files;
            t.tftp_bytes += s.tftp_bytes;
            t.http_files += s.http_files;
            t.http_bytes += s.http_bytes;
            t.download_failures += s.download_failures;
            t.heartbeats_sent += s.heartbeats_sent;
            t.heartbeats_accepted += s.heartbeats_accepted;
            t.heartbeats_refused += s.heartbeats_refused;
            t.heartbeat_errors += s.heartbeat_errors;
        }
        t
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for b in &self.bmcs {
            b.netboot.abort();
        }
    }
}

/// What a BMC with broken firmware sends instead of `real` (the answer it
/// would have given, if any). Never a datagram a console could take for a
/// valid answer: random bytes; an RMCP header over random bytes; an RMCP+
/// header whose payload length runs past the datagram; the real answer cut
/// to at most half its length (its payload, or integrity trailer, missing);
/// an RMCP+ packet of random payload type, flags and session id with random
/// contents; or an ASF pong nobody asked for.
pub fn garble(real: Option<&[u8]>) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let random = |rng: &mut rand::rngs::ThreadRng, n: usize| -> Vec<u8> {
        (0..n).map(|_| rng.gen::<u8>()).collect()
    };
    const RMCP_IPMI: [u8; 4] = [0x06, 0x00, 0xff, 0x07];
    match rng.gen_range(0..6u8) {
        0 => {
            let n = rng.gen_range(1..=256);
            random(&mut rng, n)
        }
        1 => {
            let mut v = RMCP_IPMI.to_vec();
            let n = rng.gen_range(0..=64);
            v.extend(random(&mut rng, n));
            v
        }
        2 => {
            // authtype RMCP+, payload type, session id, sequence, then a
            // length larger than what follows.
            let mut v = RMCP_IPMI.to_vec();
            v.push(0x06);
            v.push(rng.gen::<u8>() & 0xc0 | rng.gen_range(0x10..=0x15u8));
            v.extend(random(&mut rng, 8));
            let body = rng.gen_range(0..=32usize);
            let claimed = body as u16 + rng.gen_range(1..=512u16);
            v.extend_from_slice(&claimed.to_le_bytes());
            v.extend(random(&mut rng, body));
            v
        }
        3 => match real.filter(|r| r.len() >= 2) {
            Some(r) => {
                let keep = rng.gen_range(0..=r.len() / 2);
                r[..keep].to_vec()
            }
            None => {
                let n = rng.gen_range(1..=64);
                random(&mut rng, n)
            }
        },
        4 => {
            let mut v = RMCP_IPMI.to_vec();
            v.push(0x06);
            v.push(rng.gen::<u8>());
            v.extend(random(&mut rng, 8));
            let body = rng.gen_range(0..=64usize);
            v.extend_from_slice(&(body as u16).to_le_bytes());
            v.extend(random(&mut rng, body));
            v
        }
        _ => {
            // ASF pong: well formed, answers nothing the console asked.
            vec![
                0x06,
                0x00,
                0xff,
                0x06,
                0x00,
                0x00,
                0x11,
                0xbe,
                0x40,
                rng.gen(),
                0x00,
                0x10,
            ]
        }
    }
}

/// Send a datagram through the faults: unresponsive and lossy BMCs drop it,
/// a garbage BMC garbles it, latency delays it.
async fn send_faulty(sock: &Arc<UdpSocket>, bmc: &SimBmc, d: Vec<u8>, peer: SocketAddr) {
    if bmc.faults.unresponsive.load(Ordering::Relaxed) || bmc.faults.lose() {
        return;
    }
    let d = if bmc.faults.is_garbage() {
        bmc.faults.garbage_sent.fetch_add(1, Ordering::Relaxed);
        garble(Some(&d))
    } else {
        d
    };
    let delay = bmc.faults.delay();
    if delay.is_zero() {
        let _ = sock.send_to(&d, peer).await;
    } else {
        let sock = sock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = sock.send_to(&d, peer).await;
        });
    }
}

async fn serve(sock: Arc<UdpSocket>, bmc: Arc<SimBmc>) {
    let mut buf = vec![0u8; 2048];
    loop {
        // What the BMC sends on its own: SOL data, ACKs and resends.
        let now = Instant::now();
        let (outgoing, deadline) = {
            let mut g = match bmc.core.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            g.handle_timeout(now);
            let mut v = Vec::new();
            while let Some(x) = g.poll_transmit(now) {
                v.push(x);
            }
            (v, g.poll_timeout())
        };
        // Boots and power changes reach the machine's network side.
        bmc.observe_machine();
        for (peer, d) in outgoing {
            if let Some(peer) = peer {
                send_faulty(&sock, &bmc, d, peer).await;
            }
        }
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, peer) = match r {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!("sim {}: recv error: {e}", bmc.addr);
                        continue;
                    }
                };
                if bmc.faults.unresponsive.load(Ordering::Relaxed) || bmc.faults.lose() {
                    continue;
                }
                let data = buf.get(..n).unwrap_or_default();
                let reply = {
                    let mut g = match bmc.core.lock() {
                        Ok(g) => g,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    g.handle_from(Instant::now(), data, Some(peer))
                };
                match reply {
                    Some(reply) => send_faulty(&sock, &bmc, reply, peer).await,
                    // Broken firmware answers whatever came in.
                    None if bmc.faults.is_garbage() => {
                        send_faulty(&sock, &bmc, Vec::new(), peer).await
                    }
                    None => {}
                }
            }
            _ = sleep => {}
            _ = bmc.wake.notified() => {}
        }
    }
}
