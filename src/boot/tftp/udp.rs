//! The UDP plumbing the server and the client share: a tokio socket driven
//! through `quinn-udp`, for segmentation offload (GSO: a whole window of
//! DATA in one `sendmsg`), receive offload (GRO: a burst of DATA in one
//! `recvmsg`, split again by `stride`) and the destination address of
//! requests (`IP_PKTINFO`, so a transfer answers from the address the client
//! asked).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;

/// Largest UDP payload over IPv4; also the most a GSO batch or a GRO
/// aggregate carries.
pub const MAX_DATAGRAM: usize = 65_507;

/// A GSO batch stays under this many bytes (the IP length limit with room
/// for headers).
pub const MAX_GSO_BYTES: usize = 65_000;

pub struct Socket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
}

impl Socket {
    /// Wrap a bound (maybe connected) socket. Must run inside a runtime.
    pub fn from_std(s: std::net::UdpSocket) -> io::Result<Socket> {
        s.set_nonblocking(true)?;
        let state = UdpSocketState::new((&s).into())?;
        let io = tokio::net::UdpSocket::from_std(s)?;
        Ok(Socket { io, state })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Segments one `sendmsg` may carry (1 without GSO).
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }

    /// Datagrams the kernel may coalesce into one receive (1 without GRO).
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments().max(1)
    }

    /// Ask for larger kernel buffers (0 leaves one as it is); best effort.
    pub fn set_buffers(&self, send: usize, recv: usize) {
        if send > 0 {
            let _ = self.state.set_send_buffer_size((&self.io).into(), send);
        }
        if recv > 0 {
            let _ = self.state.set_recv_buffer_size((&self.io).into(), recv);
        }
    }

    fn recv_now(&self, batch: &mut RecvBatch) -> io::Result<()> {
        batch.n = 0;
        let (a, b) = batch.buf.split_at_mut(batch.size);
        let mut bufs = [IoSliceMut::new(a), IoSliceMut::new(b)];
        let n = self.io.try_io(Interest::READABLE, || {
            self.state
                .recv((&self.io).into(), &mut bufs, &mut batch.meta)
        })?;
        if n < bufs.len() {
            // recvmmsg stopped short: the queue is empty. Clear tokio's
            // readiness now (a closure that says WouldBlock costs no system
            // call), so the next wait parks at once instead of asking the
            // kernel again only to hear EAGAIN; in lock step that is one
            // system call saved per block. A datagram arriving meanwhile
            // raises a new edge, which tokio's readiness tick keeps.
            let _ = self.io.try_io(Interest::READABLE, || {
                Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
            });
        }
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        batch.n = n.min(batch.meta.len());
        Ok(())
    }

    /// Wait for datagrams (each maybe a GRO aggregate; see [`RecvBatch::datagrams`]).
    pub async fn recv(&self, batch: &mut RecvBatch) -> io::Result<()> {
        loop {
            self.io.readable().await?;
            match self.recv_now(batch) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    /// Datagrams if some are queued, without waiting.
    pub fn try_recv(&self, batch: &mut RecvBatch) -> io::Result<()> {
        self.recv_now(batch)
    }

    /// Connect to `peer`: from now on the kernel delivers only its datagrams.
    pub async fn connect(&self, peer: SocketAddr) -> io::Result<()> {
        self.io.connect(peer).await
    }

    /// One datagram on a connected socket (no address, no control data, the
    /// socket's cached route).
    pub async fn send_connected(&self, contents: &[u8]) -> io::Result<()> {
        match self.io.try_send(contents) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.io.send(contents).await.map(|_| ())
            }
            r => r.map(|_| ()),
        }
    }

    /// Send `contents` to `to`: one datagram, or with `segment` a GSO batch
    /// of datagrams of that size (the last may be shorter).
    pub async fn send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        let t = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size: segment.filter(|s| *s < contents.len()),
            src_ip: None,
        };
        loop {
            self.io.writable().await?;
            match self.io.try_io(Interest::WRITABLE, || {
                self.state.send((&self.io).into(), &t)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    /// Best effort, never waits: ERRORs and ACKs that may as well be lost.
    pub fn try_send_to(&self, to: SocketAddr, contents: &[u8]) {
        let _ = self.io.try_send_to(contents, to);
    }
}

/// Receive buffers for up to two datagrams (or GRO aggregates) per system
/// call: asking for two tells us when the queue is empty.
pub struct RecvBatch {
    buf: Vec<u8>,
    size: usize,
    meta: [RecvMeta; 2],
    n: usize,
}

impl RecvBatch {
    /// Two buffers of `size` bytes.
    pub fn new(size: usize) -> RecvBatch {
        RecvBatch {
            buf: vec![0u8; size * 2],
            size,
            meta: [RecvMeta::default(); 2],
            n: 0,
        }
    }

    /// Every datagram received by the last call, with its metadata (sender,
    /// destination address): one per buffer, or several of `stride` bytes
    /// (the last may be shorter) where GRO coalesced them.
    pub fn datagrams(&self) -> impl Iterator<Item = (&RecvMeta, &[u8])> {
        self.meta
            .iter()
            .take(self.n)
            .enumerate()
            .flat_map(move |(i, m)| {
                let buf = self
                    .buf
                    .get(i * self.size..(i + 1) * self.size)
                    .unwrap_or(&[]);
                segments(buf, m).map(move |d| (m, d))
            })
    }
}

/// The datagrams in a receive buffer: one, or several of `stride` bytes
/// (the last may be shorter) when GRO coalesced them.
fn segments<'a>(buf: &'a [u8], meta: &RecvMeta) -> impl Iterator<Item = &'a [u8]> {
    let len = meta.len.min(buf.len());
    let stride = if meta.stride == 0 {
        len.max(1)
    } else {
        meta.stride
    };
    buf.get(..len).unwrap_or(&[]).chunks(stride)
}
