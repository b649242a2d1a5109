//! IPMI Serial-over-LAN (IPMI v2.0 section 15.9) as a sans-IO state machine.
//!
//! A SOL payload (RMCP+ payload type 1) is a 4-byte header and up to 255
//! characters:
//!
//! | byte | console → BMC | BMC → console |
//! |---|---|---|
//! | 1 | packet sequence number, bits 3:0 (1..15; 0 = no data, nothing to ACK) | same |
//! | 2 | sequence number being ACKed/NACKed, bits 3:0 (0 = none) | same |
//! | 3 | characters accepted from that packet | same |
//! | 4 | operation: NACK, ring/WOR, break, deassert CTS, deassert DCD/DSR, flush inbound, flush outbound | status: NACK, character transfer unavailable, SOL deactivating, transmit overrun, break detected |
//!
//! Each side has at most one sequenced packet in flight and resends it at a
//! fixed interval until it is ACKed, a bounded number of times. An ACK may
//! accept only part of the characters (a partial ACK): the rest goes again
//! under the next sequence number. A packet that arrives with the sequence
//! number of the last one accepted is a retransmission whose ACK was lost: it
//! is ACKed again with the same count and its data is not delivered twice.
//!
//! [`SolEndpoint`] is the same machine for both ends: [`Role::Console`] (our
//! client) and [`Role::Bmc`] (the simulator). The owner feeds it decrypted SOL
//! payloads (`handle_packet`) and the clock (`handle_timeout`), drains payloads
//! to send (`poll_transmit`, to be wrapped into the RMCP+ session) and events
//! (`poll_event` / `read`). Nothing here touches a socket or reads the clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Length of the SOL payload header.
pub const HEADER_LEN: usize = 4;
/// The accepted-character count is one byte: no packet carries more.
pub const MAX_DATA: usize = 255;

/// Operation bits, console → BMC (byte 4).
pub mod op {
    pub const NACK: u8 = 0x40;
    pub const RING_WOR: u8 = 0x20;
    pub const GENERATE_BREAK: u8 = 0x10;
    pub const DEASSERT_CTS: u8 = 0x08;
    pub const DEASSERT_DCD_DSR: u8 = 0x04;
    pub const FLUSH_INBOUND: u8 = 0x02;
    pub const FLUSH_OUTBOUND: u8 = 0x01;
}

/// Status bits, BMC → console (byte 4).
pub mod status {
    pub const NACK: u8 = 0x40;
    pub const TRANSFER_UNAVAILABLE: u8 = 0x20;
    pub const DEACTIVATING: u8 = 0x10;
    pub const TRANSMIT_OVERRUN: u8 = 0x08;
    pub const BREAK_DETECTED: u8 = 0x04;
}

/// Bits that describe a level (kept in every packet) rather than a one-shot event.
const CONSOLE_LEVELS: u8 = op::DEASSERT_CTS | op::DEASSERT_DCD_DSR;
const BMC_LEVELS: u8 = status::TRANSFER_UNAVAILABLE;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolError {
    #[error("SOL packet of {0} bytes is shorter than its 4-byte header")]
    Short(usize),
    #[error("SOL packet with sequence number 0 carries {0} characters (only sequenced packets carry data)")]
    DataWithoutSequence(usize),
    #[error("{0} is not an operation the {1:?} side sends")]
    WrongRole(&'static str, Role),
    #[error("SOL is no longer active")]
    Closed,
}

/// One decoded SOL payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolPacket {
    /// 1..=15 for a packet that must be ACKed; 0 for an ACK-only packet.
    pub seq: u8,
    /// The sequence number this packet ACKs or NACKs; 0 = none.
    pub ack_seq: u8,
    /// Characters accepted from packet `ack_seq`.
    pub accepted: u8,
    /// Operation (console → BMC) or status (BMC → console) bits.
    pub flags: u8,
    pub data: Vec<u8>,
}

impl SolPacket {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.data.len());
        out.push(self.seq & 0x0f);
        out.push(self.ack_seq & 0x0f);
        out.push(self.accepted);
        out.push(self.flags & 0x7f);
        out.extend_from_slice(&self.data);
        out
    }

    /// Decode a (decrypted) SOL payload. Reserved bits are ignored.
    pub fn decode(b: &[u8]) -> Result<SolPacket, SolError> {
        let (Some(&seq), Some(&ack), Some(&accepted), Some(&flags)) =
            (b.first(), b.get(1), b.get(2), b.get(3))
        else {
            return Err(SolError::Short(b.len()));
        };
        let data = b.get(HEADER_LEN..).unwrap_or_default();
        let seq = seq & 0x0f;
        if seq == 0 && !data.is_empty() {
            return Err(SolError::DataWithoutSequence(data.len()));
        }
        Ok(SolPacket {
            seq,
            ack_seq: ack & 0x0f,
            accepted,
            flags: flags & 0x7f,
            data: data.to_vec(),
        })
    }

    pub fn is_nack(&self) -> bool {
        self.flags & op::NACK != 0
    }
}

/// Which end of the SOL link an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The remote console (our client, ipmitool): sends operations, reads status.
    Console,
    /// The BMC (our simulator): sends status, reads operations.
    Bmc,
}

/// What to do when a packet goes unACKed `retries` more times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// The link is gone: report [`SolEvent::Lost`] and stop (a console).
    Lost,
    /// Drop the packet's characters and carry on (a BMC, as ipmi_sim does).
    Discard,
}

/// Operations a side can send (`SolEndpoint::send_operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolOperation {
    /// Console: generate a break on the host's serial port.
    Break,
    /// Console: assert ring / wake-on-ring.
    Ring,
    /// Console: deassert (true) or assert again (false) CTS to the host, which
    /// pauses its output under RTS/CTS flow control.
    DeassertCts(bool),
    /// Console: deassert (true) or assert again (false) DCD/DSR to the host.
    DeassertDcdDsr(bool),
    /// Console: the BMC drops the characters it holds for the host.
    FlushInbound,
    /// Console: the BMC drops the characters it holds for the console.
    FlushOutbound,
    /// BMC: a break was detected on the host's serial port.
    BreakDetected,
    /// BMC: host characters were lost (the BMC's buffer overran).
    TransmitOverrun,
    /// BMC: character transfer unavailable (true) or available again (false).
    TransferUnavailable(bool),
}

impl SolOperation {
    fn name(self) -> &'static str {
        match self {
            Self::Break => "generate break",
            Self::Ring => "ring/WOR",
            Self::DeassertCts(_) => "deassert CTS",
            Self::DeassertDcdDsr(_) => "deassert DCD/DSR",
            Self::FlushInbound => "flush inbound",
            Self::FlushOutbound => "flush outbound",
            Self::BreakDetected => "break detected",
            Self::TransmitOverrun => "transmit overrun",
            Self::TransferUnavailable(_) => "character transfer unavailable",
        }
    }
    fn role(self) -> Role {
        match self {
            Self::BreakDetected | Self::TransmitOverrun | Self::TransferUnavailable(_) => Role::Bmc,
            _ => Role::Console,
        }
    }
}

/// Why SOL stopped working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolLost {
    pub reason: String,
    /// Characters written but never ACKed by the peer, in order: re-queue or
    /// report them. Characters already delivered to us stay delivered.
    pub unsent: Vec<u8>,
}

/// What an endpoint reports to its owner, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SolEvent {
    /// Characters from the peer (host output on the console side, keystrokes
    /// on the BMC side), each delivered exactly once.
    Data(Vec<u8>),
    /// Console side: the BMC saw a break on the host's serial port.
    /// BMC side: the console asked for a break.
    Break,
    /// Console side: the BMC lost host characters (transmit overrun).
    TransmitOverrun,
    /// Console side: character transfer became unavailable (true) or available (false).
    TransferUnavailable(bool),
    /// BMC side: the console asserted ring / wake-on-ring.
    Ring,
    /// BMC side: the console changed the CTS or DCD/DSR lines.
    Lines {
        cts_deasserted: bool,
        dcd_dsr_deasserted: bool,
    },
    /// BMC side: the console asked to drop what is pending for the host.
    FlushInbound,
    /// BMC side: the console asked to drop what is pending for it.
    FlushOutbound,
    /// BMC side: characters dropped after the retries ([`Exhausted::Discard`]).
    Discarded(usize),
    /// Console side: the BMC is deactivating SOL. Nothing more will arrive.
    Deactivated,
    /// No ACK after every retry, or the session under SOL went away.
    Lost(SolLost),
}

/// Tunables of one endpoint.
#[derive(Debug, Clone)]
pub struct SolConfig {
    pub role: Role,
    /// Characters per outbound packet (the peer's payload size minus the
    /// header), 1..=255.
    pub max_data: usize,
    /// Interval between sends of an unACKed packet.
    pub retransmit: Duration,
    /// Resends of one packet before giving up.
    pub retries: u32,
    pub on_exhausted: Exhausted,
    /// Characters `write` accepts before the peer ACKs some.
    pub send_capacity: usize,
    /// Characters received but not yet read; beyond it packets are partially
    /// ACKed, then NACKed.
    pub recv_capacity: usize,
}

impl SolConfig {
    pub fn new(role: Role) -> SolConfig {
        SolConfig {
            role,
            max_data: 200,
            retransmit: Duration::from_millis(500),
            retries: 6,
            on_exhausted: match role {
                Role::Console => Exhausted::Lost,
                Role::Bmc => Exhausted::Discard,
            },
            send_capacity: 64 * 1024,
            recv_capacity: 1024 * 1024,
        }
    }
}

/// Counters for tests and observability.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SolStats {
    pub packets_sent: u64,
    pub data_packets_sent: u64,
    pub retransmits: u64,
    pub acks_sent: u64,
    pub packets_received: u64,
    pub duplicates: u64,
    pub partial_acks: u64,
    pub nacks_received: u64,
    pub nacks_sent: u64,
    pub malformed: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

#[derive(Debug)]
struct InFlight {
    seq: u8,
    data: Vec<u8>,
    ops: u8,
    sends: u32,
    deadline: Instant,
    resend_due: bool,
}

#[derive(Debug, Clone, Copy)]
struct AckDue {
    seq: u8,
    accepted: u8,
    nack: bool,
}

/// One end of a SOL link. See the module documentation.
#[derive(Debug)]
pub struct SolEndpoint {
    cfg: SolConfig,
    closed: bool,
    tx: VecDeque<u8>,
    in_flight: Option<InFlight>,
    next_seq: u8,
    /// One-shot operation/status bits for the next sequenced packet.
    pending_ops: u8,
    /// Level bits carried by every packet we send.
    levels: u8,
    ack_due: Option<AckDue>,
    /// The last sequenced packet accepted from the peer, and how much of it.
    last_rx: Option<(u8, u8)>,
    /// The peer's level bits as last seen.
    peer_levels: u8,
    /// After a NACK, no new data before this instant.
    hold_until: Option<Instant>,
    /// Unsequenced packets to send as they are (the deactivation notice).
    out: VecDeque<Vec<u8>>,
    events: VecDeque<SolEvent>,
    undelivered: usize,
    stats: SolStats,
}

impl SolEndpoint {
    pub fn new(mut cfg: SolConfig) -> SolEndpoint {
        cfg.max_data = cfg.max_data.clamp(1, MAX_DATA);
        SolEndpoint {
            cfg,
            closed: false,
            tx: VecDeque::new(),
            in_flight: None,
            next_seq: 1,
            pending_ops: 0,
            levels: 0,
            ack_due: None,
            last_rx: None,
            peer_levels: 0,
            hold_until: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            undelivered: 0,
            stats: SolStats::default(),
        }
    }

    pub fn config(&self) -> &SolConfig {
        &self.cfg
    }

    pub fn stats(&self) -> SolStats {
        self.stats
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Characters written and not yet ACKed (queued or in flight).
    pub fn pending(&self) -> usize {
        self.tx.len() + self.in_flight.as_ref().map_or(0, |f| f.data.len())
    }

    /// Room left for `write`.
    pub fn send_room(&self) -> usize {
        self.cfg.send_capacity.saturating_sub(self.pending())
    }

    /// Nothing written is waiting for an ACK.
    pub fn is_idle(&self) -> bool {
        self.pending() == 0 && self.in_flight.is_none() && self.pending_ops == 0
    }

    /// Queue characters for the peer. Returns how many were taken (fewer than
    /// offered when the send buffer is full).
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize, SolError> {
        if self.closed {
            return Err(SolError::Closed);
        }
        let n = bytes.len().min(self.send_room());
        self.tx.extend(bytes.iter().take(n));
        Ok(n)
    }

    /// Request an operation (console) or report a status (BMC). One-shot
    /// operations ride on the next sequenced packet; levels on every packet.
    pub fn send_operation(&mut self, o: SolOperation) -> Result<(), SolError> {
        if self.closed {
            return Err(SolError::Closed);
        }
        if o.role() != self.cfg.role {
            return Err(SolError::WrongRole(o.name(), self.cfg.role));
        }
        let set_level = |levels: &mut u8, bit: u8, on: bool| {
            if on {
                *levels |= bit
            } else {
                *levels &= !bit
            }
        };
        match o {
            SolOperation::Break => self.pending_ops |= op::GENERATE_BREAK,
            SolOperation::Ring => self.pending_ops |= op::RING_WOR,
            SolOperation::FlushInbound => self.pending_ops |= op::FLUSH_INBOUND,
            SolOperation::FlushOutbound => self.pending_ops |= op::FLUSH_OUTBOUND,
            SolOperation::BreakDetected => self.pending_ops |= status::BREAK_DETECTED,
            SolOperation::TransmitOverrun => self.pending_ops |= status::TRANSMIT_OVERRUN,
            SolOperation::DeassertCts(on) => set_level(&mut self.levels, op::DEASSERT_CTS, on),
            SolOperation::DeassertDcdDsr(on) => {
                set_level(&mut self.levels, op::DEASSERT_DCD_DSR, on)
            }
            SolOperation::TransferUnavailable(on) => {
                set_level(&mut self.levels, status::TRANSFER_UNAVAILABLE, on)
            }
        }
        if matches!(
            o,
            SolOperation::DeassertCts(_)
                | SolOperation::DeassertDcdDsr(_)
                | SolOperation::TransferUnavailable(_)
        ) && self.ack_due.is_none()
            && self.in_flight.is_none()
            && self.tx.is_empty()
        {
            // A level change with nothing else to carry it: an unsequenced packet.
            let p = self.header(0, None);
            self.out.push_back(p.encode());
        }
        Ok(())
    }

    /// BMC side: tell the console SOL is being deactivated, then stop. The
    /// notice is the last packet `poll_transmit` returns.
    pub fn deactivate(&mut self) {
        if self.closed {
            return;
        }
        if self.cfg.role == Role::Bmc {
            let mut p = self.header(0, None);
            p.flags |= status::DEACTIVATING;
            self.out.push_back(p.encode());
        }
        self.shut();
    }

    /// Stop without telling the peer (the session is gone, or the owner
    /// deactivated SOL by command). Returns the characters never ACKed.
    pub fn close(&mut self) -> Vec<u8> {
        let unsent = self.take_unsent();
        self.shut();
        self.out.clear();
        unsent
    }

    /// The owner learnt that the link is gone (session lost): report
    /// [`SolEvent::Lost`] with the unsent characters and stop.
    pub fn lose(&mut self, reason: impl Into<String>) {
        if self.closed {
            return;
        }
        let unsent = self.take_unsent();
        self.events.push_back(SolEvent::Lost(SolLost {
            reason: reason.into(),
            unsent,
        }));
        self.shut();
        self.out.clear();
    }

    fn shut(&mut self) {
        self.closed = true;
        self.tx.clear();
        self.in_flight = None;
        self.pending_ops = 0;
        self.ack_due = None;
        self.hold_until = None;
    }

    fn take_unsent(&mut self) -> Vec<u8> {
        let mut v = self.in_flight.take().map(|f| f.data).unwrap_or_default();
        v.extend(self.tx.drain(..));
        v
    }

    /// The next event, data included, in arrival order.
    pub fn poll_event(&mut self) -> Option<SolEvent> {
        let ev = self.events.pop_front()?;
        if let SolEvent::Data(d) = &ev {
            self.undelivered = self.undelivered.saturating_sub(d.len());
        }
        Some(ev)
    }

    /// Whether `poll_event` has something.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The characters received so far, up to the next non-data event.
    pub fn read(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(SolEvent::Data(_)) = self.events.front() {
            if let Some(SolEvent::Data(d)) = self.poll_event() {
                out.extend_from_slice(&d);
            }
        }
        out
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self
            .in_flight
            .as_ref()
            .filter(|f| !f.resend_due)
            .map(|f| f.deadline);
        if let Some(h) = self.hold_until {
            if self.in_flight.is_none() && (!self.tx.is_empty() || self.pending_ops != 0) {
                t = Some(t.map_or(h, |x| x.min(h)));
            }
        }
        t
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.hold_until.is_some_and(|h| now >= h) {
            self.hold_until = None;
        }
        let Some(f) = &mut self.in_flight else {
            return;
        };
        if f.resend_due || now < f.deadline {
            return;
        }
        if f.data.is_empty() {
            // An operation without characters is sent once: ipmi_sim never ACKs
            // such a packet, and resending a break would make several breaks.
            self.in_flight = None;
            return;
        }
        if f.sends > self.cfg.retries {
            let seq = f.seq;
            let sends = f.sends;
            match self.cfg.on_exhausted {
                Exhausted::Lost => self.lose(format!(
                    "no ACK for SOL packet {seq} after {sends} sends {:?} apart",
                    self.cfg.retransmit
                )),
                Exhausted::Discard => {
                    let n = self.in_flight.take().map_or(0, |f| f.data.len());
                    self.events.push_back(SolEvent::Discarded(n));
                }
            }
            return;
        }
        f.resend_due = true;
    }

    fn header(&self, seq: u8, ack: Option<AckDue>) -> SolPacket {
        let (ack_seq, accepted, nack) = match ack {
            Some(a) => (a.seq, a.accepted, a.nack),
            None => (0, 0, false),
        };
        SolPacket {
            seq,
            ack_seq,
            accepted,
            flags: self.levels | if nack { op::NACK } else { 0 },
            data: Vec::new(),
        }
    }

    fn sent(&mut self, p: &SolPacket) -> Vec<u8> {
        self.stats.packets_sent += 1;
        if p.ack_seq != 0 {
            self.stats.acks_sent += 1;
            if p.is_nack() {
                self.stats.nacks_sent += 1;
            }
        }
        p.encode()
    }

    /// The next SOL payload to send, if any: a resend, a new packet (with any
    /// ACK due riding on it), or an ACK on its own.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(p) = self.out.pop_front() {
            self.stats.packets_sent += 1;
            return Some(p);
        }
        if self.closed {
            return None;
        }
        // A resend of the packet in flight.
        if let Some(f) = &self.in_flight {
            if f.resend_due {
                let ack = self.ack_due.take();
                let mut p = self.header(f.seq, ack);
                p.flags |= f.ops;
                p.data = f.data.clone();
                if let Some(f) = &mut self.in_flight {
                    f.resend_due = false;
                    f.sends += 1;
                    f.deadline = now + self.cfg.retransmit;
                }
                self.stats.retransmits += 1;
                return Some(self.sent(&p));
            }
        }
        // A new sequenced packet.
        let held = self.hold_until.is_some_and(|h| now < h);
        if self.in_flight.is_none() && !held && (!self.tx.is_empty() || self.pending_ops != 0) {
            let n = self.tx.len().min(self.cfg.max_data);
            let data: Vec<u8> = self.tx.drain(..n).collect();
            let seq = self.next_seq;
            self.next_seq = if seq >= 15 { 1 } else { seq + 1 };
            let ack = self.ack_due.take();
            let ops = std::mem::take(&mut self.pending_ops);
            let mut p = self.header(seq, ack);
            p.flags |= ops;
            p.data = data.clone();
            self.stats.data_packets_sent += u64::from(!data.is_empty());
            self.stats.bytes_sent += data.len() as u64;
            self.in_flight = Some(InFlight {
                seq,
                data,
                ops,
                sends: 1,
                deadline: now + self.cfg.retransmit,
                resend_due: false,
            });
            return Some(self.sent(&p));
        }
        // An ACK on its own.
        let ack = self.ack_due.take()?;
        let p = self.header(0, Some(ack));
        Some(self.sent(&p))
    }

    /// Feed one decrypted SOL payload from the peer.
    pub fn handle_packet(&mut self, now: Instant, bytes: &[u8]) -> Result<(), SolError> {
        if self.closed {
            return Err(SolError::Closed);
        }
        let p = match SolPacket::decode(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e);
            }
        };
        self.stats.packets_received += 1;
        self.on_ack(now, &p);
        let dup = p.seq != 0 && self.last_rx.is_some_and(|(s, _)| s == p.seq);
        // Levels are state: look at them on every packet.
        let level_bits = match self.cfg.role {
            Role::Console => BMC_LEVELS,
            Role::Bmc => CONSOLE_LEVELS,
        };
        let levels = p.flags & level_bits;
        if levels != self.peer_levels {
            self.peer_levels = levels;
            self.events.push_back(match self.cfg.role {
                Role::Console => {
                    SolEvent::TransferUnavailable(levels & status::TRANSFER_UNAVAILABLE != 0)
                }
                Role::Bmc => SolEvent::Lines {
                    cts_deasserted: levels & op::DEASSERT_CTS != 0,
                    dcd_dsr_deasserted: levels & op::DEASSERT_DCD_DSR != 0,
                },
            });
        }
        if p.seq != 0 {
            if dup {
                self.stats.duplicates += 1;
                let accepted = self.last_rx.map_or(0, |(_, n)| n);
                self.ack_due = Some(AckDue {
                    seq: p.seq,
                    accepted,
                    nack: false,
                });
            } else {
                let room = self.cfg.recv_capacity.saturating_sub(self.undelivered);
                let n = p.data.len().min(room).min(MAX_DATA);
                if n == 0 && !p.data.is_empty() {
                    // Nothing fits: NACK, and take the packet fresh when it comes again.
                    self.ack_due = Some(AckDue {
                        seq: p.seq,
                        accepted: 0,
                        nack: true,
                    });
                    return Ok(());
                }
                self.last_rx = Some((p.seq, n as u8));
                self.ack_due = Some(AckDue {
                    seq: p.seq,
                    accepted: n as u8,
                    nack: false,
                });
                if n > 0 {
                    self.undelivered += n;
                    self.stats.bytes_received += n as u64;
                    let data = p.data.get(..n).unwrap_or_default().to_vec();
                    self.events.push_back(SolEvent::Data(data));
                }
            }
        }
        if !dup {
            self.on_flags(p.flags);
        }
        Ok(())
    }

    fn on_ack(&mut self, now: Instant, p: &SolPacket) {
        if p.ack_seq == 0 {
            return;
        }
        let Some(f) = &self.in_flight else {
            return;
        };
        if f.seq != p.ack_seq {
            return; // a late ACK for an earlier packet
        }
        // A NACK normally accepts nothing; ipmi_sim also sets the bit on a real
        // ACK when its buffer just filled up, with the count it took. Either
        // way: the count is what was taken, and we pause before sending more.
        let accepted = (p.accepted as usize).min(f.data.len());
        if p.is_nack() {
            self.stats.nacks_received += 1;
            self.hold_until = Some(now + self.cfg.retransmit);
        }
        if let Some(f) = self.in_flight.take() {
            if accepted < f.data.len() {
                if !p.is_nack() {
                    self.stats.partial_acks += 1;
                }
                for b in f.data.iter().skip(accepted).rev() {
                    self.tx.push_front(*b);
                }
            }
        }
    }

    fn on_flags(&mut self, flags: u8) {
        match self.cfg.role {
            Role::Console => {
                if flags & status::BREAK_DETECTED != 0 {
                    self.events.push_back(SolEvent::Break);
                }
                if flags & status::TRANSMIT_OVERRUN != 0 {
                    self.events.push_back(SolEvent::TransmitOverrun);
                }
                if flags & status::DEACTIVATING != 0 {
                    self.events.push_back(SolEvent::Deactivated);
                    self.shut();
                }
            }
            Role::Bmc => {
                if flags & op::RING_WOR != 0 {
                    self.events.push_back(SolEvent::Ring);
                }
                if flags & op::GENERATE_BREAK != 0 {
                    self.events.push_back(SolEvent::Break);
                }
                if flags & op::FLUSH_INBOUND != 0 {
                    // Drop what the host has not read yet.
                    let before = self.events.len();
                    self.events.retain(|e| !matches!(e, SolEvent::Data(_)));
                    if self.events.len() != before {
                        self.undelivered = 0;
                    }
                    self.events.push_back(SolEvent::FlushInbound);
                }
                if flags & op::FLUSH_OUTBOUND != 0 {
                    // Drop what the console has not ACKed yet.
                    self.tx.clear();
                    self.in_flight = None;
                    self.events.push_back(SolEvent::FlushOutbound);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::hex_decode;

    fn console() -> SolEndpoint {
        SolEndpoint::new(SolConfig::new(Role::Console))
    }
    fn bmc() -> SolEndpoint {
        SolEndpoint::new(SolConfig::new(Role::Bmc))
    }
    fn pkt(b: &[u8]) -> SolPacket {
        SolPacket::decode(b).unwrap()
    }

    /// Move every packet each way until both are quiet; returns packets moved.
    fn pump(a: &mut SolEndpoint, b: &mut SolEndpoint, now: Instant) -> usize {
        let mut n = 0;
        loop {
            let mut moved = false;
            while let Some(p) = a.poll_transmit(now) {
                b.handle_packet(now, &p).unwrap();
                moved = true;
                n += 1;
            }
            while let Some(p) = b.poll_transmit(now) {
                a.handle_packet(now, &p).unwrap();
                moved = true;
                n += 1;
            }
            if !moved {
                return n;
            }
        }
    }

    #[test]
    fn codec_matches_the_spec_layout() {
        // ipmitool's ACK of BMC packet 3 with 5 characters: seq 0, ack 3, count 5, no flags.
        let ack = SolPacket {
            seq: 0,
            ack_seq: 3,
            accepted: 5,
            flags: 0,
            data: vec![],
        };
        assert_eq!(ack.encode(), hex_decode("00 03 05 00").unwrap());
        // A console data packet with a break request.
        let data = SolPacket {
            seq: 7,
            ack_seq: 0,
            accepted: 0,
            flags: op::GENERATE_BREAK,
            data: b"ls\r".to_vec(),
        };
        let bytes = data.encode();
        assert_eq!(bytes, hex_decode("07 00 00 10 6c 73 0d").unwrap());
        assert_eq!(pkt(&bytes), data);
        // ipmi_sim's ACK when its 32-byte buffer just filled: NACK bit with the count.
        let p = pkt(&hex_decode("00 01 1c 40").unwrap());
        assert!(p.is_nack());
        assert_eq!((p.ack_seq, p.accepted), (1, 28));
        // Reserved bits are ignored.
        let p = pkt(&hex_decode("f5 f2 00 80 41").unwrap());
        assert_eq!(
            (p.seq, p.ack_seq, p.flags, p.data.as_slice()),
            (5, 2, 0, &b"A"[..])
        );
    }

    #[test]
    fn decode_never_panics() {
        for n in 0..4 {
            assert_eq!(
                SolPacket::decode(&[1, 2, 3][..n.min(3)]),
                Err(SolError::Short(n.min(3)))
            );
        }
        assert_eq!(
            SolPacket::decode(&[0, 1, 1, 0, b'x']),
            Err(SolError::DataWithoutSequence(1))
        );
        for len in 0..300 {
            let v: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            let _ = SolPacket::decode(&v);
            let mut e = console();
            let _ = e.handle_packet(Instant::now(), &v);
        }
    }

    #[test]
    fn both_directions_with_piggybacked_ack() {
        let t = Instant::now();
        let (mut c, mut b) = (console(), bmc());
        b.write(b"login: ").unwrap();
        let p1 = b.poll_transmit(t).unwrap();
        assert_eq!(p1, b"\x01\x00\x00\x00login: ");
        c.handle_packet(t, &p1).unwrap();
        // The console has keystrokes too: its data packet carries the ACK.
        c.write(b"root\r").unwrap();
        let p2 = c.poll_transmit(t).unwrap();
        assert_eq!(p2, b"\x01\x01\x07\x00root\r");
        assert!(c.poll_transmit(t).is_none(), "no separate ACK");
        b.handle_packet(t, &p2).unwrap();
        assert!(b.is_idle(), "BMC's packet ACKed by the piggy-back");
        let p3 = b.poll_transmit(t).unwrap();
        assert_eq!(p3, b"\x00\x01\x05\x00", "ACK-only packet");
        c.handle_packet(t, &p3).unwrap();
        assert!(c.is_idle());
        assert_eq!(c.read(), b"login: ");
        assert_eq!(b.read(), b"root\r");
    }

    #[test]
    fn sequence_numbers_cycle_15_to_1() {
        let t = Instant::now();
        let (mut c, mut b) = (console(), bmc());
        let mut seqs = Vec::new();
        for i in 0..20u8 {
            c.write(&[b'a' + i]).unwrap();
            let p = c.poll_transmit(t).unwrap();
            seqs.push(p[0]);
            b.handle_packet(t, &p).unwrap();
            pump(&mut c, &mut b, t);
        }
        let want: Vec<u8> = (1..=15).chain(1..=5).collect();
        assert_eq!(seqs, want);
        let got = b.read();
        assert_eq!(got, (0..20u8).map(|i| b'a' + i).collect::<Vec<_>>());
    }

    #[test]
    fn large_writes_are_split_by_max_data() {
        let t = Instant::now();
        let mut cfg = SolConfig::new(Role::Console);
        cfg.max_data = 28; // ipmi_sim: inbound payload size 32, minus the header
        let mut c = SolEndpoint::new(cfg);
        let mut b = bmc();
        let msg: Vec<u8> = (0..100u8).collect();
        c.write(&msg).unwrap();
        let mut sizes = Vec::new();
        while let Some(p) = c.poll_transmit(t) {
            sizes.push(p.len() - HEADER_LEN);
            b.handle_packet(t, &p).unwrap();
            let ack = b.poll_transmit(t).unwrap();
            c.handle_packet(t, &ack).unwrap();
        }
        assert_eq!(sizes, vec![28, 28, 28, 16]);
        assert_eq!(b.read(), msg);
    }

    #[test]
    fn partial_ack_resends_the_rest_under_the_next_sequence_number() {
        let t = Instant::now();
        let mut c = console();
        c.write(b"0123456789").unwrap();
        let p = pkt(&c.poll_transmit(t).unwrap());
        assert_eq!((p.seq, p.data.len()), (1, 10));
        // The BMC took 4.
        c.handle_packet(t, &[0, 1, 4, 0]).unwrap();
        let p = pkt(&c.poll_transmit(t).unwrap());
        assert_eq!((p.seq, p.data.as_slice()), (2, &b"456789"[..]));
        c.handle_packet(t, &[0, 2, 6, 0]).unwrap();
        assert!(c.is_idle());
        assert_eq!(c.stats().partial_acks, 1);
    }

    #[test]
    fn receiver_partially_acks_when_its_buffer_is_full() {
        let t = Instant::now();
        let mut cfg = SolConfig::new(Role::Console);
        cfg.recv_capacity = 8;
        let mut c = SolEndpoint::new(cfg);
        let mut b = bmc();
        b.write(b"abcdefghijkl").unwrap();
        let p = b.poll_transmit(t).unwrap();
        c.handle_packet(t, &p).unwrap();
        let ack = pkt(&c.poll_transmit(t).unwrap());
        assert_eq!((ack.ack_seq, ack.accepted, ack.is_nack()), (1, 8, false));
        b.handle_packet(t, &ack.encode()).unwrap();
        // The rest comes as packet 2; nothing fits: NACK.
        let p = b.poll_transmit(t).unwrap();
        assert_eq!(&p[HEADER_LEN..], b"ijkl");
        c.handle_packet(t, &p).unwrap();
        let nack = pkt(&c.poll_transmit(t).unwrap());
        assert_eq!((nack.ack_seq, nack.accepted, nack.is_nack()), (2, 0, true));
        b.handle_packet(t, &nack.encode()).unwrap();
        // The BMC holds off, then sends the rest again once the reader made room.
        assert!(b.poll_transmit(t).is_none(), "held after a NACK");
        assert_eq!(c.read(), b"abcdefgh");
        let later = b.poll_timeout().unwrap();
        b.handle_timeout(later);
        pump(&mut c, &mut b, later);
        assert_eq!(c.read(), b"ijkl");
        assert!(b.is_idle());
    }

    #[test]
    fn duplicate_is_acked_again_but_delivered_once() {
        let t = Instant::now();
        let (mut c, mut b) = (console(), bmc());
        b.write(b"hello").unwrap();
        let p = b.poll_transmit(t).unwrap();
        c.handle_packet(t, &p).unwrap();
        let ack1 = c.poll_transmit(t).unwrap();
        // That ACK is lost; the BMC resends the same packet.
        let _ = ack1;
        let t2 = t + b.config().retransmit;
        b.handle_timeout(t2);
        let again = b.poll_transmit(t2).unwrap();
        assert_eq!(again, p, "same sequence number, same data");
        c.handle_packet(t2, &again).unwrap();
        let ack2 = c.poll_transmit(t2).unwrap();
        assert_eq!(ack2, b"\x00\x01\x05\x00");
        b.handle_packet(t2, &ack2).unwrap();
        assert!(b.is_idle());
        assert_eq!(c.read(), b"hello");
        assert!(c.poll_event().is_none());
        assert_eq!(c.stats().duplicates, 1);
    }

    #[test]
    fn retransmits_then_reports_lost_with_the_unsent_bytes() {
        let t = Instant::now();
        let mut c = console();
        c.write(b"abc").unwrap();
        let first = c.poll_transmit(t).unwrap();
        c.write(b"def").unwrap();
        let mut now = t;
        let mut sends = 1;
        loop {
            if let Some(SolEvent::Lost(l)) = c.poll_event() {
                assert_eq!(l.unsent, b"abcdef");
                assert!(l.reason.contains("no ACK"), "{}", l.reason);
                break;
            }
            now = c.poll_timeout().expect("a timer while waiting for the ACK");
            c.handle_timeout(now);
            while let Some(p) = c.poll_transmit(now) {
                assert_eq!(p, first, "resends are identical");
                sends += 1;
            }
        }
        let cfg = c.config();
        assert_eq!(sends, cfg.retries + 1);
        assert_eq!(now - t, cfg.retransmit * (cfg.retries + 1));
        assert!(c.is_closed());
        assert_eq!(c.write(b"x"), Err(SolError::Closed));
        assert!(c.poll_transmit(now).is_none());
    }

    #[test]
    fn bmc_discards_after_retries_and_carries_on() {
        let t = Instant::now();
        let mut b = bmc();
        b.write(b"lost").unwrap();
        b.poll_transmit(t).unwrap();
        let mut now = t;
        while !b.has_events() {
            now = b.poll_timeout().unwrap();
            b.handle_timeout(now);
            while b.poll_transmit(now).is_some() {}
        }
        assert_eq!(b.poll_event(), Some(SolEvent::Discarded(4)));
        b.write(b"next").unwrap();
        let p = pkt(&b.poll_transmit(now).unwrap());
        assert_eq!((p.seq, p.data.as_slice()), (2, &b"next"[..]));
    }

    #[test]
    fn nack_holds_then_resends_everything() {
        let t = Instant::now();
        let mut c = console();
        c.write(b"xyz").unwrap();
        c.poll_transmit(t).unwrap();
        c.handle_packet(t, &[0, 1, 0, status::NACK]).unwrap();
        assert!(c.poll_transmit(t).is_none());
        assert_eq!(c.stats().nacks_received, 1);
        let at = c.poll_timeout().unwrap();
        assert_eq!(at, t + c.config().retransmit);
        c.handle_timeout(at);
        let p = pkt(&c.poll_transmit(at).unwrap());
        assert_eq!((p.seq, p.data.as_slice()), (2, &b"xyz"[..]));
        // ipmi_sim style: NACK bit with the full count means taken, buffer full.
        c.handle_packet(at, &[0, 2, 3, status::NACK]).unwrap();
        assert!(c.is_idle());
    }

    #[test]
    fn stale_ack_does_not_ack_the_packet_in_flight() {
        let t = Instant::now();
        let mut c = console();
        c.write(b"a").unwrap();
        c.poll_transmit(t).unwrap();
        c.handle_packet(t, &[0, 9, 1, 0]).unwrap();
        assert_eq!(c.pending(), 1);
        c.handle_packet(t, &[0, 1, 1, 0]).unwrap();
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn operations_and_status() {
        let t = Instant::now();
        let (mut c, mut b) = (console(), bmc());
        assert!(matches!(
            c.send_operation(SolOperation::BreakDetected),
            Err(SolError::WrongRole(..))
        ));
        c.send_operation(SolOperation::Break).unwrap();
        let p = pkt(&c.poll_transmit(t).unwrap());
        assert_eq!((p.seq, p.flags, p.data.len()), (1, op::GENERATE_BREAK, 0));
        b.handle_packet(t, &p.encode()).unwrap();
        assert_eq!(b.poll_event(), Some(SolEvent::Break));
        // The BMC ACKs the operation packet; a resend would not break twice.
        let ack = b.poll_transmit(t).unwrap();
        assert_eq!(ack, b"\x00\x01\x00\x00");
        b.handle_packet(t, &p.encode()).unwrap();
        assert!(b.poll_event().is_none());
        c.handle_packet(t, &ack).unwrap();
        assert!(c.is_idle());

        // Levels ride on every packet until changed back.
        c.send_operation(SolOperation::DeassertCts(true)).unwrap();
        pump(&mut c, &mut b, t);
        assert_eq!(
            b.poll_event(),
            Some(SolEvent::Lines {
                cts_deasserted: true,
                dcd_dsr_deasserted: false
            })
        );
        c.write(b"q").unwrap();
        let p = pkt(&c.poll_transmit(t).unwrap());
        assert_eq!(p.flags, op::DEASSERT_CTS);
        b.handle_packet(t, &p.encode()).unwrap();
        assert_eq!(b.read(), b"q");
        assert!(b.poll_event().is_none(), "no change, no event");

        // BMC status towards the console.
        b.send_operation(SolOperation::BreakDetected).unwrap();
        b.write(b"!").unwrap();
        pump(&mut c, &mut b, t);
        assert_eq!(c.poll_event(), Some(SolEvent::Data(b"!".to_vec())));
        assert_eq!(c.poll_event(), Some(SolEvent::Break));
        b.send_operation(SolOperation::TransferUnavailable(true))
            .unwrap();
        pump(&mut c, &mut b, t);
        assert_eq!(c.poll_event(), Some(SolEvent::TransferUnavailable(true)));
    }

    #[test]
    fn an_unacked_operation_is_sent_once() {
        let t = Instant::now();
        let mut c = console();
        c.send_operation(SolOperation::Break).unwrap();
        assert!(c.poll_transmit(t).is_some());
        let at = c.poll_timeout().unwrap();
        c.handle_timeout(at);
        assert!(c.poll_transmit(at).is_none(), "no second break");
        assert!(c.is_idle() && !c.is_closed());
        c.write(b"x").unwrap();
        assert_eq!(pkt(&c.poll_transmit(at).unwrap()).seq, 2);
    }

    #[test]
    fn flushes_on_the_bmc_side() {
        let t = Instant::now();
        let (mut c, mut b) = (console(), bmc());
        c.write(b"typed").unwrap();
        pump(&mut c, &mut b, t);
        b.write(b"pending output").unwrap();
        c.send_operation(SolOperation::FlushInbound).unwrap();
        c.send_operation(SolOperation::FlushOutbound).unwrap();
        let p = c.poll_transmit(t).unwrap();
        b.handle_packet(t, &p).unwrap();
        assert_eq!(b.poll_event(), Some(SolEvent::FlushInbound));
        assert_eq!(b.poll_event(), Some(SolEvent::FlushOutbound));
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn deactivation_notice_ends_the_console() {
        let t = Instant::now();
        let (mut c, mut b) = (console(), bmc());
        c.write(b"unsent").unwrap();
        b.deactivate();
        let p = b.poll_transmit(t).unwrap();
        assert_eq!(p, b"\x00\x00\x00\x10");
        assert!(b.poll_transmit(t).is_none());
        c.handle_packet(t, &p).unwrap();
        assert_eq!(c.poll_event(), Some(SolEvent::Deactivated));
        assert!(c.is_closed());
    }

    #[test]
    fn lossy_link_delivers_everything_in_order() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(7);
        let mut cfg = SolConfig::new(Role::Console);
        cfg.retries = 30;
        let mut c = SolEndpoint::new(cfg);
        let mut bcfg = SolConfig::new(Role::Bmc);
        bcfg.retries = 30;
        let mut b = SolEndpoint::new(bcfg);
        let up: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..9000u32).map(|i| (i % 241) as u8).collect();
        c.write(&up).unwrap();
        b.write(&down).unwrap();
        let (mut got_up, mut got_down) = (Vec::new(), Vec::new());
        let mut now = Instant::now();
        for _ in 0..100_000 {
            let mut moved = false;
            while let Some(p) = c.poll_transmit(now) {
                moved = true;
                if rng.gen_bool(0.8) {
                    b.handle_packet(now, &p).unwrap();
                }
            }
            while let Some(p) = b.poll_transmit(now) {
                moved = true;
                if rng.gen_bool(0.8) {
                    c.handle_packet(now, &p).unwrap();
                }
            }
            got_up.extend(b.read());
            got_down.extend(c.read());
            if c.is_idle() && b.is_idle() && !moved {
                break;
            }
            if !moved {
                let next = [c.poll_timeout(), b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap();
                now = now.max(next);
                c.handle_timeout(now);
                b.handle_timeout(now);
            }
        }
        assert!(!c.is_closed() && !b.is_closed());
        assert_eq!(got_up, up);
        assert_eq!(got_down, down);
        assert!(c.stats().duplicates > 0 && b.stats().duplicates > 0);
    }
}
