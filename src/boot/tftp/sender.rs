//! The server side of one read transfer as a sans-IO state machine.
//!
//! The owner negotiates the options ([`negotiate`]), then feeds the
//! transfer the client's packets (`handle_ack`, `handle_error`) and the clock
//! (`handle_timeout`), and drains what to send (`poll_transmit`) and when to
//! wake up (`poll_timeout`). DATA is described by block numbers, not bytes:
//! the I/O layer owns the file and builds the packets ([`Sender::block_span`]),
//! so a whole window can go out in one `sendmsg`.
//!
//! Blocks are numbered from 1 with a `u64` internally; the wire's 16-bit
//! number rolls over to 0 after 65535, and ACKs are mapped back into the
//! window in flight, which is never wider than [`MAX_WINDOW`].
//!
//! Windows follow RFC 7440: send `windowsize` blocks, wait for the ACK of
//! the last. An ACK in the middle of the window means "resend from the block
//! after it" and starts the next window there at once. A duplicate of the
//! last ACK changes nothing (no Sorcerer's Apprentice): losses are repaired by
//! the retransmit timer, which resends the window from the last ACKed block.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::packet::{self, Options, Packet, DEFAULT_BLKSIZE, MAX_BLKSIZE, MIN_BLKSIZE};

/// Widest window granted, whatever the configuration says: ACK numbers must
/// map back into the window unambiguously across the 16-bit rollover.
pub const MAX_WINDOW: u16 = 4096;

/// What the server allows for one transfer.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest `blksize` granted: the configured maximum, already capped by
    /// the path MTU.
    pub max_blksize: u16,
    /// Largest `windowsize` granted.
    pub max_windowsize: u16,
    /// Retransmit timeout unless the client asks for one.
    pub timeout: Duration,
    /// Retransmissions of one window (or the OACK) before giving up.
    pub max_retries: u32,
}

/// The result of option negotiation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    pub timeout: Duration,
    /// The options granted, in the client's order, to echo in an OACK.
    /// Empty: no OACK, the transfer starts with DATA 1.
    pub oack: Vec<(&'static str, String)>,
}

/// Grant what the client asked within `limits`. `size` is what `tsize`
/// reports. Unknown options are ignored (RFC 2347), and so is a known option
/// with an invalid value; names are case-insensitive; the first occurrence
/// of an option wins.
pub fn negotiate(options: &Options<'_>, size: u64, limits: &Limits) -> Negotiated {
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: limits.timeout,
        oack: Vec::new(),
    };
    let max_blk = limits.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE);
    let max_win = limits.max_windowsize.clamp(1, MAX_WINDOW);
    for opt in options.iter() {
        let (name, value): (&'static str, u64) = if opt.is("blksize") {
            match opt.number() {
                Some(v) if (u64::from(MIN_BLKSIZE)..=u64::from(MAX_BLKSIZE)).contains(&v) => {
                    ("blksize", v.min(u64::from(max_blk)))
                }
                _ => continue,
            }
        } else if opt.is("tsize") {
            match opt.number() {
                Some(_) => ("tsize", size),
                None => continue,
            }
        } else if opt.is("timeout") {
            match opt.number() {
                Some(v) if (1..=255).contains(&v) => ("timeout", v),
                _ => continue,
            }
        } else if opt.is("windowsize") {
            match opt.number() {
                Some(v) if (1..=65535).contains(&v) => ("windowsize", v.min(u64::from(max_win))),
                _ => continue,
            }
        } else {
            continue;
        };
        if n.oack.iter().any(|(k, _)| *k == name) {
            continue;
        }
        match name {
            "blksize" => n.blksize = u16::try_from(value).unwrap_or(DEFAULT_BLKSIZE),
            "windowsize" => n.windowsize = u16::try_from(value).unwrap_or(1),
            "timeout" => n.timeout = Duration::from_secs(value),
            _ => {}
        }
        n.oack.push((name, value.to_string()));
    }
    n
}

/// Something to put on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// A control packet (OACK or ERROR), encoded.
    Packet(Vec<u8>),
    /// DATA for blocks `first .. first + count` (absolute numbers from 1).
    Data { first: u64, count: u64 },
}

/// How a transfer ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every block, the last one included, was acknowledged.
    Complete,
    /// No progress after `max_retries` retransmissions.
    TimedOut,
    /// The client answered the OACK with an ERROR: UEFI firmware does this
    /// on purpose (it asks for `tsize`, then asks again), and a client that
    /// refuses our options does it too. Not a failure.
    Refused { code: u16, message: String },
    /// The client sent an ERROR during the transfer.
    ClientError { code: u16, message: String },
    /// We aborted (see [`Sender::abort`]).
    ServerError { code: u16, message: String },
}

impl Outcome {
    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::TimedOut => "timeout",
            Outcome::Refused { .. } => "refused",
            Outcome::ClientError { .. } => "client_error",
            Outcome::ServerError { .. } => "server_error",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// OACK sent, waiting for ACK 0.
    Oack,
    /// DATA windows in flight.
    Sending,
    Done,
}

/// Counters for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// DATA packets handed out, retransmissions included.
    pub blocks_sent: u64,
    /// DATA packets sent again after a timeout or a partial ACK.
    pub blocks_resent: u64,
    /// Timeouts that led to a retransmission.
    pub timeouts: u64,
}

/// One read transfer.
#[derive(Debug)]
pub struct Sender {
    neg: Negotiated,
    size: u64,
    /// The block that ends the transfer: shorter than `blksize`, maybe empty.
    last_block: u64,
    max_retries: u32,
    state: State,
    /// Highest block acknowledged (0 before any).
    acked: u64,
    /// Highest block handed out so far.
    sent_to: u64,
    /// Last block of the window in flight.
    window_end: u64,
    retries: u32,
    deadline: Option<Instant>,
    out: VecDeque<Transmit>,
    outcome: Option<Outcome>,
    stats: Stats,
}

impl Sender {
    /// Start a transfer of `size` bytes: with an OACK when options were
    /// granted, else with the first window of DATA.
    pub fn new(neg: Negotiated, size: u64, max_retries: u32, now: Instant) -> Sender {
        let blksize = u64::from(neg.blksize.max(MIN_BLKSIZE));
        let mut s = Sender {
            last_block: size / blksize + 1,
            size,
            max_retries,
            state: State::Oack,
            acked: 0,
            sent_to: 0,
            window_end: 0,
            retries: 0,
            deadline: None,
            out: VecDeque::new(),
            outcome: None,
            stats: Stats::default(),
            neg,
        };
        if s.neg.oack.is_empty() {
            s.state = State::Sending;
            s.send_window(now);
        } else {
            s.send_oack(now);
        }
        s
    }

    pub fn negotiated(&self) -> &Negotiated {
        &self.neg
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The number of the final block.
    pub fn last_block(&self) -> u64 {
        self.last_block
    }

    /// Highest block acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Nothing acknowledged yet beyond the OACK: a repeated RRQ from the same
    /// client is a retransmission of the one that started this transfer.
    pub fn first_stage(&self) -> bool {
        self.state == State::Oack || (self.state == State::Sending && self.acked == 0)
    }

    /// Where block `block` (from 1) lives in the file: offset and length.
    pub fn block_span(&self, block: u64) -> (u64, usize) {
        let blksize = u64::from(self.neg.blksize.max(MIN_BLKSIZE));
        let offset = block.saturating_sub(1).saturating_mul(blksize);
        let len = self.size.saturating_sub(offset).min(blksize);
        (offset, usize::try_from(len).unwrap_or(0))
    }

    /// The 16-bit number block `block` carries on the wire.
    pub fn wire_block(block: u64) -> u16 {
        (block & 0xffff) as u16
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Done => None,
            _ => self.deadline,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        self.state = State::Done;
        self.deadline = None;
        self.outcome = Some(outcome);
    }

    fn send_oack(&mut self, now: Instant) {
        let mut p = Vec::with_capacity(64);
        packet::encode_oack(&mut p, &self.neg.oack);
        self.out.push_back(Transmit::Packet(p));
        self.deadline = Some(now + self.neg.timeout);
    }

    /// Send the window that starts after the last ACKed block.
    fn send_window(&mut self, now: Instant) {
        let first = self.acked + 1;
        let count = u64::from(self.neg.windowsize.max(1)).min(self.last_block - self.acked);
        self.window_end = self.acked + count;
        self.stats.blocks_sent += count;
        let resent = self.sent_to.saturating_sub(self.acked).min(count);
        self.stats.blocks_resent += resent;
        self.sent_to = self.sent_to.max(self.window_end);
        self.out.push_back(Transmit::Data { first, count });
        self.deadline = Some(now + self.neg.timeout);
    }

    /// A decoded packet from the client's TID.
    pub fn handle_packet(&mut self, now: Instant, p: &Packet<'_>) {
        match p {
            Packet::Ack { block } => self.handle_ack(now, *block),
            Packet::Error { code, message } => self.handle_error(*code, message),
            // Anything else on a transfer port is ignored.
            _ => {}
        }
    }

    pub fn handle_ack(&mut self, now: Instant, block: u16) {
        match self.state {
            State::Done => {}
            State::Oack => {
                if block == 0 {
                    self.state = State::Sending;
                    self.retries = 0;
                    self.send_window(now);
                }
            }
            State::Sending => {
                // Map the wire number into [acked, window_end]; anything
                // else is a stale or bogus ACK.
                let delta = u64::from(block.wrapping_sub(Self::wire_block(self.acked)));
                let abs = self.acked + delta;
                if delta == 0 || abs > self.window_end {
                    return;
                }
                self.acked = abs;
                self.retries = 0;
                if abs >= self.last_block {
                    self.finish(Outcome::Complete);
                } else {
                    // The window's end, or a partial ACK: either way the next
                    // window starts after it.
                    self.send_window(now);
                }
            }
        }
    }

    pub fn handle_error(&mut self, code: u16, message: &[u8]) {
        let message = packet::ErrorText(message).to_string();
        match self.state {
            State::Done => {}
            State::Oack => self.finish(Outcome::Refused { code, message }),
            State::Sending => self.finish(Outcome::ClientError { code, message }),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if self.state == State::Done || now < deadline {
            return;
        }
        if self.retries >= self.max_retries {
            self.finish(Outcome::TimedOut);
            return;
        }
        self.retries += 1;
        self.stats.timeouts += 1;
        match self.state {
            State::Oack => self.send_oack(now),
            State::Sending => self.send_window(now),
            State::Done => {}
        }
    }

    /// Give up with an ERROR to the client (a read error, shutdown).
    pub fn abort(&mut self, code: u16, message: &str) {
        if self.state == State::Done {
            return;
        }
        self.out.clear();
        self.out
            .push_back(Transmit::Packet(packet::error_packet(code, message)));
        self.finish(Outcome::ServerError {
            code,
            message: message.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::tftp::packet::{decode, Opt};

    fn limits() -> Limits {
        Limits {
            max_blksize: 1468,
            max_windowsize: 64,
            timeout: Duration::from_secs(1),
            max_retries: 3,
        }
    }

    fn opts<'a>(list: &[(&'a str, &'a str)]) -> Options<'a> {
        Options(
            list.iter()
                .map(|(n, v)| Opt {
                    name: n.as_bytes(),
                    value: v.as_bytes(),
                })
                .collect(),
        )
    }

    fn sender(list: &[(&str, &str)], size: u64, now: Instant) -> Sender {
        let n = negotiate(&opts(list), size, &limits());
        Sender::new(n, size, limits().max_retries, now)
    }

    fn drain(s: &mut Sender) -> Vec<Transmit> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    fn data(first: u64, count: u64) -> Vec<Transmit> {
        vec![Transmit::Data { first, count }]
    }

    fn oack_of(t: &Transmit) -> Vec<(String, String)> {
        let Transmit::Packet(p) = t else {
            panic!("not a packet: {t:?}")
        };
        let Ok(Packet::Oack(o)) = decode(p) else {
            panic!("not an OACK")
        };
        o.iter()
            .map(|o| {
                (
                    String::from_utf8_lossy(o.name).into_owned(),
                    String::from_utf8_lossy(o.value).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn negotiation() {
        let l = limits();
        // curl's request.
        let n = negotiate(
            &opts(&[("tsize", "0"), ("blksize", "1468"), ("timeout", "6")]),
            1000,
            &l,
        );
        assert_eq!((n.blksize, n.windowsize), (1468, 1));
        assert_eq!(n.timeout, Duration::from_secs(6));
        assert_eq!(
            n.oack,
            vec![
                ("tsize", "1000".to_string()),
                ("blksize", "1468".into()),
                ("timeout", "6".into())
            ]
        );
        // Caps, case, unknown options, invalid values, repeats.
        let n = negotiate(
            &opts(&[
                ("BlkSize", "65464"),
                ("WINDOWSIZE", "1000"),
                ("multicast", ""),
                ("timeout", "0"),
                ("tsize", "x"),
                ("blksize", "512"),
            ]),
            5,
            &l,
        );
        assert_eq!((n.blksize, n.windowsize), (1468, 64));
        assert_eq!(n.timeout, Duration::from_secs(1));
        assert_eq!(
            n.oack,
            vec![("blksize", "1468".to_string()), ("windowsize", "64".into())]
        );
        // Out-of-range values are ignored, not refused.
        let n = negotiate(
            &opts(&[
                ("blksize", "7"),
                ("blksize", "65465"),
                ("windowsize", "0"),
                ("timeout", "256"),
            ]),
            5,
            &l,
        );
        assert_eq!((n.blksize, n.windowsize, n.oack.len()), (512, 1, 0));
        // A small block size is granted as asked.
        let n = negotiate(&opts(&[("blksize", "8")]), 5, &l);
        assert_eq!(n.blksize, 8);
        // The configured window is itself capped.
        let big = Limits {
            max_windowsize: u16::MAX,
            ..limits()
        };
        let n = negotiate(&opts(&[("windowsize", "65535")]), 5, &big);
        assert_eq!(n.windowsize, MAX_WINDOW);
    }

    #[test]
    fn lock_step_without_options() {
        let t0 = Instant::now();
        let mut s = sender(&[], 1000, t0);
        assert_eq!(drain(&mut s), data(1, 1));
        assert_eq!(s.block_span(1), (0, 512));
        assert_eq!(s.block_span(2), (512, 488));
        assert!(s.first_stage());
        s.handle_ack(t0, 1);
        assert!(!s.first_stage());
        assert_eq!(drain(&mut s), data(2, 1));
        s.handle_ack(t0, 2);
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.outcome(), Some(&Outcome::Complete));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn final_block_is_empty_when_size_is_a_multiple() {
        let t0 = Instant::now();
        let mut s = sender(&[], 1024, t0);
        assert_eq!(s.last_block(), 3);
        assert_eq!(s.block_span(3), (1024, 0));
        for b in 1..=3u16 {
            assert_eq!(drain(&mut s), data(u64::from(b), 1));
            s.handle_ack(t0, b);
        }
        assert_eq!(s.outcome(), Some(&Outcome::Complete));
        // An empty file is one empty block.
        let mut s = sender(&[], 0, t0);
        assert_eq!(drain(&mut s), data(1, 1));
        assert_eq!(s.block_span(1), (0, 0));
        s.handle_ack(t0, 1);
        assert_eq!(s.outcome(), Some(&Outcome::Complete));
    }

    #[test]
    fn oack_then_windows() {
        let t0 = Instant::now();
        let mut s = sender(
            &[("blksize", "100"), ("windowsize", "4"), ("tsize", "0")],
            1000,
            t0,
        );
        let out = drain(&mut s);
        assert_eq!(
            oack_of(&out[0]),
            vec![
                ("blksize".to_string(), "100".to_string()),
                ("windowsize".into(), "4".into()),
                ("tsize".into(), "1000".into())
            ]
        );
        // Only ACK 0 starts the data.
        s.handle_ack(t0, 5);
        assert!(drain(&mut s).is_empty());
        s.handle_ack(t0, 0);
        assert_eq!(drain(&mut s), data(1, 4));
        s.handle_ack(t0, 4);
        assert_eq!(drain(&mut s), data(5, 4));
        s.handle_ack(t0, 8);
        // 1000 / 100: blocks 9, 10 full, 11 empty.
        assert_eq!(drain(&mut s), data(9, 3));
        assert_eq!(s.block_span(11), (1000, 0));
        s.handle_ack(t0, 11);
        assert_eq!(s.outcome(), Some(&Outcome::Complete));
        assert_eq!(s.stats().blocks_resent, 0);
    }

    #[test]
    fn client_acking_block_zero_after_oack_starts_lock_step() {
        let t0 = Instant::now();
        let mut s = sender(&[("tsize", "0")], 600, t0);
        assert_eq!(
            oack_of(&drain(&mut s)[0]),
            vec![("tsize".into(), "600".into())]
        );
        assert!(s.first_stage());
        s.handle_ack(t0, 0);
        assert_eq!(drain(&mut s), data(1, 1));
        assert!(s.first_stage());
    }

    #[test]
    fn lost_block_mid_window_resumes_after_the_partial_ack() {
        let t0 = Instant::now();
        let mut s = sender(&[("blksize", "10"), ("windowsize", "8")], 1000, t0);
        drain(&mut s);
        s.handle_ack(t0, 0);
        assert_eq!(drain(&mut s), data(1, 8));
        // Block 4 was lost: the client ACKs 3, the last in order.
        s.handle_ack(t0, 3);
        assert_eq!(drain(&mut s), data(4, 8));
        assert_eq!(s.stats().blocks_resent, 5);
        s.handle_ack(t0, 11);
        assert_eq!(drain(&mut s), data(12, 8));
    }

    #[test]
    fn duplicate_acks_send_nothing() {
        let t0 = Instant::now();
        let mut s = sender(&[("blksize", "10"), ("windowsize", "4")], 1000, t0);
        drain(&mut s);
        s.handle_ack(t0, 0);
        drain(&mut s);
        s.handle_ack(t0, 4);
        assert_eq!(drain(&mut s), data(5, 4));
        for _ in 0..10 {
            s.handle_ack(t0, 4);
            s.handle_ack(t0, 0);
            s.handle_ack(t0, 3);
            assert!(drain(&mut s).is_empty());
        }
        // An ACK beyond what was sent is ignored too.
        s.handle_ack(t0, 9);
        s.handle_ack(t0, 40000);
        assert!(drain(&mut s).is_empty());
        // Lock-step: the classic Sorcerer's Apprentice case.
        let mut s = sender(&[], 2000, t0);
        drain(&mut s);
        s.handle_ack(t0, 1);
        assert_eq!(drain(&mut s), data(2, 1));
        s.handle_ack(t0, 1);
        assert!(drain(&mut s).is_empty());
        s.handle_ack(t0, 2);
        assert_eq!(drain(&mut s), data(3, 1));
    }

    #[test]
    fn timeout_resends_from_the_last_ack() {
        let t0 = Instant::now();
        let mut s = sender(&[("blksize", "10"), ("windowsize", "4")], 1000, t0);
        drain(&mut s);
        s.handle_ack(t0, 0);
        assert_eq!(drain(&mut s), data(1, 4));
        s.handle_ack(t0, 4);
        assert_eq!(drain(&mut s), data(5, 4));
        let d = s.poll_timeout().unwrap();
        assert_eq!(d, t0 + Duration::from_secs(1));
        // Early wakeups change nothing.
        s.handle_timeout(d - Duration::from_millis(1));
        assert!(drain(&mut s).is_empty());
        s.handle_timeout(d);
        assert_eq!(drain(&mut s), data(5, 4));
        assert_eq!(s.stats().timeouts, 1);
        assert_eq!(s.poll_timeout(), Some(d + Duration::from_secs(1)));
    }

    #[test]
    fn oack_is_retransmitted_then_given_up() {
        let t0 = Instant::now();
        let mut s = sender(&[("tsize", "0")], 10, t0);
        let first = drain(&mut s);
        let mut now = t0;
        for _ in 0..limits().max_retries {
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
            assert_eq!(drain(&mut s), first);
        }
        now = s.poll_timeout().unwrap_or(now);
        s.handle_timeout(now);
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.outcome(), Some(&Outcome::TimedOut));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn data_gives_up_after_max_retries_and_progress_resets_the_count() {
        let t0 = Instant::now();
        let mut s = sender(&[], 5000, t0);
        drain(&mut s);
        let mut now = t0;
        for _ in 0..limits().max_retries {
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
            assert_eq!(drain(&mut s), data(1, 1));
        }
        s.handle_ack(now, 1);
        assert_eq!(drain(&mut s), data(2, 1));
        for _ in 0..limits().max_retries {
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
            assert_eq!(drain(&mut s), data(2, 1));
        }
        s.handle_timeout(s.poll_timeout().unwrap());
        assert_eq!(s.outcome(), Some(&Outcome::TimedOut));
    }

    #[test]
    fn block_numbers_roll_over() {
        let t0 = Instant::now();
        // 8-byte blocks: 70,000 blocks cross 65535 -> 0.
        let size = 8 * 70_000 + 3;
        let mut s = sender(&[("blksize", "8"), ("windowsize", "7")], size, t0);
        drain(&mut s);
        s.handle_ack(t0, 0);
        let mut expect = 1u64;
        let mut windows = 0;
        while let Some(t) = s.poll_transmit() {
            let Transmit::Data { first, count } = t else {
                panic!("{t:?}")
            };
            assert_eq!(first, expect);
            windows += 1;
            let last = first + count - 1;
            // Every few windows, a partial ACK.
            let ack = if windows % 5 == 0 && count > 2 {
                last - 2
            } else {
                last
            };
            expect = ack + 1;
            // A duplicate of the previous ACK and an older one change nothing.
            s.handle_ack(t0, Sender::wire_block(first - 1));
            s.handle_ack(t0, Sender::wire_block(first.saturating_sub(2)));
            assert_eq!(s.poll_transmit(), None);
            s.handle_ack(t0, Sender::wire_block(ack));
        }
        assert_eq!(s.outcome(), Some(&Outcome::Complete));
        assert_eq!(s.last_block(), 70_001);
        assert_eq!(Sender::wire_block(65_535), 65_535);
        assert_eq!(Sender::wire_block(65_536), 0);
        assert_eq!(Sender::wire_block(65_537), 1);
        assert_eq!(s.block_span(70_001), (560_000, 3));
    }

    #[test]
    fn uefi_abort_after_oack_is_a_refusal() {
        let t0 = Instant::now();
        let mut s = sender(&[("tsize", "0"), ("blksize", "1468")], 10_000, t0);
        drain(&mut s);
        s.handle_packet(
            t0,
            &Packet::Error {
                code: 8,
                message: b"User aborted the transfer",
            },
        );
        assert!(drain(&mut s).is_empty());
        assert_eq!(
            s.outcome(),
            Some(&Outcome::Refused {
                code: 8,
                message: "User aborted the transfer".into()
            })
        );
        // Mid-transfer, an ERROR is the client's failure.
        let mut s = sender(&[], 10_000, t0);
        drain(&mut s);
        s.handle_ack(t0, 1);
        s.handle_error(0, b"disk full");
        assert_eq!(s.outcome().map(Outcome::label), Some("client_error"));
    }

    #[test]
    fn abort_sends_an_error_once() {
        let t0 = Instant::now();
        let mut s = sender(&[], 10_000, t0);
        drain(&mut s);
        s.abort(0, "read error");
        assert_eq!(
            drain(&mut s),
            vec![Transmit::Packet(packet::error_packet(0, "read error"))]
        );
        s.abort(0, "again");
        s.handle_ack(t0, 1);
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn garbage_on_the_transfer_port_is_ignored() {
        let t0 = Instant::now();
        let mut s = sender(&[], 10_000, t0);
        drain(&mut s);
        s.handle_packet(
            t0,
            &Packet::Data {
                block: 1,
                data: b"x",
            },
        );
        s.handle_packet(t0, &Packet::Oack(Options::default()));
        assert!(drain(&mut s).is_empty());
        assert!(s.outcome().is_none());
    }
}
