//! Cipher suites and the RMCP+ cryptography: RAKP key-exchange codes, session key
//! derivation (SIK, K1, K2), integrity codes and AES-CBC-128 confidentiality.
//!
//! Everything here is pure: byte slices in, byte vectors out.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// RAKP authentication algorithm numbers (IPMI v2.0 table 13-17).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthAlg {
    None = 0,
    HmacSha1 = 1,
    HmacSha256 = 3,
}

/// Integrity algorithm numbers (table 13-18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntegrityAlg {
    None = 0,
    HmacSha1_96 = 1,
    HmacSha256_128 = 4,
}

/// Confidentiality algorithm numbers (table 13-19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfAlg {
    None = 0,
    AesCbc128 = 1,
}

impl AuthAlg {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::HmacSha1),
            3 => Some(Self::HmacSha256),
            _ => None,
        }
    }
    /// Length of the RAKP2/RAKP3 key-exchange authentication code.
    pub fn code_len(self) -> usize {
        match self {
            Self::None => 0,
            Self::HmacSha1 => 20,
            Self::HmacSha256 => 32,
        }
    }
    /// Length of the RAKP4 integrity check value.
    pub fn icv_len(self) -> usize {
        match self {
            Self::None => 0,
            Self::HmacSha1 => 12,
            Self::HmacSha256 => 16,
        }
    }
}

impl IntegrityAlg {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::HmacSha1_96),
            4 => Some(Self::HmacSha256_128),
            _ => None,
        }
    }
    /// Length of the AuthCode field that trails an authenticated packet.
    pub fn code_len(self) -> usize {
        match self {
            Self::None => 0,
            Self::HmacSha1_96 => 12,
            Self::HmacSha256_128 => 16,
        }
    }
}

impl ConfAlg {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::AesCbc128),
            _ => None,
        }
    }
}

/// A cipher suite we can speak. Suites 3 and 17 are the ones worth using; 0 exists
/// only for hardware profiles that explicitly allow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CipherSuite {
    pub id: u8,
    pub auth: AuthAlg,
    pub integrity: IntegrityAlg,
    pub conf: ConfAlg,
}

impl CipherSuite {
    pub const SUITE_0: CipherSuite = CipherSuite {
        id: 0,
        auth: AuthAlg::None,
        integrity: IntegrityAlg::None,
        conf: ConfAlg::None,
    };
    pub const SUITE_3: CipherSuite = CipherSuite {
        id: 3,
        auth: AuthAlg::HmacSha1,
        integrity: IntegrityAlg::HmacSha1_96,
        conf: ConfAlg::AesCbc128,
    };
    pub const SUITE_17: CipherSuite = CipherSuite {
        id: 17,
        auth: AuthAlg::HmacSha256,
        integrity: IntegrityAlg::HmacSha256_128,
        conf: ConfAlg::AesCbc128,
    };

    /// The suites this implementation knows, by id.
    pub fn by_id(id: u8) -> Option<CipherSuite> {
        match id {
            0 => Some(Self::SUITE_0),
            3 => Some(Self::SUITE_3),
            17 => Some(Self::SUITE_17),
            _ => None,
        }
    }

    /// Find a known suite by its algorithm triple.
    pub fn by_algorithms(auth: u8, integrity: u8, conf: u8) -> Option<CipherSuite> {
        [Self::SUITE_17, Self::SUITE_3, Self::SUITE_0]
            .into_iter()
            .find(|s| {
                s.auth as u8 == auth && s.integrity as u8 == integrity && s.conf as u8 == conf
            })
    }
}

/// Keyed hash over the concatenation of `parts`, with the RAKP authentication
/// algorithm's hash function. `AuthAlg::None` yields an empty code.
pub fn hmac(alg: AuthAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match alg {
        AuthAlg::None => Vec::new(),
        AuthAlg::HmacSha1 => {
            let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        AuthAlg::HmacSha256 => {
            let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
    }
}

/// Constant-time equality for authentication codes.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The fields both ends of a RAKP exchange hash. Names follow the spec: `m` is the
/// remote console (us, as a client), `c` is the managed system (the BMC).
#[derive(Clone, Debug)]
pub struct RakpParams<'a> {
    pub sid_m: u32,
    pub sid_c: u32,
    pub rand_m: &'a [u8; 16],
    pub rand_c: &'a [u8; 16],
    pub guid_c: &'a [u8; 16],
    /// The role byte as it enters the hashes (normally RAKP1's byte, including the
    /// name-only-lookup bit).
    pub role: u8,
    pub username: &'a [u8],
}

impl RakpParams<'_> {
    /// RAKP2 key exchange authentication code, keyed by the user password (K_UID).
    pub fn rakp2_code(&self, alg: AuthAlg, kuid: &[u8]) -> Vec<u8> {
        hmac(
            alg,
            kuid,
            &[
                &self.sid_m.to_le_bytes(),
                &self.sid_c.to_le_bytes(),
                self.rand_m,
                self.rand_c,
                self.guid_c,
                &[self.role, self.username.len() as u8],
                self.username,
            ],
        )
    }

    /// RAKP3 key exchange authentication code, keyed by K_UID.
    pub fn rakp3_code(&self, alg: AuthAlg, kuid: &[u8]) -> Vec<u8> {
        hmac(
            alg,
            kuid,
            &[
                self.rand_c,
                &self.sid_m.to_le_bytes(),
                &[self.role, self.username.len() as u8],
                self.username,
            ],
        )
    }

    /// Session Integrity Key, keyed by K_G (the BMC key) or K_UID when no K_G is set.
    pub fn sik(&self, alg: AuthAlg, kg: &[u8]) -> Vec<u8> {
        hmac(
            alg,
            kg,
            &[
                self.rand_m,
                self.rand_c,
                &[self.role, self.username.len() as u8],
                self.username,
            ],
        )
    }

    /// RAKP4 integrity check value, keyed by the SIK and truncated per algorithm.
    pub fn rakp4_icv(&self, alg: AuthAlg, sik: &[u8]) -> Vec<u8> {
        let mut v = hmac(
            alg,
            sik,
            &[self.rand_m, &self.sid_c.to_le_bytes(), self.guid_c],
        );
        v.truncate(alg.icv_len());
        v
    }
}

/// Session keys derived from the SIK after a successful RAKP exchange.
#[derive(Clone)]
pub struct SessionKeys {
    pub suite: CipherSuite,
    /// Integrity key (K1).
    pub k1: Vec<u8>,
    /// Confidentiality key: the first 16 bytes of K2.
    pub aes_key: [u8; 16],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("suite", &self.suite.id)
            .finish_non_exhaustive()
    }
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.k1.zeroize();
        self.aes_key.zeroize();
    }
}

impl SessionKeys {
    pub fn derive(suite: CipherSuite, sik: &[u8]) -> SessionKeys {
        // The constants are 20 bytes whatever the hash (IPMI v2.0 section 13.32).
        let k1 = hmac(suite.auth, sik, &[&[0x01; 20]]);
        let k2 = hmac(suite.auth, sik, &[&[0x02; 20]]);
        let mut aes_key = [0u8; 16];
        if k2.len() >= 16 {
            aes_key.copy_from_slice(&k2[..16]);
        }
        SessionKeys { suite, k1, aes_key }
    }

    /// The AuthCode for an outbound packet region (auth type through next header).
    pub fn integrity_code(&self, region: &[u8]) -> Vec<u8> {
        let alg = match self.suite.integrity {
            IntegrityAlg::None => return Vec::new(),
            IntegrityAlg::HmacSha1_96 => AuthAlg::HmacSha1,
            IntegrityAlg::HmacSha256_128 => AuthAlg::HmacSha256,
        };
        let mut v = hmac(alg, &self.k1, &[region]);
        v.truncate(self.suite.integrity.code_len());
        v
    }

    /// Encrypt a payload: IV followed by AES-CBC-128 ciphertext of the payload plus
    /// the confidentiality trailer (pad bytes 1, 2, .. N and the pad length N).
    pub fn encrypt(&self, iv: [u8; 16], plain: &[u8]) -> Vec<u8> {
        let pad = (16 - (plain.len() + 1) % 16) % 16;
        let mut buf = Vec::with_capacity(16 + plain.len() + pad + 1);
        buf.extend_from_slice(&iv);
        buf.extend_from_slice(plain);
        buf.extend((1..=pad).map(|i| i as u8));
        buf.push(pad as u8);
        let enc = cbc::Encryptor::<aes::Aes128>::new(&self.aes_key.into(), &iv.into());
        let body_len = buf.len() - 16;
        // The body is a multiple of 16 by construction, so NoPadding cannot fail.
        let _ = enc.encrypt_padded_mut::<NoPadding>(&mut buf[16..], body_len);
        buf
    }

    /// Decrypt an encrypted payload (IV + ciphertext) and strip the trailer.
    pub fn decrypt(&self, data: &[u8]) -> Option<Vec<u8>> {
        if data.len() < 32 || (data.len() - 16) % 16 != 0 {
            return None;
        }
        let (iv, body) = data.split_at(16);
        let mut iv_arr = [0u8; 16];
        iv_arr.copy_from_slice(iv);
        let mut buf = body.to_vec();
        let dec = cbc::Decryptor::<aes::Aes128>::new(&self.aes_key.into(), &iv_arr.into());
        dec.decrypt_padded_mut::<NoPadding>(&mut buf).ok()?;
        let pad = *buf.last()? as usize;
        if pad >= 16 || pad + 1 > buf.len() {
            return None;
        }
        buf.truncate(buf.len() - pad - 1);
        Some(buf)
    }
}

/// Pad a password or K_G to the 20-byte key the IPMI v2.0 spec uses. Trailing
/// zeroes do not change an HMAC, so this is only for clarity and length checking.
pub fn key20(secret: &[u8]) -> Vec<u8> {
    let mut k = secret.to_vec();
    k.resize(20, 0);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        crate::util::hex_decode(s).expect("test vector hex")
    }

    #[test]
    fn hmac_sha1_rfc2202_case2() {
        let v = hmac(
            AuthAlg::HmacSha1,
            b"Jefe",
            &[b"what do ya want ", b"for nothing?"],
        );
        assert_eq!(v, hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"));
    }

    #[test]
    fn hmac_sha256_rfc4231_case2() {
        let v = hmac(
            AuthAlg::HmacSha256,
            b"Jefe",
            &[b"what do ya want for nothing?"],
        );
        assert_eq!(
            v,
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    #[test]
    fn aes_roundtrip_all_lengths() {
        let keys = SessionKeys::derive(CipherSuite::SUITE_3, &[7u8; 20]);
        for len in 0..70 {
            let plain: Vec<u8> = (0..len as u8).collect();
            let enc = keys.encrypt([9u8; 16], &plain);
            assert_eq!((enc.len() - 16) % 16, 0);
            assert_eq!(keys.decrypt(&enc).as_deref(), Some(&plain[..]));
        }
    }

    #[test]
    fn decrypt_rejects_garbage() {
        let keys = SessionKeys::derive(CipherSuite::SUITE_17, &[1u8; 32]);
        assert!(keys.decrypt(&[0u8; 15]).is_none());
        assert!(keys.decrypt(&[0u8; 40]).is_none());
    }

    #[test]
    fn k1_k2_lengths_per_suite() {
        let k3 = SessionKeys::derive(CipherSuite::SUITE_3, &[3u8; 20]);
        assert_eq!(k3.k1.len(), 20);
        assert_eq!(k3.integrity_code(b"abc").len(), 12);
        let k17 = SessionKeys::derive(CipherSuite::SUITE_17, &[3u8; 32]);
        assert_eq!(k17.k1.len(), 32);
        assert_eq!(k17.integrity_code(b"abc").len(), 16);
        // K1 = HMAC(SIK, 0x01 * 20)
        assert_eq!(k3.k1, hmac(AuthAlg::HmacSha1, &[3u8; 20], &[&[1u8; 20]]));
    }

    #[test]
    fn ct_eq_checks_length_and_content() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn zero_padding_does_not_change_hmac() {
        assert_eq!(
            hmac(AuthAlg::HmacSha1, b"pw", &[b"x"]),
            hmac(AuthAlg::HmacSha1, &key20(b"pw"), &[b"x"])
        );
    }
}
