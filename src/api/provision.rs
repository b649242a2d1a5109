//! Provisioning endpoints, as Ironic:
//! - `PUT /v1/nodes/{id}/states/provision` with `{"target": ..., "configdrive": ...}`
//!   answers 202 (400 for a wrong state or target, 409 when locked);
//! - `POST /v1/heartbeat/{node}` with `{"callback_url": ..., "agent_version": ...}`,
//!   the deploy ramdisk's call-back, answers 202 (404 unknown node, 409 when
//!   no heartbeat is expected in the node's state); it is reachable without
//!   credentials, as Ironic's is, since the ramdisk has none;
//! - `GET/POST /v1/nodes/{id}/vifs` and `DELETE /v1/nodes/{id}/vifs/{vif}` (1.28).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::nodes::{body_object, check_node_ident};
use super::params;
use super::{accepted_with_location, Ctx, JsonBody, Shared};
use crate::conductor::states::Verb;

/// First microversion with the VIF endpoints.
const V_VIFS: u32 = 28;

pub async fn set_provision(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let mut obj = body_object(body, &["target", "configdrive"])?;
    let target = params::required_str(&obj, "target")?;
    let Some(verb) = Verb::parse(&target) else {
        return Err(ApiError::bad_request(format!(
            "\"{target}\" is not a valid provision state target; valid targets are: {}",
            Verb::ALL.join(", ")
        )));
    };
    let configdrive = obj.remove("configdrive");
    st.conductor
        .do_provisioning_action(&ident, verb, configdrive)
        .await?;
    Ok(accepted_with_location(&format!(
        "{}/v1/nodes/{ident}/states",
        ctx.base
    )))
}

pub async fn heartbeat(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let obj = body_object(
        body,
        &[
            "callback_url",
            "agent_version",
            "agent_token",
            "agent_verify_ca",
            "agent_status",
            "agent_status_message",
        ],
    )?;
    let url = params::required_str(&obj, "callback_url")?;
    let version = match obj.get("agent_version") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(ApiError::bad_request("agent_version must be a string")),
    };
    st.conductor.heartbeat(&ident, &url, version).await?;
    Ok(StatusCode::ACCEPTED)
}

fn vifs_gate(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.v.at_least(V_VIFS) {
        Ok(())
    } else {
        Err(ApiError::not_found("The resource could not be found."))
    }
}

pub async fn vif_list(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    vifs_gate(&ctx)?;
    check_node_ident(&ident, ctx.v)?;
    let vifs = st.conductor.vif_list(&ident)?;
    let list: Vec<Value> = vifs.into_iter().map(|id| json!({ "id": id })).collect();
    Ok(Json(json!({ "vifs": list })))
}

pub async fn vif_attach(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    vifs_gate(&ctx)?;
    check_node_ident(&ident, ctx.v)?;
    let obj = body_object(body, &["id"])?;
    let id = params::required_str(&obj, "id")?;
    st.conductor.vif_attach(&ident, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn vif_detach(
    State(st): State<Shared>,
    ctx: Ctx,
    Path((ident, vif)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    vifs_gate(&ctx)?;
    check_node_ident(&ident, ctx.v)?;
    st.conductor.vif_detach(&ident, &vif)?;
    Ok(StatusCode::NO_CONTENT)
}
