//! RMCP / IPMI v1.5 / RMCP+ (IPMI v2.0) framing and the IPMI LAN message format.
//!
//! Decoding never panics: every function takes untrusted bytes and returns
//! `Err(WireError)` for anything short, inconsistent or unknown.

use super::crypto::SessionKeys;

pub const RMCP_VERSION: u8 = 0x06;
pub const RMCP_SEQ_NO_ACK: u8 = 0xff;
pub const RMCP_CLASS_ASF: u8 = 0x06;
pub const RMCP_CLASS_IPMI: u8 = 0x07;
pub const AUTH_TYPE_NONE: u8 = 0x00;
pub const AUTH_TYPE_RMCPP: u8 = 0x06;
pub const ASF_IANA: u32 = 4542;
/// The BMC's responder address and the remote console's software id.
pub const BMC_SA: u8 = 0x20;
pub const CONSOLE_SWID: u8 = 0x81;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("packet too short ({0})")]
    Short(&'static str),
    #[error("not an RMCP/IPMI packet")]
    NotIpmi,
    #[error("unsupported auth type {0:#04x}")]
    AuthType(u8),
    #[error("unsupported payload type {0:#04x}")]
    PayloadType(u8),
    #[error("bad checksum")]
    Checksum,
    #[error("bad integrity trailer")]
    Trailer,
    #[error("integrity check failed")]
    Integrity,
    #[error("decryption failed")]
    Decrypt,
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// RMCP+ payload types (IPMI v2.0 table 13-16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadType {
    Ipmi = 0x00,
    Sol = 0x01,
    OpenSessionRequest = 0x10,
    OpenSessionResponse = 0x11,
    Rakp1 = 0x12,
    Rakp2 = 0x13,
    Rakp3 = 0x14,
    Rakp4 = 0x15,
}

impl PayloadType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x00 => Self::Ipmi,
            0x01 => Self::Sol,
            0x10 => Self::OpenSessionRequest,
            0x11 => Self::OpenSessionResponse,
            0x12 => Self::Rakp1,
            0x13 => Self::Rakp2,
            0x14 => Self::Rakp3,
            0x15 => Self::Rakp4,
            _ => return None,
        })
    }
}

/// A decoded datagram, before any session-level checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// ASF presence ping / pong. `message_type` 0x80 = ping, 0x40 = pong.
    Asf { message_type: u8, tag: u8 },
    /// IPMI v1.5 session wrapper. Only auth type NONE is accepted.
    V15 {
        session_seq: u32,
        session_id: u32,
        payload: &'a [u8],
    },
    /// RMCP+ session wrapper.
    V20(V20Packet<'a>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V20Packet<'a> {
    pub encrypted: bool,
    pub authenticated: bool,
    pub payload_type: PayloadType,
    pub session_id: u32,
    pub session_seq: u32,
    /// The payload as on the wire (still encrypted when `encrypted`).
    pub payload: &'a [u8],
    /// Everything after the payload: integrity pad, pad length, next header, AuthCode.
    pub trailer: &'a [u8],
    /// The whole datagram, needed to check the AuthCode.
    pub raw: &'a [u8],
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Decode the RMCP and session headers of a datagram.
pub fn decode(buf: &[u8]) -> Result<Packet<'_>, WireError> {
    if buf.len() < 4 {
        return Err(WireError::Short("rmcp header"));
    }
    if buf[0] != RMCP_VERSION {
        return Err(WireError::NotIpmi);
    }
    match buf[3] & 0x1f {
        RMCP_CLASS_ASF => {
            // IANA(4) type(1) tag(1) reserved(1) len(1)
            if buf.len() < 12 {
                return Err(WireError::Short("asf"));
            }
            if u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != ASF_IANA {
                return Err(WireError::NotIpmi);
            }
            Ok(Packet::Asf {
                message_type: buf[8],
                tag: buf[9],
            })
        }
        RMCP_CLASS_IPMI => decode_session(buf),
        _ => Err(WireError::NotIpmi),
    }
}

fn decode_session(buf: &[u8]) -> Result<Packet<'_>, WireError> {
    let b = &buf[4..];
    let Some(&auth_type) = b.first() else {
        return Err(WireError::Short("session header"));
    };
    match auth_type {
        AUTH_TYPE_NONE => {
            // authtype(1) seq(4) id(4) len(1) payload
            if b.len() < 10 {
                return Err(WireError::Short("v1.5 header"));
            }
            let len = b[9] as usize;
            let payload = b
                .get(10..10 + len)
                .ok_or(WireError::Short("v1.5 payload"))?;
            Ok(Packet::V15 {
                session_seq: u32_le(&b[1..5]),
                session_id: u32_le(&b[5..9]),
                payload,
            })
        }
        AUTH_TYPE_RMCPP => {
            // authtype(1) ptype(1) id(4) seq(4) len(2) payload
            if b.len() < 12 {
                return Err(WireError::Short("v2.0 header"));
            }
            let ptype = b[1];
            let payload_type =
                PayloadType::from_u8(ptype & 0x3f).ok_or(WireError::PayloadType(ptype & 0x3f))?;
            let len = u16::from_le_bytes([b[10], b[11]]) as usize;
            let payload = b
                .get(12..12 + len)
                .ok_or(WireError::Short("v2.0 payload"))?;
            Ok(Packet::V20(V20Packet {
                encrypted: ptype & 0x80 != 0,
                authenticated: ptype & 0x40 != 0,
                payload_type,
                session_id: u32_le(&b[2..6]),
                session_seq: u32_le(&b[6..10]),
                payload,
                trailer: &b[12 + len..],
                raw: buf,
            }))
        }
        other => Err(WireError::AuthType(other)),
    }
}

fn rmcp_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&[RMCP_VERSION, 0x00, RMCP_SEQ_NO_ACK, RMCP_CLASS_IPMI]);
}

/// Encode an ASF presence ping (0x80) or pong (0x40).
pub fn encode_asf(message_type: u8, tag: u8) -> Vec<u8> {
    let mut out = vec![RMCP_VERSION, 0x00, RMCP_SEQ_NO_ACK, RMCP_CLASS_ASF];
    out.extend_from_slice(&ASF_IANA.to_be_bytes());
    out.extend_from_slice(&[message_type, tag, 0x00]);
    if message_type == 0x40 {
        // Pong data: IANA, OEM, supported entities (IPMI), interactions, reserved.
        out.push(16);
        out.extend_from_slice(&ASF_IANA.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0x81, 0x00, 0, 0, 0, 0, 0, 0]);
    } else {
        out.push(0);
    }
    out
}

/// Encode an IPMI v1.5 session-less packet (auth type NONE).
pub fn encode_v15(session_seq: u32, session_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + payload.len() + 1);
    rmcp_header(&mut out);
    out.push(AUTH_TYPE_NONE);
    out.extend_from_slice(&session_seq.to_le_bytes());
    out.extend_from_slice(&session_id.to_le_bytes());
    out.push(payload.len() as u8);
    out.extend_from_slice(payload);
    out
}

/// Encode an RMCP+ packet. With `keys`, the payload is encrypted when the suite
/// has confidentiality and the integrity trailer is added when it has integrity.
pub fn encode_v20(
    payload_type: PayloadType,
    session_id: u32,
    session_seq: u32,
    payload: &[u8],
    keys: Option<&SessionKeys>,
    iv: [u8; 16],
) -> Vec<u8> {
    let (encrypt, authenticate) = match keys {
        Some(k) => (
            k.suite.conf != super::crypto::ConfAlg::None,
            k.suite.integrity != super::crypto::IntegrityAlg::None,
        ),
        None => (false, false),
    };
    let body = match (encrypt, keys) {
        (true, Some(k)) => k.encrypt(iv, payload),
        _ => payload.to_vec(),
    };
    let mut ptype = payload_type as u8;
    if encrypt {
        ptype |= 0x80;
    }
    if authenticate {
        ptype |= 0x40;
    }
    let mut out = Vec::with_capacity(16 + body.len() + 24);
    rmcp_header(&mut out);
    out.push(AUTH_TYPE_RMCPP);
    out.push(ptype);
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&session_seq.to_le_bytes());
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    if let (true, Some(k)) = (authenticate, keys) {
        // Pad so that auth type .. next header is a multiple of four bytes.
        let covered = out.len() - 4 + 2;
        let pad = (4 - covered % 4) % 4;
        out.extend(std::iter::repeat_n(0xff, pad));
        out.push(pad as u8);
        out.push(RMCP_CLASS_IPMI);
        let code = k.integrity_code(&out[4..]);
        out.extend_from_slice(&code);
    }
    out
}

impl V20Packet<'_> {
    /// Check the AuthCode of an authenticated packet and return the plaintext
    /// payload. Unauthenticated packets are refused when `keys` demand integrity.
    pub fn open(&self, keys: &SessionKeys) -> Result<Vec<u8>, WireError> {
        let want_auth = keys.suite.integrity != super::crypto::IntegrityAlg::None;
        let want_enc = keys.suite.conf != super::crypto::ConfAlg::None;
        if want_auth != self.authenticated || want_enc != self.encrypted {
            return Err(WireError::Integrity);
        }
        if self.authenticated {
            let n = keys.suite.integrity.code_len();
            if self.trailer.len() < n + 2 {
                return Err(WireError::Trailer);
            }
            let code_at = self.raw.len() - n;
            let next_header = self.raw[code_at - 1];
            let pad_len = self.raw[code_at - 2] as usize;
            if next_header != RMCP_CLASS_IPMI || pad_len + 2 + n != self.trailer.len() {
                return Err(WireError::Trailer);
            }
            let expect = keys.integrity_code(&self.raw[4..code_at]);
            if !super::crypto::ct_eq(&expect, &self.raw[code_at..]) {
                return Err(WireError::Integrity);
            }
        }
        if self.encrypted {
            keys.decrypt(self.payload).ok_or(WireError::Decrypt)
        } else {
            Ok(self.payload.to_vec())
        }
    }
}

/// Two's-complement checksum used by IPMI messages.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// An IPMI request message as carried in an IPMI payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiRequest {
    pub netfn: u8,
    pub cmd: u8,
    pub rq_seq: u8,
    pub data: Vec<u8>,
}

/// An IPMI response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiResponse {
    /// The response netfn (request netfn + 1).
    pub netfn: u8,
    pub cmd: u8,
    pub rq_seq: u8,
    pub completion: u8,
    pub data: Vec<u8>,
}

impl IpmiRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(7 + self.data.len());
        out.push(BMC_SA);
        out.push(self.netfn << 2);
        out.push(checksum(&out[0..2]));
        out.push(CONSOLE_SWID);
        out.push((self.rq_seq & 0x3f) << 2);
        out.push(self.cmd);
        out.extend_from_slice(&self.data);
        out.push(checksum(&out[3..]));
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < 7 {
            return Err(WireError::Short("ipmi request"));
        }
        if checksum(&b[0..2]) != b[2] || checksum(&b[3..b.len() - 1]) != b[b.len() - 1] {
            return Err(WireError::Checksum);
        }
        Ok(IpmiRequest {
            netfn: b[1] >> 2,
            cmd: b[5],
            rq_seq: b[4] >> 2,
            data: b[6..b.len() - 1].to_vec(),
        })
    }

    /// The response to this request with a completion code and data.
    pub fn respond(&self, completion: u8, data: &[u8]) -> IpmiResponse {
        IpmiResponse {
            netfn: self.netfn | 1,
            cmd: self.cmd,
            rq_seq: self.rq_seq,
            completion,
            data: data.to_vec(),
        }
    }
}

impl IpmiResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.data.len());
        out.push(CONSOLE_SWID);
        out.push(self.netfn << 2);
        out.push(checksum(&out[0..2]));
        out.push(BMC_SA);
        out.push((self.rq_seq & 0x3f) << 2);
        out.push(self.cmd);
        out.push(self.completion);
        out.extend_from_slice(&self.data);
        out.push(checksum(&out[3..]));
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < 8 {
            return Err(WireError::Short("ipmi response"));
        }
        if checksum(&b[0..2]) != b[2] || checksum(&b[3..b.len() - 1]) != b[b.len() - 1] {
            return Err(WireError::Checksum);
        }
        Ok(IpmiResponse {
            netfn: b[1] >> 2,
            cmd: b[5],
            rq_seq: b[4] >> 2,
            completion: b[6],
            data: b[7..b.len() - 1].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::crypto::CipherSuite;
    use crate::util::hex_decode;

    #[test]
    fn get_channel_auth_caps_request_bytes() {
        // The session-less request ipmitool sends first: channel 0x0e with the v2.0
        // bit, administrator.
        let msg = IpmiRequest {
            netfn: 0x06,
            cmd: 0x38,
            rq_seq: 0,
            data: vec![0x8e, 0x04],
        }
        .encode();
        let pkt = encode_v15(0, 0, &msg);
        assert_eq!(
            pkt,
            hex_decode("0600ff07 00 00000000 00000000 09 2018c8 810038 8e04b5").unwrap()
        );
        match decode(&pkt).unwrap() {
            Packet::V15 { payload, .. } => {
                let rq = IpmiRequest::decode(payload).unwrap();
                assert_eq!(
                    (rq.netfn, rq.cmd, rq.data.as_slice()),
                    (6, 0x38, &[0x8e, 4][..])
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn checksum_matches_spec_example() {
        // 0x20 + 0x18 + 0xc8 == 0 (mod 256)
        assert_eq!(checksum(&[0x20, 0x18]), 0xc8);
    }

    #[test]
    fn v20_roundtrip_authenticated_encrypted() {
        for suite in [CipherSuite::SUITE_3, CipherSuite::SUITE_17] {
            let keys = SessionKeys::derive(suite, &[0x42; 32]);
            for len in 0..40 {
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let pkt = encode_v20(
                    PayloadType::Ipmi,
                    0x11223344,
                    7,
                    &payload,
                    Some(&keys),
                    [5; 16],
                );
                let Packet::V20(p) = decode(&pkt).unwrap() else {
                    panic!("not v2")
                };
                assert!(p.encrypted && p.authenticated);
                assert_eq!(p.session_id, 0x11223344);
                assert_eq!(p.session_seq, 7);
                assert_eq!(p.open(&keys).unwrap(), payload);
                // (auth type .. next header) is a multiple of 4
                assert_eq!((pkt.len() - 4 - suite.integrity.code_len()) % 4, 0);
            }
        }
    }

    #[test]
    fn v20_tampering_detected() {
        let keys = SessionKeys::derive(CipherSuite::SUITE_17, &[0x42; 32]);
        let pkt = encode_v20(PayloadType::Ipmi, 1, 2, b"hello", Some(&keys), [1; 16]);
        for i in 4..pkt.len() {
            let mut bad = pkt.clone();
            bad[i] ^= 0x01;
            let ok = match decode(&bad) {
                Ok(Packet::V20(p)) => p.open(&keys).map(|v| v == b"hello").unwrap_or(false),
                _ => false,
            };
            assert!(!ok, "flip at byte {i} went unnoticed");
        }
        let other = SessionKeys::derive(CipherSuite::SUITE_17, &[0x43; 32]);
        let Packet::V20(p) = decode(&pkt).unwrap() else {
            panic!()
        };
        assert_eq!(p.open(&other), Err(WireError::Integrity));
    }

    #[test]
    fn truncated_inputs_never_panic() {
        let keys = SessionKeys::derive(CipherSuite::SUITE_3, &[1; 20]);
        let pkt = encode_v20(PayloadType::Ipmi, 1, 2, b"0123456789", Some(&keys), [1; 16]);
        for n in 0..pkt.len() {
            if let Ok(Packet::V20(p)) = decode(&pkt[..n]) {
                assert!(p.open(&keys).is_err());
            }
        }
        for n in 0..12 {
            let _ = IpmiResponse::decode(&[0u8; 12][..n]);
            let _ = IpmiRequest::decode(&[0u8; 12][..n]);
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&[6, 0, 0xff, 7, 6, 0x3f]).is_err());
    }

    #[test]
    fn response_roundtrip() {
        let rq = IpmiRequest {
            netfn: 0,
            cmd: 1,
            rq_seq: 63,
            data: vec![],
        };
        let rs = rq.respond(0, &[0x01, 0x00, 0x40]);
        let back = IpmiResponse::decode(&rs.encode()).unwrap();
        assert_eq!(back, rs);
        assert_eq!(back.netfn, 1);
        assert_eq!(back.rq_seq, 63);
    }

    #[test]
    fn asf_ping_pong() {
        let ping = encode_asf(0x80, 9);
        assert_eq!(
            decode(&ping).unwrap(),
            Packet::Asf {
                message_type: 0x80,
                tag: 9
            }
        );
        let pong = encode_asf(0x40, 9);
        assert_eq!(
            decode(&pong).unwrap(),
            Packet::Asf {
                message_type: 0x40,
                tag: 9
            }
        );
    }
}
