//! Open Session Request/Response and RAKP messages 1-4 (src/ipmi/rakp.rs),
//! each decoded from the same bytes, plus the RAKP hashes over what decoded.
//!
//! Properties: decoding never panics; whatever decodes survives
//! encode -> decode unchanged (the decoders and encoders agree); encoded
//! messages have the lengths the spec gives; the RAKP codes depend on every
//! field (a RAKP2 code computed for the decoded fields does not verify for
//! a different BMC random).
#![no_main]

use ironrack::ipmi::crypto::{AuthAlg, RakpParams};
use ironrack::ipmi::rakp::{
    self, OpenSessionRequest, OpenSessionResponse, Rakp1, Rakp2, Rakp3, Rakp4,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = OpenSessionRequest::decode(data) {
        let e = m.encode();
        assert_eq!(e.len(), 32);
        assert_eq!(OpenSessionRequest::decode(&e), Ok(m));
    }
    if let Ok(m) = OpenSessionResponse::decode(data) {
        let e = m.encode();
        assert_eq!(e.len(), if m.status == 0 { 36 } else { 8 });
        let again = OpenSessionResponse::decode(&e).expect("re-encoded response decodes");
        assert_eq!(again, m);
        let _ = rakp::status_name(m.status);
    }
    if let Ok(m) = Rakp1::decode(data) {
        assert!(m.username.len() <= 16);
        let e = m.encode();
        assert_eq!(e.len(), 28 + m.username.len());
        assert_eq!(Rakp1::decode(&e), Ok(m.clone()));

        // Both ends hash these fields; a different BMC random must change
        // every code.
        let rand_c = [0x5a; 16];
        let guid = *b"IRONRACK-SIM-001";
        let p = RakpParams {
            sid_m: 0xa0a2a3a4,
            sid_c: m.bmc_session_id,
            rand_m: &m.console_random,
            rand_c: &rand_c,
            guid_c: &guid,
            role: m.role,
            username: &m.username,
        };
        let other_c = [0xa5; 16];
        let q = RakpParams {
            rand_c: &other_c,
            ..p.clone()
        };
        for alg in [AuthAlg::HmacSha1, AuthAlg::HmacSha256] {
            let kuid = b"ironrack-test-pw\0\0\0\0";
            assert_ne!(p.rakp2_code(alg, kuid), q.rakp2_code(alg, kuid));
            assert_ne!(p.rakp3_code(alg, kuid), q.rakp3_code(alg, kuid));
            let sik = p.sik(alg, kuid);
            assert_ne!(sik, q.sik(alg, kuid));
            assert_eq!(p.rakp4_icv(alg, &sik).len(), alg.icv_len());
        }
        assert!(p.rakp2_code(AuthAlg::None, b"").is_empty());
    }
    if let Ok(m) = Rakp2::decode(data) {
        let e = m.encode();
        let again = Rakp2::decode(&e).expect("re-encoded RAKP2 decodes");
        assert_eq!(again, m);
    }
    if let Ok(m) = Rakp3::decode(data) {
        let e = m.encode();
        assert_eq!(e.len(), 8 + m.auth_code.len());
        assert_eq!(Rakp3::decode(&e), Ok(m));
    }
    if let Ok(m) = Rakp4::decode(data) {
        let e = m.encode();
        let again = Rakp4::decode(&e).expect("re-encoded RAKP4 decodes");
        assert_eq!(again, m);
    }
});
