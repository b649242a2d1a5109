//! An RMCP+ client session and a simulated BMC wired together in memory
//! with a fake clock, for the `sim_bmc` and `ipmi_client` targets: the
//! fuzzer decides what each side receives.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ironrack::ipmi::crypto::CipherSuite;
use ironrack::ipmi::session::{ClientSession, Event, SessionConfig};
use ironrack::ipmi::wire::{self, PayloadType};
use ironrack::ipmi::Privilege;
use ironrack::sim::{Bmc, BmcConfig};
use rand::{rngs::StdRng, SeedableRng};

/// Command deadline in the harness (short, so runs stay cheap).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
pub const MAX_SESSIONS: usize = 4;

/// What a submitted command is waiting for.
#[derive(Debug)]
pub struct Pending {
    pub deadline: Instant,
    pub netfn: u8,
    pub cmd: u8,
}

pub struct Net {
    pub client: ClientSession,
    pub bmc: Bmc,
    pub now: Instant,
    pub peer: SocketAddr,
    /// Commands submitted and not answered yet.
    pub pending: BTreeMap<u64, Pending>,
    /// Every id answered (each exactly once).
    pub answered: BTreeMap<u64, bool>,
    /// Datagrams the client sent (for replays and mutations).
    pub sent: Vec<Vec<u8>>,
    /// Datagrams the BMC sent, not yet given to the client.
    pub to_client: Vec<Vec<u8>>,
    pub allowed_suites: Vec<u8>,
    pub established: u32,
}

impl Net {
    /// `cfg` bytes pick the client's cipher suite, privilege and quirks.
    pub fn new(cfg: &[u8]) -> Net {
        let b = |i: usize| cfg.get(i).copied().unwrap_or(0);
        let now = Instant::now();
        let mut c = SessionConfig::new(crate::USER, crate::PASSWORD);
        c.cipher_suite = match b(0) % 3 {
            0 => None,
            1 => Some(3),
            _ => Some(17),
        };
        c.privilege = match b(1) % 4 {
            0 => Privilege::Administrator,
            1 => Privilege::Operator,
            2 => Privilege::User,
            _ => Privilege::Callback,
        };
        c.opensesspriv = b(2) & 1 != 0;
        if b(2) & 2 != 0 {
            c.kg = Some(zeroize::Zeroizing::new(b"fuzz-kg".to_vec()));
        }
        c.command_timeout = COMMAND_TIMEOUT;
        c.retransmit_initial = Duration::from_millis(200);
        c.retransmit_max = Duration::from_millis(800);
        c.keepalive = Some(Duration::from_secs(2));
        let allowed_suites = match c.cipher_suite {
            Some(s) => vec![s],
            None => vec![3, 17],
        };
        let mut bc = BmcConfig::new(crate::USER, crate::PASSWORD);
        bc.guid = crate::GUID;
        // Suite 0 too: raw datagrams can then open a session without knowing
        // any key, which takes the fuzzer into the in-session commands.
        bc.suites = vec![
            CipherSuite::SUITE_3,
            CipherSuite::SUITE_17,
            CipherSuite::SUITE_0,
        ];
        bc.max_sessions = MAX_SESSIONS;
        bc.session_timeout = Duration::from_secs(20);
        bc.power_delay = Duration::from_millis(u64::from(b(3)) * 20);
        bc.nmi = b(2) & 4 == 0;
        if b(2) & 2 != 0 && b(2) & 8 == 0 {
            bc.kg = Some(zeroize::Zeroizing::new(b"fuzz-kg".to_vec()));
        }
        bc.sol.echo = b(2) & 16 != 0;
        bc.sol.inbound_size = 8 + u16::from(b(4));
        bc.sol.outbound_size = 8 + u16::from(b(5));
        Net {
            client: ClientSession::with_rng(c, now, StdRng::seed_from_u64(7))
                .expect("valid client config"),
            bmc: Bmc::new(bc, u64::from(b(6))),
            now,
            peer: "127.0.0.1:40000".parse().expect("address"),
            pending: BTreeMap::new(),
            answered: BTreeMap::new(),
            sent: Vec::new(),
            to_client: Vec::new(),
            allowed_suites,
            established: 0,
        }
    }

    pub fn submit(&mut self, netfn: u8, cmd: u8, data: Vec<u8>) {
        let id = self.client.submit(self.now, netfn, cmd, data);
        self.pending.insert(
            id,
            Pending {
                deadline: self.now + COMMAND_TIMEOUT,
                netfn,
                cmd,
            },
        );
        self.events();
    }

    /// Take the client's events and check them.
    pub fn events(&mut self) {
        while let Some(ev) = self.client.poll_event() {
            match ev {
                Event::Response { id, result } => {
                    assert!(
                        self.answered.insert(id, result.is_ok()).is_none(),
                        "command {id} answered twice"
                    );
                    let p = self
                        .pending
                        .remove(&id)
                        .unwrap_or_else(|| panic!("answer for a command never submitted ({id})"));
                    match result {
                        // The answer is to this command, not another one.
                        Ok(rs) => assert!(
                            rs.cmd == p.cmd && rs.netfn == (p.netfn | 1),
                            "command {id} ({:02x}/{:02x}) answered with {:02x}/{:02x}",
                            p.netfn,
                            p.cmd,
                            rs.netfn,
                            rs.cmd
                        ),
                        Err(e) => assert!(!e.to_string().is_empty()),
                    }
                }
                Event::Established { suite, .. } => {
                    assert!(
                        self.allowed_suites.contains(&suite),
                        "session established with suite {suite}, not one the client accepts"
                    );
                    self.established += 1;
                }
                Event::Payload { payload_type, .. } => {
                    assert_eq!(payload_type, PayloadType::Sol);
                }
                Event::Closed => {}
            }
        }
    }

    /// Give the BMC one datagram; its answer is queued for the client.
    pub fn to_bmc(&mut self, d: &[u8]) {
        if let Some(r) = self.bmc.handle_from(self.now, d, Some(self.peer)) {
            assert!(
                wire::decode(&r).is_ok(),
                "the BMC sent a datagram that does not decode: {r:02x?}"
            );
            self.to_client.push(r);
        }
        self.check_bmc();
    }

    pub fn check_bmc(&mut self) {
        let s = self.bmc.stats(self.now);
        assert!(
            s.sessions_active + s.handshakes_pending <= MAX_SESSIONS,
            "session table over its limit: {s:?}"
        );
    }

    /// Datagrams the BMC sends on its own (SOL), queued for the client.
    pub fn bmc_spontaneous(&mut self) {
        let mut n = 0;
        while let Some((to, d)) = self.bmc.poll_transmit(self.now) {
            assert!(wire::decode(&d).is_ok(), "BMC SOL datagram does not decode");
            if to == Some(self.peer) || to.is_none() {
                self.to_client.push(d);
            }
            n += 1;
            assert!(n < 10_000, "BMC keeps transmitting");
        }
    }

    /// The client's next datagram, if any.
    pub fn from_client(&mut self) -> Option<Vec<u8>> {
        let d = self.client.poll_transmit()?;
        if self.sent.len() < 64 {
            self.sent.push(d.clone());
        }
        Some(d)
    }

    /// Exchange datagrams over a perfect network until both sides are quiet.
    pub fn pump(&mut self) {
        for _ in 0..64 {
            let mut moved = false;
            while let Some(d) = self.from_client() {
                self.to_bmc(&d);
                moved = true;
            }
            self.bmc_spontaneous();
            for r in std::mem::take(&mut self.to_client) {
                self.client.handle_input(self.now, &r);
                moved = true;
            }
            self.events();
            if !moved {
                break;
            }
        }
    }

    /// Let `d` pass, firing every timer due on the way. With `deliver`,
    /// datagrams are exchanged at each step; otherwise they stay queued.
    pub fn advance(&mut self, d: Duration, deliver: bool) {
        let end = self.now + d;
        for _ in 0..10_000 {
            let next = [self.client.poll_timeout(), self.bmc.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                    self.bmc.handle_timeout(self.now);
                    self.check_deadlines();
                    if deliver {
                        self.pump();
                    } else {
                        self.events();
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
        self.client.handle_timeout(self.now);
        self.bmc.handle_timeout(self.now);
        self.check_deadlines();
    }

    /// No command outlives its deadline.
    pub fn check_deadlines(&mut self) {
        self.events();
        if let Some((id, p)) = self.pending.iter().find(|(_, p)| p.deadline <= self.now) {
            panic!(
                "command {id} still unanswered {:?} after its deadline",
                self.now - p.deadline
            );
        }
    }

    /// End of a run: every command is answered once its deadline has passed.
    pub fn finish(&mut self) {
        self.advance(COMMAND_TIMEOUT + Duration::from_secs(1), false);
        assert!(self.pending.is_empty(), "unanswered: {:?}", self.pending);
        self.client.close(self.now);
        self.events();
    }
}
