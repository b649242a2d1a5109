//! The tokio side of the TFTP server: one listening socket for requests, one
//! ephemeral socket (the server TID) per transfer.
//!
//! The protocol lives in [`sender`](super::sender); this file moves bytes.
//! A transfer gets its own socket bound to the address the client sent the
//! request to and connected to the client, so the kernel delivers only the
//! client's TID to it (a foreign TID gets ICMP port unreachable, and cannot
//! disturb the transfer) and reports the path MTU, which caps `blksize`.
//! Files come only from the [`FileSource`], which applies the path rules.
//! The file is read in large chunks on the blocking pool, and a window of
//! DATA leaves in as few `sendmsg` calls as GSO allows.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::netascii;
use super::packet::{self, code, Mode, Packet, DATA_HEADER};
use super::sender::{self, Limits, Outcome, Sender, Transmit};
use super::udp::{self, RecvBatch, Socket, MAX_GSO_BYTES};
use crate::boot::{BootError, BootFile, FileSource, Via};
use crate::config::TftpConfig;

/// Transfers finished, by `result` (complete, timeout, refused,
/// client_error, server_error) and requests refused, by `result`
/// (not_found, access_violation, busy, write_refused, error).
pub const TRANSFERS_TOTAL: &str = "ironrack_tftp_transfers_total";
/// DATA payload bytes sent, retransmissions included.
pub const BYTES_SENT_TOTAL: &str = "ironrack_tftp_bytes_sent_total";

/// File bytes read from disk at a time (at least a whole window).
const CHUNK: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub max_blksize: u16,
    pub max_windowsize: u16,
    pub max_transfers: usize,
    pub timeout: Duration,
    pub max_retries: u32,
}

impl From<&TftpConfig> for ServerConfig {
    fn from(c: &TftpConfig) -> Self {
        ServerConfig {
            max_blksize: c.max_blksize,
            max_windowsize: c.max_windowsize,
            max_transfers: c.max_transfers,
            timeout: crate::config::secs(c.timeout).unwrap_or(Duration::from_secs(1)),
            max_retries: c.max_retries,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig::from(&TftpConfig::default())
    }
}

pub struct TftpServer {
    sock: Socket,
    local: SocketAddr,
    cfg: ServerConfig,
}

/// A transfer in flight, by client address: a repeated RRQ goes to it.
struct Active {
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
}

struct Shared {
    cfg: ServerConfig,
    source: Arc<dyn FileSource>,
    listen: Socket,
    listen_ip: IpAddr,
    permits: Arc<Semaphore>,
    active: Mutex<HashMap<SocketAddr, Active>>,
    next_id: AtomicU64,
    stop: watch::Receiver<bool>,
}

impl TftpServer {
    pub async fn bind(listen: SocketAddr, cfg: ServerConfig) -> std::io::Result<TftpServer> {
        let std_sock = std::net::UdpSocket::bind(listen)?;
        let sock = Socket::from_std(std_sock)?;
        // Room for a burst of requests (a rack powering on at once).
        sock.set_buffers(0, 1 << 20);
        let local = sock.local_addr()?;
        Ok(TftpServer { sock, local, cfg })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serve until `stop` turns true; in-flight transfers are dropped then.
    pub async fn run(self, source: Arc<dyn FileSource>, stop: tokio::sync::watch::Receiver<bool>) {
        let shared = Arc::new(Shared {
            permits: Arc::new(Semaphore::new(self.cfg.max_transfers.max(1))),
            cfg: self.cfg,
            source,
            listen: self.sock,
            listen_ip: self.local.ip(),
            active: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            stop: stop.clone(),
        });
        let mut stop = stop;
        let stopped = stopped(&mut stop);
        tokio::pin!(stopped);
        let mut batch = RecvBatch::new(udp::MAX_DATAGRAM + 1);
        loop {
            tokio::select! {
                () = &mut stopped => break,
                r = shared.listen.recv(&mut batch) => match r {
                    Ok(()) => {
                        for (meta, dgram) in batch.datagrams() {
                            let local_ip = meta.dst_ip.unwrap_or(shared.listen_ip);
                            on_request(&shared, meta.addr, local_ip, dgram);
                        }
                    }
                    Err(e) => {
                        // ICMP errors from earlier answers and the like.
                        tracing::debug!(error = %e, "tftp: receive on the listening socket");
                    }
                }
            }
        }
    }
}

/// Resolves once `stop` is true; never if its sender is gone without
/// saying so.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One datagram on the listening port.
fn on_request(shared: &Arc<Shared>, peer: SocketAddr, local_ip: IpAddr, dgram: &[u8]) {
    let p = match packet::decode(dgram) {
        Ok(p) => p,
        Err(e) => {
            // A request we cannot read gets ERROR 4; anything else (random
            // bytes, stray DATA) is dropped so we never reflect garbage.
            let op = match dgram {
                [a, b, ..] => u16::from_be_bytes([*a, *b]),
                _ => 0,
            };
            if op == packet::OP_RRQ || op == packet::OP_WRQ {
                tracing::debug!(%peer, error = %e, "tftp: malformed request");
                shared.listen.try_send_to(
                    peer,
                    &packet::error_packet(code::ILLEGAL_OPERATION, "illegal TFTP operation"),
                );
            } else {
                tracing::debug!(%peer, error = %e, "tftp: garbage on the listening port dropped");
            }
            return;
        }
    };
    match p {
        Packet::Rrq(r) => {
            if r.mode == Mode::Mail {
                shared.listen.try_send_to(
                    peer,
                    &packet::error_packet(code::ILLEGAL_OPERATION, "mail mode not supported"),
                );
                return;
            }
            {
                let mut active = shared.active.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(a) = active.get(&peer) {
                    match a.tx.try_send(dgram.to_vec()) {
                        // The transfer from this address decides: a
                        // retransmitted RRQ, or a new request.
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => return,
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            active.remove(&peer);
                        }
                    }
                }
            }
            start(shared, peer, local_ip, dgram.to_vec());
        }
        Packet::Wrq(r) => {
            tracing::info!(%peer, file = %r.filename.escape_debug(), "tftp: write request refused");
            count_refusal("write_refused");
            shared.listen.try_send_to(
                peer,
                &packet::error_packet(code::ACCESS_VIOLATION, "access violation"),
            );
        }
        // ERRORs are never answered; stray DATA, ACK and OACK neither.
        other => {
            tracing::debug!(%peer, opcode = other.opcode(), "tftp: not a request; dropped");
        }
    }
}

fn count_refusal(result: &'static str) {
    metrics::counter!(TRANSFERS_TOTAL, "result" => result).increment(1);
}

/// Start a transfer for `rrq` (an encoded RRQ) from `peer`.
fn start(shared: &Arc<Shared>, peer: SocketAddr, local_ip: IpAddr, rrq: Vec<u8>) {
    let permit = match shared.permits.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            tracing::info!(%peer, max_transfers = shared.cfg.max_transfers, "tftp: server busy");
            count_refusal("busy");
            shared.listen.try_send_to(
                peer,
                &packet::error_packet(code::NOT_DEFINED, "server busy"),
            );
            return;
        }
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(4);
    shared
        .active
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(peer, Active { id, tx });
    let shared = shared.clone();
    tokio::spawn(async move {
        let t = Transfer {
            shared: shared.clone(),
            peer,
            local_ip,
            id,
        };
        let next = t.run(rrq, rx, permit).await;
        t.unregister();
        if let Some(rrq) = next {
            start(&shared, peer, local_ip, rrq);
        }
    });
}

struct Transfer {
    shared: Arc<Shared>,
    peer: SocketAddr,
    local_ip: IpAddr,
    id: u64,
}

/// Where DATA comes from.
enum Data {
    Memory(Vec<u8>),
    File {
        file: Arc<std::fs::File>,
        chunk: Vec<u8>,
        /// File offset of `chunk[0]`.
        at: u64,
    },
}

impl Data {
    /// Make `off .. off + len` readable with [`Data::slice`].
    async fn ensure(&mut self, off: u64, len: usize, size: u64) -> io::Result<()> {
        let Data::File { file, chunk, at } = self else {
            return Ok(());
        };
        let end = off + len as u64;
        if off >= *at && end <= *at + chunk.len() as u64 {
            return Ok(());
        }
        let want = usize::try_from(size.saturating_sub(off))
            .unwrap_or(usize::MAX)
            .min(len.max(CHUNK));
        let f = file.clone();
        let mut buf = std::mem::take(chunk);
        buf.resize(want, 0);
        let r = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let mut done = 0;
            while done < buf.len() {
                let n = f.read_at(&mut buf[done..], off + done as u64)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank during the transfer",
                    ));
                }
                done += n;
            }
            Ok(buf)
        })
        .await
        .map_err(io::Error::other)??;
        *chunk = r;
        *at = off;
        Ok(())
    }

    fn slice(&self, off: u64, len: usize) -> &[u8] {
        let (buf, at) = match self {
            Data::Memory(v) => (v.as_slice(), 0),
            Data::File { chunk, at, .. } => (chunk.as_slice(), *at),
        };
        let start = usize::try_from(off.saturating_sub(at)).unwrap_or(usize::MAX);
        buf.get(start..start.saturating_add(len)).unwrap_or(&[])
    }
}

/// Why a request is not served: the ERROR to send and the log level.
fn refusal(e: &BootError) -> (u16, &'static str, &'static str) {
    match e {
        BootError::NotFound => (code::FILE_NOT_FOUND, "file not found", "not_found"),
        BootError::AccessViolation(_) => (
            code::ACCESS_VIOLATION,
            "access violation",
            "access_violation",
        ),
        BootError::Io(_) => (code::NOT_DEFINED, "cannot read file", "error"),
    }
}

/// The largest `blksize` the path carries without IP fragmentation.
fn mtu_blksize(sock: &std::net::UdpSocket, v6: bool) -> Option<u16> {
    let mtu = path_mtu(sock, v6)?;
    // IP and UDP headers (20 + 8, or 40 + 8), then TFTP's 4.
    let overhead = if v6 {
        48 + DATA_HEADER
    } else {
        28 + DATA_HEADER
    };
    let cap = mtu.checked_sub(overhead)?;
    Some(u16::try_from(cap).unwrap_or(u16::MAX))
}

#[cfg(target_os = "linux")]
fn path_mtu(sock: &std::net::UdpSocket, v6: bool) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU)
    };
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `sock` owns an open socket for the duration of the call, and
    // `mtu` / `len` are live locals whose sizes match what we pass; the
    // kernel writes at most `len` bytes into `mtu`. IP_MTU / IPV6_MTU take a
    // connected socket, which the caller guarantees.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&mut mtu as *mut libc::c_int).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 || mtu <= 0 {
        return None;
    }
    usize::try_from(mtu).ok()
}

#[cfg(not(target_os = "linux"))]
fn path_mtu(_sock: &std::net::UdpSocket, _v6: bool) -> Option<usize> {
    None
}

impl Transfer {
    fn listen_reply(&self, code: u16, msg: &str) {
        self.shared
            .listen
            .try_send_to(self.peer, &packet::error_packet(code, msg));
    }

    /// Remove our entry from the active map, unless a newer transfer for the
    /// same address replaced it.
    fn unregister(&self) {
        let mut active = self.shared.active.lock().unwrap_or_else(|e| e.into_inner());
        if active.get(&self.peer).is_some_and(|a| a.id == self.id) {
            active.remove(&self.peer);
        }
    }

    /// Serve one request, then hand back an RRQ to start afresh when the
    /// client moved on to a new request meanwhile.
    async fn run(
        &self,
        rrq: Vec<u8>,
        mut rx: mpsc::Receiver<Vec<u8>>,
        permit: OwnedSemaphorePermit,
    ) -> Option<Vec<u8>> {
        let (next, complete) = self.serve(&rrq, &mut rx, permit).await;
        // Once closed, the listener starts new transfers for this address
        // itself; a request queued before that starts the next one here,
        // unless it is a late copy of the one just served in full.
        rx.close();
        let mut next = next;
        while let Ok(m) = rx.try_recv() {
            if next.is_none() && !(complete && m == rrq) {
                next = Some(m);
            }
        }
        next
    }

    /// The transfer itself. Returns a new request from the same client, if
    /// one ended it, and whether every block was acknowledged.
    async fn serve(
        &self,
        rrq: &[u8],
        rx: &mut mpsc::Receiver<Vec<u8>>,
        permit: OwnedSemaphorePermit,
    ) -> (Option<Vec<u8>>, bool) {
        let peer = self.peer;
        let Ok(Packet::Rrq(req)) = packet::decode(rrq) else {
            return (None, false);
        };
        let file_name = req.filename.escape_debug().to_string();
        let started = Instant::now();

        // Open through the FileSource, which applies the path rules.
        let source = self.shared.source.clone();
        let name = req.filename.to_string();
        let opened = tokio::task::spawn_blocking(move || source.open(&name, Via::Tftp))
            .await
            .unwrap_or_else(|e| Err(BootError::Io(e.to_string())));
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                let (code, msg, label) = refusal(&e);
                match &e {
                    BootError::NotFound => {
                        tracing::info!(%peer, file = %file_name, "tftp: file not found")
                    }
                    BootError::AccessViolation(why) => {
                        tracing::warn!(%peer, file = %file_name, reason = %why, "tftp: access violation")
                    }
                    BootError::Io(why) => {
                        tracing::warn!(%peer, file = %file_name, error = %why, "tftp: cannot open")
                    }
                }
                count_refusal(label);
                self.listen_reply(code, msg);
                return (None, false);
            }
        };

        let (mut data, size) = match (req.mode, file) {
            (Mode::Octet, BootFile::Memory(v)) => {
                let n = v.len() as u64;
                (Data::Memory(v), n)
            }
            (Mode::Octet, BootFile::File { file, len }) => (
                Data::File {
                    file: Arc::new(file),
                    chunk: Vec::new(),
                    at: 0,
                },
                len,
            ),
            (_, f) => {
                // netascii: small text files, converted up front.
                if f.len() > netascii::MAX_NETASCII {
                    tracing::info!(%peer, file = %file_name, size = f.len(), "tftp: file too large for netascii");
                    count_refusal("error");
                    self.listen_reply(code::NOT_DEFINED, "file too large for netascii mode");
                    return (None, false);
                }
                let raw = match f {
                    BootFile::Memory(v) => Ok(v),
                    BootFile::File { file, len } => tokio::task::spawn_blocking(move || {
                        let mut v = vec![0u8; usize::try_from(len).unwrap_or(0)];
                        file.read_exact_at(&mut v, 0).map(|_| v)
                    })
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e))),
                };
                match raw {
                    Ok(v) => {
                        let v = netascii::encode(&v);
                        let n = v.len() as u64;
                        (Data::Memory(v), n)
                    }
                    Err(e) => {
                        tracing::warn!(%peer, file = %file_name, error = %e, "tftp: cannot read");
                        count_refusal("error");
                        self.listen_reply(code::NOT_DEFINED, "cannot read file");
                        return (None, false);
                    }
                }
            }
        };

        // The transfer's own socket: from the address the client asked,
        // connected to the client.
        let v6 = peer.is_ipv6();
        let bound = std::net::UdpSocket::bind(SocketAddr::new(self.local_ip, 0)).or_else(|_| {
            // (An IPv6 link-local address needs its scope, which PKTINFO
            // does not give: let the kernel pick the source.)
            let any: IpAddr = if v6 {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            };
            std::net::UdpSocket::bind(SocketAddr::new(any, 0))
        });
        let (sock, mtu_cap) = match bound
            .and_then(|s| s.connect(peer).map(|()| s))
            .and_then(|s| {
                let cap = mtu_blksize(&s, v6);
                Socket::from_std(s).map(|s| (s, cap))
            }) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "tftp: cannot open a transfer socket");
                count_refusal("error");
                self.listen_reply(code::NOT_DEFINED, "server error");
                return (None, false);
            }
        };
        let cfg = &self.shared.cfg;
        let limits = Limits {
            max_blksize: mtu_cap.map_or(cfg.max_blksize, |c| cfg.max_blksize.min(c)),
            max_windowsize: cfg.max_windowsize,
            timeout: cfg.timeout,
            max_retries: cfg.max_retries,
        };
        let neg = sender::negotiate(&req.options, size, &limits);
        let (blksize, windowsize) = (neg.blksize, neg.windowsize);
        let seg = usize::from(blksize) + DATA_HEADER;
        let window_bytes = seg.saturating_mul(usize::from(windowsize));
        if window_bytes > 128 * 1024 {
            sock.set_buffers(window_bytes.saturating_mul(2), 0);
        }
        let max_batch = sock
            .max_gso_segments()
            .min(64)
            .min(MAX_GSO_BYTES / seg)
            .max(1);
        let mut s = Sender::new(neg, size, cfg.max_retries, Instant::now());
        tracing::debug!(%peer, file = %file_name, size, blksize, windowsize, mode = req.mode.as_str(), "tftp: transfer starts");

        let mut out: Vec<u8> = Vec::with_capacity(max_batch.min(usize::from(windowsize)) * seg);
        // ACKs and ERRORs are small; anything longer is garbage anyway.
        let mut rbuf = RecvBatch::new(2048);
        let mut stop = self.shared.stop.clone();
        let stopped = stopped(&mut stop);
        tokio::pin!(stopped);
        let sleep = tokio::time::sleep(cfg.timeout);
        tokio::pin!(sleep);
        let mut next = None;
        'transfer: loop {
            while let Some(t) = s.poll_transmit() {
                match t {
                    Transmit::Packet(p) => {
                        if let Err(e) = sock.send_connected(&p).await {
                            tracing::debug!(%peer, error = %e, "tftp: send");
                        }
                    }
                    Transmit::Data { first, count } => {
                        let (off0, _) = s.block_span(first);
                        let (offn, lenn) = s.block_span(first + count - 1);
                        let span = usize::try_from(offn - off0)
                            .unwrap_or(usize::MAX)
                            .saturating_add(lenn);
                        if let Err(e) = data.ensure(off0, span, size).await {
                            tracing::warn!(%peer, file = %file_name, error = %e, "tftp: read error");
                            s.abort(code::NOT_DEFINED, "read error");
                            continue;
                        }
                        let mut sent_bytes = 0u64;
                        let mut b = first;
                        while b < first + count {
                            let n = (first + count - b).min(max_batch as u64);
                            out.clear();
                            for k in b..b + n {
                                let (off, len) = s.block_span(k);
                                out.extend_from_slice(&packet::data_header(Sender::wire_block(k)));
                                out.extend_from_slice(data.slice(off, len));
                                sent_bytes += len as u64;
                            }
                            let r = if n > 1 {
                                sock.send(peer, &out, Some(seg)).await
                            } else {
                                sock.send_connected(&out).await
                            };
                            if let Err(e) = r {
                                tracing::debug!(%peer, error = %e, "tftp: send");
                            }
                            b += n;
                        }
                        metrics::counter!(BYTES_SENT_TOTAL).increment(sent_bytes);
                    }
                }
            }
            if s.is_done() {
                break;
            }
            if let Some(d) = s.poll_timeout() {
                sleep.as_mut().reset(d.into());
            }
            tokio::select! {
                biased;
                r = sock.recv(&mut rbuf) => match r {
                    Ok(()) => self.input(&sock, &mut s, &rbuf),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        // ICMP port unreachable: the client is gone.
                        tracing::info!(%peer, file = %file_name, "tftp: client went away");
                        break 'transfer;
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "tftp: receive"),
                },
                m = rx.recv() => {
                    let Some(m) = m else { continue };
                    // Read what the client already sent us (an ERROR ending
                    // the transfer, say) before deciding what the request is.
                    loop {
                        match sock.try_recv(&mut rbuf) {
                            Ok(()) => self.input(&sock, &mut s, &rbuf),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(_) => break,
                        }
                    }
                    if s.is_done() {
                        next = Some(m);
                        break 'transfer;
                    }
                    if m == rrq {
                        // The same request again: the client retransmitted
                        // it (our first answer was late or lost). A late
                        // copy must not restart a transfer in flight either.
                        tracing::debug!(%peer, file = %file_name, first_stage = s.first_stage(), "tftp: retransmitted request ignored");
                        continue;
                    }
                    tracing::debug!(%peer, file = %file_name, "tftp: client started a new request; dropping this transfer");
                    next = Some(m);
                    break 'transfer;
                }
                _ = &mut sleep => s.handle_timeout(Instant::now()),
                () = &mut stopped => {
                    s.abort(code::NOT_DEFINED, "server shutting down");
                    break 'transfer;
                }
            }
        }
        // Flush a final ERROR (abort after a read error).
        while let Some(t) = s.poll_transmit() {
            if let Transmit::Packet(p) = t {
                sock.try_send_to(peer, &p);
            }
        }

        // The slot is free before anyone reads about it in the log.
        drop(permit);
        let secs = started.elapsed().as_secs_f64();
        let st = s.stats();
        match s.outcome() {
            Some(Outcome::Complete) => tracing::info!(
                %peer, file = %file_name, bytes = size, blksize, windowsize,
                secs, resent = st.blocks_resent, "tftp: sent"
            ),
            Some(Outcome::TimedOut) => tracing::info!(
                %peer, file = %file_name, acked = s.acked(), blocks = s.last_block(),
                "tftp: client stopped answering; transfer dropped"
            ),
            Some(Outcome::Refused { code, message }) => tracing::debug!(
                %peer, file = %file_name, code, message = %message,
                "tftp: client ended the transfer after the OACK (a size probe)"
            ),
            Some(Outcome::ClientError { code, message }) => tracing::info!(
                %peer, file = %file_name, code, message = %message, "tftp: client aborted the transfer"
            ),
            Some(Outcome::ServerError { .. }) | None => {}
        }
        let label = match s.outcome() {
            Some(o) => o.label(),
            None if next.is_some() => "superseded",
            None => "stopped",
        };
        metrics::counter!(TRANSFERS_TOTAL, "result" => label).increment(1);
        (next, matches!(s.outcome(), Some(Outcome::Complete)))
    }

    /// Datagrams from the transfer socket.
    fn input(&self, sock: &Socket, s: &mut Sender, batch: &RecvBatch) {
        let now = Instant::now();
        for (meta, dgram) in batch.datagrams() {
            if meta.addr != self.peer {
                // The socket is connected, so this does not happen; if it
                // does, RFC 1350 says: tell the stranger, carry on.
                sock.try_send_to(
                    meta.addr,
                    &packet::error_packet(code::UNKNOWN_TID, "unknown transfer ID"),
                );
                continue;
            }
            if let Ok(p) = packet::decode(dgram) {
                s.handle_packet(now, &p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn blksize_cap_follows_the_path_mtu() {
        // Connecting a UDP socket sends nothing; it only picks the route.
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect("127.0.0.1:9").unwrap();
        let mtu = path_mtu(&s, false).unwrap();
        let cap = usize::from(mtu_blksize(&s, false).unwrap());
        assert_eq!(cap, (mtu - 32).min(usize::from(u16::MAX)));
        // Not connected: no path, no cap.
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(mtu_blksize(&u, false), None);
        if let Ok(s6) = std::net::UdpSocket::bind("[::1]:0") {
            s6.connect("[::1]:9").unwrap();
            let mtu = path_mtu(&s6, true).unwrap();
            assert_eq!(
                usize::from(mtu_blksize(&s6, true).unwrap()),
                (mtu - 52).min(usize::from(u16::MAX))
            );
        }
    }

    #[test]
    fn config_from_the_agent_section() {
        let c = ServerConfig::from(&TftpConfig::default());
        assert_eq!(
            (c.max_blksize, c.max_windowsize, c.max_transfers),
            (1468, 64, 512)
        );
        assert_eq!((c.timeout, c.max_retries), (Duration::from_secs(1), 5));
    }
}
