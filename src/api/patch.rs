//! `PATCH /v1/nodes/{id}`: an RFC 6902 document applied to the node's API
//! representation, with Ironic's guards:
//!
//! - operations are `add`, `replace` and `remove` only;
//! - only Ironic's patchable fields may be touched (`uuid`, `power_state`,
//!   `provision_state`, `reservation`, `created_at`, ... are refused, 400);
//!   a field newer than the request's version is 406;
//! - the document shows secrets masked, and a secret patched back as
//!   `"******"` keeps its stored value (clients send back what they read);
//! - Ironic fields ironrack keeps no value for may only be "set" to the
//!   value every node has.

use serde_json::{Map, Value};

use super::error::ApiError;
use super::nodes;
use super::params;
use super::version::Version;
use crate::store::{is_secret_key, Node, MASK};

/// Ironic's PATCH_ALLOWED_FIELDS.
pub const PATCHABLE: &[&str] = &[
    "automated_clean",
    "bios_interface",
    "boot_interface",
    "chassis_uuid",
    "conductor_group",
    "console_interface",
    "deploy_interface",
    "description",
    "disable_power_off",
    "driver",
    "driver_info",
    "extra",
    "inspect_interface",
    "instance_info",
    "instance_name",
    "instance_uuid",
    "lessee",
    "maintenance",
    "management_interface",
    "name",
    "network_data",
    "network_interface",
    "owner",
    "power_interface",
    "properties",
    "protected",
    "protected_reason",
    "raid_interface",
    "rescue_interface",
    "resource_class",
    "retired",
    "retired_reason",
    "shard",
    "storage_interface",
    "vendor_interface",
    "parent_node",
    "firmware_interface",
];

/// The patchable fields ironrack stores.
const WRITABLE: &[&str] = &[
    "description",
    "driver",
    "driver_info",
    "extra",
    "instance_info",
    "instance_uuid",
    "maintenance",
    "name",
    "properties",
    "resource_class",
];

#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    pub op: String,
    pub path: String,
    /// Present for `add` and `replace`.
    pub value: Option<Value>,
}

impl Op {
    /// The top-level field the operation touches (JSON-pointer decoded).
    pub fn root(&self) -> String {
        let seg = self
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        seg.replace("~1", "/").replace("~0", "~")
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("op".into(), Value::String(self.op.clone()));
        m.insert("path".into(), Value::String(self.path.clone()));
        if let Some(v) = &self.value {
            m.insert("value".into(), v.clone());
        }
        Value::Object(m)
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// Read a PATCH body as Ironic's patch schema: an array of objects with
/// `op` (add, replace, remove), `path` (a JSON pointer below the root) and,
/// for add and replace, `value`. Messages never repeat values.
pub fn parse_ops(body: &Value) -> Result<Vec<Op>, ApiError> {
    let Value::Array(items) = body else {
        return Err(bad(
            "Invalid patch: the body must be a JSON array of operations (RFC 6902)",
        ));
    };
    let mut ops = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else {
            return Err(bad(format!(
                "Invalid patch: operation {i} is not an object"
            )));
        };
        if let Some(k) = m
            .keys()
            .find(|k| !["op", "path", "value"].contains(&k.as_str()))
        {
            return Err(bad(format!(
                "Invalid patch: operation {i}: additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
        let op = match m.get("op") {
            Some(Value::String(s)) if ["add", "replace", "remove"].contains(&s.as_str()) => {
                s.clone()
            }
            Some(Value::String(s)) => {
                return Err(bad(format!(
                    "Invalid patch: operation {i}: '{s}' is not one of ['add', 'replace', 'remove']"
                )))
            }
            _ => {
                return Err(bad(format!(
                    "Invalid patch: operation {i}: 'op' is a required string"
                )))
            }
        };
        let path = match m.get("path") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(bad(format!(
                    "Invalid patch: operation {i}: 'path' is a required string"
                )))
            }
        };
        if !path.starts_with('/') || path.len() < 2 || path.split('/').skip(1).any(|s| s.is_empty())
        {
            return Err(bad(format!(
                "Invalid patch: operation {i}: '{path}' is not a valid JSON pointer to a field"
            )));
        }
        let value = m.get("value").cloned();
        if op != "remove" && value.is_none() {
            return Err(bad(format!(
                "Invalid patch: operation {i}: '{op}' needs a 'value'"
            )));
        }
        let value = if op == "remove" { None } else { value };
        ops.push(Op { op, path, value });
    }
    Ok(ops)
}

/// Refuse operations on fields that cannot be patched (400) or that are
/// newer than the request's version (406).
pub fn check_ops(ops: &[Op], v: Version) -> Result<(), ApiError> {
    for o in ops {
        let root = o.root();
        if !PATCHABLE.contains(&root.as_str()) {
            let mut allowed: Vec<&str> = PATCHABLE.to_vec();
            allowed.sort_unstable();
            return Err(bad(format!(
                "Cannot patch {}. Only the following can be updated: {}",
                o.path,
                allowed.join(", ")
            )));
        }
        if o.value.is_some() && o.path == format!("/{root}") && !v.at_least(nodes::field_min(&root))
        {
            return Err(ApiError::too_new());
        }
        if root == "name" && o.value.is_some() && !v.at_least(super::version::V_NAME) {
            return Err(ApiError::too_new());
        }
    }
    Ok(())
}

/// Secret string values a patch carries (to scrub them from error messages).
pub fn secret_values(ops: &[Op]) -> Vec<String> {
    let mut out = Vec::new();
    for o in ops {
        let root = o.root();
        if root != "driver_info" && root != "instance_info" {
            continue;
        }
        let key = o.path.split('/').nth(2);
        match (&o.value, key) {
            (Some(Value::String(s)), Some(k)) if is_secret_key(k) => out.push(s.clone()),
            (Some(Value::Object(m)), None) => {
                for (k, v) in m {
                    if let (true, Value::String(s)) = (is_secret_key(k), v) {
                        out.push(s.clone());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Put back every secret the client sent as the mask.
pub fn restore_masked(new: &mut Map<String, Value>, old: &Map<String, Value>) {
    for (k, v) in new.iter_mut() {
        if is_secret_key(k) && v.as_str() == Some(MASK) {
            if let Some(orig) = old.get(k).filter(|o| !o.is_null()) {
                *v = orig.clone();
            }
        }
    }
}

fn get<'a>(m: &'a Map<String, Value>, k: &str) -> &'a Value {
    m.get(k).unwrap_or(&Value::Null)
}

fn opt_str(m: &Map<String, Value>, k: &str) -> Result<Option<String>, String> {
    match get(m, k) {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(format!(
            "Invalid input for field/attribute {k}: expected a string or null"
        )),
    }
}

fn obj(m: &Map<String, Value>, k: &str) -> Result<Map<String, Value>, String> {
    match get(m, k) {
        Value::Null => Ok(Map::new()),
        Value::Object(o) => Ok(o.clone()),
        _ => Err(format!(
            "Invalid input for field/attribute {k}: expected an object or null"
        )),
    }
}

/// Apply `ops` to `node` (under its lock, inside the conductor's update).
pub fn apply_to_node(node: &mut Node, ops: &[Op], host: &str) -> Result<(), String> {
    let before = nodes::node_doc(node, None, host);
    let mut doc = Value::Object(before.clone());
    let patch_json = Value::Array(ops.iter().map(Op::to_json).collect());
    let patch: json_patch::Patch =
        serde_json::from_value(patch_json).map_err(|e| format!("Invalid patch: {e}"))?;
    json_patch::patch(&mut doc, &patch).map_err(|e| format!("Couldn't apply patch: {e}"))?;
    let Value::Object(after) = doc else {
        return Err("Couldn't apply patch: the result is not an object".into());
    };

    // Fields ironrack keeps no value for must keep the one every node shows
    // (a removed field reverts to it).
    for (k, old) in &before {
        if WRITABLE.contains(&k.as_str()) {
            continue;
        }
        match after.get(k) {
            None => {}
            Some(new) if new == old => {}
            Some(new)
                if nodes::is_default_value(k, new, &node.driver)
                    && PATCHABLE.contains(&k.as_str()) => {}
            Some(_) => {
                return Err(format!("ironrack does not support setting {k} on a node"));
            }
        }
    }

    let name = opt_str(&after, "name")?;
    if let Some(n) = &name {
        if name != node.name {
            nodes::check_name(
                n,
                &format!("Node {}: Cannot change name to invalid name", node.uuid),
            )
            .map_err(|e| e.message)?;
        }
    }
    let driver = match get(&after, "driver") {
        Value::String(s) if !s.is_empty() => s.clone(),
        _ => return Err("'driver' is a required property".into()),
    };
    let mut driver_info = obj(&after, "driver_info")?;
    restore_masked(&mut driver_info, &node.driver_info);
    let mut instance_info = obj(&after, "instance_info")?;
    restore_masked(&mut instance_info, &node.instance_info);
    for k in ["configdrive", "image_url"] {
        if instance_info.get(k).and_then(Value::as_str) == Some(MASK) {
            if let Some(orig) = node.instance_info.get(k) {
                instance_info.insert(k.into(), orig.clone());
            }
        }
    }
    let properties = obj(&after, "properties")?;
    let extra = obj(&after, "extra")?;
    let instance_uuid = match opt_str(&after, "instance_uuid")? {
        None => None,
        Some(u) if params::is_uuid_like(&u) => Some(u.to_ascii_lowercase()),
        Some(u) => return Err(format!("Expected a UUID for instance_uuid: {u}")),
    };
    let description = opt_str(&after, "description")?;
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 4096)
    {
        return Err("Cannot update node with description exceeding 4096 characters".into());
    }
    let resource_class = opt_str(&after, "resource_class")?;
    if resource_class
        .as_ref()
        .is_some_and(|r| r.chars().count() > 80)
    {
        return Err(
            "Invalid input for field/attribute resource_class: longer than 80 characters".into(),
        );
    }
    let maintenance = params::json_bool("maintenance", get(&after, "maintenance"))
        .map_err(|e| e.message)?
        .unwrap_or(false);

    node.name = name;
    node.driver = driver;
    node.driver_info = driver_info;
    node.instance_info = instance_info;
    node.properties = properties;
    node.extra = extra;
    node.instance_uuid = instance_uuid;
    node.description = description;
    node.resource_class = resource_class;
    if node.maintenance && !maintenance {
        node.maintenance_reason = None;
        node.fault = None;
    }
    node.maintenance = maintenance;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Node {
        Node {
            id: 1,
            uuid: "1be26c0b-03f2-4d2e-ae87-c02d7f33c123".into(),
            name: Some("n1".into()),
            driver: "ipmi".into(),
            driver_info: serde_json::from_value(json!({
                "ipmi_address": "10.0.0.5", "ipmi_password": "hunter22"
            }))
            .unwrap(),
            power_state: Some("power on".into()),
            provision_state: "enroll".into(),
            maintenance: true,
            maintenance_reason: Some("r".into()),
            fault: Some("power failure".into()),
            created_at: "2026-01-01T00:00:00.000000+00:00".into(),
            ..Default::default()
        }
    }

    fn ops(v: Value) -> Vec<Op> {
        parse_ops(&v).unwrap()
    }

    #[test]
    fn schema_of_operations() {
        assert!(parse_ops(&json!({"op": "add"})).is_err());
        assert!(parse_ops(&json!([{"op": "move", "path": "/name", "from": "/x"}])).is_err());
        assert!(parse_ops(&json!([{"op": "test", "path": "/name", "value": 1}])).is_err());
        assert!(parse_ops(&json!([{"op": "add", "path": "/name"}])).is_err());
        assert!(parse_ops(&json!([{"op": "add", "path": "name", "value": 1}])).is_err());
        assert!(parse_ops(&json!([{"op": "add", "path": "/", "value": 1}])).is_err());
        assert!(parse_ops(&json!([{"op": "add", "path": "/a//b", "value": 1}])).is_err());
        assert!(parse_ops(&json!([{"op": "add", "path": "/name", "value": 1, "x": 2}])).is_err());
        let o = ops(json!([{"op": "remove", "path": "/extra/a~1b"}]));
        assert_eq!(o[0].root(), "extra");
        assert!(o[0].value.is_none());
        // A secret in a value is never echoed.
        let e =
            parse_ops(&json!([{"op": "add", "path": "/driver_info/ipmi_password"}])).unwrap_err();
        assert!(!e.message.contains("hunter"));
    }

    #[test]
    fn read_only_fields_are_400_and_new_fields_406() {
        for f in [
            "uuid",
            "power_state",
            "target_power_state",
            "provision_state",
            "created_at",
            "updated_at",
            "reservation",
            "console_enabled",
            "maintenance_reason",
            "fault",
            "last_error",
            "traits",
            "links",
            "bogus",
        ] {
            let o = ops(json!([{"op": "replace", "path": format!("/{f}"), "value": "x"}]));
            let e = check_ops(&o, Version::MAX).unwrap_err();
            assert_eq!(e.status, 400, "{f}");
            assert!(
                e.message.starts_with(&format!("Cannot patch /{f}.")),
                "{}",
                e.message
            );
        }
        let o = ops(json!([{"op": "add", "path": "/description", "value": "d"}]));
        assert_eq!(
            check_ops(&o, Version { minor: 50 }).unwrap_err().status,
            406
        );
        assert!(check_ops(&o, Version { minor: 51 }).is_ok());
    }

    #[test]
    fn masked_secret_keeps_the_stored_one() {
        let mut n = node();
        let o = ops(json!([
            {"op": "replace", "path": "/driver_info",
             "value": {"ipmi_address": "10.0.0.6", "ipmi_password": MASK}},
        ]));
        apply_to_node(&mut n, &o, "h").unwrap();
        assert_eq!(n.driver_info["ipmi_password"], "hunter22");
        assert_eq!(n.driver_info["ipmi_address"], "10.0.0.6");
        let o = ops(json!([{"op": "add", "path": "/driver_info/ipmi_password", "value": MASK}]));
        apply_to_node(&mut n, &o, "h").unwrap();
        assert_eq!(n.driver_info["ipmi_password"], "hunter22");
        let o =
            ops(json!([{"op": "add", "path": "/driver_info/ipmi_password", "value": "new-pw"}]));
        apply_to_node(&mut n, &o, "h").unwrap();
        assert_eq!(n.driver_info["ipmi_password"], "new-pw");
        let o = ops(json!([{"op": "remove", "path": "/driver_info/ipmi_password"}]));
        apply_to_node(&mut n, &o, "h").unwrap();
        assert!(n.driver_info.get("ipmi_password").is_none());
    }

    #[test]
    fn set_unset_like_the_cli() {
        let mut n = node();
        let o = ops(json!([
            {"op": "add", "path": "/properties/cpus", "value": "8"},
            {"op": "add", "path": "/extra/rack", "value": "r1"},
            {"op": "add", "path": "/name", "value": "n2"},
            {"op": "add", "path": "/description", "value": "desc"},
            {"op": "add", "path": "/maintenance", "value": "false"},
            {"op": "add", "path": "/power_interface", "value": "ipmitool"},
        ]));
        apply_to_node(&mut n, &o, "h").unwrap();
        assert_eq!(n.properties["cpus"], "8");
        assert_eq!(n.extra["rack"], "r1");
        assert_eq!(n.name.as_deref(), Some("n2"));
        assert!(!n.maintenance && n.fault.is_none() && n.maintenance_reason.is_none());
        let o = ops(json!([
            {"op": "remove", "path": "/name"},
            {"op": "remove", "path": "/extra/rack"},
            {"op": "remove", "path": "/description"},
        ]));
        apply_to_node(&mut n, &o, "h").unwrap();
        assert!(n.name.is_none() && n.extra.is_empty() && n.description.is_none());
        // Unsupported values and bad names are refused, and nothing changes.
        let before = n.clone();
        for bad in [
            json!([{"op": "add", "path": "/owner", "value": "p1"}]),
            json!([{"op": "add", "path": "/power_interface", "value": "redfish"}]),
            json!([{"op": "add", "path": "/name", "value": "bad name"}]),
            json!([{"op": "add", "path": "/instance_uuid", "value": "nope"}]),
            json!([{"op": "add", "path": "/driver_info", "value": 5}]),
            json!([{"op": "remove", "path": "/extra/missing"}]),
            json!([{"op": "remove", "path": "/driver"}]),
        ] {
            let mut m = n.clone();
            assert!(
                apply_to_node(&mut m, &ops(bad.clone()), "h").is_err(),
                "{bad}"
            );
        }
        assert_eq!(n, before);
    }

    #[test]
    fn secrets_in_patches_are_collected() {
        let o = ops(json!([
            {"op": "add", "path": "/driver_info/ipmi_password", "value": "pw1"},
            {"op": "replace", "path": "/driver_info", "value": {"redfish_password": "pw2", "u": "x"}},
            {"op": "add", "path": "/extra/password", "value": "not-collected"},
        ]));
        assert_eq!(
            secret_values(&o),
            vec!["pw1".to_string(), "pw2".to_string()]
        );
    }
}
