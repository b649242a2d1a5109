//! `/v1/nodes/{id}/states/console`, as Ironic: `GET` returns
//! `{"console_enabled": ..., "console_info": ...}`; `PUT {"enabled": bool}`
//! answers 202 and a worker starts or stops the console under the node lock.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::nodes::{body_object, check_node_ident};
use super::params;
use super::{accepted_with_location, Ctx, JsonBody, Shared};

pub async fn show(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let state = st.conductor.console_state(&ident).await?;
    Ok(Json(json!({
        "console_enabled": state.enabled,
        "console_info": state.info,
    })))
}

pub async fn update(
    State(st): State<Shared>,
    ctx: Ctx,
    Path(ident): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    check_node_ident(&ident, ctx.v)?;
    let obj = body_object(body, &["enabled"])?;
    let enabled = params::required_bool(&obj, "enabled")?;
    st.conductor.set_console_mode(&ident, enabled).await?;
    Ok(accepted_with_location(&format!(
        "{}/v1/nodes/{ident}/states/console",
        ctx.base
    )))
}
