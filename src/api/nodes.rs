//! `/v1/nodes`: Ironic's node representation (every field Ironic shows up
//! to the maximum version, hidden below the version that introduced it) and
//! the node endpoints: CRUD, states, power, maintenance, management,
//! validate.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::params::{self, Params};
use super::patch;
use super::version::{self, Version};
use super::{accepted_with_location, blocking, links, Ctx, JsonBody, Shared};
use crate::bmc::BootDevice;
pub use crate::conductor::INTERFACES;
use crate::conductor::{ConductorError, PowerTarget};
use crate::store::{mask_secrets, NewNode, Node, NodeQuery, SortKey, MASK};

/// The interface implementation a node of `driver` reports (and the only
/// one it accepts): the BMC protocol for power and management, Ironic's
/// "no-op" implementations elsewhere, and none for boot and deploy, which
/// ironrack does not provide (yet).
pub fn interface_value(driver: &str, iface: &str) -> Option<&'static str> {
    match iface {
        "power" | "management" => match driver {
            "ipmi" => Some("ipmitool"),
            "redfish" => Some("redfish"),
            _ => None,
        },
        "bios" => Some("no-bios"),
        "console" => Some("no-console"),
        "firmware" => Some("no-firmware"),
        "inspect" => Some("no-inspect"),
        "network" => Some("noop"),
        "raid" => Some("no-raid"),
        "rescue" => Some("no-rescue"),
        "storage" => Some("noop"),
        "vendor" => Some("no-vendor"),
        _ => None,
    }
}

/// The microversion that introduced a node field (Ironic's VERSIONED_FIELDS).
pub fn field_min(field: &str) -> u32 {
    match field {
        "driver_internal_info" => 3,
        "name" => version::V_NAME,
        "inspection_finished_at" | "inspection_started_at" => 6,
        "clean_step" => 7,
        "raid_config" | "target_raid_config" => 12,
        "states" => version::V_STATES_LINKS,
        "network_interface" => 20,
        "resource_class" => version::V_RESOURCE_CLASS,
        "boot_interface"
        | "console_interface"
        | "deploy_interface"
        | "inspect_interface"
        | "management_interface"
        | "power_interface"
        | "raid_interface"
        | "vendor_interface" => 31,
        "storage_interface" => 33,
        "traits" => 37,
        "rescue_interface" => 38,
        "bios_interface" => 40,
        "fault" => version::V_FAULT,
        "deploy_step" => 44,
        "conductor_group" => version::V_CONDUCTOR_GROUP,
        "automated_clean" => 47,
        "protected" | "protected_reason" => 48,
        "conductor" => version::V_CONDUCTORS,
        "owner" => version::V_OWNER,
        "description" => version::V_DESCRIPTION,
        "allocation_uuid" => 52,
        "retired" | "retired_reason" => version::V_RETIRED,
        "lessee" => version::V_LESSEE,
        "network_data" => 66,
        "boot_mode" | "secure_boot" => 75,
        "shard" => version::V_SHARD,
        "parent_node" => version::V_PARENT_NODE,
        "firmware_interface" => 86,
        "service_step" => 87,
        "disable_power_off" => 95,
        "instance_name" => version::V_INSTANCE_NAME,
        "health" => 109,
        _ => 1,
    }
}

/// Every field a node shows at the maximum version (plus `links`), which is
/// also what `fields=` may name.
pub const NODE_FIELDS: &[&str] = &[
    "allocation_uuid",
    "automated_clean",
    "bios_interface",
    "boot_interface",
    "boot_mode",
    "chassis_uuid",
    "clean_step",
    "conductor",
    "conductor_group",
    "console_enabled",
    "console_interface",
    "created_at",
    "deploy_interface",
    "deploy_step",
    "description",
    "disable_power_off",
    "driver",
    "driver_info",
    "driver_internal_info",
    "extra",
    "fault",
    "firmware_interface",
    "health",
    "inspect_interface",
    "inspection_finished_at",
    "inspection_started_at",
    "instance_info",
    "instance_name",
    "instance_uuid",
    "last_error",
    "lessee",
    "links",
    "maintenance",
    "maintenance_reason",
    "management_interface",
    "name",
    "network_data",
    "network_interface",
    "owner",
    "parent_node",
    "power_interface",
    "power_state",
    "properties",
    "protected",
    "protected_reason",
    "provision_state",
    "provision_updated_at",
    "raid_config",
    "raid_interface",
    "rescue_interface",
    "reservation",
    "resource_class",
    "retired",
    "retired_reason",
    "secure_boot",
    "service_step",
    "shard",
    "storage_interface",
    "target_power_state",
    "target_provision_state",
    "target_raid_config",
    "traits",
    "updated_at",
    "uuid",
    "vendor_interface",
];

/// What a list shows without `fields` or `detail` (plus `links`).
const DEFAULT_LIST_FIELDS: [&str; 6] = [
    "instance_uuid",
    "maintenance",
    "power_state",
    "provision_state",
    "uuid",
    "name",
];

/// Words that cannot be node names (they are paths under `/v1/nodes`).
const RESERVED_NAMES: [&str; 2] = ["detail", "validate"];

/// Largest description Ironic accepts.
const DESCRIPTION_MAX: usize = 4096;
const RESOURCE_CLASS_MAX: usize = 80;

/// `instance_info` as Ironic shows it: secrets, the config drive and the
/// image URL masked.
fn mask_instance_info(info: &Map<String, Value>) -> Map<String, Value> {
    let mut m = mask_secrets(info);
    for k in ["configdrive", "image_url"] {
        if let Some(v) = m.get_mut(k) {
            let truthy = match v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Object(o) => !o.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            };
            if truthy {
                *v = Value::String(MASK.into());
            }
        }
    }
    m
}

/// One field of a node as the API shows it (secrets masked); `None` for a
/// name that is not a node field (or is `links`, which needs the base URL).
pub fn node_field(n: &Node, key: &str, reservation: &Option<String>, host: &str) -> Option<Value> {
    if let Some(iface) = key.strip_suffix("_interface") {
        if INTERFACES.contains(&iface) {
            return Some(json!(interface_value(&n.driver, iface)));
        }
        return None;
    }
    Some(match key {
        "uuid" => json!(n.uuid),
        "name" => json!(n.name),
        "created_at" => json!(n.created_at),
        "updated_at" => json!(n.updated_at),
        "driver" => json!(n.driver),
        "driver_info" => Value::Object(mask_secrets(&n.driver_info)),
        "driver_internal_info" => Value::Object(mask_secrets(&n.driver_internal_info)),
        "properties" => Value::Object(n.properties.clone()),
        "extra" => Value::Object(n.extra.clone()),
        "instance_info" => Value::Object(mask_instance_info(&n.instance_info)),
        "instance_uuid" => json!(n.instance_uuid),
        "power_state" => json!(n.power_state),
        "target_power_state" => json!(n.target_power_state),
        "provision_state" => json!(n.provision_state),
        "target_provision_state" => json!(n.target_provision_state),
        "provision_updated_at" => json!(n.provision_updated_at),
        "maintenance" => json!(n.maintenance),
        "maintenance_reason" => json!(n.maintenance_reason),
        "fault" => json!(n.fault),
        "last_error" => json!(n.last_error),
        "console_enabled" => json!(n.console_enabled),
        "description" => json!(n.description),
        "resource_class" => json!(n.resource_class),
        "reservation" => json!(reservation),
        "conductor" => json!(host),
        "conductor_group" => json!(""),
        "clean_step" | "deploy_step" | "service_step" | "network_data" | "raid_config"
        | "target_raid_config" => json!({}),
        "disable_power_off" | "protected" | "retired" => json!(false),
        "traits" => json!([]),
        "instance_name"
        | "chassis_uuid"
        | "allocation_uuid"
        | "automated_clean"
        | "boot_mode"
        | "secure_boot"
        | "health"
        | "inspection_started_at"
        | "inspection_finished_at"
        | "lessee"
        | "owner"
        | "parent_node"
        | "protected_reason"
        | "retired_reason"
        | "shard" => Value::Null,
        _ => return None,
    })
}

/// Every field of a node at the maximum version: secrets masked, no links.
/// This is also the document a PATCH applies to.
pub fn node_doc(n: &Node, reservation: Option<String>, host: &str) -> Map<String, Value> {
    NODE_FIELDS
        .iter()
        .filter_map(|k| node_field(n, k, &reservation, host).map(|v| (k.to_string(), v)))
        .collect()
}

/// A node as the API shows it at `ctx`'s version, optionally cut down to
/// `fields` (plus `links`).
pub fn render_node(
    n: &Node,
    reservation: Option<String>,
    host: &str,
    ctx: &Ctx,
    fields: Option<&[String]>,
) -> Value {
    let mut doc = match fields {
        None => node_doc(n, reservation, host),
        // Only what was asked for: a fields= list is the cheap way to page
        // through thousands of nodes.
        Some(f) => f
            .iter()
            .filter_map(|k| node_field(n, k, &reservation, host).map(|v| (k.clone(), v)))
            .collect(),
    };
    doc.insert("links".into(), links(&ctx.base, "nodes", &n.uuid));
    match fields {
        None => {
            doc.insert(
                "ports".into(),
                links(&ctx.base, "nodes", &format!("{}/ports", n.uuid)),
            );
            doc.insert(
                "states".into(),
                links(&ctx.base, "nodes", &format!("{}/states", n.uuid)),
            );
        }
        Some(f) => doc.retain(|k, _| k == "links" || f.iter().any(|x| x == k)),
    }
    doc.retain(|k, _| ctx.v.at_least(field_min(k)));
    // Before 1.2 "available" was spelled as no state at all.
    if !ctx.v.at_least(2) && doc.get("provision_state") == Some(&json!("available")) {
        doc.insert("provision_state".into(), Value::Null);
    }
    Value::Object(doc)
}

/// Check a `fields=` list: 406 below 1.8 or for a field newer than the
/// version, 400 for a field nodes do not have.
pub fn check_fields(
    fields: &[String],
    v: Version,
    known: &[&str],
    min: fn(&str) -> u32,
) -> Result<(), ApiError> {
    if !v.at_least(version::V_FIELDS) {
        return Err(ApiError::too_new());
    }
    if fields
        .iter()
        .any(|f| known.contains(&f.as_str()) && !v.at_least(min(f)))
    {
        return Err(ApiError::too_new());
    }
    let bad: Vec<&str> = fields
        .iter()
        .map(String::as_str)
        .filter(|f| !known.contains(f))
        .collect();
    if !bad.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Field(s) \"{}\" are not valid",
            bad.join(", ")
        )));
    }
    Ok(())
}

/// Whether `name` may name a node (an RFC 3986 unreserved string that is not
/// a UUID nor a reserved word); the error Ironic gives otherwise.
pub fn check_name(name: &str, what: &str) -> Result<(), ApiError> {
    if RESERVED_NAMES.contains(&name) {
        return Err(ApiError::bad_request(format!(
            "The word \"{name}\" is reserved and can not be used as a node name. \
             Reserved words are: {}.",
            RESERVED_NAMES.join(", ")
        )));
    }
    if !params::is_valid_logical_name(name) || params::is_uuid_like(name) {
        return Err(ApiError::bad_request(format!("{what} '{name}'")));
    }
    Ok(())
}

/// A node identifier in a URL; names need 1.5.
pub(super) fn check_node_ident(ident: &str, v: Version) -> Result<(), ApiError> {
    params::check_ident("node", ident)?;
    if !params::is_uuid_like(ident) && !v.at_least(version::V_NAME) {
        return Err(ApiError::bad_request(format!(
            "Expected a UUID but received {ident}."
        )));
    }
    Ok(())
}

async fn get_node(st: &Shared, ident: &str) -> Result<Node, ApiError> {
    let store = st.store.clone();
    let id = ident.to_string();
    blocking(move || store.get_node(&id).map_err(ApiError::from)).await
}

fn render_full(st: &Shared, n: &Node, ctx: &Ctx) -> Value {
    render_node(
        n,
        st.conductor.reservation(&n.uuid),
        st.conductor.host(),
        ctx,
        None,
    )
}

/// The string values of secret keys in a body's `driver_info` /
/// `instance_info`, to keep them out of error messages.
pub fn secret_values_in(obj: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for k in ["driver_info", "instance_info"] {
        if let Some(Value::Object(m)) = obj.get(k) {
            for (key, v) in m {
                if crate::store::is_secret_key(key) {
                    if let Value::String(s) = v {
                        out.push(s.clone());
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------- create --

fn opt_string(k: &str, v: Value) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {k}: expected a string or null"
        ))),
    }
}

fn opt_uuid(k: &str, v: Value) -> Result<Option<String>, ApiError> {
    match opt_string(k, v)? {
        None => Ok(None),
        Some(s) if params::is_uuid_like(&s) => Ok(Some(s.to_ascii_lowercase())),
        Some(s) => Err(ApiError::bad_request(format!(
            "Expected a UUID for {k}: {s}"
        ))),
    }
}

fn object(k: &str, v: Value) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {k}: expected an object or null"
        ))),
    }
}

/// Whether `v` is what a node ironrack manages always has for this Ironic
/// field (so setting it is a no-op rather than something unsupported).
pub fn is_default_value(field: &str, v: &Value, driver: &str) -> bool {
    if let Some(iface) = field.strip_suffix("_interface") {
        if INTERFACES.contains(&iface) {
            return v.is_null() || v.as_str() == interface_value(driver, iface);
        }
    }
    match field {
        "conductor_group" => v.is_null() || v.as_str() == Some(""),
        "console_enabled" | "disable_power_off" | "retired" | "protected" => {
            v.is_null()
                || v.as_bool() == Some(false)
                || v.as_str().and_then(params::parse_bool) == Some(false)
        }
        "network_data" => v.is_null() || v.as_object().is_some_and(|m| m.is_empty()),
        _ => v.is_null(),
    }
}

/// Ironic node fields ironrack keeps no value for: accepted on create and
/// PATCH only with the value every node has.
const FIXED_FIELDS: &[&str] = &[
    "automated_clean",
    "boot_mode",
    "chassis_uuid",
    "conductor_group",
    "console_enabled",
    "disable_power_off",
    "instance_name",
    "lessee",
    "network_data",
    "owner",
    "parent_node",
    "protected",
    "protected_reason",
    "retired",
    "retired_reason",
    "secure_boot",
    "shard",
];

fn unsupported(field: &str) -> ApiError {
    ApiError::bad_request(format!(
        "ironrack does not support setting {field} on a node"
    ))
}

/// Read a `POST /v1/nodes` body, as Ironic's node schema (unknown fields are
/// refused; fields newer than the version are 406).
pub fn new_node(obj: Map<String, Value>, v: Version) -> Result<NewNode, ApiError> {
    for (k, val) in &obj {
        let empty = if k == "conductor_group" {
            val.is_null() || val.as_str() == Some("")
        } else {
            val.is_null()
        };
        if !empty && NODE_FIELDS.contains(&k.as_str()) && !v.at_least(field_min(k)) {
            return Err(ApiError::too_new());
        }
    }
    let mut new = NewNode::default();
    let mut driver = None;
    let mut fixed = Vec::new();
    for (k, val) in obj {
        match k.as_str() {
            "uuid" => new.uuid = opt_uuid(&k, val)?,
            "name" => {
                new.name = opt_string(&k, val)?;
                if let Some(n) = &new.name {
                    check_name(n, "Cannot create node with invalid name")?;
                }
            }
            "driver" => match val {
                Value::String(s) if !s.is_empty() => driver = Some(s),
                _ => {
                    return Err(ApiError::bad_request(
                        "Invalid input for field/attribute driver: expected a driver name",
                    ))
                }
            },
            "driver_info" => new.driver_info = object(&k, val)?,
            "properties" => new.properties = object(&k, val)?,
            "extra" => new.extra = object(&k, val)?,
            "instance_info" => new.instance_info = object(&k, val)?,
            "instance_uuid" => new.instance_uuid = opt_uuid(&k, val)?,
            "description" => {
                new.description = opt_string(&k, val)?;
                if new
                    .description
                    .as_ref()
                    .is_some_and(|d| d.chars().count() > DESCRIPTION_MAX)
                {
                    return Err(ApiError::bad_request(format!(
                        "Cannot create node with description exceeding {DESCRIPTION_MAX} characters"
                    )));
                }
            }
            "resource_class" => {
                new.resource_class = opt_string(&k, val)?;
                if new
                    .resource_class
                    .as_ref()
                    .is_some_and(|r| r.chars().count() > RESOURCE_CLASS_MAX)
                {
                    return Err(ApiError::bad_request(format!(
                        "Invalid input for field/attribute resource_class: longer than \
                         {RESOURCE_CLASS_MAX} characters"
                    )));
                }
            }
            "maintenance" => {
                new.maintenance = params::json_bool("maintenance", &val)?.unwrap_or(false)
            }
            other
                if FIXED_FIELDS.contains(&other)
                    || (other.ends_with("_interface")
                        && INTERFACES.contains(&other.trim_end_matches("_interface"))) =>
            {
                fixed.push((k, val))
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Additional properties are not allowed ('{k}' was unexpected)"
                )))
            }
        }
    }
    let Some(driver) = driver else {
        return Err(ApiError::bad_request("'driver' is a required property"));
    };
    for (k, val) in fixed {
        if !is_default_value(&k, &val, &driver) {
            return Err(unsupported(&k));
        }
    }
    new.driver = driver;
    Ok(new)
}

pub async fn create(
    State(st): State<Shared>,
    ctx: Ctx,
    uri: Uri,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    Params::from_uri(&uri)?.finish()?;
    let obj = params::json_object(body)?;
    let secrets = secret_values_in(&obj);
    let new = new_node(obj, ctx.v).map_err(|e| e.scrub(&secrets))?;
    let c = st.conductor.clone();
    let node = blocking(move || c.create_node(new).map_err(ApiError::from))
        .await
        .map_err(|e| e.scrub(&secrets))?;
    tracing::info!(node = %node.uuid, driver = %node.driver, "node enrolled");
    let body = render_full(&st, &node, &ctx);
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/v1/nodes/{}", ctx.base, node.uuid)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

// ------------------------------------------------------------------ list --

type NodeFilter = Box<dyn Fn(&Node) -> bool + Send>;

fn gate(p: Option<&String>, v: Version, min: u32) -> Result<(), ApiError> {
    if p.is_some() && !v.at_least(min) {
        return Err(ApiError::too_new());
    }
    Ok(())
}

pub async fn list(State(st): State<Shared>, ctx: Ctx, uri: Uri) -> Result<Json<Value>, ApiError> {
    list_nodes(st, ctx, uri, false).await
}

pub async fn list_detail(
    State(st): State<Shared>,
    ctx: Ctx,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    list_nodes(st, ctx, uri, true).await
}

async fn list_nodes(
    st: Shared,
    ctx: Ctx,
    uri: Uri,
    detail_path: bool,
) -> Result<Json<Value>, ApiError> {
    let v = ctx.v;
    let mut p = Params::from_uri(&uri)?;
    let mut next_args: Vec<(String, String)> = Vec::new();

    let view = params::ListView::parse(&mut p, v, detail_path, NODE_FIELDS, field_min)?;
    let (fields, detail) = (view.fields.clone(), view.detail);

    let sort_key_raw = p.str("sort_key").unwrap_or_else(|| "id".into());
    let sort_key = SortKey::parse(&sort_key_raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "The sort_key value {sort_key_raw} is an invalid field for sorting"
        ))
    })?;
    if !v.at_least(field_min(&sort_key_raw)) {
        return Err(ApiError::too_new());
    }
    let sort_dir_raw = p.str("sort_dir").unwrap_or_else(|| "asc".into());
    let sort_desc = params::sort_dir(Some(sort_dir_raw.clone()))?;
    next_args.push(("sort_key".into(), sort_key_raw));
    next_args.push(("sort_dir".into(), sort_dir_raw));

    let mut q = NodeQuery {
        sort_key,
        sort_desc,
        ..NodeQuery::default()
    };
    let mut arg = |name: &str, p: &mut Params| -> Option<String> {
        let val = p.str(name);
        if let Some(val) = &val {
            next_args.push((name.to_string(), val.clone()));
        }
        val
    };
    if let Some(m) = arg("maintenance", &mut p) {
        q.maintenance = Some(
            params::parse_bool(&m)
                .ok_or_else(|| ApiError::bad_request(params::bool_error("maintenance", &m)))?,
        );
    }
    if let Some(a) = arg("associated", &mut p) {
        q.associated = Some(
            params::parse_bool(&a)
                .ok_or_else(|| ApiError::bad_request(params::bool_error("associated", &a)))?,
        );
    }
    q.driver = arg("driver", &mut p);
    q.provision_state = arg("provision_state", &mut p);
    q.fault = arg("fault", &mut p);
    gate(q.fault.as_ref(), v, version::V_FAULT)?;

    // Filters on fields ironrack keeps fixed values for, or that the store
    // does not index: applied to the rows read.
    let mut filters: Vec<NodeFilter> = Vec::new();
    let host = st.conductor.host().to_string();
    let instance_uuid = arg("instance_uuid", &mut p);
    if let Some(iu) = &instance_uuid {
        if !params::is_uuid_like(iu) {
            return Err(ApiError::bad_request(format!(
                "Expected a UUID for instance_uuid: {iu}"
            )));
        }
        let iu = iu.to_ascii_lowercase();
        filters.push(Box::new(move |n| {
            n.instance_uuid.as_deref().map(str::to_ascii_lowercase) == Some(iu.clone())
        }));
    }
    if let Some(rc) = arg("resource_class", &mut p) {
        gate(Some(&rc), v, version::V_RESOURCE_CLASS)?;
        filters.push(Box::new(move |n| {
            n.resource_class.as_deref() == Some(rc.as_str())
        }));
    }
    if let Some(dc) = arg("description_contains", &mut p) {
        gate(Some(&dc), v, version::V_DESCRIPTION)?;
        filters.push(Box::new(move |n| {
            n.description
                .as_deref()
                .is_some_and(|d| d.contains(dc.as_str()))
        }));
    }
    if let Some(cg) = arg("conductor_group", &mut p) {
        gate(Some(&cg), v, version::V_CONDUCTOR_GROUP)?;
        let matches = cg.is_empty();
        filters.push(Box::new(move |_| matches));
    }
    if let Some(c) = arg("conductor", &mut p) {
        gate(Some(&c), v, version::V_CONDUCTORS)?;
        let matches = c == host;
        filters.push(Box::new(move |_| matches));
    }
    if let Some(r) = arg("retired", &mut p) {
        gate(Some(&r), v, version::V_RETIRED)?;
        let want = params::parse_bool(&r)
            .ok_or_else(|| ApiError::bad_request(params::bool_error("retired", &r)))?;
        filters.push(Box::new(move |_| !want));
    }
    if let Some(s) = arg("sharded", &mut p) {
        gate(Some(&s), v, version::V_SHARD)?;
        let want = params::parse_bool(&s)
            .ok_or_else(|| ApiError::bad_request(params::bool_error("sharded", &s)))?;
        filters.push(Box::new(move |_| !want));
    }
    if let Some(ic) = arg("include_children", &mut p) {
        gate(Some(&ic), v, version::V_PARENT_NODE)?;
        params::parse_bool(&ic)
            .ok_or_else(|| ApiError::bad_request(params::bool_error("include_children", &ic)))?;
    }
    // Fields no ironrack node has a value for: a filter on them matches none.
    for (name, min) in [
        ("chassis_uuid", 1),
        ("owner", version::V_OWNER),
        ("lessee", version::V_LESSEE),
        ("project", version::V_PROJECT),
        ("shard", version::V_SHARD),
        ("parent_node", version::V_PARENT_NODE),
        ("instance_name", version::V_INSTANCE_NAME),
    ] {
        if let Some(val) = arg(name, &mut p) {
            gate(Some(&val), v, min)?;
            filters.push(Box::new(|_| false));
        }
    }

    let (limit, marker) = params::paging(&mut p, st.max_limit)?;
    p.finish()?;
    view.push_next_args(&mut next_args);
    q.marker = marker;
    q.limit = if filters.is_empty() { limit } else { 0 };

    let store = st.store.clone();
    let nodes = blocking(move || {
        let mut nodes = store.list_nodes(&q).map_err(ApiError::from)?;
        if !filters.is_empty() {
            nodes.retain(|n| filters.iter().all(|f| f(n)));
            nodes.truncate(limit);
        }
        Ok(nodes)
    })
    .await?;

    let full = detail_path || detail == Some(true);
    let default_fields: Vec<String> = DEFAULT_LIST_FIELDS.iter().map(|s| s.to_string()).collect();
    let cut: Option<&[String]> = if full {
        None
    } else {
        Some(fields.as_deref().unwrap_or(&default_fields))
    };
    let items: Vec<Value> = nodes
        .iter()
        .map(|n| {
            render_node(
                n,
                st.conductor.reservation(&n.uuid),
                st.conductor.host(),
                &ctx,
                cut,
            )
        })
        .collect();
    let mut out = json!({ "nodes": items });
    let resource = if detail_path { "nodes/detail" } else { "nodes" };
    if instance_uuid.is_none() {
        if let Some(next) = params::next_link(
            &ctx.base,
            resource,
            &next_args,
            nodes.len(),
            limit,
            nodes.last().map(|n| n.uuid.as_str()),
        ) {
            out["next"] = json!(next);
        }
    }
    Ok(Json(out))
}

// ------------------------------------------------------- show / patch --

pub async fn show(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let mut p = Params::from_uri(&uri)?;
    let fields = p.list("fields");
    p.finish()?;
    if let Some(f) = &fields {
        check_fields(f, ctx.v, NODE_FIELDS, field_min)?;
    }
    let n = get_node(&st, &ident).await?;
    Ok(Json(render_node(
        &n,
        st.conductor.reservation(&n.uuid),
        st.conductor.host(),
        &ctx,
        fields.as_deref(),
    )))
}

pub async fn update(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    uri: Uri,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let mut p = Params::from_uri(&uri)?;
    let reset = p.bool("reset_interfaces")?;
    p.finish()?;
    if reset.is_some() && !ctx.v.at_least(version::V_RESET_INTERFACES) {
        return Err(ApiError::too_new());
    }
    let ops = patch::parse_ops(&body)?;
    patch::check_ops(&ops, ctx.v)?;
    if reset.is_some() && !ops.iter().any(|o| o.path == "/driver" && o.value.is_some()) {
        return Err(ApiError::bad_request(
            "The reset_interfaces parameter can only be used when changing the node's driver.",
        ));
    }
    let secrets = patch::secret_values(&ops);
    let host = st.conductor.host().to_string();
    let c = st.conductor.clone();
    let id = ident.clone();
    let node = blocking(move || {
        c.update_node(&id, move |n| {
            patch::apply_to_node(n, &ops, &host).map_err(ConductorError::InvalidParameter)
        })
        .map_err(ApiError::from)
    })
    .await
    .map_err(|e| e.scrub(&secrets))?;
    Ok(Json(render_full(&st, &node, &ctx)))
}

pub async fn delete(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    st.conductor.delete_node(&ident).await?;
    tracing::info!(node = %ident, "node deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- states --

pub fn states_doc(n: &Node, v: Version) -> Value {
    let mut d = json!({
        "console_enabled": n.console_enabled,
        "last_error": n.last_error,
        "power_state": n.power_state,
        "provision_state": n.provision_state,
        "target_power_state": n.target_power_state,
        "target_provision_state": n.target_provision_state,
        "provision_updated_at": n.provision_updated_at,
    });
    if v.at_least(12) {
        d["raid_config"] = json!({});
        d["target_raid_config"] = json!({});
    }
    if v.at_least(75) {
        d["boot_mode"] = Value::Null;
        d["secure_boot"] = Value::Null;
    }
    d
}

pub async fn states(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let n = get_node(&st, &ident).await?;
    Ok(Json(states_doc(&n, ctx.v)))
}

/// The keys of a JSON object body (an empty body is an empty object), with
/// anything else refused.
pub(super) fn body_object(body: Value, allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let obj = match body {
        Value::Null => Map::new(),
        other => params::json_object(other)?,
    };
    let mut unknown: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    unknown.sort_unstable();
    if !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Unknown argument(s): {}",
            unknown.join(", ")
        )));
    }
    Ok(obj)
}

/// `timeout` as Ironic's `args.integer`: a JSON integer or a numeric string.
fn timeout_arg(v: Option<&Value>) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("Expected an integer for timeout: {n}"))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("Expected an integer for timeout: {s}"))),
        Some(_) => Err(ApiError::bad_request("Expected an integer for timeout")),
    }
}

pub async fn set_power(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let obj = body_object(body, &["target", "timeout"])?;
    let target = params::required_str(&obj, "target")?;
    let timeout = timeout_arg(obj.get("timeout"))?;
    let soft = target == "soft power off" || target == "soft rebooting";
    if (soft || timeout.is_some()) && !ctx.v.at_least(version::V_SOFT_POWER) {
        return Err(ApiError::too_new());
    }
    if timeout.is_some_and(|t| t < 1) {
        return Err(ApiError::bad_request("timeout has to be positive integer"));
    }
    let node = get_node(&st, &ident).await?;
    let Some(t) = PowerTarget::parse(&target) else {
        return Err(ApiError::bad_request(format!(
            "The requested action \"{target}\" can not be performed on node \"{ident}\" \
             while it is in state \"{}\".",
            node.power_state.as_deref().unwrap_or("None")
        )));
    };
    let timeout = timeout.map(|t| Duration::from_secs(t as u64));
    st.conductor
        .change_node_power_state(&ident, t, timeout)
        .await?;
    tracing::info!(node = %node.uuid, target = t.ironic(), "power change accepted");
    Ok(accepted_with_location(&format!(
        "{}/v1/nodes/{ident}/states",
        ctx.base
    )))
}

// ----------------------------------------------------------- maintenance --

pub async fn maintenance_on(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    uri: Uri,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let mut p = Params::from_uri(&uri)?;
    let q_reason = p.str("reason");
    p.finish()?;
    let obj = body_object(body, &["reason"])?;
    let reason = match obj.get("reason") {
        None | Some(Value::Null) => q_reason,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("reason must be a string")),
    };
    let c = st.conductor.clone();
    let id = ident.clone();
    blocking(move || {
        c.set_maintenance(&id, true, reason)
            .map(|_| ())
            .map_err(ApiError::from)
    })
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn maintenance_off(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<Response, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let c = st.conductor.clone();
    let id = ident.clone();
    blocking(move || {
        c.set_maintenance(&id, false, None)
            .map(|_| ())
            .map_err(ApiError::from)
    })
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

// ------------------------------------------------------------ management --

const BOOT_DEVICES: [BootDevice; 6] = [
    BootDevice::Pxe,
    BootDevice::Disk,
    BootDevice::Cdrom,
    BootDevice::Bios,
    BootDevice::Safe,
    BootDevice::UefiHttp,
];

/// Ironic's boot device names, exactly.
pub fn parse_boot_device(s: &str) -> Option<BootDevice> {
    BOOT_DEVICES.iter().copied().find(|d| d.name() == s)
}

pub async fn get_boot_device(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let b = st.conductor.get_boot_device(&ident).await?;
    Ok(Json(json!({
        "boot_device": b.device.map(|d| d.name()),
        "persistent": b.persistent,
    })))
}

pub async fn set_boot_device(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let obj = body_object(body, &["boot_device", "persistent"])?;
    let dev = params::required_str(&obj, "boot_device")?;
    let Some(device) = parse_boot_device(&dev) else {
        return Err(ApiError::bad_request(format!(
            "Invalid boot device {dev} specified. Valid boot devices are: {}.",
            BOOT_DEVICES.map(|d| d.name()).join(", ")
        )));
    };
    let persistent = match obj.get("persistent") {
        Some(v) => params::json_bool("persistent", v)?.unwrap_or(false),
        None => false,
    };
    st.conductor
        .set_boot_device(&ident, device, persistent)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn supported_boot_devices(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let devs = st.conductor.supported_boot_devices(&ident).await?;
    Ok(Json(json!({
        "supported_boot_devices": devs.iter().map(|d| d.name()).collect::<Vec<_>>(),
    })))
}

pub async fn inject_nmi(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    if !ctx.v.at_least(version::V_INJECT_NMI) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    check_node_ident(&ident, ctx.v)?;
    body_object(body, &[])?;
    st.conductor.inject_nmi(&ident).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn validate(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let checks = st.conductor.validate(&ident).await?;
    let mut out = Map::new();
    for c in checks {
        out.insert(
            c.interface.to_string(),
            json!({ "result": c.result, "reason": c.reason }),
        );
    }
    Ok(Json(Value::Object(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        let info: Map<String, Value> = serde_json::from_value(json!({
            "ipmi_address": "10.0.0.5",
            "ipmi_username": "admin",
            "ipmi_password": "hunter22",
        }))
        .unwrap();
        Node {
            id: 1,
            uuid: "1be26c0b-03f2-4d2e-ae87-c02d7f33c123".into(),
            name: Some("n1".into()),
            driver: "ipmi".into(),
            driver_info: info,
            instance_info: serde_json::from_value(json!({"image_url": "http://x", "k": 1}))
                .unwrap(),
            power_state: Some("power off".into()),
            provision_state: "enroll".into(),
            created_at: "2026-01-01T00:00:00.000000+00:00".into(),
            ..Default::default()
        }
    }

    fn ctx(minor: u32) -> Ctx {
        Ctx {
            v: Version { minor },
            base: "http://h:1".into(),
        }
    }

    #[test]
    fn full_node_masks_secrets_and_has_links() {
        let v = render_node(&node(), Some("host-a".into()), "host-a", &ctx(109), None);
        assert_eq!(v["driver_info"]["ipmi_password"], MASK);
        assert_eq!(v["driver_info"]["ipmi_username"], "admin");
        assert_eq!(v["instance_info"]["image_url"], MASK);
        assert_eq!(v["reservation"], "host-a");
        assert_eq!(v["power_interface"], "ipmitool");
        assert_eq!(v["boot_interface"], Value::Null);
        assert_eq!(
            v["links"][0]["href"],
            format!("http://h:1/v1/nodes/{}", node().uuid)
        );
        assert_eq!(v["links"][1]["rel"], "bookmark");
        assert!(v["ports"].is_array() && v["states"].is_array());
        for f in NODE_FIELDS {
            assert!(v.get(*f).is_some(), "{f} missing");
        }
        assert!(!v.to_string().contains("hunter22"));
    }

    #[test]
    fn old_versions_hide_new_fields() {
        let v = render_node(&node(), None, "h", &ctx(1), None);
        assert!(v.get("name").is_none());
        assert!(v.get("fault").is_none());
        assert!(v.get("states").is_none());
        assert!(v.get("power_interface").is_none());
        assert!(v.get("driver_info").is_some());
        let v = render_node(&node(), None, "h", &ctx(42), None);
        assert!(v.get("fault").is_some() && v.get("deploy_step").is_none());
    }

    #[test]
    fn fields_filter_keeps_links() {
        let f = vec!["uuid".to_string(), "power_state".to_string()];
        let v = render_node(&node(), None, "h", &ctx(109), Some(&f));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert!(v.get("links").is_some());
        assert!(
            check_fields(&f, Version { minor: 7 }, NODE_FIELDS, field_min)
                .unwrap_err()
                .status
                == 406
        );
        assert!(check_fields(&f, Version { minor: 8 }, NODE_FIELDS, field_min).is_ok());
        let bad = vec!["uuid".to_string(), "bogus".to_string()];
        let e = check_fields(&bad, Version::MAX, NODE_FIELDS, field_min).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.message, "Field(s) \"bogus\" are not valid");
        let newer = vec!["fault".to_string()];
        assert_eq!(
            check_fields(&newer, Version { minor: 41 }, NODE_FIELDS, field_min)
                .unwrap_err()
                .status,
            406
        );
    }

    #[test]
    fn create_body_rules() {
        let body = |v: Value| v.as_object().unwrap().clone();
        let n = new_node(
            body(
                json!({"driver": "ipmi", "name": "n-1", "driver_info": {"ipmi_password": "p"},
                        "power_interface": "ipmitool", "conductor_group": "", "owner": null}),
            ),
            Version::MAX,
        )
        .unwrap();
        assert_eq!(n.driver, "ipmi");
        assert_eq!(n.name.as_deref(), Some("n-1"));
        let e = new_node(body(json!({"driver": "ipmi", "bogus": 1})), Version::MAX).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains("'bogus' was unexpected"),
            "{}",
            e.message
        );
        assert_eq!(
            new_node(body(json!({"name": "x"})), Version::MAX)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            new_node(body(json!({"driver": "ipmi", "owner": "p1"})), Version::MAX)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            new_node(
                body(json!({"driver": "ipmi", "power_interface": "redfish"})),
                Version::MAX
            )
            .unwrap_err()
            .status,
            400
        );
        assert_eq!(
            new_node(
                body(json!({"driver": "ipmi", "name": "detail"})),
                Version::MAX
            )
            .unwrap_err()
            .status,
            400
        );
        assert_eq!(
            new_node(
                body(json!({"driver": "ipmi", "name": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"})),
                Version::MAX
            )
            .unwrap_err()
            .status,
            400
        );
        // A field newer than the version: 406.
        assert_eq!(
            new_node(
                body(json!({"driver": "ipmi", "description": "d"})),
                Version { minor: 50 }
            )
            .unwrap_err()
            .status,
            406
        );
        assert_eq!(
            new_node(
                body(json!({"driver": "ipmi", "uuid": "nope"})),
                Version::MAX
            )
            .unwrap_err()
            .status,
            400
        );
    }

    #[test]
    fn boot_device_names_are_exact() {
        assert_eq!(parse_boot_device("pxe"), Some(BootDevice::Pxe));
        assert_eq!(parse_boot_device("uefi_http"), Some(BootDevice::UefiHttp));
        assert_eq!(parse_boot_device("network"), None);
        assert_eq!(parse_boot_device("PXE"), None);
    }
}
