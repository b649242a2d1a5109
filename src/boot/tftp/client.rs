//! The tokio side of the TFTP client: fetch one file into any
//! `AsyncWrite`, into memory, or into nothing (counting bytes, for load
//! tests). The protocol lives in [`receiver`](super::receiver).
//!
//! The client's socket takes the first answer's port as the server's TID
//! (from the server's address only) and connects to it, so the kernel keeps
//! other senders out; it reads with GRO, so a window that left the server in
//! one GSO batch arrives in one `recvmsg`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::packet::{self, code, Mode};
use super::receiver::{Failure, Receiver, ReceiverConfig};
use super::udp::{self, RecvBatch, Socket};

/// What to ask the server for.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `blksize` (8..=65464); `None` for the 512-byte default.
    pub blksize: Option<u16>,
    /// `windowsize` (RFC 7440); `None` for lock step.
    pub windowsize: Option<u16>,
    /// Ask for `tsize`; the result is checked against it.
    pub tsize: bool,
    /// Ask the server for this retransmit timeout (`timeout`, seconds).
    pub server_timeout: Option<u8>,
    /// Our retransmit timeout.
    pub timeout: Duration,
    /// Retransmissions before giving up.
    pub max_retries: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            blksize: None,
            windowsize: None,
            tsize: true,
            server_timeout: None,
            timeout: Duration::from_secs(1),
            max_retries: 5,
        }
    }
}

/// What a finished transfer looked like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// Bytes received (and written).
    pub bytes: u64,
    /// The size the server announced, when it granted `tsize`.
    pub tsize: Option<u64>,
    /// The block and window sizes in use.
    pub blksize: u16,
    pub windowsize: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("cannot write the file: {0}")]
    Sink(io::Error),
    #[error(transparent)]
    Transfer(#[from] Failure),
    #[error("received {got} bytes but the server announced {tsize}")]
    SizeMismatch { got: u64, tsize: u64 },
}

impl ClientError {
    /// The server's ERROR code, if that is what ended the transfer.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            ClientError::Transfer(Failure::Server { code, .. }) => Some(*code),
            _ => None,
        }
    }
}

/// Fetch `file` from `server` into `out`.
pub async fn get_to<W>(
    server: SocketAddr,
    file: &str,
    opts: &ClientOptions,
    out: &mut W,
) -> Result<Fetched, ClientError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let bind = match server.ip() {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    };
    let sock = Socket::from_std(std::net::UdpSocket::bind(bind)?)?;
    let window = usize::from(opts.windowsize.unwrap_or(1));
    let block = usize::from(opts.blksize.unwrap_or(packet::DEFAULT_BLKSIZE)) + 4;
    if window * block > 64 * 1024 {
        sock.set_buffers(0, (window * block * 2).min(16 << 20));
    }
    let cfg = ReceiverConfig {
        filename: file.to_string(),
        mode: Mode::Octet,
        blksize: opts.blksize,
        windowsize: opts.windowsize,
        tsize: opts.tsize,
        timeout_option: opts.server_timeout,
        timeout: opts.timeout,
        max_retries: opts.max_retries,
    };
    let mut r = Receiver::new(cfg, Instant::now());
    let mut tid: Option<SocketAddr> = None;
    let mut batch = RecvBatch::new(udp::MAX_DATAGRAM + 1);
    let sleep = tokio::time::sleep(opts.timeout);
    tokio::pin!(sleep);
    loop {
        while let Some(p) = r.poll_transmit() {
            match tid {
                Some(_) => sock.send_connected(&p).await?,
                None => sock.send(server, &p, None).await?,
            }
        }
        match r.result() {
            Some(Ok(())) => break,
            Some(Err(f)) => return Err(f.clone().into()),
            None => {}
        }
        if let Some(d) = r.poll_timeout() {
            sleep.as_mut().reset(d.into());
        }
        tokio::select! {
            biased;
            m = sock.recv(&mut batch) => {
                match m {
                    Ok(()) => {}
                    // ICMP errors from an earlier datagram; keep listening.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e.into()),
                }
                let now = Instant::now();
                for (meta, dgram) in batch.datagrams() {
                    match tid {
                        Some(t) if t == meta.addr => {}
                        None if meta.addr.ip() == server.ip() || server.ip().is_unspecified() => {
                            // The server's TID. Connected, the kernel keeps
                            // strangers out (they get ICMP port unreachable).
                            tid = Some(meta.addr);
                            sock.connect(meta.addr).await?;
                        }
                        _ => {
                            sock.try_send_to(
                                meta.addr,
                                &packet::error_packet(code::UNKNOWN_TID, "unknown transfer ID"),
                            );
                            continue;
                        }
                    }
                    if let Some(d) = r.handle_datagram(now, dgram) {
                        if let Err(e) = out.write_all(d).await {
                            r.abort(code::DISK_FULL, "cannot write the file");
                            while let Some(p) = r.poll_transmit() {
                                sock.try_send_to(meta.addr, &p);
                            }
                            return Err(ClientError::Sink(e));
                        }
                    }
                }
            }
            _ = &mut sleep => r.handle_timeout(Instant::now()),
        }
    }
    out.flush().await.map_err(ClientError::Sink)?;
    let fetched = Fetched {
        bytes: r.bytes(),
        tsize: r.tsize(),
        blksize: r.blksize(),
        windowsize: r.windowsize(),
    };
    match fetched.tsize {
        Some(t) if t != fetched.bytes => Err(ClientError::SizeMismatch {
            got: fetched.bytes,
            tsize: t,
        }),
        _ => Ok(fetched),
    }
}

/// Fetch `file` into memory.
pub async fn get(
    server: SocketAddr,
    file: &str,
    opts: &ClientOptions,
) -> Result<Vec<u8>, ClientError> {
    let mut v = Vec::new();
    get_to(server, file, opts, &mut v).await?;
    Ok(v)
}

/// Fetch `file` and throw the bytes away (load tests).
pub async fn get_discard(
    server: SocketAddr,
    file: &str,
    opts: &ClientOptions,
) -> Result<Fetched, ClientError> {
    get_to(server, file, opts, &mut tokio::io::sink()).await
}
