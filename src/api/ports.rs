//! `/v1/ports` and `/v1/nodes/{id}/ports`: a node's MAC addresses.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::nodes::check_fields;
use super::params::{self, Params};
use super::version::{self, Version};
use super::{blocking, links, Ctx, JsonBody, Shared};
use crate::store::{NewPort, Port, StoreError};

/// The microversion that introduced a port field.
pub fn port_field_min(field: &str) -> u32 {
    match field {
        "internal_info" => 18,
        "pxe_enabled" | "local_link_connection" => version::V_PORT_ADVANCED,
        "portgroup_uuid" => 24,
        "physical_network" => 34,
        "is_smartnic" => 53,
        "name" => 88,
        "node_ident" => version::V_PORT_NODE_IDENT,
        "description" => 97,
        "vendor" => 100,
        "category" => 101,
        _ => 1,
    }
}

pub const PORT_FIELDS: &[&str] = &[
    "address",
    "category",
    "created_at",
    "description",
    "extra",
    "internal_info",
    "is_smartnic",
    "links",
    "local_link_connection",
    "name",
    "node_uuid",
    "physical_network",
    "portgroup_uuid",
    "pxe_enabled",
    "updated_at",
    "uuid",
    "vendor",
];

const DEFAULT_LIST_FIELDS: [&str; 2] = ["uuid", "address"];

/// Port fields ironrack keeps no value for, and the value every port has.
fn fixed_default(field: &str, v: &Value) -> Option<bool> {
    match field {
        "is_smartnic" => Some(
            v.is_null()
                || v.as_bool() == Some(false)
                || v.as_str().and_then(params::parse_bool) == Some(false),
        ),
        "portgroup_uuid" | "name" | "description" | "vendor" | "category" => Some(v.is_null()),
        _ => None,
    }
}

pub fn render_port(p: &Port, ctx: &Ctx, fields: Option<&[String]>) -> Value {
    let mut d = Map::new();
    let mut put = |k: &str, v: Value| {
        d.insert(k.to_string(), v);
    };
    put("uuid", json!(p.uuid));
    put("address", json!(p.address));
    put("node_uuid", json!(p.node_uuid));
    put("extra", Value::Object(p.extra.clone()));
    put("internal_info", json!({}));
    put("is_smartnic", json!(false));
    put(
        "local_link_connection",
        Value::Object(p.local_link_connection.clone()),
    );
    put("physical_network", json!(p.physical_network));
    put("pxe_enabled", json!(p.pxe_enabled));
    put("portgroup_uuid", Value::Null);
    put("name", Value::Null);
    put("description", Value::Null);
    put("vendor", Value::Null);
    put("category", Value::Null);
    put("created_at", json!(p.created_at));
    put("updated_at", json!(p.updated_at));
    put("links", links(&ctx.base, "ports", &p.uuid));
    if let Some(f) = fields {
        d.retain(|k, _| k == "links" || f.iter().any(|x| x == k));
    }
    d.retain(|k, _| ctx.v.at_least(port_field_min(k)));
    Value::Object(d)
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

/// A `POST /v1/ports` body; `node_ident` (a name or UUID) is returned for
/// the caller to resolve.
pub fn new_port(
    obj: Map<String, Value>,
    v: Version,
) -> Result<(NewPort, Option<String>), ApiError> {
    for (k, val) in &obj {
        if !val.is_null() && !v.at_least(port_field_min(k)) {
            return Err(ApiError::too_new());
        }
    }
    let mut new = NewPort {
        pxe_enabled: true,
        ..NewPort::default()
    };
    let mut address = None;
    let mut node_ident = None;
    let mut node_uuid = None;
    for (k, val) in obj {
        match k.as_str() {
            "address" => match val {
                Value::String(s) => address = Some(s),
                _ => {
                    return Err(ApiError::bad_request(
                        "Invalid input for field/attribute address: expected a MAC address",
                    ))
                }
            },
            "node_uuid" => match val {
                Value::String(s) if params::is_uuid_like(&s) => {
                    node_uuid = Some(s.to_ascii_lowercase())
                }
                Value::String(s) => {
                    return Err(ApiError::bad_request(format!(
                        "Expected a UUID for node_uuid: {s}"
                    )))
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "Invalid input for field/attribute node_uuid: expected a UUID",
                    ))
                }
            },
            "node_ident" => match val {
                Value::String(s) => node_ident = Some(s),
                _ => {
                    return Err(ApiError::bad_request(
                        "Invalid input for field/attribute node_ident: expected a name or UUID",
                    ))
                }
            },
            "uuid" => match val {
                Value::Null => {}
                Value::String(s) if params::is_uuid_like(&s) => {
                    new.uuid = Some(s.to_ascii_lowercase())
                }
                _ => return Err(ApiError::bad_request("Expected a UUID for uuid")),
            },
            "extra" => new.extra = object(&k, val)?,
            "local_link_connection" => new.local_link_connection = object(&k, val)?,
            "pxe_enabled" => {
                new.pxe_enabled = params::json_bool("pxe_enabled", &val)?.unwrap_or(true)
            }
            "physical_network" => {
                match val {
                    Value::Null => {}
                    Value::String(s) if s.chars().count() <= 64 => new.physical_network = Some(s),
                    _ => return Err(ApiError::bad_request(
                        "Invalid input for field/attribute physical_network: expected a string \
                         of at most 64 characters",
                    )),
                }
            }
            other => match fixed_default(other, &val) {
                Some(true) => {}
                Some(false) => {
                    return Err(ApiError::bad_request(format!(
                        "ironrack does not support setting {other} on a port"
                    )))
                }
                None => {
                    return Err(ApiError::bad_request(format!(
                        "Additional properties are not allowed ('{other}' was unexpected)"
                    )))
                }
            },
        }
    }
    let Some(address) = address else {
        return Err(ApiError::bad_request("'address' is a required property"));
    };
    new.address = address;
    match (node_uuid, &node_ident) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Only one of node_uuid and node_ident may be given",
            ))
        }
        (None, None) => return Err(ApiError::bad_request("'node_uuid' is a required property")),
        (Some(u), None) => new.node_uuid = u,
        (None, Some(_)) => {}
    }
    Ok((new, node_ident))
}

pub async fn create(
    State(st): State<Shared>,
    ctx: Ctx,
    uri: Uri,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    Params::from_uri(&uri)?.finish()?;
    let obj = params::json_object(body)?;
    let (mut new, node_ident) = new_port(obj, ctx.v)?;
    let store = st.store.clone();
    let port = blocking(move || {
        if let Some(ident) = node_ident {
            new.node_uuid = store.get_node(&ident).map_err(ApiError::from)?.uuid;
        }
        store.create_port(new).map_err(ApiError::from)
    })
    .await?;
    tracing::info!(port = %port.uuid, node = %port.node_uuid, "port created");
    let mut resp = (StatusCode::CREATED, Json(render_port(&port, &ctx, None))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/v1/ports/{}", ctx.base, port.uuid)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn port_not_found(ident: &str) -> ApiError {
    ApiError::not_found(format!("Port {ident} could not be found."))
}

async fn get_port(st: &Shared, ident: &str) -> Result<Port, ApiError> {
    if !params::is_uuid_like(ident) {
        return Err(port_not_found(ident));
    }
    let store = st.store.clone();
    let id = ident.to_string();
    blocking(move || store.get_port(&id).map_err(ApiError::from)).await
}

pub async fn show(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let mut p = Params::from_uri(&uri)?;
    let fields = p.list("fields");
    p.finish()?;
    if let Some(f) = &fields {
        check_fields(f, ctx.v, PORT_FIELDS, port_field_min)?;
    }
    let port = get_port(&st, &ident).await?;
    Ok(Json(render_port(&port, &ctx, fields.as_deref())))
}

pub async fn delete(
    State(st): State<Shared>,
    Path(ident): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !params::is_uuid_like(&ident) {
        return Err(port_not_found(&ident));
    }
    let store = st.store.clone();
    let id = ident.clone();
    blocking(move || store.delete_port(&id).map_err(ApiError::from)).await?;
    tracing::info!(port = %ident, "port deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(State(st): State<Shared>, ctx: Ctx, uri: Uri) -> Result<Json<Value>, ApiError> {
    list_ports(st, ctx, uri, None, false).await
}

pub async fn list_detail(
    State(st): State<Shared>,
    ctx: Ctx,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    list_ports(st, ctx, uri, None, true).await
}

pub async fn list_for_node(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    params::check_ident("node", &ident)?;
    list_ports(st, ctx, uri, Some(ident), false).await
}

pub async fn list_for_node_detail(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    params::check_ident("node", &ident)?;
    list_ports(st, ctx, uri, Some(ident), true).await
}

async fn list_ports(
    st: Shared,
    ctx: Ctx,
    uri: Uri,
    path_node: Option<String>,
    detail_path: bool,
) -> Result<Json<Value>, ApiError> {
    let v = ctx.v;
    let mut p = Params::from_uri(&uri)?;
    let mut next_args: Vec<(String, String)> = Vec::new();
    let view = params::ListView::parse(&mut p, v, detail_path, PORT_FIELDS, port_field_min)?;
    let (fields, detail) = (view.fields.clone(), view.detail);
    let (node, node_uuid) = if path_node.is_some() {
        (path_node, None)
    } else {
        (p.str("node"), p.str("node_uuid"))
    };
    if let Some(n) = &node {
        next_args.push(("node".into(), n.clone()));
    }
    if let Some(n) = &node_uuid {
        if !params::is_uuid_like(n) {
            return Err(ApiError::bad_request(format!(
                "Expected a UUID for node_uuid: {n}"
            )));
        }
        next_args.push(("node_uuid".into(), n.clone()));
    }
    let address = p.str("address");
    if let Some(a) = &address {
        next_args.push(("address".into(), a.clone()));
    }
    let portgroup = p.str("portgroup");
    let sort_key = p.str("sort_key").unwrap_or_else(|| "id".into());
    let sort_dir = p.str("sort_dir").unwrap_or_else(|| "asc".into());
    if params::sort_dir(Some(sort_dir.clone()))? || sort_key != "id" {
        return Err(ApiError::bad_request(
            "ironrack lists ports in creation order only (sort_key=id, sort_dir=asc)",
        ));
    }
    let (limit, marker) = params::paging(&mut p, st.max_limit)?;
    p.finish()?;
    view.push_next_args(&mut next_args);

    let store = st.store.clone();
    let ports: Vec<Port> = blocking(move || {
        if portgroup.is_some() {
            // No port of ironrack belongs to a port group.
            return Ok(Vec::new());
        }
        let node_uuid = match (node, node_uuid) {
            (Some(ident), _) => Some(store.get_node(&ident).map_err(ApiError::from)?.uuid),
            (None, u) => u,
        };
        if let Some(a) = address {
            return match store.get_port_by_address(&a) {
                Ok(port) if node_uuid.as_ref().is_none_or(|u| *u == port.node_uuid) => {
                    Ok(vec![port])
                }
                Ok(_) | Err(StoreError::NotFound { .. }) | Err(StoreError::Invalid(_)) => {
                    Ok(Vec::new())
                }
                Err(e) => Err(e.into()),
            };
        }
        store
            .list_ports(node_uuid.as_deref(), limit, marker.as_deref())
            .map_err(ApiError::from)
    })
    .await?;

    let full = detail_path || detail == Some(true);
    let default_fields: Vec<String> = DEFAULT_LIST_FIELDS.iter().map(|s| s.to_string()).collect();
    let cut: Option<&[String]> = if full {
        None
    } else {
        Some(fields.as_deref().unwrap_or(&default_fields))
    };
    let items: Vec<Value> = ports.iter().map(|p| render_port(p, &ctx, cut)).collect();
    let mut out = json!({ "ports": items });
    let resource = if detail_path { "ports/detail" } else { "ports" };
    if let Some(next) = params::next_link(
        &ctx.base,
        resource,
        &next_args,
        ports.len(),
        limit,
        ports.last().map(|p| p.uuid.as_str()),
    ) {
        out["next"] = json!(next);
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_rules() {
        let b = |v: Value| v.as_object().unwrap().clone();
        let (p, ident) = new_port(
            b(json!({"address": "52:54:00:ab:cd:01", "node_uuid": "1BE26C0B-03F2-4D2E-AE87-C02D7F33C123",
                     "extra": {"a": 1}, "is_smartnic": false, "name": null})),
            Version::MAX,
        )
        .unwrap();
        assert!(ident.is_none());
        assert!(p.pxe_enabled);
        assert_eq!(p.node_uuid, "1be26c0b-03f2-4d2e-ae87-c02d7f33c123");
        assert_eq!(
            new_port(b(json!({"node_uuid": "x"})), Version::MAX)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            new_port(b(json!({"address": "a", "node_uuid": "n1"})), Version::MAX)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            new_port(b(json!({"address": "a"})), Version::MAX)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            new_port(
                b(json!({"address": "a", "node_ident": "n1", "bogus": 1})),
                Version::MAX
            )
            .unwrap_err()
            .status,
            400
        );
        assert_eq!(
            new_port(
                b(json!({"address": "a", "node_ident": "n1"})),
                Version { minor: 93 }
            )
            .unwrap_err()
            .status,
            406
        );
        let (_, ident) =
            new_port(b(json!({"address": "a", "node_ident": "n1"})), Version::MAX).unwrap();
        assert_eq!(ident.as_deref(), Some("n1"));
    }
}
