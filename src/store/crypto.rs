//! Secrets at rest: AES-256-GCM (ring) under a 32-byte key kept in a file
//! created with mode 0600 on first start. Each value is sealed with a fresh
//! random nonce and bound (as associated data) to its node and key name, so a
//! ciphertext copied to another node or field does not open.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::StoreError;

/// Prefix of a sealed value as stored in the database.
pub const SEALED_PREFIX: &str = "$ironrack-aead$v1$";

pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(******)")
    }
}

fn crypto_err(what: &str) -> StoreError {
    StoreError::Crypto(what.to_string())
}

impl SecretBox {
    pub fn from_key(bytes: &[u8]) -> Result<SecretBox, StoreError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| crypto_err("the key must be 32 bytes"))?;
        Ok(SecretBox {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// A box with a fresh random key that is never written anywhere.
    pub fn ephemeral() -> Result<SecretBox, StoreError> {
        let mut k = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(&mut k[..])
            .map_err(|_| crypto_err("no randomness for a key"))?;
        SecretBox::from_key(&k[..])
    }

    /// Load the key file, or create it (mode 0600, exclusively) when absent.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, StoreError> {
        match std::fs::read(path) {
            Ok(raw) => {
                let raw = Zeroizing::new(raw);
                check_mode(path)?;
                let text = std::str::from_utf8(&raw)
                    .map_err(|_| crypto_err(&format!("key file {} is not text", path.display())))?;
                let key = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .map_err(|_| {
                            crypto_err(&format!("key file {} is not base64", path.display()))
                        })?,
                );
                if key.len() != 32 {
                    return Err(crypto_err(&format!(
                        "key file {} must hold 32 bytes of key, base64-encoded",
                        path.display()
                    )));
                }
                SecretBox::from_key(&key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key_file(path),
            Err(e) => Err(crypto_err(&format!(
                "cannot read key file {}: {e}",
                path.display()
            ))),
        }
    }

    fn aad(node: &str, field: &str) -> Vec<u8> {
        let mut a = Vec::with_capacity(node.len() + field.len() + 1);
        a.extend_from_slice(node.as_bytes());
        a.push(0);
        a.extend_from_slice(field.as_bytes());
        a
    }

    /// Seal `plain` for `node`'s `field`.
    pub fn seal(&self, node: &str, field: &str, plain: &str) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| crypto_err("no randomness for a nonce"))?;
        let mut buf = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(node, field)),
                &mut buf,
            )
            .map_err(|_| crypto_err("seal failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// Open a value made by [`seal`](Self::seal) for the same node and field.
    pub fn open(&self, node: &str, field: &str, sealed: &str) -> Result<String, StoreError> {
        let b64 = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or_else(|| crypto_err(&format!("{field} is not sealed")))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| crypto_err(&format!("{field}: sealed value is not base64")))?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(crypto_err(&format!("{field}: sealed value is too short")));
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| crypto_err("bad nonce length"))?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(Self::aad(node, field)), &mut buf[..])
            .map_err(|_| {
                crypto_err(&format!(
                    "{field} of node {node} does not open with this key (wrong key file?)"
                ))
            })?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| crypto_err(&format!("{field}: sealed value is not UTF-8")))
    }
}

#[cfg(unix)]
fn check_mode(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| crypto_err(&format!("cannot stat {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(crypto_err(&format!(
            "key file {} has mode {mode:o}; it must not be readable by group or others (chmod 600)",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

fn create_key_file(path: &Path) -> Result<SecretBox, StoreError> {
    let mut key = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(&mut key[..])
        .map_err(|_| crypto_err("no randomness for a key"))?;
    let text = Zeroizing::new(format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(&key[..])
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| crypto_err(&format!("cannot create key file {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| crypto_err(&format!("cannot write key file {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "created a new key file for secrets at rest");
    SecretBox::from_key(&key[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let b = SecretBox::ephemeral().unwrap();
        let s = b.seal("node-a", "ipmi_password", "hunter2").unwrap();
        assert!(s.starts_with(SEALED_PREFIX));
        assert!(!s.contains("hunter2"));
        assert_eq!(b.open("node-a", "ipmi_password", &s).unwrap(), "hunter2");
        // Bound to node and field.
        assert!(b.open("node-b", "ipmi_password", &s).is_err());
        assert!(b.open("node-a", "ipmi_kg", &s).is_err());
        // Fresh nonce each time.
        assert_ne!(s, b.seal("node-a", "ipmi_password", "hunter2").unwrap());
        // Another key does not open it.
        let other = SecretBox::ephemeral().unwrap();
        assert!(other.open("node-a", "ipmi_password", &s).is_err());
        // Garbage is an error, not a panic.
        for junk in [
            "",
            SEALED_PREFIX,
            "$ironrack-aead$v1$!!!",
            "$ironrack-aead$v1$AAAA",
        ] {
            assert!(b.open("node-a", "f", junk).is_err(), "{junk}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ironrack-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        let a = SecretBox::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = a.seal("n", "f", "v").unwrap();
        let b = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(b.open("n", "f", &sealed).unwrap(), "v");
        // A world-readable key file is refused.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SecretBox::load_or_create(&path).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
