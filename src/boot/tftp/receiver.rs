//! The client side of one read transfer as a sans-IO state machine.
//!
//! The owner sends what `poll_transmit` yields (the RRQ first), feeds every
//! datagram from the server's TID to `handle_datagram`, which returns the
//! payload to append when a block arrives in order, and calls
//! `handle_timeout` when `poll_timeout` passes.
//!
//! Options asked for are `blksize`, `windowsize` (RFC 7440), `tsize` and
//! `timeout`; whatever the server grants in its OACK is used, and a server
//! that ignores options (DATA 1 straight away) means 512-byte blocks in lock
//! step. ACKs go out every `windowsize` blocks counted from the last ACK sent,
//! at the final block, and once per gap (the last block received in order,
//! which tells the server where to resume). A duplicate of the block we last
//! acknowledged means the ACK was lost, so it is sent again; other duplicates
//! are ignored. Block numbers are `u64` internally and roll over on the wire.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::packet::{self, code, Mode, Packet, DEFAULT_BLKSIZE, MIN_BLKSIZE, OP_RRQ};

/// What to ask for.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    pub filename: String,
    pub mode: Mode,
    /// `blksize` option (8..=65464); `None` asks for none.
    pub blksize: Option<u16>,
    /// `windowsize` option (RFC 7440); `None` asks for none.
    pub windowsize: Option<u16>,
    /// Ask for `tsize` (the server reports the file's size).
    pub tsize: bool,
    /// Ask the server to use this retransmit timeout (`timeout`, 1..=255 s).
    pub timeout_option: Option<u8>,
    /// Our own retransmit timeout.
    pub timeout: Duration,
    /// Retransmissions of the RRQ or of an ACK before giving up.
    pub max_retries: u32,
}

impl ReceiverConfig {
    pub fn new(filename: &str) -> ReceiverConfig {
        ReceiverConfig {
            filename: filename.to_string(),
            mode: Mode::Octet,
            blksize: None,
            windowsize: None,
            tsize: true,
            timeout_option: None,
            timeout: Duration::from_secs(1),
            max_retries: 5,
        }
    }
}

/// Why a transfer failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("server error {code}: {message}")]
    Server { code: u16, message: String },
    #[error("no answer from the server")]
    TimedOut,
    #[error("protocol error: {0}")]
    Protocol(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// RRQ sent; waiting for an OACK, DATA 1 or an ERROR.
    Requesting,
    Receiving,
    Done,
}

pub struct Receiver {
    cfg: ReceiverConfig,
    state: State,
    blksize: u16,
    windowsize: u16,
    tsize: Option<u64>,
    /// Highest block received in order.
    received: u64,
    /// The block named by the last ACK sent.
    last_ack: u64,
    /// `received` when a gap was last reported, so it is reported once.
    gap_acked: Option<u64>,
    bytes: u64,
    retries: u32,
    deadline: Option<Instant>,
    out: VecDeque<Vec<u8>>,
    result: Option<Result<(), Failure>>,
}

fn wire(block: u64) -> u16 {
    (block & 0xffff) as u16
}

impl Receiver {
    /// Start: the RRQ is the first thing to send.
    pub fn new(cfg: ReceiverConfig, now: Instant) -> Receiver {
        let mut r = Receiver {
            state: State::Requesting,
            blksize: DEFAULT_BLKSIZE,
            windowsize: 1,
            tsize: None,
            received: 0,
            last_ack: 0,
            gap_acked: None,
            bytes: 0,
            retries: 0,
            deadline: None,
            out: VecDeque::new(),
            result: None,
            cfg,
        };
        r.send_rrq(now);
        r
    }

    fn send_rrq(&mut self, now: Instant) {
        let mut opts: Vec<(&str, String)> = Vec::new();
        if self.cfg.tsize {
            opts.push(("tsize", "0".into()));
        }
        if let Some(b) = self.cfg.blksize {
            opts.push(("blksize", b.to_string()));
        }
        if let Some(w) = self.cfg.windowsize {
            opts.push(("windowsize", w.to_string()));
        }
        if let Some(t) = self.cfg.timeout_option {
            opts.push(("timeout", t.to_string()));
        }
        let mut p = Vec::with_capacity(32 + self.cfg.filename.len());
        packet::encode_request(&mut p, OP_RRQ, &self.cfg.filename, self.cfg.mode, &opts);
        self.out.push_back(p);
        self.deadline = Some(now + self.cfg.timeout);
    }

    fn send_ack(&mut self, now: Instant, block: u64) {
        let mut p = Vec::with_capacity(4);
        packet::encode_ack(&mut p, wire(block));
        self.out.push_back(p);
        self.last_ack = block;
        self.deadline = Some(now + self.cfg.timeout);
    }

    fn fail(&mut self, f: Failure) {
        self.state = State::Done;
        self.deadline = None;
        self.result = Some(Err(f));
    }

    /// Refuse with an ERROR to the server, then fail.
    fn refuse(&mut self, code: u16, why: String) {
        self.out.push_back(packet::error_packet(code, &why));
        self.fail(Failure::Protocol(why));
    }

    /// The block size in use (512 until an OACK says otherwise).
    pub fn blksize(&self) -> u16 {
        self.blksize
    }

    pub fn windowsize(&self) -> u16 {
        self.windowsize
    }

    /// The size the server reported, if it granted `tsize`.
    pub fn tsize(&self) -> Option<u64> {
        self.tsize
    }

    /// Payload bytes delivered so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// `Some(Ok(()))` once the last block has arrived.
    pub fn result(&self) -> Option<&Result<(), Failure>> {
        self.result.as_ref()
    }

    /// Give up (the sink failed): an ERROR for the server.
    pub fn abort(&mut self, code: u16, message: &str) {
        if self.state == State::Done {
            return;
        }
        self.out.push_back(packet::error_packet(code, message));
        self.fail(Failure::Protocol(message.to_string()));
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline || self.state == State::Done {
            return;
        }
        if self.retries >= self.cfg.max_retries {
            self.fail(Failure::TimedOut);
            return;
        }
        self.retries += 1;
        match self.state {
            State::Requesting => self.send_rrq(now),
            State::Receiving => self.send_ack(now, self.received),
            State::Done => {}
        }
    }

    /// One datagram from the server. Returns the payload to append to the
    /// file when it carries the next block in order.
    pub fn handle_datagram<'a>(&mut self, now: Instant, buf: &'a [u8]) -> Option<&'a [u8]> {
        if self.state == State::Done {
            return None;
        }
        let p = packet::decode(buf).ok()?;
        match p {
            Packet::Error { code, message } => {
                self.fail(Failure::Server {
                    code,
                    message: packet::ErrorText(message).to_string(),
                });
                None
            }
            Packet::Oack(opts) => {
                if self.state == State::Requesting {
                    self.handle_oack(now, &opts);
                } else if self.received == 0 && self.last_ack == 0 {
                    // Our ACK 0 was lost.
                    self.send_ack(now, 0);
                }
                None
            }
            Packet::Data { block, data } => {
                if self.state == State::Requesting {
                    if block != 1 {
                        return None;
                    }
                    // The server ignored our options.
                    self.state = State::Receiving;
                    self.blksize = DEFAULT_BLKSIZE;
                    self.windowsize = 1;
                }
                self.handle_data(now, block, data)
            }
            _ => None,
        }
    }

    fn handle_oack(&mut self, now: Instant, opts: &packet::Options<'_>) {
        let mut blksize = DEFAULT_BLKSIZE;
        let mut windowsize = 1;
        for o in opts.iter() {
            let n = o.number();
            if o.is("blksize") {
                match (n, self.cfg.blksize) {
                    (Some(v), Some(asked))
                        if v >= u64::from(MIN_BLKSIZE) && v <= u64::from(asked) =>
                    {
                        blksize = u16::try_from(v).unwrap_or(DEFAULT_BLKSIZE);
                    }
                    _ => {
                        return self.refuse(
                            code::OPTION_REFUSED,
                            format!("blksize {} not acceptable", packet::ErrorText(o.value)),
                        )
                    }
                }
            } else if o.is("windowsize") {
                match (n, self.cfg.windowsize) {
                    (Some(v), Some(asked)) if v >= 1 && v <= u64::from(asked) => {
                        windowsize = u16::try_from(v).unwrap_or(1);
                    }
                    _ => {
                        return self.refuse(
                            code::OPTION_REFUSED,
                            format!("windowsize {} not acceptable", packet::ErrorText(o.value)),
                        )
                    }
                }
            } else if o.is("tsize") {
                self.tsize = n;
            }
            // `timeout` and anything else: nothing to do.
        }
        self.blksize = blksize;
        self.windowsize = windowsize;
        self.state = State::Receiving;
        self.retries = 0;
        self.send_ack(now, 0);
    }

    fn handle_data<'a>(&mut self, now: Instant, block: u16, data: &'a [u8]) -> Option<&'a [u8]> {
        if data.len() > usize::from(self.blksize) {
            self.refuse(
                code::ILLEGAL_OPERATION,
                format!(
                    "block of {} bytes exceeds blksize {}",
                    data.len(),
                    self.blksize
                ),
            );
            return None;
        }
        let expected = self.received + 1;
        let delta = block.wrapping_sub(wire(expected));
        if delta == 0 {
            self.received = expected;
            self.bytes += data.len() as u64;
            self.retries = 0;
            self.deadline = Some(now + self.cfg.timeout);
            if data.len() < usize::from(self.blksize) {
                self.send_ack(now, expected);
                self.state = State::Done;
                self.deadline = None;
                self.result = Some(Ok(()));
            } else if expected - self.last_ack >= u64::from(self.windowsize) {
                self.send_ack(now, expected);
            }
            Some(data)
        } else if delta < 0x8000 {
            // A block from further on: one went missing. Say where we are,
            // once; the server resumes after it.
            if self.gap_acked != Some(self.received) {
                self.gap_acked = Some(self.received);
                self.send_ack(now, self.received);
            }
            None
        } else {
            // Old data. The server resending the block we last acknowledged
            // means that ACK was lost.
            if block == wire(self.last_ack) && self.last_ack > 0 {
                self.send_ack(now, self.last_ack);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::tftp::packet::{decode, encode_data, encode_oack, Opt, Options, Request};

    fn data(block: u64, len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        encode_data(&mut v, wire(block), &vec![(block % 251) as u8; len]);
        v
    }

    fn oack(list: &[(&str, &str)]) -> Vec<u8> {
        let l: Vec<(&str, String)> = list.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut v = Vec::new();
        encode_oack(&mut v, &l);
        v
    }

    fn acks(r: &mut Receiver) -> Vec<u16> {
        std::iter::from_fn(|| r.poll_transmit())
            .map(|p| match decode(&p) {
                Ok(Packet::Ack { block }) => block,
                other => panic!("not an ACK: {other:?}"),
            })
            .collect()
    }

    fn cfg() -> ReceiverConfig {
        ReceiverConfig {
            blksize: Some(100),
            windowsize: Some(4),
            ..ReceiverConfig::new("boot/vmlinuz")
        }
    }

    #[test]
    fn rrq_carries_the_options() {
        let t0 = Instant::now();
        let mut r = Receiver::new(
            ReceiverConfig {
                timeout_option: Some(3),
                ..cfg()
            },
            t0,
        );
        let p = r.poll_transmit().unwrap();
        let opt = |n: &'static str, v: &'static str| Opt {
            name: n.as_bytes(),
            value: v.as_bytes(),
        };
        assert_eq!(
            decode(&p).unwrap(),
            Packet::Rrq(Request {
                filename: "boot/vmlinuz",
                mode: Mode::Octet,
                options: Options(vec![
                    opt("tsize", "0"),
                    opt("blksize", "100"),
                    opt("windowsize", "4"),
                    opt("timeout", "3")
                ])
            })
        );
        assert_eq!(r.poll_transmit(), None);
    }

    #[test]
    fn windowed_receive() {
        let t0 = Instant::now();
        let mut r = Receiver::new(cfg(), t0);
        r.poll_transmit();
        r.handle_datagram(
            t0,
            &oack(&[("tsize", "1050"), ("blksize", "100"), ("windowsize", "4")]),
        );
        assert_eq!(acks(&mut r), vec![0]);
        assert_eq!(
            (r.tsize(), r.blksize(), r.windowsize()),
            (Some(1050), 100, 4)
        );
        let mut got = 0;
        for b in 1..=10 {
            let d = data(b, 100);
            got += r.handle_datagram(t0, &d).unwrap().len();
            let a = acks(&mut r);
            if b % 4 == 0 {
                assert_eq!(a, vec![b as u16]);
            } else {
                assert!(a.is_empty(), "{b}: {a:?}");
            }
        }
        assert_eq!(r.handle_datagram(t0, &data(11, 50)).unwrap().len(), 50);
        assert_eq!(acks(&mut r), vec![11]);
        assert_eq!(r.result(), Some(&Ok(())));
        assert_eq!(got + 50, 1050);
        assert_eq!(r.bytes(), 1050);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn gap_acks_the_last_block_in_order_once() {
        let t0 = Instant::now();
        let mut r = Receiver::new(cfg(), t0);
        r.poll_transmit();
        r.handle_datagram(t0, &oack(&[("blksize", "100"), ("windowsize", "4")]));
        acks(&mut r);
        r.handle_datagram(t0, &data(1, 100)).unwrap();
        // Block 2 lost.
        assert!(r.handle_datagram(t0, &data(3, 100)).is_none());
        assert_eq!(acks(&mut r), vec![1]);
        assert!(r.handle_datagram(t0, &data(4, 100)).is_none());
        assert!(acks(&mut r).is_empty());
        // The server resumes at 2 with a full window: ACK after 4 blocks.
        for b in 2..=5 {
            r.handle_datagram(t0, &data(b, 100)).unwrap();
        }
        assert_eq!(acks(&mut r), vec![5]);
    }

    #[test]
    fn a_resent_last_acked_block_means_the_ack_was_lost() {
        let t0 = Instant::now();
        let mut r = Receiver::new(cfg(), t0);
        r.poll_transmit();
        r.handle_datagram(t0, &oack(&[("blksize", "100"), ("windowsize", "4")]));
        acks(&mut r);
        for b in 1..=4 {
            r.handle_datagram(t0, &data(b, 100)).unwrap();
        }
        assert_eq!(acks(&mut r), vec![4]);
        // The same window again: only its last block triggers an ACK.
        for b in 1..=4 {
            assert!(r.handle_datagram(t0, &data(b, 100)).is_none());
        }
        assert_eq!(acks(&mut r), vec![4]);
    }

    #[test]
    fn server_without_options_means_512_lock_step() {
        let t0 = Instant::now();
        let mut r = Receiver::new(cfg(), t0);
        r.poll_transmit();
        // DATA 2 before DATA 1 is not a start.
        assert!(r.handle_datagram(t0, &data(2, 512)).is_none());
        assert_eq!(r.handle_datagram(t0, &data(1, 512)).unwrap().len(), 512);
        assert_eq!((r.blksize(), r.windowsize(), r.tsize()), (512, 1, None));
        assert_eq!(acks(&mut r), vec![1]);
        r.handle_datagram(t0, &data(2, 10)).unwrap();
        assert_eq!(acks(&mut r), vec![2]);
        assert_eq!(r.result(), Some(&Ok(())));
    }

    #[test]
    fn lost_ack_zero_and_timeouts() {
        let t0 = Instant::now();
        let mut r = Receiver::new(cfg(), t0);
        let rrq = r.poll_transmit().unwrap();
        // No answer: the RRQ again.
        let d = r.poll_timeout().unwrap();
        r.handle_timeout(d);
        assert_eq!(r.poll_transmit(), Some(rrq));
        let o = oack(&[("blksize", "100")]);
        r.handle_datagram(d, &o);
        assert_eq!(acks(&mut r), vec![0]);
        // The OACK again: our ACK 0 was lost.
        r.handle_datagram(d, &o);
        assert_eq!(acks(&mut r), vec![0]);
        r.handle_datagram(d, &data(1, 100)).unwrap();
        assert_eq!(acks(&mut r), vec![1]);
        // Silence: ACK 1 again, up to max_retries, then fail.
        let mut now = d;
        for _ in 0..5 {
            now = r.poll_timeout().unwrap();
            r.handle_timeout(now);
            assert_eq!(acks(&mut r), vec![1]);
        }
        r.handle_timeout(now + Duration::from_secs(1));
        assert_eq!(r.result(), Some(&Err(Failure::TimedOut)));
    }

    #[test]
    fn block_numbers_roll_over() {
        let t0 = Instant::now();
        let mut r = Receiver::new(
            ReceiverConfig {
                blksize: Some(8),
                windowsize: Some(16),
                ..ReceiverConfig::new("big")
            },
            t0,
        );
        r.poll_transmit();
        r.handle_datagram(t0, &oack(&[("blksize", "8"), ("windowsize", "16")]));
        acks(&mut r);
        for b in 1..=70_000u64 {
            assert!(r.handle_datagram(t0, &data(b, 8)).is_some(), "block {b}");
        }
        let a = acks(&mut r);
        assert_eq!(a.len(), 70_000 / 16);
        assert_eq!(a.last(), Some(&wire(70_000)));
        r.handle_datagram(t0, &data(70_001, 0)).unwrap();
        assert_eq!(r.bytes(), 560_000);
        assert_eq!(r.result(), Some(&Ok(())));
    }

    #[test]
    fn errors_and_refusals() {
        let t0 = Instant::now();
        let mut r = Receiver::new(cfg(), t0);
        r.poll_transmit();
        r.handle_datagram(t0, &packet::error_packet(1, "File not found"));
        assert_eq!(
            r.result(),
            Some(&Err(Failure::Server {
                code: 1,
                message: "File not found".into()
            }))
        );
        // A block size larger than asked is refused with ERROR 8.
        let mut r = Receiver::new(cfg(), t0);
        r.poll_transmit();
        r.handle_datagram(t0, &oack(&[("blksize", "1468")]));
        let p = r.poll_transmit().unwrap();
        assert!(matches!(decode(&p), Ok(Packet::Error { code: 8, .. })));
        assert!(matches!(r.result(), Some(Err(Failure::Protocol(_)))));
        // An oversized block is an illegal operation.
        let mut r = Receiver::new(cfg(), t0);
        r.poll_transmit();
        r.handle_datagram(t0, &oack(&[("blksize", "100")]));
        acks(&mut r);
        assert!(r.handle_datagram(t0, &data(1, 101)).is_none());
        let p = r.poll_transmit().unwrap();
        assert!(matches!(decode(&p), Ok(Packet::Error { code: 4, .. })));
        // Garbage changes nothing.
        let mut r = Receiver::new(cfg(), t0);
        r.poll_transmit();
        for g in [&b""[..], b"\x00", b"\x00\x09zz", b"\x00\x06tsize"] {
            assert!(r.handle_datagram(t0, g).is_none());
        }
        assert!(r.result().is_none());
        assert!(r.poll_transmit().is_none());
    }
}
