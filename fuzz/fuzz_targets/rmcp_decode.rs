//! One datagram as the client receives it from a BMC (or the BMC from a
//! console): RMCP / IPMI v1.5 / RMCP+ framing, IPMI messages, the integrity
//! trailer and AES-CBC of an RMCP+ packet, and the command response parsers
//! the client reads (src/ipmi/wire.rs, crypto.rs, cmd.rs).
//!
//! Properties: decoding never panics; what decodes re-encodes to the same
//! bytes where the format is canonical; sealing then opening any payload
//! gives it back; a packet sealed with one suite's keys never opens with
//! another's.
#![no_main]

use ironrack::ipmi::cmd::{
    self, AuthCaps, BootFlags, DeviceId, PayloadActivation, PayloadActivationStatus,
};
use ironrack::ipmi::crypto::{CipherSuite, SessionKeys};
use ironrack::ipmi::wire::{self, IpmiRequest, IpmiResponse, Packet, PayloadType};
use libfuzzer_sys::fuzz_target;

fn keys(suite: CipherSuite) -> SessionKeys {
    SessionKeys::derive(suite, b"fuzzing session integrity key...")
}

fn check_message(payload: &[u8]) {
    if let Ok(rq) = IpmiRequest::decode(payload) {
        // The canonical form has our addresses and LUN 0; compare the fields.
        let again = IpmiRequest::decode(&rq.encode()).expect("re-encoded request decodes");
        assert_eq!(again.cmd, rq.cmd);
        assert_eq!(again.data, rq.data);
        assert_eq!(again.netfn, rq.netfn & 0x3f);
        assert_eq!(again.rq_seq, rq.rq_seq & 0x3f);
    }
    if let Ok(rs) = IpmiResponse::decode(payload) {
        let again = IpmiResponse::decode(&rs.encode()).expect("re-encoded response decodes");
        assert_eq!(again.cmd, rs.cmd);
        assert_eq!(again.completion, rs.completion);
        assert_eq!(again.data, rs.data);
        // What the client reads out of response data.
        let d = &rs.data;
        if let Some(c) = AuthCaps::parse(d) {
            assert!(d.len() >= 8);
            let _ = c;
        }
        for id in cmd::parse_cipher_suite_records(d) {
            let _ = CipherSuite::by_id(id);
        }
        if let Some(id) = DeviceId::parse(d) {
            assert!(id.manufacturer_id < 1 << 20);
        }
        let _ = cmd::parse_chassis_status(d);
        if let Some(f) = BootFlags::parse(d) {
            // What we send for parsed flags parses back to the same flags.
            let rq = f.set_request();
            assert_eq!(BootFlags::parse(&rq[1..]), Some(f));
        }
        let _ = BootFlags::parse_get_response(d);
        if let Some(a) = PayloadActivation::parse(d) {
            assert_eq!(PayloadActivation::parse(&a.encode()), Some(a));
        }
        if let Some(s) = PayloadActivationStatus::parse(d) {
            assert_eq!(PayloadActivationStatus::parse(&s.encode()), Some(s));
            for i in 0..=17 {
                let _ = s.is_active(i);
            }
        }
        let _ = cmd::completion_name(rs.completion);
        let _ = cmd::activate_payload_completion_name(rs.completion);
        let _ = cmd::deactivate_payload_completion_name(rs.completion);
    }
}

fuzz_target!(|data: &[u8]| {
    let suites = [keys(CipherSuite::SUITE_3), keys(CipherSuite::SUITE_17)];
    match wire::decode(data) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(Packet::Asf { message_type, tag }) => {
            let pong = wire::encode_asf(message_type, tag);
            assert!(matches!(wire::decode(&pong), Ok(Packet::Asf { .. })));
        }
        Ok(Packet::V15 {
            session_seq,
            session_id,
            payload,
        }) => {
            let again = wire::encode_v15(session_seq, session_id, payload);
            // Same session header and payload (the RMCP header may differ in
            // its reserved and sequence bytes).
            assert_eq!(&again[4..], &data[4..again.len()]);
            check_message(payload);
        }
        Ok(Packet::V20(p)) => {
            if !p.encrypted && !p.authenticated {
                let again = wire::encode_v20(
                    p.payload_type,
                    p.session_id,
                    p.session_seq,
                    p.payload,
                    None,
                    [0; 16],
                );
                assert_eq!(&again[5..], &data[5..again.len()]);
                check_message(p.payload);
            }
            for k in &suites {
                if let Ok(plain) = p.open(k) {
                    // Only a packet sealed with these keys opens: we never
                    // sealed this one, so it must at least be well formed.
                    assert!(p.authenticated);
                    check_message(&plain);
                }
            }
        }
    }

    // Seal the input as a payload with each suite and open it again.
    let payload = &data[..data.len().min(1024)];
    let iv: [u8; 16] = std::array::from_fn(|i| data.get(i).copied().unwrap_or(i as u8));
    for (i, k) in suites.iter().enumerate() {
        let sealed = wire::encode_v20(PayloadType::Sol, 0x1234_5678, 9, payload, Some(k), iv);
        let Ok(Packet::V20(p)) = wire::decode(&sealed) else {
            panic!("a sealed packet does not decode");
        };
        assert!(p.encrypted && p.authenticated);
        assert_eq!(p.open(k).expect("own packet opens"), payload);
        let other = &suites[1 - i];
        assert!(p.open(other).is_err(), "opened with the other suite's keys");
        assert_eq!(k.decrypt(&k.encrypt(iv, payload)).as_deref(), Some(payload));
        // Flip one byte anywhere after the RMCP header: the packet must no
        // longer open (or no longer decode).
        if !data.is_empty() {
            let mut bad = sealed.clone();
            let at = 4 + data[0] as usize % (bad.len() - 4);
            bad[at] ^= 0x01 | data.get(1).copied().unwrap_or(0);
            if let Ok(Packet::V20(q)) = wire::decode(&bad) {
                assert!(q.open(k).is_err(), "tampered packet opened (byte {at})");
            }
        }
    }
});
