//! The simulated BMC as a sans-IO state machine: RMCP+ server side (suites 3 and
//! 17), a session table with a limit and idle expiry, the machine behind it
//! (power with transition delays, boot flags, NMI counter) and its serial
//! port, reachable over Serial-over-LAN (one SOL instance, the BMC side of
//! [`SolEndpoint`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{rngs::StdRng, RngCore, SeedableRng};
use zeroize::Zeroizing;

use crate::ipmi::cmd::{self, AuthCaps, BootFlags, ChassisControl, Privilege};
use crate::ipmi::cmd::{PayloadActivation, PayloadActivationStatus};
use crate::ipmi::crypto::{key20, CipherSuite, RakpParams, SessionKeys};
use crate::ipmi::rakp::{OpenSessionRequest, OpenSessionResponse, Rakp1, Rakp2, Rakp3, Rakp4};
use crate::ipmi::session::SeqWindow;
use crate::ipmi::sol::{Role, SolConfig, SolEndpoint, SolEvent, SolStats};
use crate::ipmi::wire::{self, IpmiRequest, IpmiResponse, Packet, PayloadType, V20Packet};

use super::netboot::{Mac, NetbootConfig, NetbootStats};

/// Serial-over-LAN settings of a simulated BMC.
#[derive(Debug, Clone)]
pub struct SolSimConfig {
    /// Whether the SOL payload is offered (Activate Payload answers 0x81 otherwise).
    pub enabled: bool,
    /// Payload sizes announced in Activate Payload: what the BMC takes in one
    /// packet, and what it sends (both including the 4-byte SOL header).
    pub inbound_size: u16,
    pub outbound_size: u16,
    /// Resend interval and resends of an unACKed SOL packet; after the last
    /// one its characters are dropped, as ipmi_sim does.
    pub retransmit: Duration,
    pub retries: u32,
    /// The host echoes what the console types (a shell at a prompt would).
    pub echo: bool,
}

impl Default for SolSimConfig {
    fn default() -> Self {
        SolSimConfig {
            enabled: true,
            inbound_size: 204,
            outbound_size: 204,
            retransmit: Duration::from_millis(500),
            retries: 6,
            echo: false,
        }
    }
}

/// The host end of the simulated serial port.
#[derive(Debug, Default, Clone)]
pub struct HostSerial {
    /// What the console typed, not yet taken by `host_read`.
    pub input: Vec<u8>,
    /// Echo the console's keystrokes back (see [`SolSimConfig::echo`]).
    pub echo: bool,
    /// Breaks the console generated.
    pub breaks: u64,
    /// Host output written while no console had SOL active (lost, as on a
    /// real serial port nobody listens to).
    pub unheard: u64,
    /// Host output dropped after the console failed to ACK it.
    pub discarded: u64,
}

/// The active SOL payload instance.
struct SolActive {
    sid: u32,
    ep: SolEndpoint,
}

/// Static configuration of one simulated BMC.
#[derive(Clone)]
pub struct BmcConfig {
    pub username: Vec<u8>,
    pub password: Zeroizing<Vec<u8>>,
    pub kg: Option<Zeroizing<Vec<u8>>>,
    pub guid: [u8; 16],
    pub suites: Vec<CipherSuite>,
    pub max_sessions: usize,
    pub session_timeout: Duration,
    /// Time a power transition takes to land.
    pub power_delay: Duration,
    pub manufacturer_id: u32,
    pub product_id: u16,
    /// Whether the NMI (diagnostic interrupt) is offered.
    pub nmi: bool,
    /// The UDP port named in Activate Payload (the BMC's own; the fleet sets it).
    pub port: u16,
    pub sol: SolSimConfig,
    /// The machine's PXE NIC. In a [`FleetConfig`](super::FleetConfig) this
    /// is the base: BMC i gets it plus i (`None`:
    /// [`DEFAULT_MAC_BASE`](super::netboot::DEFAULT_MAC_BASE)).
    pub mac: Option<Mac>,
    /// What the machine does when it boots from the network.
    pub netboot: NetbootConfig,
}

impl BmcConfig {
    pub fn new(username: &str, password: &[u8]) -> Self {
        BmcConfig {
            username: username.as_bytes().to_vec(),
            password: Zeroizing::new(password.to_vec()),
            kg: None,
            guid: [0; 16],
            suites: vec![CipherSuite::SUITE_3, CipherSuite::SUITE_17],
            max_sessions: 8,
            session_timeout: Duration::from_secs(60),
            power_delay: Duration::ZERO,
            manufacturer_id: 0,
            product_id: 0x5352,
            nmi: true,
            port: 623,
            sol: SolSimConfig::default(),
            mac: None,
            netboot: NetbootConfig::default(),
        }
    }
}

/// Counters a test or the CLI can read.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BmcStats {
    pub sessions_opened: u64,
    /// Established sessions.
    pub sessions_active: usize,
    /// Sessions between Open Session and RAKP 3.
    pub handshakes_pending: usize,
    /// The most sessions (established and pending handshakes, what
    /// `max_sessions` bounds) this BMC ever held at once.
    pub sessions_peak: usize,
    pub sessions_refused: u64,
    pub auth_failures: u64,
    pub commands: u64,
    pub dropped: u64,
    pub nmi_count: u64,
    pub power_on: bool,
    pub resets: u64,
    pub boots: u64,
    /// SOL is active in some session.
    pub sol_active: bool,
    /// The machine's PXE NIC (`aa:bb:cc:dd:ee:ff`).
    pub mac: Option<String>,
    /// Network boots (filled in by [`SimBmc::stats`](super::SimBmc::stats);
    /// the sans-IO core leaves it empty).
    pub netboot: NetbootStats,
    /// Garbage datagrams sent in place of answers (fault injection, filled
    /// in by [`SimBmc::stats`](super::SimBmc::stats)).
    pub garbage_sent: u64,
}

/// The machine behind the BMC.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub on: bool,
    /// A transition that lands at the given instant.
    pending: Option<(bool, Instant)>,
    /// Boot flags parameter 5, data bytes 1..=5.
    pub boot_flags: [u8; 5],
    boot_flags_set_at: Option<Instant>,
    /// Parameter 3: boot flag valid bit clearing.
    pub boot_param3: u8,
    pub nmi_count: u64,
    pub resets: u64,
    /// Soft shutdown (ACPI) requests received.
    pub soft_offs: u64,
    /// The host OS ignores ACPI soft shutdown (hung, or no ACPI daemon).
    pub ignore_soft_off: bool,
    /// Boots observed (power-up, cycle, reset), with the boot flags that were in effect.
    pub boots: Vec<BootFlags>,
}

impl Machine {
    /// Apply transitions that are due; report the current state.
    pub fn tick(&mut self, now: Instant) {
        if let Some((target, at)) = self.pending {
            if now >= at {
                self.pending = None;
                if target && !self.on {
                    self.boot();
                }
                self.on = target;
            }
        }
        // Without the "don't clear" bit, the BMC drops the flags after 60 s.
        if let Some(set) = self.boot_flags_set_at {
            if self.boot_param3 & 0x08 == 0 && now.duration_since(set) > Duration::from_secs(60) {
                self.boot_flags[0] &= !0x80;
                self.boot_flags_set_at = None;
            }
        }
    }

    /// The host firmware consumes the boot flags: a one-time override is cleared.
    fn boot(&mut self) {
        if let Some(f) = BootFlags::parse(&self.boot_flags) {
            self.boots.push(f);
        }
        if self.boot_flags[0] & 0x40 == 0 {
            self.boot_flags[0] &= !0x80;
        }
    }

    fn schedule(&mut self, target: bool, now: Instant, delay: Duration) {
        if delay.is_zero() {
            self.pending = Some((target, now));
            self.tick(now);
        } else {
            self.pending = Some((target, now + delay));
        }
    }
}

struct Handshake {
    console_sid: u32,
    suite: CipherSuite,
    max_privilege: u8,
    rakp: Option<RakpState>,
    last_seen: Instant,
}

struct RakpState {
    rand_m: [u8; 16],
    rand_c: [u8; 16],
    role: u8,
    username: Vec<u8>,
}

struct Active {
    console_sid: u32,
    /// The RAKP4 we answered with, for a RAKP3 retransmitted after it was lost.
    rakp4: Rakp4,
    keys: SessionKeys,
    max_privilege: u8,
    privilege: u8,
    window: SeqWindow,
    out_seq: u32,
    last_seen: Instant,
    /// Where the console's last packet came from (SOL packets go there).
    peer: Option<SocketAddr>,
}

impl Active {
    /// Wrap a payload in this session (next sequence number, keys).
    fn seal(&mut self, pt: PayloadType, payload: &[u8], iv: [u8; 16]) -> Vec<u8> {
        self.out_seq = self.out_seq.wrapping_add(1).max(1);
        wire::encode_v20(
            pt,
            self.console_sid,
            self.out_seq,
            payload,
            Some(&self.keys),
            iv,
        )
    }
}

enum Slot {
    Handshake(Handshake),
    Active(Active),
}

impl Slot {
    fn last_seen(&self) -> Instant {
        match self {
            Slot::Handshake(h) => h.last_seen,
            Slot::Active(a) => a.last_seen,
        }
    }
}

/// One simulated BMC.
pub struct Bmc {
    cfg: BmcConfig,
    rng: StdRng,
    sessions: HashMap<u32, Slot>,
    pub machine: Machine,
    /// The host's serial port, behind SOL.
    pub host: HostSerial,
    sol: Option<SolActive>,
    /// Datagrams the BMC sends on its own (SOL), with their destination.
    out: VecDeque<(Option<SocketAddr>, Vec<u8>)>,
    stats: BmcStats,
}

impl Bmc {
    pub fn new(cfg: BmcConfig, seed: u64) -> Self {
        let host = HostSerial {
            echo: cfg.sol.echo,
            ..HostSerial::default()
        };
        Bmc {
            cfg,
            rng: StdRng::seed_from_u64(seed),
            sessions: HashMap::new(),
            machine: Machine::default(),
            host,
            sol: None,
            out: VecDeque::new(),
            stats: BmcStats::default(),
        }
    }

    pub fn config(&self) -> &BmcConfig {
        &self.cfg
    }

    pub fn stats(&mut self, now: Instant) -> BmcStats {
        self.expire(now);
        self.machine.tick(now);
        let mut s = self.stats.clone();
        s.mac = self.cfg.mac.map(|m| m.to_string());
        s.sessions_active = self
            .sessions
            .values()
            .filter(|x| matches!(x, Slot::Active(_)))
            .count();
        s.handshakes_pending = self.sessions.len() - s.sessions_active;
        s.nmi_count = self.machine.nmi_count;
        s.power_on = self.machine.on;
        s.resets = self.machine.resets;
        s.boots = self.machine.boots.len() as u64;
        s.sol_active = self.sol.is_some();
        s
    }

    /// Change the password the BMC accepts from now on (RAKP with the old
    /// one fails; sessions already established stay).
    pub fn set_password(&mut self, password: &[u8]) {
        self.cfg.password = Zeroizing::new(password.to_vec());
    }

    /// Forget every session, as a BMC reset would (SOL goes with them).
    pub fn drop_sessions(&mut self) {
        self.sessions.clear();
        self.sol = None;
    }

    /// The host writes to its serial port. While a console has SOL active the
    /// characters go to it (returns how many the SOL buffer took); otherwise
    /// they are lost, as on a real serial port.
    pub fn host_write(&mut self, bytes: &[u8]) -> usize {
        match &mut self.sol {
            Some(s) => s.ep.write(bytes).unwrap_or(0),
            None => {
                self.host.unheard += bytes.len() as u64;
                0
            }
        }
    }

    /// The host reads what the console typed.
    pub fn host_read(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.host.input)
    }

    pub fn sol_active(&self) -> bool {
        self.sol.is_some()
    }

    /// Counters of the active SOL link.
    pub fn sol_stats(&self) -> Option<SolStats> {
        self.sol.as_ref().map(|s| s.ep.stats())
    }

    /// Characters written by the host and not yet ACKed by the console.
    pub fn sol_pending(&self) -> usize {
        self.sol.as_ref().map_or(0, |s| s.ep.pending())
    }

    /// A datagram the BMC sends on its own (SOL data, ACKs, resends), with the
    /// address of the console it is for (`None` when `handle` was fed without one).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(Option<SocketAddr>, Vec<u8>)> {
        self.pump_sol(now);
        self.out.pop_front()
    }

    /// When `handle_timeout` must be called next (SOL resends, a power
    /// transition landing).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sol = self.sol.as_ref().and_then(|s| s.ep.poll_timeout());
        let power = self.machine.pending.map(|(_, at)| at);
        match (sol, power) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        self.machine.tick(now);
        if let Some(s) = &mut self.sol {
            s.ep.handle_timeout(now);
        }
        self.sol_events();
    }

    /// Wrap what the SOL endpoint has to send into its session.
    fn pump_sol(&mut self, now: Instant) {
        let Some(sol) = &mut self.sol else {
            return;
        };
        let Some(Slot::Active(a)) = self.sessions.get_mut(&sol.sid) else {
            // The session went away under SOL.
            self.sol = None;
            return;
        };
        while let Some(p) = sol.ep.poll_transmit(now) {
            let mut iv = [0u8; 16];
            self.rng.fill_bytes(&mut iv);
            let d = a.seal(PayloadType::Sol, &p, iv);
            self.out.push_back((a.peer, d));
        }
    }

    /// Take the SOL endpoint's events: keystrokes reach the host.
    fn sol_events(&mut self) {
        let Some(sol) = &mut self.sol else {
            return;
        };
        while let Some(ev) = sol.ep.poll_event() {
            match ev {
                SolEvent::Data(d) => {
                    if self.host.echo {
                        let _ = sol.ep.write(&d);
                    }
                    self.host.input.extend_from_slice(&d);
                }
                SolEvent::Break => self.host.breaks += 1,
                SolEvent::FlushInbound => self.host.input.clear(),
                SolEvent::Discarded(n) => self.host.discarded += n as u64,
                _ => {}
            }
        }
    }

    /// End SOL. When another session ends it, the console that had it is told
    /// (a "SOL deactivating" status packet).
    fn end_sol(&mut self, now: Instant, notify: bool) {
        if let Some(s) = &mut self.sol {
            if notify {
                s.ep.deactivate();
                self.pump_sol(now);
            }
        }
        self.sol = None;
    }

    /// Set the power state directly (a person pressing the button).
    pub fn set_power(&mut self, on: bool, now: Instant) {
        self.machine.schedule(on, now, Duration::ZERO);
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.cfg.session_timeout;
        // A console that abandons a handshake does not get to keep the slot long.
        let handshake_timeout = timeout.min(Duration::from_secs(10));
        self.sessions.retain(|_, s| {
            let limit = match s {
                Slot::Handshake(_) => handshake_timeout,
                Slot::Active(_) => timeout,
            };
            now.duration_since(s.last_seen()) < limit
        });
        if let Some(sol) = &self.sol {
            if !matches!(self.sessions.get(&sol.sid), Some(Slot::Active(_))) {
                self.sol = None;
            }
        }
    }

    fn drop_packet(&mut self, why: &str) -> Option<Vec<u8>> {
        self.stats.dropped += 1;
        tracing::debug!("sim: dropped packet: {why}");
        None
    }

    /// Handle one datagram; the answer, if any, goes back to the sender.
    pub fn handle(&mut self, now: Instant, buf: &[u8]) -> Option<Vec<u8>> {
        self.handle_from(now, buf, None)
    }

    /// Handle one datagram from `peer`: the answer, if any, goes back to it,
    /// and the session remembers it for the packets SOL sends on its own
    /// (drained with `poll_transmit`).
    pub fn handle_from(
        &mut self,
        now: Instant,
        buf: &[u8],
        peer: Option<SocketAddr>,
    ) -> Option<Vec<u8>> {
        let r = self.handle_inner(now, buf, peer);
        self.sol_events();
        r
    }

    fn handle_inner(
        &mut self,
        now: Instant,
        buf: &[u8],
        peer: Option<SocketAddr>,
    ) -> Option<Vec<u8>> {
        self.expire(now);
        self.machine.tick(now);
        match wire::decode(buf) {
            Err(e) => self.drop_packet(&e.to_string()),
            Ok(Packet::Asf { message_type, tag }) => {
                if message_type == 0x80 {
                    Some(wire::encode_asf(0x40, tag))
                } else {
                    None
                }
            }
            Ok(Packet::V15 {
                session_id,
                payload,
                ..
            }) => {
                if session_id != 0 {
                    return self.drop_packet("IPMI v1.5 sessions are not offered");
                }
                let rs = self.sessionless(payload)?;
                Some(wire::encode_v15(0, 0, &rs.encode()))
            }
            Ok(Packet::V20(p)) => self.on_v20(now, p, peer),
        }
    }

    fn sessionless(&mut self, payload: &[u8]) -> Option<IpmiResponse> {
        let rq = match IpmiRequest::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                self.drop_packet(&e.to_string());
                return None;
            }
        };
        Some(match (rq.netfn, rq.cmd) {
            (cmd::NETFN_APP, cmd::CMD_GET_CHANNEL_AUTH_CAPS) => {
                rq.respond(0, &AuthCaps::response(1, self.cfg.kg.is_some()))
            }
            (cmd::NETFN_APP, cmd::CMD_GET_CHANNEL_CIPHER_SUITES) => self.cipher_suites(&rq),
            (cmd::NETFN_APP, cmd::CMD_GET_SYSTEM_GUID) => rq.respond(0, &self.cfg.guid),
            _ => rq.respond(0xd4, &[]),
        })
    }

    fn cipher_suites(&self, rq: &IpmiRequest) -> IpmiResponse {
        if rq.data.len() < 3 {
            return rq.respond(0xc7, &[]);
        }
        let records = cmd::cipher_suite_records(&self.cfg.suites);
        let index = (rq.data[2] & 0x3f) as usize;
        let start = (index * 16).min(records.len());
        let end = (start + 16).min(records.len());
        let mut data = vec![1u8];
        data.extend_from_slice(&records[start..end]);
        rq.respond(0, &data)
    }

    fn new_session_id(&mut self) -> u32 {
        loop {
            let v = self.rng.next_u32();
            if v != 0 && !self.sessions.contains_key(&v) {
                return v;
            }
        }
    }

    fn on_v20(
        &mut self,
        now: Instant,
        p: V20Packet<'_>,
        peer: Option<SocketAddr>,
    ) -> Option<Vec<u8>> {
        let v20 =
            |pt: PayloadType, body: Vec<u8>| Some(wire::encode_v20(pt, 0, 0, &body, None, [0; 16]));
        match p.payload_type {
            PayloadType::Ipmi if p.session_id == 0 => {
                if p.authenticated || p.encrypted {
                    return self.drop_packet("authenticated packet without a session");
                }
                let rs = self.sessionless(p.payload)?;
                v20(PayloadType::Ipmi, rs.encode())
            }
            PayloadType::Ipmi => self.in_session(now, p, peer),
            PayloadType::Sol => self.sol_packet(now, p, peer),
            PayloadType::OpenSessionRequest => {
                let rq = match OpenSessionRequest::decode(p.payload) {
                    Ok(r) => r,
                    Err(e) => return self.drop_packet(&e.to_string()),
                };
                let rs = self.open_session(now, &rq);
                v20(PayloadType::OpenSessionResponse, rs.encode())
            }
            PayloadType::Rakp1 => {
                let r1 = match Rakp1::decode(p.payload) {
                    Ok(r) => r,
                    Err(e) => return self.drop_packet(&e.to_string()),
                };
                let r2 = self.rakp1(now, r1);
                v20(PayloadType::Rakp2, r2.encode())
            }
            PayloadType::Rakp3 => {
                let r3 = match Rakp3::decode(p.payload) {
                    Ok(r) => r,
                    Err(e) => return self.drop_packet(&e.to_string()),
                };
                let r4 = self.rakp3(now, r3)?;
                v20(PayloadType::Rakp4, r4.encode())
            }
            _ => self.drop_packet("payload type not handled by the simulator"),
        }
    }

    fn open_session(&mut self, now: Instant, rq: &OpenSessionRequest) -> OpenSessionResponse {
        let refuse = |status: u8| OpenSessionResponse {
            tag: rq.tag,
            status,
            max_privilege: 0,
            console_session_id: rq.console_session_id,
            bmc_session_id: 0,
            auth: 0,
            integrity: 0,
            conf: 0,
        };
        let Some(suite) = CipherSuite::by_algorithms(rq.auth, rq.integrity, rq.conf)
            .filter(|s| self.cfg.suites.contains(s))
        else {
            self.stats.sessions_refused += 1;
            return refuse(0x11);
        };
        if self.sessions.len() >= self.cfg.max_sessions {
            self.stats.sessions_refused += 1;
            return refuse(0x01);
        }
        let max_privilege = match rq.max_privilege {
            0 => Privilege::Administrator as u8,
            p if p <= Privilege::Administrator as u8 => p,
            _ => return refuse(0x09),
        };
        let sid = self.new_session_id();
        self.sessions.insert(
            sid,
            Slot::Handshake(Handshake {
                console_sid: rq.console_session_id,
                suite,
                max_privilege,
                rakp: None,
                last_seen: now,
            }),
        );
        self.stats.sessions_peak = self.stats.sessions_peak.max(self.sessions.len());
        OpenSessionResponse {
            tag: rq.tag,
            status: 0,
            max_privilege,
            console_session_id: rq.console_session_id,
            bmc_session_id: sid,
            auth: suite.auth as u8,
            integrity: suite.integrity as u8,
            conf: suite.conf as u8,
        }
    }

    fn rakp1(&mut self, now: Instant, r1: Rakp1) -> Rakp2 {
        let mut rand_c = [0u8; 16];
        self.rng.fill_bytes(&mut rand_c);
        let refuse = |status: u8, console_sid: u32| Rakp2 {
            tag: r1.tag,
            status,
            console_session_id: console_sid,
            bmc_random: [0; 16],
            bmc_guid: [0; 16],
            auth_code: Vec::new(),
        };
        let Some(Slot::Handshake(h)) = self.sessions.get_mut(&r1.bmc_session_id) else {
            return refuse(0x02, 0);
        };
        h.last_seen = now;
        let console_sid = h.console_sid;
        let suite = h.suite;
        let requested = r1.role & 0x0f;
        if r1.username != self.cfg.username {
            self.sessions.remove(&r1.bmc_session_id);
            self.stats.auth_failures += 1;
            return refuse(0x0d, console_sid);
        }
        if requested == 0 || requested > h.max_privilege {
            self.sessions.remove(&r1.bmc_session_id);
            return refuse(0x09, console_sid);
        }
        h.rakp = Some(RakpState {
            rand_m: r1.console_random,
            rand_c,
            role: r1.role,
            username: r1.username.clone(),
        });
        let kuid = Zeroizing::new(key20(&self.cfg.password));
        let params = RakpParams {
            sid_m: console_sid,
            sid_c: r1.bmc_session_id,
            rand_m: &r1.console_random,
            rand_c: &rand_c,
            guid_c: &self.cfg.guid,
            role: r1.role,
            username: &r1.username,
        };
        Rakp2 {
            tag: r1.tag,
            status: 0,
            console_session_id: console_sid,
            bmc_random: rand_c,
            bmc_guid: self.cfg.guid,
            auth_code: params.rakp2_code(suite.auth, &kuid),
        }
    }

    fn rakp3(&mut self, now: Instant, r3: Rakp3) -> Option<Rakp4> {
        let sid = r3.bmc_session_id;
        let (console_sid, suite, max_privilege, rakp) = match self.sessions.get_mut(&sid) {
            Some(Slot::Active(a)) if a.rakp4.tag == r3.tag && a.out_seq == 0 => {
                return Some(a.rakp4.clone());
            }
            Some(Slot::Handshake(h)) => match h.rakp.take() {
                Some(r) => (h.console_sid, h.suite, h.max_privilege, r),
                None => {
                    return Some(Rakp4 {
                        tag: r3.tag,
                        status: 0x02,
                        console_session_id: h.console_sid,
                        icv: vec![],
                    })
                }
            },
            _ => {
                return Some(Rakp4 {
                    tag: r3.tag,
                    status: 0x02,
                    console_session_id: 0,
                    icv: vec![],
                })
            }
        };
        if r3.status != 0 {
            // The console gave up (e.g. our RAKP2 did not verify).
            self.sessions.remove(&sid);
            self.stats.auth_failures += 1;
            return None;
        }
        let kuid = Zeroizing::new(key20(&self.cfg.password));
        let params = RakpParams {
            sid_m: console_sid,
            sid_c: sid,
            rand_m: &rakp.rand_m,
            rand_c: &rakp.rand_c,
            guid_c: &self.cfg.guid,
            role: rakp.role,
            username: &rakp.username,
        };
        let expect = params.rakp3_code(suite.auth, &kuid);
        if !crate::ipmi::crypto::ct_eq(&expect, &r3.auth_code) {
            self.sessions.remove(&sid);
            self.stats.auth_failures += 1;
            return Some(Rakp4 {
                tag: r3.tag,
                status: 0x0f,
                console_session_id: console_sid,
                icv: vec![],
            });
        }
        let kg = match &self.cfg.kg {
            Some(k) => Zeroizing::new(key20(k)),
            None => kuid.clone(),
        };
        let sik = Zeroizing::new(params.sik(suite.auth, &kg));
        let icv = params.rakp4_icv(suite.auth, &sik);
        let privilege = (rakp.role & 0x0f).min(Privilege::User as u8);
        let rakp4 = Rakp4 {
            tag: r3.tag,
            status: 0,
            console_session_id: console_sid,
            icv,
        };
        self.sessions.insert(
            sid,
            Slot::Active(Active {
                console_sid,
                rakp4: rakp4.clone(),
                keys: SessionKeys::derive(suite, &sik),
                max_privilege: (rakp.role & 0x0f).min(max_privilege),
                privilege,
                window: SeqWindow::default(),
                out_seq: 0,
                last_seen: now,
                peer: None,
            }),
        );
        self.stats.sessions_opened += 1;
        Some(rakp4)
    }

    /// Check and open an in-session packet; the plaintext payload.
    fn open_in_session(
        &mut self,
        now: Instant,
        p: &V20Packet<'_>,
        peer: Option<SocketAddr>,
    ) -> Option<Vec<u8>> {
        let Some(Slot::Active(a)) = self.sessions.get_mut(&p.session_id) else {
            self.drop_packet("unknown session");
            return None;
        };
        match p.open(&a.keys) {
            Ok(v) if a.window.accept(p.session_seq) => {
                a.last_seen = now;
                if peer.is_some() {
                    a.peer = peer;
                }
                Some(v)
            }
            Ok(_) => self.drop_packet("session sequence number refused"),
            Err(e) => self.drop_packet(&e.to_string()),
        }
    }

    fn sol_packet(
        &mut self,
        now: Instant,
        p: V20Packet<'_>,
        peer: Option<SocketAddr>,
    ) -> Option<Vec<u8>> {
        let plain = self.open_in_session(now, &p, peer)?;
        match &mut self.sol {
            Some(s) if s.sid == p.session_id => {
                if let Err(e) = s.ep.handle_packet(now, &plain) {
                    return self.drop_packet(&format!("SOL: {e}"));
                }
                None
            }
            _ => self.drop_packet("SOL packet in a session without SOL"),
        }
    }

    fn in_session(
        &mut self,
        now: Instant,
        p: V20Packet<'_>,
        peer: Option<SocketAddr>,
    ) -> Option<Vec<u8>> {
        let sid = p.session_id;
        let plain = self.open_in_session(now, &p, peer)?;
        let rq = match IpmiRequest::decode(&plain) {
            Ok(r) => r,
            Err(e) => return self.drop_packet(&e.to_string()),
        };
        self.stats.commands += 1;
        let (rs, close) = self.command(now, sid, &rq);
        let mut iv = [0u8; 16];
        self.rng.fill_bytes(&mut iv);
        let a = match self.sessions.get_mut(&sid) {
            Some(Slot::Active(a)) => a,
            _ => return None,
        };
        let out = a.seal(PayloadType::Ipmi, &rs.encode(), iv);
        if close {
            self.sessions.remove(&sid);
            if self.sol.as_ref().is_some_and(|s| s.sid == sid) {
                self.sol = None;
            }
        }
        Some(out)
    }

    fn session_privilege(&self, sid: u32) -> u8 {
        match self.sessions.get(&sid) {
            Some(Slot::Active(a)) => a.privilege,
            _ => 0,
        }
    }

    /// Execute one in-session command. The flag asks to close the session after
    /// the response is sent.
    fn command(&mut self, now: Instant, sid: u32, rq: &IpmiRequest) -> (IpmiResponse, bool) {
        let operator = self.session_privilege(sid) >= Privilege::Operator as u8;
        let r = match (rq.netfn, rq.cmd) {
            (cmd::NETFN_APP, cmd::CMD_GET_DEVICE_ID) => {
                let m = self.cfg.manufacturer_id.to_le_bytes();
                let p = self.cfg.product_id.to_le_bytes();
                rq.respond(
                    0,
                    &[
                        0x20, 0x81, 0x01, 0x00, 0x02, 0xbf, m[0], m[1], m[2], p[0], p[1],
                    ],
                )
            }
            (cmd::NETFN_APP, cmd::CMD_GET_CHANNEL_AUTH_CAPS)
            | (cmd::NETFN_APP, cmd::CMD_GET_CHANNEL_CIPHER_SUITES)
            | (cmd::NETFN_APP, cmd::CMD_GET_SYSTEM_GUID) => match self.sessionless(&rq.encode()) {
                Some(rs) => rs,
                None => rq.respond(0xff, &[]),
            },
            (cmd::NETFN_APP, cmd::CMD_SET_SESSION_PRIV) => {
                let Some(&want) = rq.data.first() else {
                    return (rq.respond(0xc7, &[]), false);
                };
                let Some(Slot::Active(a)) = self.sessions.get_mut(&sid) else {
                    return (rq.respond(0xff, &[]), false);
                };
                let want = want & 0x0f;
                if want == 0 {
                    rq.respond(0, &[a.privilege])
                } else if want > a.max_privilege {
                    rq.respond(0x81, &[])
                } else {
                    a.privilege = want;
                    rq.respond(0, &[want])
                }
            }
            (cmd::NETFN_APP, cmd::CMD_CLOSE_SESSION) => {
                if rq.data.len() < 4 {
                    return (rq.respond(0xc7, &[]), false);
                }
                let target = u32::from_le_bytes([rq.data[0], rq.data[1], rq.data[2], rq.data[3]]);
                if target == sid {
                    return (rq.respond(0, &[]), true);
                }
                if self.sessions.remove(&target).is_some() {
                    if self.sol.as_ref().is_some_and(|s| s.sid == target) {
                        self.sol = None;
                    }
                    rq.respond(0, &[])
                } else {
                    rq.respond(0x87, &[])
                }
            }
            (cmd::NETFN_CHASSIS, cmd::CMD_CHASSIS_STATUS) => {
                let on = self.machine.on as u8;
                rq.respond(0, &[on, 0x00, 0x40, 0x00])
            }
            (cmd::NETFN_CHASSIS, cmd::CMD_CHASSIS_CONTROL) => {
                if !operator {
                    return (rq.respond(0xd4, &[]), false);
                }
                let Some(ctl) = rq.data.first().and_then(|b| ChassisControl::from_u8(*b)) else {
                    return (rq.respond(0xcc, &[]), false);
                };
                match self.chassis_control(now, ctl) {
                    Ok(()) => rq.respond(0, &[]),
                    Err(cc) => rq.respond(cc, &[]),
                }
            }
            (cmd::NETFN_CHASSIS, cmd::CMD_SET_BOOT_OPTIONS) => {
                if !operator {
                    return (rq.respond(0xd4, &[]), false);
                }
                self.set_boot_option(now, rq)
            }
            (cmd::NETFN_CHASSIS, cmd::CMD_GET_BOOT_OPTIONS) => self.get_boot_option(rq),
            (cmd::NETFN_APP, cmd::CMD_ACTIVATE_PAYLOAD) => self.activate_payload(sid, rq),
            (cmd::NETFN_APP, cmd::CMD_DEACTIVATE_PAYLOAD) => self.deactivate_payload(now, sid, rq),
            (cmd::NETFN_APP, cmd::CMD_GET_PAYLOAD_ACTIVATION_STATUS) => {
                match rq.data.first().map(|t| t & 0x3f) {
                    None => rq.respond(0xc7, &[]),
                    Some(cmd::PAYLOAD_SOL) => rq.respond(
                        0,
                        &PayloadActivationStatus {
                            capacity: 1,
                            active: u16::from(self.sol.is_some()),
                        }
                        .encode(),
                    ),
                    Some(_) => rq.respond(0xcc, &[]),
                }
            }
            _ => rq.respond(0xc1, &[]),
        };
        (r, false)
    }

    fn activation(&self) -> PayloadActivation {
        PayloadActivation {
            aux: 0,
            inbound_size: self.cfg.sol.inbound_size,
            outbound_size: self.cfg.sol.outbound_size,
            port: self.cfg.port,
            vlan: 0xffff,
        }
    }

    /// Activate Payload (SOL, instance 1). The payload is protected as the
    /// session's suite says, whatever the auxiliary data asks (as ipmi_sim).
    fn activate_payload(&mut self, sid: u32, rq: &IpmiRequest) -> IpmiResponse {
        let (Some(&ptype), Some(&instance)) = (rq.data.first(), rq.data.get(1)) else {
            return rq.respond(0xc7, &[]);
        };
        if rq.data.len() < 6 {
            return rq.respond(0xc7, &[]);
        }
        if ptype & 0x3f != cmd::PAYLOAD_SOL || instance & 0x0f != 1 {
            return rq.respond(0xcc, &[]);
        }
        if !self.cfg.sol.enabled {
            return rq.respond(0x81, &[]);
        }
        if self.session_privilege(sid) < Privilege::User as u8 {
            return rq.respond(0xd4, &[]);
        }
        // The same session again (its answer was lost and the request resent,
        // or the console lost the link and starts over): a fresh link, keeping
        // the host output the console never ACKed.
        let carried = match &mut self.sol {
            Some(s) if s.sid == sid => s.ep.close(),
            Some(_) => return rq.respond(0x80, &[]),
            None => Vec::new(),
        };
        let mut c = SolConfig::new(Role::Bmc);
        c.max_data = (self.cfg.sol.outbound_size as usize)
            .saturating_sub(crate::ipmi::sol::HEADER_LEN)
            .clamp(1, crate::ipmi::sol::MAX_DATA);
        c.retransmit = self.cfg.sol.retransmit;
        c.retries = self.cfg.sol.retries;
        c.send_capacity = 4 * 1024 * 1024;
        let mut ep = SolEndpoint::new(c);
        let _ = ep.write(&carried);
        self.sol = Some(SolActive { sid, ep });
        rq.respond(0, &self.activation().encode())
    }

    /// Deactivate Payload: any session may end SOL (ipmitool and Ironic do this
    /// to take over a stale console); the console that had it is told.
    fn deactivate_payload(&mut self, now: Instant, sid: u32, rq: &IpmiRequest) -> IpmiResponse {
        let (Some(&ptype), Some(&instance)) = (rq.data.first(), rq.data.get(1)) else {
            return rq.respond(0xc7, &[]);
        };
        if ptype & 0x3f != cmd::PAYLOAD_SOL || instance & 0x0f != 1 {
            return rq.respond(0xcc, &[]);
        }
        if !self.cfg.sol.enabled {
            return rq.respond(0x81, &[]);
        }
        match &self.sol {
            None => rq.respond(0x80, &[]),
            Some(s) => {
                let other = s.sid != sid;
                self.end_sol(now, other);
                rq.respond(0, &[])
            }
        }
    }

    fn chassis_control(&mut self, now: Instant, ctl: ChassisControl) -> Result<(), u8> {
        let delay = self.cfg.power_delay;
        let m = &mut self.machine;
        match ctl {
            ChassisControl::PowerUp => m.schedule(true, now, delay),
            ChassisControl::PowerDown => m.schedule(false, now, delay),
            ChassisControl::SoftShutdown => {
                m.soft_offs += 1;
                if m.on && !m.ignore_soft_off {
                    m.schedule(false, now, delay)
                }
            }
            ChassisControl::PowerCycle => {
                if m.on {
                    m.on = false;
                }
                m.schedule(true, now, delay.max(Duration::from_millis(1)));
                if delay.is_zero() {
                    m.tick(now + Duration::from_millis(1));
                }
            }
            ChassisControl::HardReset => {
                if !m.on {
                    return Err(0xd5);
                }
                m.resets += 1;
                m.boot();
            }
            ChassisControl::DiagnosticInterrupt => {
                if !self.cfg.nmi {
                    return Err(0xcc);
                }
                m.nmi_count += 1;
            }
        }
        Ok(())
    }

    fn set_boot_option(&mut self, now: Instant, rq: &IpmiRequest) -> IpmiResponse {
        let Some(&sel) = rq.data.first() else {
            return rq.respond(0xc7, &[]);
        };
        match sel & 0x7f {
            0 | 4 => rq.respond(0, &[]),
            3 => match rq.data.get(1) {
                Some(&v) => {
                    self.machine.boot_param3 = v;
                    rq.respond(0, &[])
                }
                None => rq.respond(0xc7, &[]),
            },
            5 => {
                if rq.data.len() < 6 {
                    return rq.respond(0xc7, &[]);
                }
                self.machine.boot_flags.copy_from_slice(&rq.data[1..6]);
                self.machine.boot_flags_set_at = Some(now);
                rq.respond(0, &[])
            }
            _ => rq.respond(0x80, &[]),
        }
    }

    fn get_boot_option(&self, rq: &IpmiRequest) -> IpmiResponse {
        let Some(&sel) = rq.data.first() else {
            return rq.respond(0xc7, &[]);
        };
        match sel & 0x7f {
            3 => rq.respond(0, &[0x01, 0x03, self.machine.boot_param3]),
            5 => {
                let mut d = vec![0x01, 0x05];
                d.extend_from_slice(&self.machine.boot_flags);
                rq.respond(0, &d)
            }
            _ => rq.respond(0x80, &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A power transition with a delay is a timer of its own: it lands at
    /// `handle_timeout` with no packet arriving, and the boot is recorded
    /// with the flags in effect (what the machine's network side reads).
    #[test]
    fn delayed_power_on_lands_on_the_timer() {
        let mut cfg = BmcConfig::new("admin", b"pw");
        cfg.mac = Some("52:54:00:00:00:07".parse().unwrap());
        let mut b = Bmc::new(cfg, 1);
        let t0 = Instant::now();
        assert_eq!(b.poll_timeout(), None);
        b.machine.boot_flags = [0x80, 0x04, 0, 0, 0];
        b.machine.schedule(true, t0, Duration::from_millis(300));
        assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_millis(300)));
        b.handle_timeout(t0 + Duration::from_millis(299));
        assert!(!b.machine.on && b.machine.boots.is_empty());
        b.handle_timeout(t0 + Duration::from_millis(300));
        assert!(b.machine.on);
        assert_eq!(b.poll_timeout(), None);
        let f = b.machine.boots.last().copied().unwrap();
        assert!(f.valid && f.device == cmd::BootDevice::Pxe);
        // Once: the override is used up.
        assert_eq!(b.machine.boot_flags[0] & 0x80, 0);
        assert_eq!(b.stats(t0).mac.as_deref(), Some("52:54:00:00:00:07"));
    }

    /// The peak counts pending handshakes too (what the limit bounds), and
    /// stays after the sessions expire; the limit refuses one more.
    #[test]
    fn session_peak_is_remembered_and_bounded_by_the_limit() {
        let mut cfg = BmcConfig::new("admin", b"pw");
        cfg.max_sessions = 3;
        cfg.session_timeout = Duration::from_secs(5);
        let mut b = Bmc::new(cfg, 2);
        let t0 = Instant::now();
        let rq = |i: u32| OpenSessionRequest {
            tag: i as u8,
            max_privilege: 0,
            console_session_id: 100 + i,
            auth: CipherSuite::SUITE_3.auth as u8,
            integrity: CipherSuite::SUITE_3.integrity as u8,
            conf: CipherSuite::SUITE_3.conf as u8,
        };
        for i in 0..4 {
            let status = b.open_session(t0, &rq(i)).status;
            assert_eq!(status, if i < 3 { 0 } else { 0x01 }, "open {i}");
        }
        let s = b.stats(t0);
        assert_eq!((s.sessions_peak, s.handshakes_pending), (3, 3));
        assert_eq!(s.sessions_refused, 1);
        let later = b.stats(t0 + Duration::from_secs(30));
        assert_eq!((later.sessions_peak, later.handshakes_pending), (3, 0));
    }
}
