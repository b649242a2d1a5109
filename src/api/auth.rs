//! HTTP basic authentication against a bcrypt htpasswd file, as Ironic's
//! `auth_strategy = http_basic` does (`htpasswd -B` writes `$2y$`).
//!
//! bcrypt is slow on purpose, so it runs on the blocking pool (at most a few
//! at a time) and a successful check is remembered for a short while: a CLI
//! sends its credentials with every request. The cache is keyed by a SHA-256
//! of user, password and stored hash, so it never holds a password, and a
//! changed htpasswd entry invalidates it. The file is read again when its
//! modification time or size changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{header, HeaderValue, StatusCode};
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::error::ApiError;

/// How long a verified (user, password) pair is trusted without bcrypt.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// Most cached verifications kept at once.
const CACHE_MAX: usize = 4096;
/// bcrypt verifications running at once.
const VERIFY_PERMITS: usize = 4;
pub const REALM: &str = "Basic realm=\"Baremetal API\"";

/// Parse an htpasswd file: `user:hash` lines, `#` comments and blank lines
/// ignored. Only bcrypt hashes are accepted (like Ironic). Errors name the
/// line, never its hash.
pub fn parse_htpasswd(text: &str) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("line {}: expected USER:HASH", i + 1));
        };
        if user.is_empty() {
            return Err(format!("line {}: empty user name", i + 1));
        }
        let is_bcrypt =
            ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) && hash.len() == 60;
        if !is_bcrypt {
            return Err(format!(
                "line {} (user {user:?}): only bcrypt hashes are supported (htpasswd -B)",
                i + 1
            ));
        }
        users.insert(user.to_string(), hash.to_string());
    }
    Ok(users)
}

#[derive(Clone, PartialEq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Result<Stamp, String> {
    let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
    })
}

struct Users {
    users: HashMap<String, String>,
    stamp: Stamp,
    /// A hash of a random password, at the cost of the file's first entry, so
    /// an unknown user takes as long to refuse as a wrong password.
    dummy: String,
}

fn load(path: &Path) -> Result<Users, String> {
    let st = stamp(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let users = parse_htpasswd(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let cost = users
        .values()
        .next()
        .and_then(|h| h.get(4..6))
        .and_then(|c| c.parse::<u32>().ok())
        .filter(|c| (4..=31).contains(c))
        .unwrap_or(5)
        .min(14);
    let random: [u8; 16] = rand::random();
    let dummy = bcrypt::hash(random, cost).map_err(|e| format!("bcrypt: {e}"))?;
    Ok(Users {
        users,
        stamp: st,
        dummy,
    })
}

pub struct BasicAuth {
    path: PathBuf,
    users: Mutex<Arc<Users>>,
    cache: Mutex<HashMap<[u8; 32], Instant>>,
    permits: tokio::sync::Semaphore,
}

/// The credentials of an `Authorization: Basic ...` header.
pub struct Credentials {
    pub user: String,
    pub password: Zeroizing<Vec<u8>>,
}

pub fn parse_basic(value: &HeaderValue) -> Option<Credentials> {
    let s = value.to_str().ok()?.trim();
    let (scheme, rest) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?,
    );
    let colon = raw.iter().position(|b| *b == b':')?;
    let user = std::str::from_utf8(&raw[..colon]).ok()?.to_string();
    let password = Zeroizing::new(raw[colon + 1..].to_vec());
    Some(Credentials { user, password })
}

pub fn unauthorized(msg: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, msg)
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM))
}

fn cache_key(user: &str, password: &[u8], hash: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((user.len() as u64).to_le_bytes());
    h.update(user.as_bytes());
    h.update((password.len() as u64).to_le_bytes());
    h.update(password);
    h.update(hash.as_bytes());
    h.finalize().into()
}

impl BasicAuth {
    /// Read the htpasswd file (at start: a bad file refuses to start).
    pub fn load(path: &Path) -> Result<Arc<BasicAuth>, String> {
        let users = load(path)?;
        if users.users.is_empty() {
            tracing::warn!(file = %path.display(), "the htpasswd file has no users: every request will be refused");
        }
        Ok(Arc::new(BasicAuth {
            path: path.to_path_buf(),
            users: Mutex::new(Arc::new(users)),
            cache: Mutex::new(HashMap::new()),
            permits: tokio::sync::Semaphore::new(VERIFY_PERMITS),
        }))
    }

    fn current(&self) -> Arc<Users> {
        match self.users.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Re-read the file when it changed (on the blocking pool).
    fn refresh(&self) -> Arc<Users> {
        let cur = self.current();
        match stamp(&self.path) {
            Ok(st) if st == cur.stamp => cur,
            Ok(_) => match load(&self.path) {
                Ok(u) => {
                    tracing::info!(file = %self.path.display(), users = u.users.len(), "htpasswd file reloaded");
                    let u = Arc::new(u);
                    match self.users.lock() {
                        Ok(mut g) => *g = u.clone(),
                        Err(p) => *p.into_inner() = u.clone(),
                    }
                    if let Ok(mut c) = self.cache.lock() {
                        c.clear();
                    }
                    u
                }
                Err(e) => {
                    tracing::warn!("keeping the previous htpasswd entries: {e}");
                    cur
                }
            },
            Err(e) => {
                tracing::warn!("keeping the previous htpasswd entries: {e}");
                cur
            }
        }
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        let Ok(mut c) = self.cache.lock() else {
            return false;
        };
        match c.get(key) {
            Some(t) if t.elapsed() < CACHE_TTL => true,
            Some(_) => {
                c.remove(key);
                false
            }
            None => false,
        }
    }

    fn remember(&self, key: [u8; 32]) {
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_MAX {
                c.retain(|_, t| t.elapsed() < CACHE_TTL);
                if c.len() >= CACHE_MAX {
                    c.clear();
                }
            }
            c.insert(key, Instant::now());
        }
    }

    /// Check a request's `Authorization` header; the user name on success.
    pub async fn check(self: &Arc<Self>, value: Option<&HeaderValue>) -> Result<String, ApiError> {
        let Some(creds) = value.and_then(parse_basic) else {
            return Err(unauthorized("Authorization required"));
        };
        // Fast path: a recent success with the same password and hash.
        let users = self.current();
        if let Some(hash) = users.users.get(&creds.user) {
            if self.cached(&cache_key(&creds.user, &creds.password, hash)) {
                return Ok(creds.user);
            }
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::internal("authentication is shutting down"))?;
        let me = self.clone();
        let user = creds.user.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let users = me.refresh();
            match users.users.get(&creds.user) {
                Some(hash) => {
                    let ok = bcrypt::verify(&creds.password[..], hash).unwrap_or(false);
                    if ok {
                        me.remember(cache_key(&creds.user, &creds.password, hash));
                    }
                    ok
                }
                None => {
                    let _ = bcrypt::verify(&creds.password[..], &users.dummy);
                    false
                }
            }
        })
        .await
        .unwrap_or(false);
        if ok {
            Ok(user)
        } else {
            tracing::info!(user = ?user, "authentication failed");
            Err(unauthorized("Authentication failed"))
        }
    }
}

/// Whether a path is public under http_basic, as Ironic's
/// `acl_public_routes` (`/` and `/v1`, the version documents).
pub fn is_public(method: &axum::http::Method, path: &str) -> bool {
    let p = path.trim_end_matches('/');
    // The deploy ramdisk's heartbeat carries no credentials (as in Ironic).
    if method == axum::http::Method::POST && p.starts_with("/v1/heartbeat/") {
        return true;
    }
    (method == axum::http::Method::GET || method == axum::http::Method::HEAD)
        && (p.is_empty() || p == "/v1")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$05$B4PIMhwqYo18Gmh98U7p1OOrK9eJ8rc3wNc788w9S5KuCFRlyqdjC";

    #[test]
    fn htpasswd_lines() {
        let text = format!(
            "# comment\n\nalice:{HASH}\r\nbob:{}\n",
            HASH.replace("$2y$", "$2b$")
        );
        let u = parse_htpasswd(&text).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u["alice"], HASH);
        let e = parse_htpasswd("carol:{SHA}abc\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("bcrypt"), "{e}");
        assert!(!e.contains("abc"), "{e}");
        assert!(parse_htpasswd("nocolon\n").unwrap_err().contains("line 1"));
        assert!(parse_htpasswd(&format!(":{HASH}\n")).is_err());
        assert!(parse_htpasswd("alice:$apr1$abc$def\n").is_err());
    }

    #[test]
    fn basic_header_parsing() {
        let v = HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:pa:ss")
        ))
        .unwrap();
        let c = parse_basic(&v).unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(&c.password[..], b"pa:ss");
        assert!(parse_basic(&HeaderValue::from_static("Bearer x")).is_none());
        assert!(parse_basic(&HeaderValue::from_static("Basic !!!")).is_none());
        let nocolon = base64::engine::general_purpose::STANDARD.encode("alice");
        assert!(
            parse_basic(&HeaderValue::from_str(&format!("basic {nocolon}")).unwrap()).is_none()
        );
    }

    #[test]
    fn public_routes() {
        use axum::http::Method;
        assert!(is_public(&Method::GET, "/"));
        assert!(is_public(&Method::GET, "/v1"));
        assert!(is_public(&Method::GET, "/v1/"));
        assert!(!is_public(&Method::GET, "/v1/nodes"));
        assert!(!is_public(&Method::GET, "/metrics"));
        assert!(!is_public(&Method::POST, "/v1"));
    }

    #[tokio::test]
    async fn verify_and_cache() {
        let dir = std::env::temp_dir().join(format!("ironrack-htpasswd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("htpasswd");
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        std::fs::write(&f, format!("alice:{hash}\n")).unwrap();
        let auth = BasicAuth::load(&f).unwrap();
        let hdr = |u: &str, p: &str| {
            HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            ))
            .unwrap()
        };
        assert_eq!(
            auth.check(Some(&hdr("alice", "s3cret"))).await.unwrap(),
            "alice"
        );
        // Now cached.
        let key = cache_key("alice", b"s3cret", &hash);
        assert!(auth.cached(&key));
        assert_eq!(
            auth.check(Some(&hdr("alice", "wrong")))
                .await
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            auth.check(Some(&hdr("mallory", "s3cret")))
                .await
                .unwrap_err()
                .status,
            401
        );
        let e = auth.check(None).await.unwrap_err();
        assert_eq!(e.status, 401);
        assert!(e.headers.iter().any(|(k, _)| k == header::WWW_AUTHENTICATE));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
