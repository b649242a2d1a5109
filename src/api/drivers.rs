//! `/v1/drivers`: the two hardware types ironrack serves, `ipmi` and
//! `redfish`, in Ironic's shape (this conductor as the only host).

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::nodes::{interface_value, INTERFACES};
use super::params::Params;
use super::version::{self, Version};
use super::{links, Ctx, Shared};

pub const DRIVERS: [&str; 2] = ["ipmi", "redfish"];

fn iface_min(iface: &str) -> u32 {
    match iface {
        "storage" => 33,
        "rescue" => 38,
        "bios" => 40,
        "firmware" => 86,
        _ => 1,
    }
}

pub fn render_driver(name: &str, host: &str, ctx: &Ctx, detail: bool) -> Map<String, Value> {
    let v: Version = ctx.v;
    let mut d = Map::new();
    d.insert("name".into(), json!(name));
    d.insert("hosts".into(), json!([host]));
    d.insert("links".into(), links(&ctx.base, "drivers", name));
    if v.at_least(version::V_STATES_LINKS) {
        d.insert(
            "properties".into(),
            links(&ctx.base, "drivers", &format!("{name}/properties")),
        );
    }
    if v.at_least(version::V_DYNAMIC_DRIVERS) {
        d.insert("type".into(), json!("dynamic"));
        if detail {
            for iface in INTERFACES {
                if !v.at_least(iface_min(iface)) {
                    continue;
                }
                let val = interface_value(name, iface);
                d.insert(format!("default_{iface}_interface"), json!(val));
                d.insert(
                    format!("enabled_{iface}_interfaces"),
                    json!(val.map(|s| vec![s]).unwrap_or_default()),
                );
            }
        }
    }
    d
}

fn cut(mut d: Map<String, Value>, fields: Option<&[String]>) -> Result<Value, ApiError> {
    if let Some(f) = fields {
        let bad: Vec<&str> = f
            .iter()
            .map(String::as_str)
            .filter(|x| !d.contains_key(*x))
            .collect();
        if !bad.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Field(s) \"{}\" are not valid",
                bad.join(", ")
            )));
        }
        d.retain(|k, _| k == "links" || f.iter().any(|x| x == k));
    }
    Ok(Value::Object(d))
}

fn fields_param(p: &mut Params, v: Version) -> Result<Option<Vec<String>>, ApiError> {
    let fields = p.list("fields");
    if fields.is_some() && !v.at_least(version::V_DRIVER_FIELDS) {
        return Err(ApiError::too_new());
    }
    Ok(fields)
}

pub async fn list(State(st): State<Shared>, ctx: Ctx, uri: Uri) -> Result<Json<Value>, ApiError> {
    let mut p = Params::from_uri(&uri)?;
    let kind = p.str("type");
    let detail = p.bool("detail")?;
    let fields = fields_param(&mut p, ctx.v)?;
    p.finish()?;
    if (kind.is_some() || detail.is_some()) && !ctx.v.at_least(version::V_DYNAMIC_DRIVERS) {
        return Err(ApiError::too_new());
    }
    if fields.is_some() && detail == Some(true) {
        return Err(ApiError::bad_request(
            "Can not specify ?detail=True and fields in the same request.",
        ));
    }
    let names: &[&str] = match kind.as_deref() {
        None | Some("dynamic") => &DRIVERS,
        Some("classic") => &[],
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid type {other}; acceptable values are 'classic' and 'dynamic'"
            )))
        }
    };
    let host = st.conductor.host();
    let mut out = Vec::new();
    for n in names {
        out.push(cut(
            render_driver(n, host, &ctx, detail == Some(true)),
            fields.as_deref(),
        )?);
    }
    Ok(Json(json!({ "drivers": out })))
}

pub async fn show(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let mut p = Params::from_uri(&uri)?;
    let fields = fields_param(&mut p, ctx.v)?;
    p.finish()?;
    if !DRIVERS.contains(&name.as_str()) {
        return Err(ApiError::not_found(format!(
            "Could not find the following driver(s) or hardware type(s): {name}."
        )));
    }
    Ok(Json(cut(
        render_driver(&name, st.conductor.host(), &ctx, true),
        fields.as_deref(),
    )?))
}

/// The `driver_info` keys each hardware type reads, as Ironic's
/// `GET /v1/drivers/{name}/properties` lists them.
pub fn properties(name: &str) -> Option<Vec<(&'static str, &'static str)>> {
    let common = (
        "hw_profile",
        "Name of the hardware profile (vendor quirks) to use; matched from the BMC when unset. Optional.",
    );
    match name {
        "ipmi" => Some(vec![
            (
                "ipmi_address",
                "IP address or hostname of the node's BMC. Required.",
            ),
            (
                "ipmi_port",
                "Remote IPMI RMCP+ port (default 623). Optional.",
            ),
            ("ipmi_username", "Username of the BMC account. Optional."),
            ("ipmi_password", "Password of the BMC account. Optional."),
            ("ipmi_kg", "K_G key (BMC key) for RMCP+ sessions. Optional."),
            (
                "ipmi_priv_level",
                "Privilege level: ADMINISTRATOR (default), OPERATOR or USER. Optional.",
            ),
            (
                "ipmi_cipher_suite",
                "RMCP+ cipher suite (3 or 17); negotiated when unset. Optional.",
            ),
            ("ipmi_bridging", "Only \"no\" is supported. Optional."),
            common,
        ]),
        "redfish" => Some(vec![
            (
                "redfish_address",
                "URL of the Redfish service, e.g. https://10.0.0.6. Required.",
            ),
            (
                "redfish_system_id",
                "Path or Id of the ComputerSystem; the only system when unset. Optional.",
            ),
            ("redfish_username", "Username of the BMC account. Optional."),
            ("redfish_password", "Password of the BMC account. Optional."),
            (
                "redfish_verify_ca",
                "true (default), false, or the path of a CA bundle. Optional.",
            ),
            common,
        ]),
        _ => None,
    }
}

pub async fn driver_properties(
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    Params::from_uri(&uri)?.finish()?;
    let Some(props) = properties(&name) else {
        return Err(ApiError::not_found(format!(
            "Could not find the following driver(s) or hardware type(s): {name}."
        )));
    };
    let m: Map<String, Value> = props
        .into_iter()
        .map(|(k, d)| (k.to_string(), json!(d)))
        .collect();
    Ok(Json(Value::Object(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_shapes_follow_the_version() {
        let c = |minor| Ctx {
            v: Version { minor },
            base: "http://h".into(),
        };
        let d = render_driver("ipmi", "host-a", &c(109), true);
        assert_eq!(d["hosts"], json!(["host-a"]));
        assert_eq!(d["type"], "dynamic");
        assert_eq!(d["default_power_interface"], "ipmitool");
        assert_eq!(d["enabled_management_interfaces"], json!(["ipmitool"]));
        assert_eq!(d["default_boot_interface"], Value::Null);
        assert_eq!(d["enabled_boot_interfaces"], json!([]));
        let d = render_driver("redfish", "h", &c(1), true);
        assert!(d.get("type").is_none() && d.get("properties").is_none());
        let d = render_driver("redfish", "h", &c(39), true);
        assert_eq!(d["default_power_interface"], "redfish");
        assert!(d.get("default_bios_interface").is_none());
    }
}
