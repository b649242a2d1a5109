//! `/v1/nodes/{id}/boot_config`: ironrack extensions (Ironic has no such
//! endpoints). `GET` shows the node's boot configs as the boot servers would
//! render them (for debugging); `PUT {"prepared": true|false}` prepares or
//! cleans up the node's boot in a worker under the node lock (202).

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::nodes::{body_object, check_node_ident};
use super::params;
use super::{accepted_with_location, blocking, Ctx, JsonBody, Shared};

pub async fn show(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let c = st.conductor.clone();
    let id = ident.clone();
    let view = blocking(move || c.boot_view(&id).map_err(ApiError::from)).await?;
    Ok(Json(json!({
        "node_uuid": view.node.uuid,
        "prepared": view.prepared,
        "boot_mode": view.boot_mode,
        "configs": view.configs,
    })))
}

pub async fn update(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let obj = body_object(body, &["prepared"])?;
    let prepared = params::required_bool(&obj, "prepared")?;
    let node = st.conductor.set_boot_prepared(&ident, prepared).await?;
    tracing::info!(node = %node.uuid, prepared, "boot change accepted");
    Ok(accepted_with_location(&format!(
        "{}/v1/nodes/{ident}/boot_config",
        ctx.base
    )))
}
