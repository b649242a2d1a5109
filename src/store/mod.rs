//! The inventory: nodes and ports in an embedded SQLite database (WAL mode,
//! `synchronous = FULL`), with versioned migrations and secrets (passwords,
//! Kg) encrypted at rest under a key file created with mode 0600.
//!
//! In memory a [`Node`]'s `driver_info` holds plaintext; only this module sees
//! the ciphertext. Its `Debug` masks secrets, and [`mask_secrets`] is what the
//! API renders.
//!
//! The methods are synchronous and short. Writes go through one connection
//! (SQLite has one writer anyway); reads use a small pool of their own
//! connections, so a read never waits on a write transaction.

mod crypto;
mod db;

use serde_json::{Map, Value};

pub use crypto::SecretBox;
pub use db::Store;

/// What Ironic shows instead of a secret.
pub const MASK: &str = "******";

/// Whether a driver_info key holds a secret (encrypted at rest, masked in output).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("passphrase")
        || k.contains("secret")
        || k.contains("token")
        || k.contains("private_key")
        || k == "ipmi_kg"
        || k.ends_with("_kg")
}

/// A copy of `info` with every secret value replaced by `"******"`.
pub fn mask_secrets(info: &Map<String, Value>) -> Map<String, Value> {
    info.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) && !v.is_null() {
                Value::String(MASK.into())
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// A bare-metal node, as Ironic models it (the subset ironrack keeps).
#[derive(Clone, Default, PartialEq)]
pub struct Node {
    /// Internal row id: the default sort order.
    pub id: i64,
    pub uuid: String,
    pub name: Option<String>,
    /// `ipmi` or `redfish`.
    pub driver: String,
    /// Plaintext in memory. Never log it; render it with [`mask_secrets`].
    pub driver_info: Map<String, Value>,
    pub driver_internal_info: Map<String, Value>,
    pub properties: Map<String, Value>,
    pub extra: Map<String, Value>,
    pub instance_info: Map<String, Value>,
    pub instance_uuid: Option<String>,
    pub power_state: Option<String>,
    pub target_power_state: Option<String>,
    pub provision_state: String,
    pub target_provision_state: Option<String>,
    pub provision_updated_at: Option<String>,
    pub maintenance: bool,
    pub maintenance_reason: Option<String>,
    pub fault: Option<String>,
    pub last_error: Option<String>,
    pub console_enabled: bool,
    pub description: Option<String>,
    pub resource_class: Option<String>,
    /// RFC 3339 UTC, e.g. `2026-11-21T10:00:00.123456+00:00`.
    pub created_at: String,
    pub updated_at: Option<String>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("driver", &self.driver)
            .field("driver_info", &mask_secrets(&self.driver_info))
            .field("power_state", &self.power_state)
            .field("target_power_state", &self.target_power_state)
            .field("provision_state", &self.provision_state)
            .field("maintenance", &self.maintenance)
            .field("fault", &self.fault)
            .field("last_error", &self.last_error)
            .finish_non_exhaustive()
    }
}

/// The fields a client may give when creating a node.
#[derive(Clone, Default, PartialEq)]
pub struct NewNode {
    /// Generated when `None`.
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub driver: String,
    pub driver_info: Map<String, Value>,
    pub properties: Map<String, Value>,
    pub extra: Map<String, Value>,
    pub instance_info: Map<String, Value>,
    pub instance_uuid: Option<String>,
    pub description: Option<String>,
    pub resource_class: Option<String>,
    pub maintenance: bool,
    pub maintenance_reason: Option<String>,
}

impl std::fmt::Debug for NewNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewNode")
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("driver", &self.driver)
            .field("driver_info", &mask_secrets(&self.driver_info))
            .finish_non_exhaustive()
    }
}

/// A network port of a node (a MAC address), needed for PXE.
#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    pub id: i64,
    pub uuid: String,
    /// Lower-case, colon-separated MAC.
    pub address: String,
    pub node_uuid: String,
    pub pxe_enabled: bool,
    pub extra: Map<String, Value>,
    pub local_link_connection: Map<String, Value>,
    pub physical_network: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewPort {
    pub uuid: Option<String>,
    /// Any common MAC spelling; stored normalised.
    pub address: String,
    pub node_uuid: String,
    pub pxe_enabled: bool,
    pub extra: Map<String, Value>,
    pub local_link_connection: Map<String, Value>,
    pub physical_network: Option<String>,
}

/// Columns a node list may be sorted by (Ironic's `sort_key`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    #[default]
    Id,
    Uuid,
    Name,
    Driver,
    PowerState,
    ProvisionState,
    Maintenance,
    CreatedAt,
    UpdatedAt,
}

impl SortKey {
    pub fn parse(s: &str) -> Option<SortKey> {
        Some(match s {
            "id" => SortKey::Id,
            "uuid" => SortKey::Uuid,
            "name" => SortKey::Name,
            "driver" => SortKey::Driver,
            "power_state" => SortKey::PowerState,
            "provision_state" => SortKey::ProvisionState,
            "maintenance" => SortKey::Maintenance,
            "created_at" => SortKey::CreatedAt,
            "updated_at" => SortKey::UpdatedAt,
            _ => return None,
        })
    }
}

/// Filters and paging for a node list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeQuery {
    pub maintenance: Option<bool>,
    pub driver: Option<String>,
    pub provision_state: Option<String>,
    /// Only nodes with (true) or without (false) an instance.
    pub associated: Option<bool>,
    pub fault: Option<String>,
    /// At most this many; 0 means no limit.
    pub limit: usize,
    /// Start after the node with this uuid (in the chosen order).
    pub marker: Option<String>,
    pub sort_key: SortKey,
    pub sort_desc: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {ident} could not be found.")]
    NotFound { kind: &'static str, ident: String },
    /// A uniqueness conflict (name, uuid, MAC): HTTP 409.
    #[error("{0}")]
    Duplicate(String),
    /// Bad input (a malformed MAC, a bad marker): HTTP 400.
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Db(String),
    #[error("secret store error: {0}")]
    Crypto(String),
}

/// Normalise a MAC address (`AA-BB-..`, `aabb.ccdd.eeff`, `AA:BB:..`) to
/// lower-case colon form, or explain why it is not one.
pub fn normalize_mac(s: &str) -> Result<String, StoreError> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    let seps_ok = {
        let colon: Vec<&str> = s.split([':', '-']).collect();
        (colon.len() == 6 && colon.iter().all(|p| p.len() == 2))
            || (s.split('.').count() == 3 && s.split('.').all(|p| p.len() == 4))
            || (s.len() == 12 && !s.contains([':', '-', '.']))
    };
    if !seps_ok || hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(StoreError::Invalid(format!(
            "Expected a MAC address but received {s}."
        )));
    }
    let hex = hex.to_ascii_lowercase();
    let parts: Vec<&str> = (0..6).map(|i| &hex[i * 2..i * 2 + 2]).collect();
    Ok(parts.join(":"))
}

/// Now, as the RFC 3339 UTC string the store keeps.
pub fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00"
    );
    t.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000+00:00".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_normalise_or_fail() {
        assert_eq!(
            normalize_mac("52:54:00:AB:cd:01").unwrap(),
            "52:54:00:ab:cd:01"
        );
        assert_eq!(
            normalize_mac("52-54-00-ab-cd-01").unwrap(),
            "52:54:00:ab:cd:01"
        );
        assert_eq!(
            normalize_mac("5254.00ab.cd01").unwrap(),
            "52:54:00:ab:cd:01"
        );
        assert_eq!(normalize_mac("525400abcd01").unwrap(), "52:54:00:ab:cd:01");
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0g",
            "52:54:00:ab:cd:01:02",
            "5:254:00:ab:cd:01",
            "not a mac",
        ] {
            let e = normalize_mac(bad).unwrap_err();
            assert!(matches!(e, StoreError::Invalid(_)), "{bad}");
        }
    }

    #[test]
    fn secrets_are_masked() {
        let info: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "ipmi_address": "10.0.0.1",
            "ipmi_password": "hunter2",
            "ipmi_kg": "k",
            "redfish_password": "p",
            "ipmi_username": "admin",
            "unset_password": null
        }))
        .unwrap();
        let m = mask_secrets(&info);
        assert_eq!(m["ipmi_password"], MASK);
        assert_eq!(m["ipmi_kg"], MASK);
        assert_eq!(m["redfish_password"], MASK);
        assert_eq!(m["ipmi_username"], "admin");
        assert_eq!(m["unset_password"], Value::Null);
        let node_dbg = format!(
            "{:?}",
            NewNode {
                driver_info: info,
                ..Default::default()
            }
        );
        assert!(!node_dbg.contains("hunter2"), "{node_dbg}");
    }

    #[test]
    fn timestamps_look_like_ironics() {
        let t = now();
        assert_eq!(t.len(), "2026-11-21T10:00:00.123456+00:00".len(), "{t}");
        assert!(t.ends_with("+00:00"));
    }
}
