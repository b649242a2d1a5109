//! Byte vectors captured from real peers (ipmitool and ipmipower against
//! OpenIPMI's ipmi_sim; see scripts/capture-ipmi-vectors.sh). Our codec and
//! crypto must decode every packet, reproduce every RAKP code from the known
//! password, derive the same session keys, and open every in-session packet.

use ironrack::ipmi::cmd;
use ironrack::ipmi::crypto::{CipherSuite, RakpParams, SessionKeys};
use ironrack::ipmi::rakp::{OpenSessionRequest, OpenSessionResponse, Rakp1, Rakp2, Rakp3, Rakp4};
use ironrack::ipmi::wire::{self, IpmiRequest, IpmiResponse, Packet, PayloadType};
use ironrack::util::hex_decode;

struct Capture {
    password: Option<Vec<u8>>,
    packets: Vec<(bool, Vec<u8>)>, // (from client, bytes)
}

fn load(name: &str) -> Capture {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut password = None;
    let mut packets = Vec::new();
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("# password: ") {
            password = Some(p.trim().as_bytes().to_vec());
        } else if let Some(h) = line.strip_prefix("C>S ") {
            packets.push((true, hex_decode(h).unwrap()));
        } else if let Some(h) = line.strip_prefix("S>C ") {
            packets.push((false, hex_decode(h).unwrap()));
        }
    }
    Capture { password, packets }
}

fn v20(b: &[u8]) -> wire::V20Packet<'_> {
    match wire::decode(b).unwrap() {
        Packet::V20(p) => p,
        other => panic!("expected RMCP+, got {other:?}"),
    }
}

/// The suite and RAKP fields of a captured handshake, from its four messages.
fn exchange<'a>(
    osr: &Option<OpenSessionRequest>,
    osp: &Option<OpenSessionResponse>,
    r1: &'a Option<Rakp1>,
    m2: &'a Rakp2,
) -> (CipherSuite, RakpParams<'a>) {
    let (o, s, m1) = (
        osr.as_ref().unwrap(),
        osp.as_ref().unwrap(),
        r1.as_ref().unwrap(),
    );
    let suite = CipherSuite::by_algorithms(s.auth, s.integrity, s.conf).unwrap();
    let params = RakpParams {
        sid_m: o.console_session_id,
        sid_c: s.bmc_session_id,
        rand_m: &m1.console_random,
        rand_c: &m2.bmc_random,
        guid_c: &m2.bmc_guid,
        role: m1.role,
        username: &m1.username,
    };
    (suite, params)
}

/// Walk a successful suite-3 capture: handshake, keys, in-session traffic.
fn replay(name: &str) -> Vec<IpmiResponse> {
    replay_with_sol(name).0
}

/// Replay a capture; also returns its SOL payloads, opened: (from client, plaintext).
fn replay_with_sol(name: &str) -> (Vec<IpmiResponse>, Vec<(bool, Vec<u8>)>) {
    let cap = load(name);
    let mut sol = Vec::new();
    let password = cap.password.clone().expect("capture names its password");
    let mut osr = None;
    let mut osp = None;
    let mut r1 = None;
    let mut r2 = None;
    let mut keys: Option<SessionKeys> = None;
    let mut responses = Vec::new();
    let mut in_session = 0;
    for (from_client, bytes) in &cap.packets {
        match wire::decode(bytes).unwrap() {
            Packet::V15 { payload, .. } => {
                if *from_client {
                    IpmiRequest::decode(payload).unwrap();
                } else {
                    IpmiResponse::decode(payload).unwrap();
                }
            }
            Packet::Asf { .. } => {}
            Packet::V20(p) => match p.payload_type {
                PayloadType::OpenSessionRequest => {
                    osr = Some(OpenSessionRequest::decode(p.payload).unwrap())
                }
                PayloadType::OpenSessionResponse => {
                    osp = Some(OpenSessionResponse::decode(p.payload).unwrap())
                }
                PayloadType::Rakp1 => r1 = Some(Rakp1::decode(p.payload).unwrap()),
                PayloadType::Rakp2 => {
                    let m2 = Rakp2::decode(p.payload).unwrap();
                    let (suite, params) = exchange(&osr, &osp, &r1, &m2);
                    assert_eq!(
                        params.rakp2_code(suite.auth, &password),
                        m2.auth_code,
                        "{name}: RAKP2"
                    );
                    r2 = Some(m2);
                }
                PayloadType::Rakp3 => {
                    let m3 = Rakp3::decode(p.payload).unwrap();
                    let (suite, params) = exchange(&osr, &osp, &r1, r2.as_ref().unwrap());
                    assert_eq!(
                        params.rakp3_code(suite.auth, &password),
                        m3.auth_code,
                        "{name}: RAKP3"
                    );
                    let sik = params.sik(suite.auth, &password);
                    keys = Some(SessionKeys::derive(suite, &sik));
                    // Keep the SIK check for RAKP4 below.
                    let icv = params.rakp4_icv(suite.auth, &sik);
                    let r4 = cap
                        .packets
                        .iter()
                        .filter(|(c, b)| !c && v20_type(b) == Some(PayloadType::Rakp4))
                        .map(|(_, b)| Rakp4::decode(v20(b).payload).unwrap())
                        .next()
                        .unwrap();
                    assert_eq!(r4.status, 0);
                    assert_eq!(r4.icv, icv, "{name}: RAKP4 integrity check value");
                }
                PayloadType::Rakp4 => {}
                PayloadType::Ipmi => {
                    let k = keys.as_ref().expect("session packet after the handshake");
                    assert!(p.authenticated && p.encrypted, "suite 3 encrypts and signs");
                    let plain = p.open(k).unwrap_or_else(|e| panic!("{name}: open: {e}"));
                    in_session += 1;
                    if *from_client {
                        IpmiRequest::decode(&plain).unwrap();
                        // Tampering with any byte after the RMCP header is caught.
                        let mut bad = bytes.clone();
                        let i = bad.len() / 2;
                        bad[i] ^= 0x80;
                        assert!(v20(&bad).open(k).is_err());
                    } else {
                        responses.push(IpmiResponse::decode(&plain).unwrap());
                    }
                }
                PayloadType::Sol => {
                    let k = keys.as_ref().expect("SOL after the handshake");
                    assert!(
                        p.authenticated && p.encrypted,
                        "SOL under suite 3 is protected"
                    );
                    let plain = p
                        .open(k)
                        .unwrap_or_else(|e| panic!("{name}: open SOL: {e}"));
                    sol.push((*from_client, plain));
                }
            },
        }
    }
    assert!(
        in_session >= 4,
        "{name}: in-session packets seen: {in_session}"
    );
    (responses, sol)
}

#[test]
fn ipmitool_power_status_capture() {
    let rs = replay("ipmitool-c3-power-status.txt");
    let status = rs
        .iter()
        .find(|r| r.cmd == cmd::CMD_CHASSIS_STATUS && r.netfn == 1)
        .unwrap();
    assert_eq!(status.completion, 0);
    assert!(cmd::parse_chassis_status(&status.data).is_some());
}

#[test]
fn ipmitool_power_on_capture() {
    let rs = replay("ipmitool-c3-power-on.txt");
    let ctl = rs
        .iter()
        .find(|r| r.cmd == cmd::CMD_CHASSIS_CONTROL)
        .unwrap();
    assert_eq!(ctl.completion, 0);
}

#[test]
fn ipmitool_power_diag_capture_carries_the_refusal() {
    let rs = replay("ipmitool-c3-power-diag.txt");
    let ctl = rs
        .iter()
        .find(|r| r.cmd == cmd::CMD_CHASSIS_CONTROL)
        .unwrap();
    assert_eq!(ctl.completion, 0xcc);
    assert_eq!(
        cmd::completion_name(ctl.completion),
        "invalid data field in request"
    );
}

#[test]
fn ipmitool_bootdev_capture() {
    let rs = replay("ipmitool-c3-bootdev-pxe-persistent-efi.txt");
    assert!(rs
        .iter()
        .any(|r| r.cmd == cmd::CMD_SET_BOOT_OPTIONS && r.completion == 0));
}

#[test]
fn ipmipower_opensesspriv_capture_names_the_privilege() {
    let cap = load("ipmipower-opensesspriv.txt");
    let (_, osr) = cap
        .packets
        .iter()
        .find(|(c, b)| *c && v20_type(b) == Some(PayloadType::OpenSessionRequest))
        .unwrap();
    let rq = OpenSessionRequest::decode(v20(osr).payload).unwrap();
    assert_ne!(
        rq.max_privilege, 0,
        "the quirk names the level in Open Session"
    );
    replay("ipmipower-opensesspriv.txt");
}

#[test]
fn ipmipower_without_workaround_gets_privilege_zero_back() {
    // The quirk itself: asked for "highest matching" (0), ipmi_sim answers with
    // a maximum privilege of 0, which FreeIPMI refuses.
    let cap = load("ipmipower-no-workaround.txt");
    let (_, osp) = cap
        .packets
        .iter()
        .find(|(c, b)| !*c && v20_type(b) == Some(PayloadType::OpenSessionResponse))
        .unwrap();
    let rs = OpenSessionResponse::decode(v20(osp).payload).unwrap();
    assert_eq!((rs.status, rs.max_privilege), (0, 0));
}

fn v20_type(b: &[u8]) -> Option<PayloadType> {
    match wire::decode(b).ok()? {
        Packet::V20(p) => Some(p.payload_type),
        _ => None,
    }
}

#[test]
fn every_captured_datagram_decodes_and_truncations_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".txt") {
            continue;
        }
        for (_, b) in load(&name).packets {
            wire::decode(&b).unwrap_or_else(|e| panic!("{name}: {e}"));
            for cut in 0..b.len() {
                let _ = wire::decode(&b[..cut]);
            }
            n += 1;
        }
    }
    assert!(n > 50, "only {n} datagrams captured");
}

#[test]
fn ipmitool_sol_capture_matches_our_sol_endpoints() {
    use ironrack::ipmi::cmd::PayloadActivation;
    use ironrack::ipmi::sol::{Role, SolConfig, SolEndpoint, SolEvent, SolPacket};
    use std::time::Instant;

    let (rs, sol) = replay_with_sol("ipmitool-c3-sol-activate.txt");
    let act = rs
        .iter()
        .find(|r| r.cmd == cmd::CMD_ACTIVATE_PAYLOAD)
        .expect("Activate Payload answered");
    assert_eq!(act.completion, 0);
    let a = PayloadActivation::parse(&act.data).unwrap();
    assert_eq!(
        (a.inbound_size, a.outbound_size, a.vlan),
        (32, 16384, 0xffff)
    );
    assert!(rs
        .iter()
        .any(|r| r.cmd == cmd::CMD_DEACTIVATE_PAYLOAD && r.completion == 0));

    // ipmi_sim's host output, ipmitool's ACK; ipmitool's keystrokes, ipmi_sim's ACK.
    let pkts: Vec<(bool, SolPacket)> = sol
        .iter()
        .map(|(c, b)| (*c, SolPacket::decode(b).unwrap()))
        .collect();
    assert_eq!(pkts.len(), 4, "{pkts:?}");
    let t = Instant::now();
    let mut console = SolEndpoint::new(SolConfig::new(Role::Console));
    let mut bmc = SolEndpoint::new(SolConfig::new(Role::Bmc));
    for (from_client, plain) in &sol {
        let p = SolPacket::decode(plain).unwrap();
        if p.data.is_empty() {
            continue; // an ACK: compared below
        }
        // Whoever receives this data packet ACKs it exactly as the peer did.
        let (ours, theirs) = if *from_client {
            bmc.handle_packet(t, plain).unwrap();
            (bmc.poll_transmit(t).unwrap(), peer_ack(&sol, false, p.seq))
        } else {
            console.handle_packet(t, plain).unwrap();
            (
                console.poll_transmit(t).unwrap(),
                peer_ack(&sol, true, p.seq),
            )
        };
        assert_eq!(
            ours, theirs,
            "our ACK of packet {} is byte for byte the captured one",
            p.seq
        );
    }
    assert_eq!(
        console.poll_event(),
        Some(SolEvent::Data(b"ironrack-sim login: ".to_vec()))
    );
    assert_eq!(bmc.read(), b"root\r");
}

/// The captured ACK (sequence number 0) of packet `seq`, sent by the client or not.
fn peer_ack(sol: &[(bool, Vec<u8>)], from_client: bool, seq: u8) -> Vec<u8> {
    sol.iter()
        .find(|(c, b)| *c == from_client && b.first() == Some(&0) && b.get(1) == Some(&seq))
        .map(|(_, b)| b.clone())
        .expect("the peer ACKed it")
}
