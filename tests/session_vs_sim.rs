//! The sans-IO client session against the sans-IO simulated BMC, wired together
//! in memory with a fake clock and seeded packet loss. Deterministic, no sockets.

use std::time::{Duration, Instant};

use ironrack::ipmi::cmd::{
    self, BootDevice, BootFlags, ChassisControl, PayloadActivation, PowerState,
};
use ironrack::ipmi::crypto::CipherSuite;
use ironrack::ipmi::session::{ClientSession, Event, SessionConfig};
use ironrack::ipmi::wire::IpmiResponse;
use ironrack::ipmi::IpmiError;
use ironrack::sim::{Bmc, BmcConfig};
use rand::{rngs::StdRng, Rng, SeedableRng};
use zeroize::Zeroizing;

const PW: &[u8] = b"s3cret-pw";

struct Net {
    client: ClientSession,
    bmc: Bmc,
    now: Instant,
    rng: StdRng,
    loss: f64,
    /// Datagrams seen from the BMC (for replay tests).
    from_bmc: Vec<Vec<u8>>,
    wire_log: Vec<(Instant, Vec<u8>)>,
    /// Drop this many of the BMC's next answers (in `wait`).
    drop_answers: usize,
}

impl Net {
    fn new(ccfg: SessionConfig, bcfg: BmcConfig) -> Net {
        let now = Instant::now();
        Net {
            client: ClientSession::with_rng(ccfg, now, StdRng::seed_from_u64(7)).unwrap(),
            bmc: Bmc::new(bcfg, 11),
            now,
            rng: StdRng::seed_from_u64(99),
            loss: 0.0,
            from_bmc: Vec::new(),
            wire_log: Vec::new(),
            drop_answers: 0,
        }
    }

    fn lost(&mut self) -> bool {
        self.loss > 0.0 && self.rng.gen_bool(self.loss)
    }

    /// Run until the command `id` completes; returns its result.
    fn wait(&mut self, id: u64) -> Result<IpmiResponse, IpmiError> {
        for _ in 0..100_000 {
            while let Some(d) = self.client.poll_transmit() {
                self.wire_log.push((self.now, d.clone()));
                if self.lost() {
                    continue;
                }
                if let Some(reply) = self.bmc.handle(self.now, &d) {
                    if self.drop_answers > 0 {
                        self.drop_answers -= 1;
                        continue;
                    }
                    if self.lost() {
                        continue;
                    }
                    self.from_bmc.push(reply.clone());
                    self.client.handle_input(self.now, &reply);
                }
            }
            while let Some(ev) = self.client.poll_event() {
                if let Event::Response { id: rid, result } = ev {
                    if rid == id {
                        return result;
                    }
                }
            }
            let t = self
                .client
                .poll_timeout()
                .expect("a pending command has a timer");
            self.now = self.now.max(t);
            self.client.handle_timeout(self.now);
        }
        panic!("command never completed");
    }

    fn cmd(&mut self, netfn: u8, c: u8, data: Vec<u8>) -> Result<IpmiResponse, IpmiError> {
        let id = self.client.submit(self.now, netfn, c, data);
        self.wait(id)
    }

    fn power(&mut self) -> Result<PowerState, IpmiError> {
        let r = self.cmd(cmd::NETFN_CHASSIS, cmd::CMD_CHASSIS_STATUS, vec![])?;
        assert_eq!(r.completion, 0);
        Ok(cmd::parse_chassis_status(&r.data).unwrap())
    }

    /// Activate SOL instance 1 (accepted); the BMC's answer.
    fn activate_sol(&mut self) -> PayloadActivation {
        let r = self
            .cmd(
                cmd::NETFN_APP,
                cmd::CMD_ACTIVATE_PAYLOAD,
                cmd::activate_payload_request(cmd::PAYLOAD_SOL, 1, 0xc6),
            )
            .unwrap();
        assert_eq!(r.completion, 0);
        PayloadActivation::parse(&r.data).unwrap()
    }

    fn control(&mut self, c: ChassisControl) -> Result<u8, IpmiError> {
        Ok(self
            .cmd(cmd::NETFN_CHASSIS, cmd::CMD_CHASSIS_CONTROL, vec![c as u8])?
            .completion)
    }

    /// Let idle time pass, servicing the client's timers (keepalives).
    fn idle(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            while let Some(x) = self.client.poll_transmit() {
                if let Some(r) = self.bmc.handle(self.now, &x) {
                    self.client.handle_input(self.now, &r);
                }
            }
            match self.client.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = end;
    }
}

fn client(suite: Option<u8>) -> SessionConfig {
    let mut c = SessionConfig::new("admin", PW);
    c.cipher_suite = suite;
    c
}

fn bmc() -> BmcConfig {
    BmcConfig::new("admin", PW)
}

#[test]
fn suites_3_and_17_power_cycle_through_one_session() {
    for suite in [3u8, 17] {
        let mut n = Net::new(client(Some(suite)), bmc());
        assert_eq!(n.power().unwrap(), PowerState::Off);
        assert_eq!(n.control(ChassisControl::PowerUp).unwrap(), 0);
        assert_eq!(n.power().unwrap(), PowerState::On);
        assert_eq!(n.control(ChassisControl::PowerDown).unwrap(), 0);
        assert_eq!(n.power().unwrap(), PowerState::Off);
        assert_eq!(n.client.negotiated_suite(), Some(suite));
        assert_eq!(
            n.bmc.stats(n.now).sessions_opened,
            1,
            "suite {suite}: one session carries all"
        );
    }
}

#[test]
fn auto_selection_prefers_17_and_falls_back_to_3() {
    let mut n = Net::new(client(None), bmc());
    n.power().unwrap();
    assert_eq!(n.client.negotiated_suite(), Some(17));

    let mut b = bmc();
    b.suites = vec![CipherSuite::SUITE_3];
    let mut n = Net::new(client(None), b);
    n.power().unwrap();
    assert_eq!(n.client.negotiated_suite(), Some(3));
}

#[test]
fn suite_0_only_bmc_is_refused_unless_allowed() {
    let mut b = bmc();
    b.suites = vec![CipherSuite::SUITE_0];
    let mut n = Net::new(client(None), b.clone());
    match n.power() {
        Err(IpmiError::NoCommonCipherSuite { offered, accepted }) => {
            assert_eq!(offered, vec![0]);
            assert_eq!(accepted, vec![17, 3]);
        }
        other => panic!("expected NoCommonCipherSuite, got {other:?}"),
    }
    let mut c = client(None);
    c.allow_suite0 = true;
    let mut n = Net::new(c, b);
    assert_eq!(n.power().unwrap(), PowerState::Off);
    assert_eq!(n.client.negotiated_suite(), Some(0));
}

#[test]
fn forced_suite_the_bmc_lacks_is_a_clear_error() {
    let mut b = bmc();
    b.suites = vec![CipherSuite::SUITE_3];
    let mut n = Net::new(client(Some(17)), b);
    assert!(matches!(
        n.power(),
        Err(IpmiError::NoCommonCipherSuite { .. })
    ));
}

#[test]
fn wrong_password_and_unknown_user_are_auth_errors() {
    let mut n = Net::new(SessionConfig::new("admin", b"not-it"), bmc());
    assert!(matches!(n.power(), Err(IpmiError::AuthFailed(_))));
    let mut n = Net::new(SessionConfig::new("mallory", PW), bmc());
    assert!(matches!(n.power(), Err(IpmiError::AuthFailed(_))));
    assert_eq!(
        n.bmc.stats(n.now).sessions_active,
        0,
        "refused handshakes leave no session"
    );
}

#[test]
fn kg_must_match_on_both_ends() {
    let mut b = bmc();
    b.kg = Some(Zeroizing::new(b"bmc-key".to_vec()));
    let mut c = client(Some(17));
    c.kg = Some(Zeroizing::new(b"bmc-key".to_vec()));
    let mut n = Net::new(c, b.clone());
    assert_eq!(n.power().unwrap(), PowerState::Off);
    // Without the key the SIK differs: RAKP4 does not verify.
    let mut n = Net::new(client(Some(17)), b);
    assert!(matches!(n.power(), Err(IpmiError::AuthFailed(_))));
}

#[test]
fn keepalive_holds_the_session_past_the_bmc_idle_timeout() {
    let mut b = bmc();
    b.session_timeout = Duration::from_secs(8);
    let mut c = client(Some(3));
    c.keepalive = Some(Duration::from_secs(5));
    let mut n = Net::new(c, b);
    n.power().unwrap();
    n.idle(Duration::from_secs(60));
    assert!(n.client.stats().keepalives >= 10, "{:?}", n.client.stats());
    n.power().unwrap();
    assert_eq!(n.bmc.stats(n.now).sessions_opened, 1);
}

#[test]
fn without_keepalive_an_expired_session_is_reopened_transparently() {
    let mut b = bmc();
    b.session_timeout = Duration::from_secs(8);
    let mut c = client(Some(3));
    c.keepalive = None;
    let mut n = Net::new(c, b);
    n.power().unwrap();
    n.idle(Duration::from_secs(30));
    assert_eq!(n.bmc.stats(n.now).sessions_active, 0, "the BMC expired it");
    assert_eq!(n.power().unwrap(), PowerState::Off);
    assert_eq!(n.bmc.stats(n.now).sessions_opened, 2);
}

#[test]
fn reopen_after_the_bmc_drops_the_session() {
    let mut n = Net::new(client(Some(17)), bmc());
    n.control(ChassisControl::PowerUp).unwrap();
    n.bmc.drop_sessions();
    assert_eq!(n.power().unwrap(), PowerState::On);
    assert_eq!(n.bmc.stats(n.now).sessions_opened, 2);
}

#[test]
fn twenty_percent_loss_still_completes_every_command() {
    let mut n = Net::new(client(None), bmc());
    n.loss = 0.2;
    let mut on = false;
    for i in 0..200 {
        if i % 10 == 0 {
            let c = if on {
                ChassisControl::PowerDown
            } else {
                ChassisControl::PowerUp
            };
            assert_eq!(n.control(c).unwrap(), 0, "command {i}");
            on = !on;
        }
        let want = if on { PowerState::On } else { PowerState::Off };
        assert_eq!(n.power().unwrap(), want, "command {i}");
    }
    let s = n.client.stats();
    assert!(s.retransmits > 20, "loss really happened: {s:?}");
    // Lost replies may force a re-open now and then, but sessions are reused.
    assert!(n.bmc.stats(n.now).sessions_opened < 20);
}

#[test]
fn unreachable_bmc_fails_within_the_command_timeout() {
    let mut c = client(None);
    c.command_timeout = Duration::from_secs(4);
    let mut n = Net::new(c, bmc());
    n.loss = 1.0;
    let start = n.now;
    assert!(matches!(n.power(), Err(IpmiError::Timeout(_))));
    assert!(n.now - start <= Duration::from_secs(4));
}

#[test]
fn boot_flags_roundtrip_and_one_time_override_is_consumed() {
    let mut n = Net::new(client(Some(3)), bmc());
    let set = BootFlags::new(BootDevice::Pxe, false, true);
    let r = n
        .cmd(
            cmd::NETFN_CHASSIS,
            cmd::CMD_SET_BOOT_OPTIONS,
            set.set_request(),
        )
        .unwrap();
    assert_eq!(r.completion, 0);
    let r = n
        .cmd(
            cmd::NETFN_CHASSIS,
            cmd::CMD_GET_BOOT_OPTIONS,
            cmd::get_boot_option_request(5),
        )
        .unwrap();
    let got = BootFlags::parse_get_response(&r.data).unwrap();
    assert_eq!(got, set);
    n.control(ChassisControl::PowerUp).unwrap();
    let r = n
        .cmd(
            cmd::NETFN_CHASSIS,
            cmd::CMD_GET_BOOT_OPTIONS,
            cmd::get_boot_option_request(5),
        )
        .unwrap();
    assert!(
        !BootFlags::parse_get_response(&r.data).unwrap().valid,
        "once = consumed by the boot"
    );
    assert_eq!(n.bmc.machine.boots.len(), 1);
    assert_eq!(n.bmc.machine.boots[0].device, BootDevice::Pxe);
}

#[test]
fn nmi_counts_and_a_refused_command_keeps_its_code() {
    let mut n = Net::new(client(Some(17)), bmc());
    assert_eq!(n.control(ChassisControl::DiagnosticInterrupt).unwrap(), 0);
    assert_eq!(n.bmc.stats(n.now).nmi_count, 1);
    let mut b = bmc();
    b.nmi = false;
    let mut n = Net::new(client(Some(17)), b);
    assert_eq!(
        n.control(ChassisControl::DiagnosticInterrupt).unwrap(),
        0xcc
    );
}

#[test]
fn session_limit_refuses_the_ninth_session() {
    let mut b = Bmc::new(bmc(), 5);
    let mut now = Instant::now();
    let mut clients = Vec::new();
    for i in 0..9 {
        let mut s =
            ClientSession::with_rng(client(Some(3)), now, StdRng::seed_from_u64(i)).unwrap();
        let id = s.submit(now, cmd::NETFN_APP, cmd::CMD_GET_DEVICE_ID, vec![]);
        let result = loop {
            while let Some(d) = s.poll_transmit() {
                if let Some(r) = b.handle(now, &d) {
                    s.handle_input(now, &r);
                }
            }
            let mut done = None;
            while let Some(ev) = s.poll_event() {
                if let Event::Response { id: rid, result } = ev {
                    assert_eq!(rid, id);
                    done = Some(result);
                }
            }
            if let Some(result) = done {
                break result;
            }
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
        };
        if i < 8 {
            assert!(result.is_ok(), "session {i}: {result:?}");
        } else {
            match result {
                Err(IpmiError::SessionRefused { code, .. }) => assert_eq!(code, 0x01),
                other => panic!("ninth session: {other:?}"),
            }
        }
        clients.push(s);
    }
    assert_eq!(b.stats(now).sessions_active, 8);
    // Closing one frees a slot.
    let mut first = clients.remove(0);
    first.close(now);
    while let Some(d) = first.poll_transmit() {
        if let Some(r) = b.handle(now, &d) {
            first.handle_input(now, &r);
        }
    }
    assert!(first.is_closed());
    assert_eq!(b.stats(now).sessions_active, 7);
}

#[test]
fn replayed_and_stray_packets_are_dropped() {
    let mut n = Net::new(client(Some(17)), bmc());
    n.power().unwrap();
    let last = n.from_bmc.last().unwrap().clone();
    let before = n.client.stats().dropped;
    n.client.handle_input(n.now, &last);
    assert_eq!(n.client.stats().dropped, before + 1, "replay dropped");
    // A packet captured from the client, replayed at the BMC, is refused too.
    let (_, req) = n.wire_log.last().unwrap().clone();
    let dropped = n.bmc.stats(n.now).dropped;
    assert!(n.bmc.handle(n.now, &req).is_none());
    assert_eq!(n.bmc.stats(n.now).dropped, dropped + 1);
    assert!(n.client.poll_event().is_none());
    assert_eq!(n.power().unwrap(), PowerState::Off, "session still fine");
}

#[test]
fn min_interval_spaces_commands() {
    let mut c = client(Some(3));
    c.min_interval = Duration::from_millis(500);
    let mut n = Net::new(c, bmc());
    n.power().unwrap();
    let t1 = n.now;
    n.power().unwrap();
    assert!(n.now - t1 >= Duration::from_millis(500));
}

#[test]
fn boot_flags_lapse_after_60_s_unless_parameter_3_keeps_them() {
    let get = |n: &mut Net| {
        let r = n
            .cmd(
                cmd::NETFN_CHASSIS,
                cmd::CMD_GET_BOOT_OPTIONS,
                cmd::get_boot_option_request(5),
            )
            .unwrap();
        BootFlags::parse_get_response(&r.data).unwrap()
    };
    let set = BootFlags::new(BootDevice::Pxe, false, false).set_request();

    let mut n = Net::new(client(Some(3)), bmc());
    n.cmd(cmd::NETFN_CHASSIS, cmd::CMD_SET_BOOT_OPTIONS, set.clone())
        .unwrap();
    assert!(get(&mut n).valid);
    n.idle(Duration::from_secs(61));
    assert!(
        !get(&mut n).valid,
        "the BMC cleared the flags after its 60 s timeout"
    );

    let mut n = Net::new(client(Some(3)), bmc());
    let r = n
        .cmd(
            cmd::NETFN_CHASSIS,
            cmd::CMD_SET_BOOT_OPTIONS,
            cmd::disable_boot_flag_timeout_request(),
        )
        .unwrap();
    assert_eq!(r.completion, 0);
    n.cmd(cmd::NETFN_CHASSIS, cmd::CMD_SET_BOOT_OPTIONS, set)
        .unwrap();
    n.idle(Duration::from_secs(61));
    let f = get(&mut n);
    assert!(
        f.valid && f.device == BootDevice::Pxe,
        "parameter 3 kept them: {f:?}"
    );
}

/// SOL end to end without sockets: a console `SolEndpoint` rides on the client
/// session (encrypted and authenticated, session sequence numbers checked) to
/// the simulated BMC's SOL and its host serial port, with 20 % loss each way.
#[test]
fn sol_rides_on_the_session_through_loss() {
    use ironrack::ipmi::sol::{Role, SolConfig, SolEndpoint};
    use ironrack::ipmi::wire::PayloadType;

    for suite in [3u8, 17] {
        let mut ccfg = client(Some(suite));
        ccfg.max_attempts = 12;
        let mut bcfg = BmcConfig::new("admin", PW);
        bcfg.sol.retries = 40;
        let mut n = Net::new(ccfg, bcfg);
        let act = n.activate_sol();
        assert_eq!(act.port, 623);
        let mut cc = SolConfig::new(Role::Console);
        cc.max_data = act.inbound_size as usize - 4;
        cc.retries = 40;
        let mut con = SolEndpoint::new(cc);

        let output: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
        let keys: Vec<u8> = (0..3_000u32).map(|i| (i % 127) as u8).collect();
        assert_eq!(n.bmc.host_write(&output), output.len());
        con.write(&keys).unwrap();
        n.loss = 0.2;
        let (mut got, mut typed) = (Vec::new(), Vec::new());
        for _ in 0..200_000 {
            let mut moved = false;
            let now = n.now;
            while let Some(p) = con.poll_transmit(now) {
                moved = true;
                let d = n.client.send_payload(PayloadType::Sol, &p).unwrap();
                if !n.lost() {
                    assert!(
                        n.bmc.handle(now, &d).is_none(),
                        "SOL is not answered inline"
                    );
                }
            }
            while let Some(d) = n.client.poll_transmit() {
                moved = true;
                if !n.lost() {
                    if let Some(r) = n.bmc.handle(now, &d) {
                        if !n.lost() {
                            n.client.handle_input(now, &r);
                        }
                    }
                }
            }
            while let Some((_, d)) = n.bmc.poll_transmit(now) {
                moved = true;
                if !n.lost() {
                    n.client.handle_input(now, &d);
                }
            }
            while let Some(ev) = n.client.poll_event() {
                if let Event::Payload { payload_type, data } = ev {
                    assert_eq!(payload_type, PayloadType::Sol);
                    con.handle_packet(now, &data).unwrap();
                    moved = true;
                }
            }
            got.extend(con.read());
            typed.extend(n.bmc.host_read());
            if got.len() == output.len() && typed.len() == keys.len() && con.is_idle() {
                break;
            }
            if !moved {
                let next = [
                    con.poll_timeout(),
                    n.bmc.poll_timeout(),
                    n.client.poll_timeout(),
                ]
                .into_iter()
                .flatten()
                .min()
                .expect("something is waiting");
                n.now = n.now.max(next);
                con.handle_timeout(n.now);
                n.bmc.handle_timeout(n.now);
                n.client.handle_timeout(n.now);
            }
        }
        assert!(!con.is_closed());
        assert!(
            got == output,
            "suite {suite}: host output complete and in order"
        );
        assert!(
            typed == keys,
            "suite {suite}: keystrokes complete and in order"
        );
        assert!(con.stats().duplicates > 0 && con.stats().retransmits > 0);
        assert_eq!(n.bmc.host.discarded, 0);
        assert!(n.bmc.sol_active(), "SOL stays active in its session");
    }
}

#[test]
fn a_streaming_console_keeps_the_session_alive_without_keepalives() {
    use ironrack::ipmi::sol::{Role, SolConfig, SolEndpoint};
    use ironrack::ipmi::wire::PayloadType;

    let mut ccfg = client(Some(17));
    ccfg.keepalive = Some(Duration::from_secs(5));
    let mut n = Net::new(ccfg, bmc());
    let act = n.activate_sol();
    let mut cc = SolConfig::new(Role::Console);
    cc.max_data = act.inbound_size as usize - 4;
    let mut con = SolEndpoint::new(cc);
    let before = n.client.stats().keepalives;
    let mut got = 0usize;
    // The host prints a line every second for 30 s: 6 keepalive periods.
    for _ in 0..30 {
        n.bmc.host_write(b"a line of boot output\r\n");
        let end = n.now + Duration::from_secs(1);
        loop {
            let now = n.now;
            while let Some(p) = con.poll_transmit(now) {
                let d = n.client.send_payload(PayloadType::Sol, &p).unwrap();
                n.bmc.handle(now, &d);
            }
            while let Some(d) = n.client.poll_transmit() {
                if let Some(r) = n.bmc.handle(now, &d) {
                    n.client.handle_input(now, &r);
                }
            }
            while let Some((_, d)) = n.bmc.poll_transmit(now) {
                n.client.handle_input(now, &d);
            }
            while let Some(ev) = n.client.poll_event() {
                if let Event::Payload { data, .. } = ev {
                    con.handle_packet(now, &data).unwrap();
                }
            }
            got += con.read().len();
            let next = [
                con.poll_timeout(),
                n.bmc.poll_timeout(),
                n.client.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    n.now = n.now.max(t);
                    con.handle_timeout(n.now);
                    n.bmc.handle_timeout(n.now);
                    n.client.handle_timeout(n.now);
                }
                _ => break,
            }
        }
        n.now = end;
    }
    assert_eq!(got, 30 * 23, "every line reached the console");
    assert_eq!(
        n.client.stats().keepalives,
        before,
        "SOL from the BMC proves the session alive"
    );
    // Once the host falls silent, keepalives resume.
    n.idle(Duration::from_secs(12));
    assert!(n.client.stats().keepalives > before);
}

// Found by the fault campaign (tests/fault_campaign.rs): under loss the
// client re-opens its session now and then (a command unanswered after every
// retransmit, or a lost keepalive) and left the old one on the BMC, which
// kept it until its idle timeout. On a BMC with a long timeout the slots ran
// out: 300 status queries over a 30 % lossy link left 35 sessions open on one
// BMC. The client now closes what it abandoned, by id, from the new session.

fn long_lived_bmc() -> BmcConfig {
    let mut b = bmc();
    b.session_timeout = Duration::from_secs(600);
    b.max_sessions = 64;
    b
}

#[test]
fn a_reopen_closes_the_session_it_left_on_the_bmc() {
    let mut n = Net::new(client(Some(3)), long_lived_bmc());
    n.power().unwrap();
    // Every answer to the next command is lost: the client gives the
    // session up and opens another.
    n.drop_answers = 4;
    n.power().unwrap();
    n.idle(Duration::from_secs(1));
    let s = n.bmc.stats(n.now);
    assert_eq!(s.sessions_opened, 2, "{s:?}");
    assert_eq!(
        s.sessions_active, 1,
        "the abandoned session was closed: {s:?}"
    );
    assert_eq!(n.client.stats().sessions_opened, 2);
    // The new session goes on serving.
    n.power().unwrap();
    assert_eq!(n.bmc.stats(n.now).sessions_opened, 2);
}

#[test]
fn a_lossy_link_does_not_pile_sessions_up_on_the_bmc() {
    let mut n = Net::new(client(Some(3)), long_lived_bmc());
    n.loss = 0.3;
    let mut ok = 0;
    for _ in 0..300 {
        ok += usize::from(n.power().is_ok());
        n.idle(Duration::from_millis(500));
    }
    n.loss = 0.0;
    n.power().unwrap();
    n.idle(Duration::from_secs(1));
    let s = n.bmc.stats(n.now);
    eprintln!(
        "{ok} of 300 answered; BMC: {s:?}; client: {:?}",
        n.client.stats()
    );
    assert!(s.sessions_opened > 3, "the loss forced re-opens: {s:?}");
    assert!(
        s.sessions_active + s.handshakes_pending <= 2,
        "sessions left behind on the BMC: {s:?}"
    );
}
