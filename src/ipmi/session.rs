//! The client side of an RMCP+ session as a sans-IO state machine.
//!
//! The owner feeds it datagrams (`handle_input`) and the clock (`handle_timeout`),
//! and drains datagrams to send (`poll_transmit`) and events (`poll_event`).
//! Nothing here touches a socket or reads the clock by itself, so the whole
//! protocol (handshake, retransmission, keepalive, re-open) runs in unit tests
//! against the simulator's BMC core with a fake clock and injected loss.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::{rngs::StdRng, RngCore, SeedableRng};
use zeroize::Zeroizing;

use super::cmd::{self, AuthCaps, Privilege};
use super::crypto::{key20, CipherSuite, RakpParams, SessionKeys};
use super::error::IpmiError;
use super::rakp::{self, OpenSessionRequest, OpenSessionResponse, Rakp1, Rakp2, Rakp3, Rakp4};
use super::wire::{self, IpmiRequest, IpmiResponse, Packet, PayloadType, V20Packet};

/// Everything needed to open and keep a session.
#[derive(Clone)]
pub struct SessionConfig {
    pub username: Vec<u8>,
    pub password: Zeroizing<Vec<u8>>,
    pub kg: Option<Zeroizing<Vec<u8>>>,
    pub privilege: Privilege,
    /// `None` = discover and prefer 17, then 3.
    pub cipher_suite: Option<u8>,
    /// Suite 0 (no authentication) is refused unless a profile allows it.
    pub allow_suite0: bool,
    /// OpenIPMI / FreeIPMI "opensesspriv" quirk: ask for the exact privilege level
    /// in Open Session instead of "highest matching" (0).
    pub opensesspriv: bool,
    pub retransmit_initial: Duration,
    pub retransmit_max: Duration,
    /// Sends of one message before it counts as lost.
    pub max_attempts: u32,
    /// Each command must complete (including any session set-up) within this.
    pub command_timeout: Duration,
    /// Idle time after which a no-op keeps the session alive; `None` disables it.
    pub keepalive: Option<Duration>,
    /// Minimum gap between two commands to the same BMC (from the hw profile).
    pub min_interval: Duration,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("username", &String::from_utf8_lossy(&self.username))
            .field("password", &"******")
            .field("kg", &self.kg.as_ref().map(|_| "******"))
            .field("privilege", &self.privilege)
            .field("cipher_suite", &self.cipher_suite)
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    pub fn new(username: &str, password: &[u8]) -> Self {
        SessionConfig {
            username: username.as_bytes().to_vec(),
            password: Zeroizing::new(password.to_vec()),
            kg: None,
            privilege: Privilege::Administrator,
            cipher_suite: None,
            allow_suite0: false,
            opensesspriv: false,
            retransmit_initial: Duration::from_millis(250),
            retransmit_max: Duration::from_secs(2),
            max_attempts: 4,
            command_timeout: Duration::from_secs(10),
            keepalive: Some(Duration::from_secs(20)),
            min_interval: Duration::ZERO,
        }
    }

    /// Check the limits the protocol imposes.
    pub fn validate(&self) -> Result<(), IpmiError> {
        if self.username.len() > 16 {
            return Err(IpmiError::Config(format!(
                "user name is {} bytes; IPMI allows at most 16",
                self.username.len()
            )));
        }
        if self.password.len() > 20 {
            return Err(IpmiError::Config(format!(
                "password is {} bytes; IPMI 2.0 allows at most 20",
                self.password.len()
            )));
        }
        if let Some(kg) = &self.kg {
            if kg.len() > 20 {
                return Err(IpmiError::Config(format!(
                    "K_G is {} bytes; IPMI 2.0 allows at most 20",
                    kg.len()
                )));
            }
        }
        if let Some(id) = self.cipher_suite {
            match CipherSuite::by_id(id) {
                None => {
                    return Err(IpmiError::Config(format!(
                        "cipher suite {id} is not supported (use 3 or 17)"
                    )))
                }
                Some(s) if s.id == 0 && !self.allow_suite0 => {
                    return Err(IpmiError::Config(
                        "cipher suite 0 (no authentication) is refused unless the hardware profile allows it"
                            .into(),
                    ))
                }
                Some(_) => {}
            }
        }
        if self.max_attempts == 0 {
            return Err(IpmiError::Config("max_attempts must be at least 1".into()));
        }
        Ok(())
    }

    fn accepted_suites(&self) -> Vec<u8> {
        match self.cipher_suite {
            Some(id) => vec![id],
            None if self.allow_suite0 => vec![17, 3, 0],
            None => vec![17, 3],
        }
    }
}

/// What the session reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A session is up (first time or after a re-open).
    Established { suite: u8, bmc_session_id: u32 },
    /// A submitted command finished. A non-zero completion code is still `Ok`.
    Response {
        id: u64,
        result: Result<IpmiResponse, IpmiError>,
    },
    /// The session was closed (after `close`).
    Closed,
    /// A non-IPMI payload (SOL) arrived in the session: authenticated,
    /// decrypted and past the sequence-number window, as IPMI responses are.
    Payload {
        payload_type: PayloadType,
        data: Vec<u8>,
    },
}

/// Counters for observability and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub sessions_opened: u64,
    pub retransmits: u64,
    pub dropped: u64,
    pub keepalives: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    AuthCaps,
    CipherSuites,
    SetPriv,
    Keepalive,
    Close,
    /// Close Session for a session we abandoned (see `ClientSession::orphans`).
    CloseOrphan,
    User,
}

#[derive(Debug)]
enum OutMsg {
    /// A handshake message, resent unchanged.
    Raw(Vec<u8>),
    /// An IPMI request; session-less ones go in a v1.5 wrapper, others in the session.
    Ipmi {
        req: IpmiRequest,
        purpose: Purpose,
        sessionless: bool,
    },
}

#[derive(Debug)]
struct Outstanding {
    msg: OutMsg,
    attempts: u32,
    rto: Duration,
    deadline: Instant,
}

enum State {
    /// No session. One is opened when a command is queued.
    Idle,
    AuthCaps,
    CipherSuites {
        index: u8,
        records: Vec<u8>,
    },
    OpenSession {
        candidates: Vec<CipherSuite>,
        offered: Vec<u8>,
        tag: u8,
    },
    Rakp1 {
        suite: CipherSuite,
        bmc_sid: u32,
        rand_m: [u8; 16],
        tag: u8,
    },
    Rakp3 {
        suite: CipherSuite,
        bmc_sid: u32,
        rand_m: [u8; 16],
        rand_c: [u8; 16],
        guid_c: [u8; 16],
        sik: Zeroizing<Vec<u8>>,
        tag: u8,
    },
    SetPriv,
    Active,
    Closing,
    Closed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::AuthCaps => "auth-caps",
            State::CipherSuites { .. } => "cipher-suites",
            State::OpenSession { .. } => "open-session",
            State::Rakp1 { .. } => "rakp1",
            State::Rakp3 { .. } => "rakp3",
            State::SetPriv => "set-privilege",
            State::Active => "active",
            State::Closing => "closing",
            State::Closed => "closed",
        }
    }
    fn is_handshake(&self) -> bool {
        matches!(
            self,
            State::AuthCaps
                | State::CipherSuites { .. }
                | State::OpenSession { .. }
                | State::Rakp1 { .. }
                | State::Rakp3 { .. }
                | State::SetPriv
        )
    }
}

/// Anti-replay window over the BMC's outbound session sequence numbers.
#[derive(Debug, Default, Clone)]
pub struct SeqWindow {
    highest: u32,
    seen: u64,
    started: bool,
}

impl SeqWindow {
    /// How far back a late packet may be and still count.
    pub const WIDTH: u32 = 32;
    /// How far ahead a packet may jump (packets lost on the way).
    pub const MAX_JUMP: u32 = 1024;

    /// Accept `seq` once; refuse zero, replays and numbers outside the window.
    pub fn accept(&mut self, seq: u32) -> bool {
        if seq == 0 {
            return false;
        }
        if !self.started {
            self.started = true;
            self.highest = seq;
            self.seen = 1;
            return true;
        }
        if seq > self.highest {
            let jump = seq - self.highest;
            if jump > Self::MAX_JUMP {
                return false;
            }
            self.seen = if jump >= 64 { 0 } else { self.seen << jump };
            self.seen |= 1;
            self.highest = seq;
            return true;
        }
        let back = self.highest - seq;
        if back >= Self::WIDTH {
            return false;
        }
        let bit = 1u64 << back;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

struct Queued {
    id: u64,
    netfn: u8,
    cmd: u8,
    data: Vec<u8>,
    deadline: Instant,
    /// Whether this command has already forced a session re-open.
    reopened: bool,
}

/// The session state machine. See the module documentation.
pub struct ClientSession {
    cfg: SessionConfig,
    rng: StdRng,
    state: State,
    console_sid: u32,
    bmc_sid: u32,
    keys: Option<SessionKeys>,
    suite_cache: Option<u8>,
    out_seq: u32,
    in_window: SeqWindow,
    rq_seq: u8,
    tag: u8,
    outstanding: Option<Outstanding>,
    queue: VecDeque<Queued>,
    /// The command currently on the wire (front of the queue was popped into here).
    current: Option<Queued>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    last_activity: Instant,
    last_command_sent: Option<Instant>,
    close_requested: bool,
    next_id: u64,
    /// Handshakes restarted since the last success (lost RAKP messages).
    restarts: u32,
    /// Sessions we gave up on that the BMC may still hold: the one left
    /// behind by a re-open after unanswered commands or a lost keepalive
    /// (on a lossy link the BMC usually still has it), or a handshake
    /// abandoned after RAKP 3. Each would take one of the BMC's few session
    /// slots until its idle timeout, so they are closed by id, best effort,
    /// from the next active session while it is idle.
    orphans: Vec<u32>,
    stats: Stats,
}

impl ClientSession {
    pub fn new(cfg: SessionConfig, now: Instant) -> Result<Self, IpmiError> {
        Self::with_rng(cfg, now, StdRng::from_entropy())
    }

    pub fn with_rng(cfg: SessionConfig, now: Instant, rng: StdRng) -> Result<Self, IpmiError> {
        cfg.validate()?;
        Ok(ClientSession {
            cfg,
            rng,
            state: State::Idle,
            console_sid: 0,
            bmc_sid: 0,
            keys: None,
            suite_cache: None,
            out_seq: 0,
            in_window: SeqWindow::default(),
            rq_seq: 0,
            tag: 0,
            outstanding: None,
            queue: VecDeque::new(),
            current: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            last_activity: now,
            last_command_sent: None,
            close_requested: false,
            next_id: 1,
            restarts: 0,
            orphans: Vec::new(),
            stats: Stats::default(),
        })
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The cipher suite in use or last negotiated, if any.
    pub fn negotiated_suite(&self) -> Option<u8> {
        self.suite_cache
    }

    pub fn is_active(&self) -> bool {
        matches!(self.state, State::Active)
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// `close` was called: the session is going away on purpose.
    pub fn is_closing(&self) -> bool {
        self.close_requested
    }

    /// The BMC's id of the session in use, while one is active.
    pub fn bmc_session_id(&self) -> Option<u32> {
        self.is_active().then_some(self.bmc_sid)
    }

    /// The cipher suite of the session in use, while one is active.
    pub fn active_suite(&self) -> Option<CipherSuite> {
        self.keys
            .as_ref()
            .filter(|_| self.is_active())
            .map(|k| k.suite)
    }

    /// Change the idle time after which a keepalive is sent (for instance a
    /// shorter one while SOL is active, so a dead BMC is noticed sooner).
    pub fn set_keepalive(&mut self, keepalive: Option<Duration>) {
        self.cfg.keepalive = keepalive;
    }

    pub fn keepalive(&self) -> Option<Duration> {
        self.cfg.keepalive
    }

    /// Wrap a non-IPMI payload (SOL) into the active session: the next session
    /// sequence number, integrity and confidentiality as for IPMI messages.
    /// The datagram is returned rather than queued, so the caller can send it
    /// to the payload's own UDP port. Payloads are not retransmitted here:
    /// their protocol does that.
    pub fn send_payload(
        &mut self,
        payload_type: PayloadType,
        payload: &[u8],
    ) -> Result<Vec<u8>, IpmiError> {
        if !self.is_active() || self.keys.is_none() {
            return Err(IpmiError::Closed);
        }
        if payload.len() > u16::MAX as usize - 64 {
            return Err(IpmiError::Config(format!(
                "payload of {} bytes does not fit in a packet",
                payload.len()
            )));
        }
        self.out_seq = self.out_seq.wrapping_add(1);
        if self.out_seq == 0 {
            self.out_seq = 1;
        }
        let mut iv = [0u8; 16];
        self.rng.fill_bytes(&mut iv);
        Ok(wire::encode_v20(
            payload_type,
            self.bmc_sid,
            self.out_seq,
            payload,
            self.keys.as_ref(),
            iv,
        ))
    }

    /// Queue an IPMI command; the answer arrives as `Event::Response` with this id.
    pub fn submit(&mut self, now: Instant, netfn: u8, cmd: u8, data: Vec<u8>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if self.close_requested || matches!(self.state, State::Closed) {
            self.events.push_back(Event::Response {
                id,
                result: Err(IpmiError::Closed),
            });
            return id;
        }
        self.queue.push_back(Queued {
            id,
            netfn,
            cmd,
            data,
            deadline: now + self.cfg.command_timeout,
            reopened: false,
        });
        self.drive(now);
        id
    }

    /// Close the session (Close Session is sent when one is open).
    pub fn close(&mut self, now: Instant) {
        if self.close_requested {
            return;
        }
        self.close_requested = true;
        for q in self.queue.drain(..).chain(self.current.take()) {
            self.events.push_back(Event::Response {
                id: q.id,
                result: Err(IpmiError::Closed),
            });
        }
        if matches!(self.state, State::Active) {
            // An in-flight keepalive is abandoned; Close Session goes next.
            self.outstanding = None;
            self.start_close(now);
        } else {
            self.finish_closed();
        }
    }

    fn start_close(&mut self, now: Instant) {
        self.state = State::Closing;
        let data = self.bmc_sid.to_le_bytes().to_vec();
        let req = self.new_request(cmd::NETFN_APP, cmd::CMD_CLOSE_SESSION, data);
        self.send_ipmi(now, req, Purpose::Close, false);
        if let Some(o) = &mut self.outstanding {
            // Do not linger on shutdown.
            o.attempts = self.cfg.max_attempts.saturating_sub(1);
        }
    }

    fn finish_closed(&mut self) {
        self.state = State::Closed;
        self.keys = None;
        self.outstanding = None;
        self.events.push_back(Event::Closed);
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next instant at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        if let Some(o) = &self.outstanding {
            consider(o.deadline);
        }
        if let Some(c) = &self.current {
            consider(c.deadline);
        }
        if let Some(q) = self.queue.front() {
            consider(q.deadline);
            if let (State::Active, Some(last)) = (&self.state, self.last_command_sent) {
                if self.outstanding.is_none() {
                    consider(last + self.cfg.min_interval);
                }
            }
        }
        if let (State::Active, Some(k)) = (&self.state, self.cfg.keepalive) {
            if self.outstanding.is_none() && self.queue.is_empty() {
                consider(self.last_activity + k);
            }
        }
        t
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        // Commands past their deadline fail, whatever the session is doing.
        if self.current.as_ref().is_some_and(|c| now >= c.deadline) {
            if let Some(c) = self.current.take() {
                self.fail_command(c, IpmiError::Timeout(self.cfg.command_timeout));
            }
            if matches!(self.state, State::Active) {
                self.outstanding = None;
            }
        }
        while self.queue.front().is_some_and(|q| now >= q.deadline) {
            if let Some(q) = self.queue.pop_front() {
                self.fail_command(q, IpmiError::Timeout(self.cfg.command_timeout));
            }
        }
        if self.state.is_handshake() && self.queue.is_empty() && self.current.is_none() {
            // Nobody waits for this session any more. After RAKP 3 the BMC
            // may have made it a session.
            if matches!(self.state, State::Rakp3 { .. } | State::SetPriv) {
                self.orphan(self.bmc_sid);
            }
            self.outstanding = None;
            self.state = State::Idle;
        }

        if let Some(o) = &self.outstanding {
            if now >= o.deadline {
                self.on_retransmit_timer(now);
            }
        }
        if matches!(self.state, State::Active)
            && self.outstanding.is_none()
            && self.queue.is_empty()
        {
            if let Some(k) = self.cfg.keepalive {
                if now >= self.last_activity + k {
                    self.stats.keepalives += 1;
                    let req = self.new_request(cmd::NETFN_APP, cmd::CMD_GET_DEVICE_ID, vec![]);
                    self.send_ipmi(now, req, Purpose::Keepalive, false);
                }
            }
        }
        self.drive(now);
    }

    fn on_retransmit_timer(&mut self, now: Instant) {
        let Some(mut o) = self.outstanding.take() else {
            return;
        };
        let purpose = match &o.msg {
            OutMsg::Ipmi { purpose, .. } => Some(*purpose),
            OutMsg::Raw(_) => None,
        };
        let exhausted = o.attempts >= self.cfg.max_attempts;
        // What a message that went unanswered `max_attempts` times means depends
        // on what it was. Handshake steps simply keep trying: the deadline of the
        // commands waiting for the session bounds them (see `handle_timeout`).
        let give_up = match (&self.state, purpose) {
            (State::CipherSuites { .. }, _) if exhausted => {
                // Do not hang on discovery: try our preferred suites directly.
                tracing::debug!("cipher suite discovery got no answer; trying suites in order");
                self.begin_open_session(now, Vec::new());
                true
            }
            (State::Closing, _) if exhausted => {
                self.finish_closed();
                true
            }
            (State::Active, Some(Purpose::CloseOrphan)) if exhausted => {
                // Best effort: the BMC times it out in the end.
                tracing::debug!("no answer to Close Session for an abandoned session");
                true
            }
            (State::Active, Some(Purpose::Keepalive)) if exhausted => {
                tracing::debug!("keepalive lost; session presumed gone");
                self.drop_session();
                true
            }
            (State::Active, Some(Purpose::User))
                if exhausted && self.current.as_ref().is_some_and(|c| !c.reopened) =>
            {
                // Maybe the BMC forgot our session: re-open once, then resend.
                if let Some(mut c) = self.current.take() {
                    c.reopened = true;
                    tracing::debug!("command unanswered in session; re-opening");
                    self.queue.push_front(c);
                }
                self.drop_session();
                true
            }
            _ => false,
        };
        if give_up {
            return;
        }
        o.attempts += 1;
        o.rto = (o.rto * 2).min(self.cfg.retransmit_max);
        o.deadline = now + o.rto;
        self.stats.retransmits += 1;
        let bytes = match &o.msg {
            OutMsg::Raw(b) => b.clone(),
            OutMsg::Ipmi {
                req, sessionless, ..
            } => self.wrap_ipmi(req, *sessionless),
        };
        tracing::debug!(
            state = self.state.name(),
            attempt = o.attempts,
            "retransmit"
        );
        self.transmit.push_back(bytes);
        self.outstanding = Some(o);
    }

    /// Give up the active session (the BMC may still hold it: see `orphans`).
    fn drop_session(&mut self) {
        if matches!(self.state, State::Active) {
            self.orphan(self.bmc_sid);
        }
        self.state = State::Idle;
        self.keys = None;
        self.outstanding = None;
    }

    /// Remember a session to close later (a few at most; the oldest are
    /// left to the BMC's idle timeout).
    fn orphan(&mut self, bmc_sid: u32) {
        const MAX_ORPHANS: usize = 8;
        if bmc_sid == 0 || self.orphans.contains(&bmc_sid) {
            return;
        }
        if self.orphans.len() >= MAX_ORPHANS {
            self.orphans.remove(0);
        }
        self.orphans.push(bmc_sid);
    }

    /// A command is waiting: a Close Session for an abandoned session gives
    /// way to it (the session goes back on the list; a late answer to it is
    /// dropped as unmatched).
    fn yield_orphan_close(&mut self) {
        let sid = match &self.outstanding {
            Some(Outstanding {
                msg:
                    OutMsg::Ipmi {
                        req,
                        purpose: Purpose::CloseOrphan,
                        ..
                    },
                ..
            }) => req
                .data
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes),
            _ => return,
        };
        self.outstanding = None;
        if let Some(sid) = sid {
            self.orphan(sid);
        }
    }

    /// The next abandoned session to close (never the one in use).
    fn next_orphan(&mut self) -> Option<u32> {
        let current = self.bmc_sid;
        self.orphans.retain(|s| *s != current);
        self.orphans.pop()
    }

    fn fail_command(&mut self, q: Queued, e: IpmiError) {
        self.events.push_back(Event::Response {
            id: q.id,
            result: Err(e),
        });
    }

    fn fail_all(&mut self, e: IpmiError) {
        self.outstanding = None;
        self.keys = None;
        self.state = State::Idle;
        if let Some(c) = self.current.take() {
            self.fail_command(c, e.clone());
        }
        while let Some(q) = self.queue.pop_front() {
            self.fail_command(q, e.clone());
        }
    }

    /// Move forward: start a handshake or send the next command when possible.
    fn drive(&mut self, now: Instant) {
        if self.close_requested {
            return;
        }
        if !self.queue.is_empty() {
            self.yield_orphan_close();
        }
        match self.state {
            State::Idle if !self.queue.is_empty() => self.begin_handshake(now),
            State::Active if self.outstanding.is_none() && self.current.is_none() => {
                if let Some(last) = self.last_command_sent {
                    if now < last + self.cfg.min_interval {
                        return;
                    }
                }
                if let Some(q) = self.queue.pop_front() {
                    let req = self.new_request(q.netfn, q.cmd, q.data.clone());
                    self.current = Some(q);
                    self.last_command_sent = Some(now);
                    self.send_ipmi(now, req, Purpose::User, false);
                } else if let Some(sid) = self.next_orphan() {
                    // Idle: close a session we abandoned, so it does not hold
                    // one of the BMC's slots until its idle timeout.
                    let req = self.new_request(
                        cmd::NETFN_APP,
                        cmd::CMD_CLOSE_SESSION,
                        sid.to_le_bytes().to_vec(),
                    );
                    self.last_command_sent = Some(now);
                    self.send_ipmi(now, req, Purpose::CloseOrphan, false);
                }
            }
            _ => {}
        }
    }

    fn begin_handshake(&mut self, now: Instant) {
        self.keys = None;
        self.in_window = SeqWindow::default();
        self.out_seq = 0;
        self.state = State::AuthCaps;
        let req = self.new_request(
            cmd::NETFN_APP,
            cmd::CMD_GET_CHANNEL_AUTH_CAPS,
            AuthCaps::request(self.cfg.privilege),
        );
        self.send_ipmi(now, req, Purpose::AuthCaps, true);
    }

    fn begin_open_session(&mut self, now: Instant, offered: Vec<u8>) {
        let accepted = self.cfg.accepted_suites();
        let candidates: Vec<CipherSuite> = if offered.is_empty() {
            accepted
                .iter()
                .filter_map(|id| CipherSuite::by_id(*id))
                .collect()
        } else {
            accepted
                .iter()
                .filter(|id| offered.contains(id))
                .filter_map(|id| CipherSuite::by_id(*id))
                .collect()
        };
        if candidates.is_empty() {
            self.fail_all(IpmiError::NoCommonCipherSuite { offered, accepted });
            return;
        }
        self.send_open_session(now, candidates, offered);
    }

    fn send_open_session(&mut self, now: Instant, candidates: Vec<CipherSuite>, offered: Vec<u8>) {
        let suite = candidates[0];
        self.console_sid = loop {
            let v = self.rng.next_u32();
            if v != 0 {
                break v;
            }
        };
        self.tag = self.tag.wrapping_add(1);
        let rq = OpenSessionRequest {
            tag: self.tag,
            max_privilege: if self.cfg.opensesspriv {
                self.cfg.privilege as u8
            } else {
                0
            },
            console_session_id: self.console_sid,
            auth: suite.auth as u8,
            integrity: suite.integrity as u8,
            conf: suite.conf as u8,
        };
        let bytes = wire::encode_v20(
            PayloadType::OpenSessionRequest,
            0,
            0,
            &rq.encode(),
            None,
            [0; 16],
        );
        self.state = State::OpenSession {
            candidates,
            offered,
            tag: self.tag,
        };
        self.send_raw(now, bytes);
    }

    /// The BMC no longer knows the half-open session (our retransmission crossed
    /// its answer, or it timed the handshake out): start again from Open Session,
    /// a few times at most.
    fn restart_handshake(&mut self, now: Instant, stage: &'static str, code: u8) {
        if self.restarts < 3 {
            self.restarts += 1;
            tracing::debug!(stage, code, "handshake lost its session; restarting");
            let suite = self.suite_cache.or(self.cfg.cipher_suite);
            match suite.and_then(CipherSuite::by_id) {
                Some(s) => self.send_open_session(now, vec![s], vec![]),
                None => self.begin_open_session(now, Vec::new()),
            }
        } else {
            self.fail_all(IpmiError::SessionRefused {
                stage,
                code,
                name: rakp::status_name(code),
            });
        }
    }

    fn role_byte(&self) -> u8 {
        self.cfg.privilege as u8 | rakp::NAME_ONLY_LOOKUP
    }

    fn new_request(&mut self, netfn: u8, cmd: u8, data: Vec<u8>) -> IpmiRequest {
        self.rq_seq = if self.rq_seq >= 63 {
            1
        } else {
            self.rq_seq + 1
        };
        IpmiRequest {
            netfn,
            cmd,
            rq_seq: self.rq_seq,
            data,
        }
    }

    fn wrap_ipmi(&mut self, req: &IpmiRequest, sessionless: bool) -> Vec<u8> {
        let body = req.encode();
        if sessionless {
            return wire::encode_v15(0, 0, &body);
        }
        self.out_seq = self.out_seq.wrapping_add(1);
        if self.out_seq == 0 {
            self.out_seq = 1;
        }
        let mut iv = [0u8; 16];
        self.rng.fill_bytes(&mut iv);
        wire::encode_v20(
            PayloadType::Ipmi,
            self.bmc_sid,
            self.out_seq,
            &body,
            self.keys.as_ref(),
            iv,
        )
    }

    fn send_ipmi(&mut self, now: Instant, req: IpmiRequest, purpose: Purpose, sessionless: bool) {
        let bytes = self.wrap_ipmi(&req, sessionless);
        self.transmit.push_back(bytes);
        self.outstanding = Some(Outstanding {
            msg: OutMsg::Ipmi {
                req,
                purpose,
                sessionless,
            },
            attempts: 1,
            rto: self.cfg.retransmit_initial,
            deadline: now + self.cfg.retransmit_initial,
        });
    }

    fn send_raw(&mut self, now: Instant, bytes: Vec<u8>) {
        self.transmit.push_back(bytes.clone());
        self.outstanding = Some(Outstanding {
            msg: OutMsg::Raw(bytes),
            attempts: 1,
            rto: self.cfg.retransmit_initial,
            deadline: now + self.cfg.retransmit_initial,
        });
    }

    fn drop_packet(&mut self, why: &str) {
        self.stats.dropped += 1;
        tracing::debug!(state = self.state.name(), "dropped inbound packet: {why}");
    }

    /// Feed one received datagram.
    pub fn handle_input(&mut self, now: Instant, buf: &[u8]) {
        match wire::decode(buf) {
            Err(e) => self.drop_packet(&e.to_string()),
            Ok(Packet::Asf { .. }) => self.drop_packet("ASF packet"),
            Ok(Packet::V15 {
                session_id,
                payload,
                ..
            }) => {
                if session_id != 0 {
                    self.drop_packet("v1.5 packet inside a session");
                    return;
                }
                match IpmiResponse::decode(payload) {
                    Ok(rs) => self.on_sessionless_response(now, rs),
                    Err(e) => self.drop_packet(&e.to_string()),
                }
            }
            Ok(Packet::V20(p)) => self.on_v20(now, p),
        }
        self.drive(now);
    }

    fn on_v20(&mut self, now: Instant, p: V20Packet<'_>) {
        match p.payload_type {
            PayloadType::OpenSessionResponse => self.on_open_session_response(now, p.payload),
            PayloadType::Rakp2 => self.on_rakp2(now, p.payload),
            PayloadType::Rakp4 => self.on_rakp4(now, p.payload),
            PayloadType::Ipmi if p.session_id == 0 && !p.authenticated => {
                match IpmiResponse::decode(p.payload) {
                    Ok(rs) => self.on_sessionless_response(now, rs),
                    Err(e) => self.drop_packet(&e.to_string()),
                }
            }
            PayloadType::Ipmi | PayloadType::Sol => {
                if p.session_id != self.console_sid || self.keys.is_none() {
                    self.drop_packet("stray session packet");
                    return;
                }
                let opened = match &self.keys {
                    Some(k) => p.open(k),
                    None => return,
                };
                let plain = match opened {
                    Ok(v) => v,
                    Err(e) => return self.drop_packet(&e.to_string()),
                };
                if !self.in_window.accept(p.session_seq) {
                    return self.drop_packet("sequence number outside window or replayed");
                }
                if p.payload_type != PayloadType::Ipmi {
                    if !self.is_active() {
                        return self.drop_packet("payload outside an active session");
                    }
                    // An authenticated, in-window payload proves the session
                    // alive as well as a response does: no keepalive needed
                    // while a console streams (each one is a chance to lose
                    // the session on a lossy link).
                    self.last_activity = now;
                    self.events.push_back(Event::Payload {
                        payload_type: p.payload_type,
                        data: plain,
                    });
                    return;
                }
                match IpmiResponse::decode(&plain) {
                    Ok(rs) => self.on_session_response(now, rs),
                    Err(e) => self.drop_packet(&e.to_string()),
                }
            }
            _ => self.drop_packet("unexpected payload type"),
        }
    }

    /// Match an IPMI response against the outstanding request.
    fn take_matching(&mut self, rs: &IpmiResponse, sessionless: bool) -> Option<Purpose> {
        let o = self.outstanding.as_ref()?;
        match &o.msg {
            OutMsg::Ipmi {
                req,
                purpose,
                sessionless: s,
            } if *s == sessionless
                && req.rq_seq == rs.rq_seq
                && req.cmd == rs.cmd
                && req.netfn | 1 == rs.netfn =>
            {
                let p = *purpose;
                self.outstanding = None;
                Some(p)
            }
            _ => None,
        }
    }

    fn on_sessionless_response(&mut self, now: Instant, rs: IpmiResponse) {
        let Some(purpose) = self.take_matching(&rs, true) else {
            return self.drop_packet("unmatched session-less response");
        };
        self.last_activity = now;
        match purpose {
            Purpose::AuthCaps => {
                if rs.completion != 0 {
                    return self.fail_all(IpmiError::Completion {
                        command: "Get Channel Authentication Capabilities",
                        code: rs.completion,
                        name: cmd::completion_name(rs.completion),
                    });
                }
                match AuthCaps::parse(&rs.data) {
                    Some(c) if c.ipmi20 => {}
                    Some(_) => {
                        return self.fail_all(IpmiError::Protocol(
                            "BMC does not offer IPMI v2.0 (RMCP+) on this channel".into(),
                        ))
                    }
                    None => {
                        return self.fail_all(IpmiError::Protocol(
                            "short Get Channel Authentication Capabilities response".into(),
                        ))
                    }
                }
                let known = self.cfg.cipher_suite.or(self.suite_cache);
                match known {
                    Some(id) => match CipherSuite::by_id(id) {
                        Some(s) => self.send_open_session(now, vec![s], vec![]),
                        None => self.fail_all(IpmiError::Config(format!("unknown suite {id}"))),
                    },
                    None => {
                        self.state = State::CipherSuites {
                            index: 0,
                            records: Vec::new(),
                        };
                        let req = self.new_request(
                            cmd::NETFN_APP,
                            cmd::CMD_GET_CHANNEL_CIPHER_SUITES,
                            cmd::cipher_suites_request(0),
                        );
                        self.send_ipmi(now, req, Purpose::CipherSuites, true);
                        if let Some(o) = &mut self.outstanding {
                            // Two tries at most: discovery must never hang.
                            o.attempts = self.cfg.max_attempts.saturating_sub(1).max(1);
                        }
                    }
                }
            }
            Purpose::CipherSuites => {
                let State::CipherSuites { index, records } = &mut self.state else {
                    return;
                };
                if rs.completion != 0 || rs.data.is_empty() {
                    let offered = cmd::parse_cipher_suite_records(records);
                    return self.begin_open_session(now, offered);
                }
                records.extend_from_slice(&rs.data[1..]);
                let more = rs.data.len() - 1 == 16 && *index < 63;
                *index += 1;
                let next = *index;
                if more {
                    let req = self.new_request(
                        cmd::NETFN_APP,
                        cmd::CMD_GET_CHANNEL_CIPHER_SUITES,
                        cmd::cipher_suites_request(next),
                    );
                    self.send_ipmi(now, req, Purpose::CipherSuites, true);
                } else {
                    let offered = cmd::parse_cipher_suite_records(records);
                    tracing::debug!(?offered, "BMC cipher suites");
                    self.begin_open_session(now, offered);
                }
            }
            _ => self.drop_packet("session-less response for a session command"),
        }
    }

    fn on_open_session_response(&mut self, now: Instant, payload: &[u8]) {
        let State::OpenSession {
            candidates,
            offered,
            tag,
        } = &self.state
        else {
            return self.drop_packet("open session response out of state");
        };
        let rs = match OpenSessionResponse::decode(payload) {
            Ok(r) => r,
            Err(e) => return self.drop_packet(&e.to_string()),
        };
        if rs.tag != *tag || (rs.status == 0 && rs.console_session_id != self.console_sid) {
            return self.drop_packet("open session response for another request");
        }
        self.outstanding = None;
        let suite = candidates[0];
        if rs.status != 0 {
            let algorithm_refused = matches!(rs.status, 0x04 | 0x05 | 0x06 | 0x07 | 0x10 | 0x11);
            if algorithm_refused && candidates.len() > 1 {
                let rest = candidates[1..].to_vec();
                let offered = offered.clone();
                tracing::debug!(suite = suite.id, "BMC refused suite; trying the next");
                return self.send_open_session(now, rest, offered);
            }
            if algorithm_refused {
                let offered = offered.clone();
                return self.fail_all(IpmiError::NoCommonCipherSuite {
                    offered,
                    accepted: self.cfg.accepted_suites(),
                });
            }
            return self.fail_all(IpmiError::SessionRefused {
                stage: "Open Session",
                code: rs.status,
                name: rakp::status_name(rs.status),
            });
        }
        if (rs.auth, rs.integrity, rs.conf)
            != (suite.auth as u8, suite.integrity as u8, suite.conf as u8)
        {
            return self.fail_all(IpmiError::Protocol(format!(
                "BMC answered Open Session with other algorithms ({}, {}, {}) than suite {}",
                rs.auth, rs.integrity, rs.conf, suite.id
            )));
        }
        // Zero means "not reported" (ipmi_sim echoes the 0 we may have sent).
        if rs.max_privilege != 0 && rs.max_privilege < self.cfg.privilege as u8 {
            return self.fail_all(IpmiError::AuthFailed(format!(
                "BMC grants at most privilege level {} to this session, {:?} was asked for",
                rs.max_privilege, self.cfg.privilege
            )));
        }
        self.bmc_sid = rs.bmc_session_id;
        let mut rand_m = [0u8; 16];
        self.rng.fill_bytes(&mut rand_m);
        self.tag = self.tag.wrapping_add(1);
        let r1 = Rakp1 {
            tag: self.tag,
            bmc_session_id: self.bmc_sid,
            console_random: rand_m,
            role: self.role_byte(),
            username: self.cfg.username.clone(),
        };
        let bytes = wire::encode_v20(PayloadType::Rakp1, 0, 0, &r1.encode(), None, [0; 16]);
        self.state = State::Rakp1 {
            suite,
            bmc_sid: self.bmc_sid,
            rand_m,
            tag: self.tag,
        };
        self.send_raw(now, bytes);
    }

    fn on_rakp2(&mut self, now: Instant, payload: &[u8]) {
        let State::Rakp1 {
            suite,
            bmc_sid,
            rand_m,
            tag,
        } = &self.state
        else {
            return self.drop_packet("RAKP2 out of state");
        };
        let (suite, bmc_sid, rand_m, tag) = (*suite, *bmc_sid, *rand_m, *tag);
        let r2 = match Rakp2::decode(payload) {
            Ok(r) => r,
            Err(e) => return self.drop_packet(&e.to_string()),
        };
        if r2.tag != tag {
            return self.drop_packet("RAKP2 with another tag");
        }
        self.outstanding = None;
        if matches!(r2.status, 0x02 | 0x08) {
            return self.restart_handshake(now, "RAKP 2", r2.status);
        }
        if r2.status != 0 {
            let e = match r2.status {
                0x0d => IpmiError::AuthFailed("BMC does not know this user name".into()),
                0x09 | 0x0a => IpmiError::AuthFailed(format!(
                    "privilege level {:?} not allowed for this user",
                    self.cfg.privilege
                )),
                code => IpmiError::SessionRefused {
                    stage: "RAKP 2",
                    code,
                    name: rakp::status_name(code),
                },
            };
            return self.fail_all(e);
        }
        if r2.console_session_id != self.console_sid {
            return self.fail_all(IpmiError::Protocol("RAKP2 names another session".into()));
        }
        let kuid = Zeroizing::new(key20(&self.cfg.password));
        let params = RakpParams {
            sid_m: self.console_sid,
            sid_c: bmc_sid,
            rand_m: &rand_m,
            rand_c: &r2.bmc_random,
            guid_c: &r2.bmc_guid,
            role: self.role_byte(),
            username: &self.cfg.username,
        };
        let expect = params.rakp2_code(suite.auth, &kuid);
        if !super::crypto::ct_eq(&expect, &r2.auth_code) {
            return self.fail_all(IpmiError::AuthFailed(
                "RAKP2 check failed: wrong password (or user name)".into(),
            ));
        }
        let kg = match &self.cfg.kg {
            Some(k) => Zeroizing::new(key20(k)),
            None => kuid.clone(),
        };
        let sik = Zeroizing::new(params.sik(suite.auth, &kg));
        let code = params.rakp3_code(suite.auth, &kuid);
        self.tag = self.tag.wrapping_add(1);
        let r3 = Rakp3 {
            tag: self.tag,
            status: 0,
            bmc_session_id: bmc_sid,
            auth_code: code,
        };
        let bytes = wire::encode_v20(PayloadType::Rakp3, 0, 0, &r3.encode(), None, [0; 16]);
        self.state = State::Rakp3 {
            suite,
            bmc_sid,
            rand_m,
            rand_c: r2.bmc_random,
            guid_c: r2.bmc_guid,
            sik,
            tag: self.tag,
        };
        self.send_raw(now, bytes);
    }

    fn on_rakp4(&mut self, now: Instant, payload: &[u8]) {
        let State::Rakp3 {
            suite,
            bmc_sid,
            rand_m,
            rand_c,
            guid_c,
            sik,
            tag,
        } = &self.state
        else {
            return self.drop_packet("RAKP4 out of state");
        };
        let r4 = match Rakp4::decode(payload) {
            Ok(r) => r,
            Err(e) => return self.drop_packet(&e.to_string()),
        };
        if r4.tag != *tag {
            return self.drop_packet("RAKP4 with another tag");
        }
        let (suite, bmc_sid) = (*suite, *bmc_sid);
        if matches!(r4.status, 0x02 | 0x08) {
            self.outstanding = None;
            return self.restart_handshake(now, "RAKP 4", r4.status);
        }
        if r4.status != 0 {
            self.outstanding = None;
            let e = match r4.status {
                0x0f => {
                    IpmiError::AuthFailed("BMC refused our RAKP3 (wrong password or K_G)".into())
                }
                code => IpmiError::SessionRefused {
                    stage: "RAKP 4",
                    code,
                    name: rakp::status_name(code),
                },
            };
            return self.fail_all(e);
        }
        let params = RakpParams {
            sid_m: self.console_sid,
            sid_c: bmc_sid,
            rand_m,
            rand_c,
            guid_c,
            role: self.role_byte(),
            username: &self.cfg.username,
        };
        let expect = params.rakp4_icv(suite.auth, sik);
        if !super::crypto::ct_eq(&expect, &r4.icv) {
            self.outstanding = None;
            return self.fail_all(IpmiError::AuthFailed(
                "RAKP4 check failed: wrong K_G (BMC key)".into(),
            ));
        }
        self.outstanding = None;
        let keys = SessionKeys::derive(suite, sik);
        self.keys = Some(keys);
        self.suite_cache = Some(suite.id);
        self.stats.sessions_opened += 1;
        self.state = State::SetPriv;
        let req = self.new_request(
            cmd::NETFN_APP,
            cmd::CMD_SET_SESSION_PRIV,
            vec![self.cfg.privilege as u8],
        );
        self.send_ipmi(now, req, Purpose::SetPriv, false);
    }

    fn on_session_response(&mut self, now: Instant, rs: IpmiResponse) {
        let Some(purpose) = self.take_matching(&rs, false) else {
            return self.drop_packet("unmatched or late response");
        };
        self.last_activity = now;
        match purpose {
            Purpose::SetPriv => {
                if rs.completion != 0 {
                    return self.fail_all(IpmiError::Completion {
                        command: "Set Session Privilege Level",
                        code: rs.completion,
                        name: cmd::completion_name(rs.completion),
                    });
                }
                self.state = State::Active;
                self.restarts = 0;
                self.events.push_back(Event::Established {
                    suite: self.suite_cache.unwrap_or(0),
                    bmc_session_id: self.bmc_sid,
                });
            }
            Purpose::Keepalive => {}
            Purpose::CloseOrphan => {
                // 0x87 (no such session): the BMC had dropped it already.
                tracing::debug!(
                    completion = rs.completion,
                    "Close Session for an abandoned session answered"
                );
            }
            Purpose::Close => self.finish_closed(),
            Purpose::User => {
                if let Some(c) = self.current.take() {
                    self.events.push_back(Event::Response {
                        id: c.id,
                        result: Ok(rs),
                    });
                }
            }
            Purpose::AuthCaps | Purpose::CipherSuites => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_window_rejects_replay_and_old() {
        let mut w = SeqWindow::default();
        assert!(!w.accept(0));
        assert!(w.accept(10));
        assert!(!w.accept(10));
        assert!(w.accept(12));
        assert!(w.accept(11));
        assert!(!w.accept(11));
        assert!(w.accept(50));
        assert!(!w.accept(12), "outside the window");
        assert!(w.accept(40));
        assert!(!w.accept(50 + SeqWindow::MAX_JUMP + 1));
    }

    #[test]
    fn config_limits() {
        let mut c = SessionConfig::new("admin", b"x");
        assert!(c.validate().is_ok());
        c.username = vec![b'a'; 17];
        assert!(matches!(c.validate(), Err(IpmiError::Config(_))));
        c.username = b"admin".to_vec();
        c.password = Zeroizing::new(vec![b'p'; 21]);
        assert!(matches!(c.validate(), Err(IpmiError::Config(_))));
        c.password = Zeroizing::new(vec![b'p'; 20]);
        assert!(c.validate().is_ok());
        c.cipher_suite = Some(0);
        assert!(matches!(c.validate(), Err(IpmiError::Config(_))));
        c.allow_suite0 = true;
        assert!(c.validate().is_ok());
        c.cipher_suite = Some(2);
        assert!(matches!(c.validate(), Err(IpmiError::Config(_))));
    }

    #[test]
    fn debug_output_masks_secrets() {
        let mut c = SessionConfig::new("admin", b"hunter2-secret");
        c.kg = Some(Zeroizing::new(b"kg-secret".to_vec()));
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && !s.contains("kg-secret"));
        assert!(s.contains("******"));
    }

    #[test]
    fn unreachable_bmc_times_out_within_bound() {
        let mut cfg = SessionConfig::new("admin", b"pw");
        cfg.command_timeout = Duration::from_secs(3);
        let t0 = Instant::now();
        let mut s = ClientSession::with_rng(cfg, t0, StdRng::seed_from_u64(1)).unwrap();
        let id = s.submit(t0, 0, 1, vec![]);
        let mut now = t0;
        let mut sent = 0;
        loop {
            while s.poll_transmit().is_some() {
                sent += 1;
            }
            if let Some(Event::Response { id: rid, result }) = s.poll_event() {
                assert_eq!(rid, id);
                assert!(matches!(result, Err(IpmiError::Timeout(_))));
                break;
            }
            now = s.poll_timeout().expect("a timer while waiting");
            assert!(now <= t0 + Duration::from_secs(3));
            s.handle_timeout(now);
        }
        assert!(sent >= 2, "retransmitted at least once");
        assert!(now - t0 <= Duration::from_secs(3));
    }

    #[test]
    fn garbage_is_dropped_not_fatal() {
        let t0 = Instant::now();
        let mut s =
            ClientSession::with_rng(SessionConfig::new("a", b"b"), t0, StdRng::seed_from_u64(2))
                .unwrap();
        s.submit(t0, 0, 1, vec![]);
        for junk in [
            &b""[..],
            b"\x06",
            b"\x06\x00\xff\x07\x06\x00",
            &[0xffu8; 64],
        ] {
            s.handle_input(t0, junk);
        }
        assert!(s.stats().dropped >= 4);
        assert!(s.poll_event().is_none());
    }
}
