//! BMC clients built from a node's Ironic `driver_info`, one per node, cached.
//!
//! The cache is what keeps BMC sessions from running out: every power change,
//! sync query and management call for a node goes through the same long-lived
//! client (one RMCP+ session, one Redfish session). A client is keyed by the
//! node's uuid and a fingerprint of its driver and driver_info, so changing
//! the credentials or the address builds a new one (and closes the old).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use super::ConductorError;
use crate::bmc::ipmi::IpmiBmc;
use crate::bmc::redfish::RedfishBmc;
use crate::bmc::{Bmc, BmcError};
use crate::ipmi::{Privilege, SessionConfig};
use crate::profiles::{IpmiQuirks, Profiles};
use crate::redfish::{RedfishConfig, RedfishQuirks};
use crate::store::Node;

/// The drivers ironrack has.
pub const DRIVERS: [&str; 2] = ["ipmi", "redfish"];

/// Timing that goes into every client.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientTiming {
    /// One IPMI command / one Redfish request.
    pub bmc_timeout: Duration,
    /// Power polls inside compound IPMI actions (soft reboot).
    pub poll_interval: Duration,
    /// The soft power-off half of an IPMI soft reboot.
    pub soft_timeout: Duration,
    /// Bound on one whole Redfish operation (retries, compound resets).
    pub operation_timeout: Duration,
}

/// What a client is built from, parsed and checked without touching the network.
pub(crate) enum Spec {
    Ipmi {
        host: String,
        port: u16,
        session: SessionConfig,
        quirks: IpmiQuirks,
    },
    Redfish(RedfishConfig),
}

fn invalid(msg: impl Into<String>) -> ConductorError {
    ConductorError::InvalidParameter(msg.into())
}

/// A string value; `null` counts as absent. Numbers are accepted as text
/// (a user name of digits).
fn opt_str(info: &Map<String, Value>, key: &str) -> Result<Option<String>, ConductorError> {
    match info.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(invalid(format!(
            "driver_info {key} must be a string, not {}",
            kind(info.get(key))
        ))),
    }
}

/// An integer given as a JSON number or a numeric string.
fn opt_int(info: &Map<String, Value>, key: &str) -> Result<Option<i64>, ConductorError> {
    let bad = || {
        invalid(format!(
            "driver_info {key} must be an integer (a number or a numeric string)"
        ))
    };
    match info.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn kind(v: Option<&Value>) -> &'static str {
    match v {
        None | Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "a list",
        Some(Value::Object(_)) => "an object",
    }
}

/// The driver_info key that must name the BMC.
pub fn address_key(driver: &str) -> Option<&'static str> {
    match driver {
        "ipmi" => Some("ipmi_address"),
        "redfish" => Some("redfish_address"),
        _ => None,
    }
}

/// Check the driver name and that driver_info has the address key.
pub(crate) fn check_driver(driver: &str, info: &Map<String, Value>) -> Result<(), ConductorError> {
    let Some(key) = address_key(driver) else {
        return Err(invalid(format!(
            "Cannot load driver {driver:?}: ironrack has the drivers {}.",
            DRIVERS.join(" and ")
        )));
    };
    match opt_str(info, key)? {
        Some(a) if !a.trim().is_empty() => Ok(()),
        _ => Err(invalid(format!(
            "missing driver_info: {key} is required by the {driver} driver"
        ))),
    }
}

fn profile_quirks(
    info: &Map<String, Value>,
    profiles: &Profiles,
) -> Result<(IpmiQuirks, RedfishQuirks), ConductorError> {
    match opt_str(info, "hw_profile")? {
        Some(name) => {
            let p = profiles.get(&name).map_err(|_| {
                invalid(format!(
                    "driver_info hw_profile {name:?} is not a known hardware profile (known: {})",
                    profiles.names().collect::<Vec<_>>().join(", ")
                ))
            })?;
            Ok((p.ipmi.clone(), p.redfish.clone()))
        }
        None => Ok(profiles
            .get("generic")
            .map(|p| (p.ipmi.clone(), p.redfish.clone()))
            .unwrap_or_default()),
    }
}

fn privilege(s: &str) -> Result<Privilege, ConductorError> {
    match s.trim().to_ascii_uppercase().as_str() {
        "ADMINISTRATOR" => Ok(Privilege::Administrator),
        "OPERATOR" => Ok(Privilege::Operator),
        "USER" => Ok(Privilege::User),
        _ => Err(invalid(format!(
            "driver_info ipmi_priv_level {s:?} is not one of ADMINISTRATOR, OPERATOR, USER"
        ))),
    }
}

/// K_G: 40 hex digits are the 20-byte key in hex, anything else the raw bytes.
fn kg_bytes(s: &str) -> Zeroizing<Vec<u8>> {
    if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        if let Some(b) = crate::util::hex_decode(s) {
            return Zeroizing::new(b);
        }
    }
    Zeroizing::new(s.as_bytes().to_vec())
}

fn bool_word(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "y" | "t" => Some(true),
        "false" | "no" | "off" | "0" | "n" | "f" => Some(false),
        _ => None,
    }
}

/// Parse and check a node's driver and driver_info. Nothing is sent.
pub(crate) fn parse(
    driver: &str,
    info: &Map<String, Value>,
    profiles: &Profiles,
    timing: &ClientTiming,
) -> Result<Spec, ConductorError> {
    check_driver(driver, info)?;
    let (ipmi_quirks, redfish_quirks) = profile_quirks(info, profiles)?;
    match driver {
        "ipmi" => {
            let host = opt_str(info, "ipmi_address")?
                .unwrap_or_default()
                .trim()
                .to_string();
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .map(str::to_string)
                .unwrap_or(host);
            if host.contains(char::is_whitespace) || host.contains('/') {
                return Err(invalid(format!(
                    "driver_info ipmi_address {host:?} is not an IP address or host name"
                )));
            }
            let port = match opt_int(info, "ipmi_port")? {
                None => 623,
                Some(p) => u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                    invalid(format!(
                        "driver_info ipmi_port {p} is not a port number (1-65535)"
                    ))
                })?,
            };
            let username = opt_str(info, "ipmi_username")?.unwrap_or_default();
            let password = Zeroizing::new(opt_str(info, "ipmi_password")?.unwrap_or_default());
            let mut session = SessionConfig::new(&username, password.as_bytes());
            session.command_timeout = timing.bmc_timeout;
            if let Some(level) = opt_str(info, "ipmi_priv_level")? {
                session.privilege = privilege(&level)?;
            }
            if let Some(suite) = opt_int(info, "ipmi_cipher_suite")? {
                session.cipher_suite = Some(u8::try_from(suite).map_err(|_| {
                    invalid(format!(
                        "driver_info ipmi_cipher_suite {suite} is not a cipher suite id"
                    ))
                })?);
            }
            match opt_str(info, "ipmi_bridging")?.as_deref() {
                None | Some("no") => {}
                Some(other) => {
                    return Err(invalid(format!(
                        "driver_info ipmi_bridging {other:?} is not supported (only \"no\")"
                    )))
                }
            }
            if let Some(kg) = opt_str(info, "ipmi_kg")? {
                if !kg.is_empty() {
                    session.kg = Some(kg_bytes(&kg));
                }
            }
            // The checks the session will make, now (with the profile's
            // session quirks, as the client will see them).
            let mut check = session.clone();
            ipmi_quirks.apply(&mut check);
            check
                .validate()
                .map_err(|e| invalid(format!("driver_info for ipmi: {e}")))?;
            Ok(Spec::Ipmi {
                host,
                port,
                session,
                quirks: ipmi_quirks,
            })
        }
        _ => {
            let url = opt_str(info, "redfish_address")?
                .unwrap_or_default()
                .trim()
                .to_string();
            crate::redfish::client::parse_base(&url)
                .map_err(|e| invalid(format!("driver_info redfish_address: {e}")))?;
            let mut cfg = RedfishConfig::new(
                url,
                opt_str(info, "redfish_username")?.unwrap_or_default(),
                opt_str(info, "redfish_password")?.unwrap_or_default(),
            );
            cfg.system_id = opt_str(info, "redfish_system_id")?.filter(|s| !s.trim().is_empty());
            match info.get("redfish_verify_ca") {
                None | Some(Value::Null) => {}
                Some(Value::Bool(b)) => cfg.verify_tls = *b,
                Some(Value::String(s)) => match bool_word(s) {
                    Some(b) => cfg.verify_tls = b,
                    None => {
                        let path = PathBuf::from(s);
                        if !path.is_file() {
                            return Err(invalid(format!(
                                "driver_info redfish_verify_ca {s:?} is neither a boolean nor \
                                 the path of a CA bundle file"
                            )));
                        }
                        cfg.verify_tls = true;
                        cfg.ca_bundle = Some(path);
                    }
                },
                Some(other) => {
                    return Err(invalid(format!(
                        "driver_info redfish_verify_ca must be a boolean or a CA bundle path, \
                         not {}",
                        kind(Some(other))
                    )))
                }
            }
            cfg.request_timeout = timing.bmc_timeout;
            cfg.operation_timeout = timing.operation_timeout.max(timing.bmc_timeout);
            cfg.quirks = redfish_quirks;
            Ok(Spec::Redfish(cfg))
        }
    }
}

/// Resolve an IPMI host (an IP address or a name), bounded by `bound`.
async fn resolve(host: &str, port: u16, bound: Duration) -> Result<SocketAddr, BmcError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    match tokio::time::timeout(bound, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(BmcError::Unreachable(format!(
            "cannot resolve {host}: no answer within {bound:?}"
        ))),
        Ok(Err(e)) => Err(BmcError::Unreachable(format!("cannot resolve {host}: {e}"))),
        Ok(Ok(mut addrs)) => addrs
            .next()
            .ok_or_else(|| BmcError::Unreachable(format!("{host} resolves to no address"))),
    }
}

/// Build a client (no BMC traffic yet, except a DNS lookup for a host name).
pub(crate) async fn build(spec: Spec, timing: &ClientTiming) -> Result<Arc<dyn Bmc>, BmcError> {
    match spec {
        Spec::Ipmi {
            host,
            port,
            session,
            quirks,
        } => {
            let addr = resolve(&host, port, timing.bmc_timeout).await?;
            let mut b = IpmiBmc::new(addr, session, quirks).await?;
            b.poll_interval = timing.poll_interval;
            b.soft_timeout = timing.soft_timeout;
            Ok(Arc::new(b))
        }
        Spec::Redfish(cfg) => Ok(Arc::new(RedfishBmc::new(cfg)?)),
    }
}

/// Identity of a node's BMC configuration (driver and driver_info).
pub(crate) fn fingerprint(node: &Node) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.driver.hash(&mut h);
    // serde_json's Map is ordered, so equal maps serialise equally.
    serde_json::to_string(&node.driver_info)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

struct Slot {
    fingerprint: u64,
    cell: OnceCell<Arc<dyn Bmc>>,
}

/// The per-node client cache.
#[derive(Default)]
pub(crate) struct BmcCache {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl BmcCache {
    fn slots(&self) -> MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node's client, built on first use (one build at a time per node).
    /// A client for older driver_info is replaced and closed.
    pub(crate) async fn get(
        &self,
        node: &Node,
        profiles: &Profiles,
        timing: &ClientTiming,
    ) -> Result<Arc<dyn Bmc>, BmcError> {
        let fp = fingerprint(node);
        let (slot, stale) = {
            let mut slots = self.slots();
            match slots.get(&node.uuid) {
                Some(s) if s.fingerprint == fp => (s.clone(), None),
                _ => {
                    let s = Arc::new(Slot {
                        fingerprint: fp,
                        cell: OnceCell::new(),
                    });
                    let old = slots.insert(node.uuid.clone(), s.clone());
                    (s, old)
                }
            }
        };
        if let Some(old) = stale.and_then(|s| s.cell.get().cloned()) {
            tracing::info!(node = %node.uuid, "driver_info changed: replacing the BMC client");
            close_later(old, timing.bmc_timeout);
        }
        slot.cell
            .get_or_try_init(|| async {
                let spec = parse(&node.driver, &node.driver_info, profiles, timing)
                    .map_err(|e| BmcError::Config(e.to_string()))?;
                let bmc = build(spec, timing).await?;
                tracing::debug!(node = %node.uuid, driver = bmc.driver(), "BMC client created");
                Ok(bmc)
            })
            .await
            .cloned()
    }

    /// Drop a node's client; the caller closes it.
    pub(crate) fn remove(&self, uuid: &str) -> Option<Arc<dyn Bmc>> {
        self.slots()
            .remove(uuid)
            .and_then(|s| s.cell.get().cloned())
    }

    /// Drop the client when its fingerprint is not `fp` (driver_info changed).
    pub(crate) fn remove_if_stale(&self, uuid: &str, fp: u64) -> Option<Arc<dyn Bmc>> {
        let mut slots = self.slots();
        if slots.get(uuid).is_some_and(|s| s.fingerprint != fp) {
            return slots.remove(uuid).and_then(|s| s.cell.get().cloned());
        }
        None
    }

    pub(crate) fn uuids(&self) -> Vec<String> {
        self.slots().keys().cloned().collect()
    }

    /// Drop every client; the caller closes them.
    pub(crate) fn drain(&self) -> Vec<Arc<dyn Bmc>> {
        self.slots()
            .drain()
            .filter_map(|(_, s)| s.cell.get().cloned())
            .collect()
    }

    /// Clients built and held.
    pub(crate) fn open(&self) -> usize {
        self.slots()
            .values()
            .filter(|s| s.cell.initialized())
            .count()
    }
}

/// Close a client, bounded, without waiting for it.
pub(crate) fn close_later(bmc: Arc<dyn Bmc>, bound: Duration) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = tokio::time::timeout(bound, bmc.close()).await;
        });
    }
    // Without a runtime the last handle's drop releases the client.
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn timing() -> ClientTiming {
        ClientTiming {
            bmc_timeout: Duration::from_secs(2),
            poll_interval: Duration::from_millis(100),
            soft_timeout: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(60),
        }
    }

    fn info(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn try_parse(driver: &str, v: Value) -> Result<Spec, ConductorError> {
        parse(driver, &info(v), &Profiles::builtin().unwrap(), &timing())
    }

    fn err(driver: &str, v: Value) -> String {
        match try_parse(driver, v) {
            Err(ConductorError::InvalidParameter(m)) => m,
            Err(e) => panic!("not InvalidParameter: {e:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn ipmi_driver_info_parses() {
        let Spec::Ipmi {
            host,
            port,
            session,
            quirks,
        } = try_parse(
            "ipmi",
            json!({
                "ipmi_address": "10.0.0.5",
                "ipmi_port": "6230",
                "ipmi_username": "admin",
                "ipmi_password": "pw",
                "ipmi_cipher_suite": "17",
                "ipmi_priv_level": "OPERATOR",
                "ipmi_bridging": "no",
                "ipmi_kg": "00112233445566778899aabbccddeeff00112233",
                "hw_profile": "supermicro"
            }),
        )
        .unwrap()
        else {
            panic!("not ipmi")
        };
        assert_eq!(host, "10.0.0.5");
        assert_eq!(port, 6230);
        assert_eq!(session.username, b"admin");
        assert_eq!(session.password.as_slice(), b"pw");
        assert_eq!(session.cipher_suite, Some(17));
        assert_eq!(session.privilege, Privilege::Operator);
        assert_eq!(session.command_timeout, Duration::from_secs(2));
        assert_eq!(session.kg.as_ref().unwrap().len(), 20);
        assert_eq!(session.kg.as_ref().unwrap()[1], 0x11);
        assert_eq!(quirks.uefi_disk_device_byte, Some(0x24));

        let Spec::Ipmi { port, session, .. } = try_parse(
            "ipmi",
            json!({"ipmi_address": "bmc-7.example", "ipmi_port": 623, "ipmi_kg": "short-key"}),
        )
        .unwrap() else {
            panic!("not ipmi")
        };
        assert_eq!(port, 623);
        assert_eq!(session.username, b"");
        assert_eq!(session.privilege, Privilege::Administrator);
        assert_eq!(session.kg.as_ref().unwrap().as_slice(), b"short-key");
    }

    #[test]
    fn bad_ipmi_driver_info_is_refused() {
        assert!(err("ipmi", json!({})).contains("missing driver_info: ipmi_address"));
        assert!(err("ipmi", json!({"ipmi_address": ""})).contains("missing driver_info"));
        assert!(err("ipmi", json!({"ipmi_address": "h", "ipmi_port": "x"})).contains("ipmi_port"));
        assert!(
            err("ipmi", json!({"ipmi_address": "h", "ipmi_port": 70000})).contains("ipmi_port")
        );
        assert!(err(
            "ipmi",
            json!({"ipmi_address": "h", "ipmi_priv_level": "ROOT"})
        )
        .contains("ipmi_priv_level"));
        assert!(err(
            "ipmi",
            json!({"ipmi_address": "h", "ipmi_bridging": "single"})
        )
        .contains("ipmi_bridging"));
        assert!(err(
            "ipmi",
            json!({"ipmi_address": "h", "ipmi_cipher_suite": 99})
        )
        .contains("cipher suite 99"));
        assert!(
            err("ipmi", json!({"ipmi_address": "h", "ipmi_cipher_suite": 0})).contains("suite 0")
        );
        assert!(
            err("ipmi", json!({"ipmi_address": "h", "hw_profile": "nope"})).contains("hw_profile")
        );
        assert!(err(
            "ipmi",
            json!({"ipmi_address": "h", "ipmi_password": "x".repeat(21)})
        )
        .contains("at most 20"));
        assert!(err("ipmi", json!({"ipmi_address": "a b"})).contains("ipmi_address"));
        let m = err(
            "ipmi",
            json!({"ipmi_address": "h", "ipmi_password": ["secret-pw"]}),
        );
        assert!(!m.contains("secret-pw"), "{m}");
        assert!(err("agent_ipmitool", json!({"ipmi_address": "h"})).contains("agent_ipmitool"));
    }

    #[test]
    fn redfish_driver_info_parses() {
        let Spec::Redfish(cfg) = try_parse(
            "redfish",
            json!({
                "redfish_address": "10.0.0.9",
                "redfish_system_id": "/redfish/v1/Systems/1",
                "redfish_username": "root",
                "redfish_password": "pw",
                "redfish_verify_ca": "False",
                "hw_profile": "hpe-ilo"
            }),
        )
        .unwrap() else {
            panic!("not redfish")
        };
        assert_eq!(cfg.url, "10.0.0.9");
        assert_eq!(cfg.system_id.as_deref(), Some("/redfish/v1/Systems/1"));
        assert!(!cfg.verify_tls);
        assert_eq!(cfg.request_timeout, Duration::from_secs(2));
        assert!(cfg.quirks.reset_substitutions.contains_key("ForceRestart"));

        let Spec::Redfish(cfg) = try_parse(
            "redfish",
            json!({"redfish_address": "https://bmc", "redfish_verify_ca": true}),
        )
        .unwrap() else {
            panic!("not redfish")
        };
        assert!(cfg.verify_tls && cfg.ca_bundle.is_none() && cfg.system_id.is_none());

        assert!(err("redfish", json!({"redfish_address": "ftp://bmc"})).contains("redfish_address"));
        assert!(err(
            "redfish",
            json!({"redfish_address": "bmc", "redfish_verify_ca": "/nonexistent/ca.pem"})
        )
        .contains("redfish_verify_ca"));
        assert!(err(
            "redfish",
            json!({"redfish_address": "bmc", "redfish_verify_ca": 3})
        )
        .contains("redfish_verify_ca"));
        assert!(err("redfish", json!({"ipmi_address": "bmc"})).contains("redfish_address"));
    }

    #[test]
    fn fingerprint_follows_driver_info() {
        let mut n = Node {
            id: 1,
            uuid: "u".into(),
            driver: "ipmi".into(),
            driver_info: info(json!({"ipmi_address": "h", "ipmi_password": "a"})),
            provision_state: "enroll".into(),
            ..Default::default()
        };
        let a = fingerprint(&n);
        n.power_state = Some("power on".into());
        assert_eq!(fingerprint(&n), a);
        n.driver_info.insert("ipmi_password".into(), json!("b"));
        assert_ne!(fingerprint(&n), a);
    }
}
