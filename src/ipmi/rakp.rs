//! Open Session and RAKP 1-4 messages (IPMI v2.0 section 13.17-13.23).

use super::wire::WireError;

/// RMCP+ status codes carried in Open Session and RAKP messages (table 13-15).
pub fn status_name(code: u8) -> &'static str {
    match code {
        0x00 => "no errors",
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session ID",
        0x03 => "invalid payload type",
        0x04 => "invalid authentication algorithm",
        0x05 => "invalid integrity algorithm",
        0x06 => "no matching authentication payload",
        0x07 => "no matching integrity payload",
        0x08 => "inactive session ID",
        0x09 => "invalid role",
        0x0a => "unauthorized role or privilege level requested",
        0x0b => "insufficient resources to create a session at the requested role",
        0x0c => "invalid name length",
        0x0d => "unauthorized name",
        0x0e => "unauthorized GUID",
        0x0f => "invalid integrity check value",
        0x10 => "invalid confidentiality algorithm",
        0x11 => "no cipher suite match with proposed security algorithms",
        0x12 => "illegal or unrecognized parameter",
        _ => "unknown status",
    }
}

/// The name-only-lookup bit of RAKP1's role byte.
pub const NAME_ONLY_LOOKUP: u8 = 0x10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionRequest {
    pub tag: u8,
    pub max_privilege: u8,
    pub console_session_id: u32,
    pub auth: u8,
    pub integrity: u8,
    pub conf: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionResponse {
    pub tag: u8,
    pub status: u8,
    pub max_privilege: u8,
    pub console_session_id: u32,
    pub bmc_session_id: u32,
    pub auth: u8,
    pub integrity: u8,
    pub conf: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp1 {
    pub tag: u8,
    pub bmc_session_id: u32,
    pub console_random: [u8; 16],
    pub role: u8,
    pub username: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp2 {
    pub tag: u8,
    pub status: u8,
    pub console_session_id: u32,
    pub bmc_random: [u8; 16],
    pub bmc_guid: [u8; 16],
    pub auth_code: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp3 {
    pub tag: u8,
    pub status: u8,
    pub bmc_session_id: u32,
    pub auth_code: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp4 {
    pub tag: u8,
    pub status: u8,
    pub console_session_id: u32,
    pub icv: Vec<u8>,
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn arr16(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    a
}

fn algo_record(kind: u8, alg: u8) -> [u8; 8] {
    [kind, 0, 0, 0x08, alg, 0, 0, 0]
}

/// Read one 8-byte algorithm payload record of `kind`; a record of length 0
/// ("null payload") means "any", which we report as `None`.
fn read_algo(b: &[u8], kind: u8) -> Result<Option<u8>, WireError> {
    if b.len() < 8 || b[0] != kind {
        return Err(WireError::Malformed("algorithm payload"));
    }
    if b[3] == 0 {
        return Ok(None);
    }
    Ok(Some(b[4] & 0x3f))
}

impl OpenSessionRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.tag, self.max_privilege, 0, 0];
        v.extend_from_slice(&self.console_session_id.to_le_bytes());
        v.extend_from_slice(&algo_record(0, self.auth));
        v.extend_from_slice(&algo_record(1, self.integrity));
        v.extend_from_slice(&algo_record(2, self.conf));
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < 32 {
            return Err(WireError::Short("open session request"));
        }
        Ok(OpenSessionRequest {
            tag: b[0],
            max_privilege: b[1] & 0x0f,
            console_session_id: le32(&b[4..8]),
            // A null record means "BMC chooses"; we map that to suite 3's algorithm.
            auth: read_algo(&b[8..16], 0)?.unwrap_or(1),
            integrity: read_algo(&b[16..24], 1)?.unwrap_or(1),
            conf: read_algo(&b[24..32], 2)?.unwrap_or(1),
        })
    }
}

impl OpenSessionResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.tag, self.status, self.max_privilege, 0];
        v.extend_from_slice(&self.console_session_id.to_le_bytes());
        if self.status != 0 {
            return v;
        }
        v.extend_from_slice(&self.bmc_session_id.to_le_bytes());
        v.extend_from_slice(&algo_record(0, self.auth));
        v.extend_from_slice(&algo_record(1, self.integrity));
        v.extend_from_slice(&algo_record(2, self.conf));
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < 2 {
            return Err(WireError::Short("open session response"));
        }
        let (tag, status) = (b[0], b[1]);
        if status != 0 {
            // Error responses may be truncated after the status byte.
            return Ok(OpenSessionResponse {
                tag,
                status,
                max_privilege: b.get(2).copied().unwrap_or(0),
                console_session_id: if b.len() >= 8 { le32(&b[4..8]) } else { 0 },
                bmc_session_id: 0,
                auth: 0,
                integrity: 0,
                conf: 0,
            });
        }
        if b.len() < 36 {
            return Err(WireError::Short("open session response"));
        }
        Ok(OpenSessionResponse {
            tag,
            status,
            max_privilege: b[2] & 0x0f,
            console_session_id: le32(&b[4..8]),
            bmc_session_id: le32(&b[8..12]),
            auth: read_algo(&b[12..20], 0)?.unwrap_or(0),
            integrity: read_algo(&b[20..28], 1)?.unwrap_or(0),
            conf: read_algo(&b[28..36], 2)?.unwrap_or(0),
        })
    }
}

impl Rakp1 {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.tag, 0, 0, 0];
        v.extend_from_slice(&self.bmc_session_id.to_le_bytes());
        v.extend_from_slice(&self.console_random);
        v.push(self.role);
        v.extend_from_slice(&[0, 0]);
        v.push(self.username.len() as u8);
        v.extend_from_slice(&self.username);
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < 28 {
            return Err(WireError::Short("rakp1"));
        }
        let ulen = b[27] as usize;
        if ulen > 16 {
            return Err(WireError::Malformed("rakp1 username length"));
        }
        let username = b
            .get(28..28 + ulen)
            .ok_or(WireError::Short("rakp1 username"))?;
        Ok(Rakp1 {
            tag: b[0],
            bmc_session_id: le32(&b[4..8]),
            console_random: arr16(&b[8..24]),
            role: b[24],
            username: username.to_vec(),
        })
    }
}

impl Rakp2 {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.tag, self.status, 0, 0];
        v.extend_from_slice(&self.console_session_id.to_le_bytes());
        if self.status != 0 {
            return v;
        }
        v.extend_from_slice(&self.bmc_random);
        v.extend_from_slice(&self.bmc_guid);
        v.extend_from_slice(&self.auth_code);
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < 2 {
            return Err(WireError::Short("rakp2"));
        }
        if b[1] != 0 {
            return Ok(Rakp2 {
                tag: b[0],
                status: b[1],
                console_session_id: if b.len() >= 8 { le32(&b[4..8]) } else { 0 },
                bmc_random: [0; 16],
                bmc_guid: [0; 16],
                auth_code: Vec::new(),
            });
        }
        if b.len() < 40 {
            return Err(WireError::Short("rakp2"));
        }
        Ok(Rakp2 {
            tag: b[0],
            status: b[1],
            console_session_id: le32(&b[4..8]),
            bmc_random: arr16(&b[8..24]),
            bmc_guid: arr16(&b[24..40]),
            auth_code: b[40..].to_vec(),
        })
    }
}

impl Rakp3 {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.tag, self.status, 0, 0];
        v.extend_from_slice(&self.bmc_session_id.to_le_bytes());
        v.extend_from_slice(&self.auth_code);
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < 8 {
            return Err(WireError::Short("rakp3"));
        }
        Ok(Rakp3 {
            tag: b[0],
            status: b[1],
            bmc_session_id: le32(&b[4..8]),
            auth_code: b[8..].to_vec(),
        })
    }
}

impl Rakp4 {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.tag, self.status, 0, 0];
        v.extend_from_slice(&self.console_session_id.to_le_bytes());
        v.extend_from_slice(&self.icv);
        v
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < 2 {
            return Err(WireError::Short("rakp4"));
        }
        Ok(Rakp4 {
            tag: b[0],
            status: b[1],
            console_session_id: if b.len() >= 8 { le32(&b[4..8]) } else { 0 },
            icv: b.get(8..).unwrap_or_default().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_session_roundtrip() {
        let rq = OpenSessionRequest {
            tag: 3,
            max_privilege: 4,
            console_session_id: 0xa0a1a2a3,
            auth: 3,
            integrity: 4,
            conf: 1,
        };
        let b = rq.encode();
        assert_eq!(b.len(), 32);
        assert_eq!(&b[8..16], &[0, 0, 0, 8, 3, 0, 0, 0]);
        assert_eq!(OpenSessionRequest::decode(&b).unwrap(), rq);
        let rs = OpenSessionResponse {
            tag: 3,
            status: 0,
            max_privilege: 4,
            console_session_id: 0xa0a1a2a3,
            bmc_session_id: 0x0102,
            auth: 3,
            integrity: 4,
            conf: 1,
        };
        assert_eq!(OpenSessionResponse::decode(&rs.encode()).unwrap(), rs);
    }

    #[test]
    fn rakp_roundtrips_and_truncation() {
        let r1 = Rakp1 {
            tag: 1,
            bmc_session_id: 9,
            console_random: [7; 16],
            role: 0x14,
            username: b"admin".to_vec(),
        };
        let b = r1.encode();
        assert_eq!(Rakp1::decode(&b).unwrap(), r1);
        for n in 0..b.len() {
            assert!(Rakp1::decode(&b[..n]).is_err());
        }
        let r2 = Rakp2 {
            tag: 1,
            status: 0,
            console_session_id: 5,
            bmc_random: [1; 16],
            bmc_guid: [2; 16],
            auth_code: vec![3; 20],
        };
        assert_eq!(Rakp2::decode(&r2.encode()).unwrap(), r2);
        let r2e = Rakp2::decode(&[1, 0x0d, 0, 0]).unwrap();
        assert_eq!(r2e.status, 0x0d);
        assert_eq!(status_name(0x0d), "unauthorized name");
    }
}
