//! Provisioning from the Nova side, after nova.virt.ironic.driver at the fix
//! for Launchpad bug 1659836: `spawn` (instance info, validate, VIFs,
//! provision to `active`, wait for ACTIVE), `destroy` (VIFs off first, then
//! unprovision or drop the instance info) and `rebuild`.
//!
//! Every wait polls the node at `retry_interval`, at most `max_retries + 1`
//! times. Mutating calls that Nova's client retries on a conflict (provision
//! state changes, VIF detach, instance info removal) are retried on 409 and
//! 503 within the same bound; a poll that meets 409, 5xx or a lost
//! connection counts as a missed look and the wait goes on.

use std::future::Future;

use serde_json::{json, Value};

use super::{path_segment, ApiClient, DriverError, IronicDriver, NodeView};

/// Ironic's provision state strings the driver reads or asks for.
pub mod states {
    pub const ENROLL: &str = "enroll";
    pub const MANAGEABLE: &str = "manageable";
    pub const AVAILABLE: &str = "available";
    pub const DEPLOYING: &str = "deploying";
    pub const DEPLOYWAIT: &str = "wait call-back";
    pub const ACTIVE: &str = "active";
    pub const DEPLOYFAIL: &str = "deploy failed";
    pub const DELETING: &str = "deleting";
    pub const CLEANING: &str = "cleaning";
    pub const CLEANWAIT: &str = "clean wait";
    pub const CLEANFAIL: &str = "clean failed";
    pub const ERROR: &str = "error";
    /// Provision targets (not states a node sits in).
    pub const DELETED: &str = "deleted";
    pub const REBUILD: &str = "rebuild";
}

/// States `destroy` unprovisions from (Nova's `_UNPROVISION_STATES`); in any
/// other state it only removes the instance info.
pub const UNPROVISION_STATES: [&str; 5] = [
    states::ACTIVE,
    states::DEPLOYFAIL,
    states::ERROR,
    states::DEPLOYWAIT,
    states::DEPLOYING,
];

/// States in which the instance counts as unprovisioned (a node with no
/// provision state counts too, as NOSTATE does in Nova). A node in `clean
/// failed` needs an operator, but the instance is gone from it.
pub const UNPROVISIONED_STATES: [&str; 4] = [
    states::CLEANING,
    states::CLEANWAIT,
    states::CLEANFAIL,
    states::AVAILABLE,
];

/// What `spawn` puts on the node: Nova's `_add_instance_info_to_node` and
/// the rest of its spawn arguments.
#[derive(Clone, Default, PartialEq)]
pub struct SpawnRequest {
    pub instance_uuid: String,
    /// `instance_info/image_source`: an image URL (or a Glance id).
    pub image_source: String,
    /// `instance_info/root_gb`, sent as a string as Nova does.
    pub root_gb: Option<u64>,
    /// `instance_info/display_name`.
    pub display_name: Option<String>,
    /// The config drive, gzipped and base64 (sent with `active`).
    pub configdrive: Option<String>,
    /// Neutron port ids to attach (`POST /v1/nodes/{id}/vifs`).
    pub vifs: Vec<String>,
}

impl std::fmt::Debug for SpawnRequest {
    // The config drive may carry secrets (admin password, user data).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnRequest")
            .field("instance_uuid", &self.instance_uuid)
            .field("image_source", &self.image_source)
            .field("root_gb", &self.root_gb)
            .field("display_name", &self.display_name)
            .field(
                "configdrive",
                &self
                    .configdrive
                    .as_ref()
                    .map(|c| format!("<{} bytes>", c.len())),
            )
            .field("vifs", &self.vifs)
            .finish()
    }
}

impl SpawnRequest {
    /// The JSON patch that associates the node with the instance: the
    /// instance_info fields, then `/instance_uuid`.
    pub fn deploy_patch(&self) -> Value {
        let add = |path: &str, value: &str| json!({"op": "add", "path": path, "value": value});
        let mut ops = vec![add("/instance_info/image_source", &self.image_source)];
        if let Some(gb) = self.root_gb {
            ops.push(add("/instance_info/root_gb", &gb.to_string()));
        }
        if let Some(name) = &self.display_name {
            ops.push(add("/instance_info/display_name", name));
        }
        ops.push(add("/instance_uuid", &self.instance_uuid));
        Value::Array(ops)
    }
}

/// The JSON patch that dissociates a node from its instance.
pub fn remove_instance_patch() -> Value {
    json!([
        {"op": "remove", "path": "/instance_info"},
        {"op": "remove", "path": "/instance_uuid"},
    ])
}

/// What `destroy` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestroyAction {
    /// No such node: nothing to do (Nova returns quietly so that the
    /// instance can be deleted).
    NodeNotFound,
    /// The node carries no instance or another one: left untouched.
    NotAssociated,
    /// The node was provisioned: torn down and now cleaning, available or
    /// gone.
    Unprovisioned,
    /// Provisioning had not started: instance_info and instance_uuid
    /// removed.
    InstanceInfoRemoved,
}

impl DestroyAction {
    pub fn name(self) -> &'static str {
        match self {
            DestroyAction::NodeNotFound => "node_not_found",
            DestroyAction::NotAssociated => "not_associated",
            DestroyAction::Unprovisioned => "unprovisioned",
            DestroyAction::InstanceInfoRemoved => "instance_info_removed",
        }
    }
}

/// `destroy`'s answer.
#[derive(Clone, Debug, PartialEq)]
pub struct DestroyReport {
    pub action: DestroyAction,
    /// VIFs detached from the node.
    pub vifs_unplugged: Vec<String>,
    /// The node as last seen (`None` when it is gone).
    pub node: Option<NodeView>,
}

impl DestroyReport {
    pub fn json(&self, instance_uuid: &str) -> Value {
        json!({
            "action": self.action.name(),
            "instance_uuid": instance_uuid,
            "uuid": self.node.as_ref().map(|n| &n.uuid),
            "provision_state": self.node.as_ref().and_then(|n| n.provision_state.as_ref()),
            "vifs_unplugged": self.vifs_unplugged,
        })
    }
}

fn same_uuid(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether the node carries this instance.
fn carries(node: &NodeView, instance: &str) -> bool {
    node.instance_uuid
        .as_deref()
        .is_some_and(|u| same_uuid(u, instance))
}

fn state_in(node: &NodeView, set: &[&str]) -> bool {
    node.provision_state
        .as_deref()
        .is_some_and(|s| set.contains(&s))
}

/// Worth another try for a call that changes something: the API refused
/// without acting (the node is locked, or the service is busy).
fn busy(e: &DriverError) -> bool {
    matches!(
        e,
        DriverError::Conflict(_) | DriverError::Api { status: 503, .. }
    )
}

/// A poll that failed this way is a missed look, not the end of the wait.
fn missed_poll(e: &DriverError) -> bool {
    matches!(
        e,
        DriverError::Conflict(_)
            | DriverError::Http(_)
            | DriverError::Timeout(_)
            | DriverError::Api {
                status: 500..=599,
                ..
            }
    )
}

/// Nova's check of `GET /v1/nodes/{id}/validate` before a deploy: the
/// `deploy` and `power` interfaces must not fail. An explicit `false`, or an
/// interface missing from the answer, fails; a `null` result (the agent does
/// not report on that interface) is let through with a warning.
pub fn check_validation(node_uuid: &str, doc: &Value) -> Result<(), DriverError> {
    let mut failed = false;
    for iface in ["deploy", "power"] {
        match doc.get(iface).map(|v| v.get("result")) {
            Some(Some(Value::Bool(true))) => {}
            Some(Some(Value::Null)) => tracing::warn!(
                node = %node_uuid,
                interface = iface,
                reason = ?doc[iface]["reason"],
                "the interface reports no validation result; going on"
            ),
            _ => failed = true,
        }
    }
    if failed {
        return Err(DriverError::ValidationFailed(format!(
            "Ironic node {node_uuid} failed to validate (deploy: {}, power: {})",
            doc.get("deploy").unwrap_or(&Value::Null),
            doc.get("power").unwrap_or(&Value::Null),
        )));
    }
    Ok(())
}

/// One look at the node while waiting for ACTIVE (Nova's `_wait_for_active`):
/// `Ok(true)` when active, `Ok(false)` to keep waiting, an error when the
/// deploy failed or the instance went away. `instance` is the instance the
/// node must keep carrying (`None`: not checked).
pub fn active_check(node: &NodeView, instance: Option<&str>) -> Result<bool, DriverError> {
    let state = node.provision_state.as_deref();
    let inst = instance.unwrap_or("(none)");
    if let Some(i) = instance {
        if !carries(node, i) {
            return Err(DriverError::InstanceRemoved(format!(
                "instance {i} was removed from node {} while deploying (instance_uuid is now {})",
                node.uuid,
                node.instance_uuid.as_deref().unwrap_or("unset")
            )));
        }
    }
    if state == Some(states::ACTIVE) {
        return Ok(true);
    }
    if let Some(t @ (states::DELETED | states::AVAILABLE)) = node.target_provision_state.as_deref()
    {
        return Err(DriverError::InstanceRemoved(format!(
            "instance {inst}: node {} is being torn down (target provision state {t:?})",
            node.uuid
        )));
    }
    if matches!(state, None | Some(states::AVAILABLE)) {
        return Err(DriverError::InstanceRemoved(format!(
            "instance {inst}: node {} is already unprovisioned (provision state {:?})",
            node.uuid,
            state.unwrap_or("none")
        )));
    }
    let reason = node
        .last_error
        .as_deref()
        .unwrap_or("no last_error recorded");
    match state {
        Some(states::DEPLOYFAIL) => Err(DriverError::DeployFailed(format!(
            "Failed to provision instance {inst} on node {}: {reason}",
            node.uuid
        ))),
        Some(states::ERROR) => Err(DriverError::DeployFailed(format!(
            "Failed to provision instance {inst} on node {}: provision state \"error\": {reason}",
            node.uuid
        ))),
        _ => Ok(false),
    }
}

/// Whether the instance is off the node (Nova's `_wait_for_provision_state`
/// in `_unprovision`): the node is cleaning, clean wait, clean failed,
/// available or has no provision state, or carries another instance now.
pub fn unprovisioned_check(node: &NodeView, instance: &str) -> bool {
    if node
        .instance_uuid
        .as_deref()
        .is_some_and(|u| !same_uuid(u, instance))
    {
        return true;
    }
    node.provision_state.is_none() || state_in(node, &UNPROVISIONED_STATES)
}

/// What one poll saw.
enum Seen {
    Node(NodeView),
    Gone,
    Missed(DriverError),
}

impl ApiClient {
    /// `PATCH /v1/nodes/{id}` with a JSON patch (a list of operations).
    pub async fn patch_node(&self, ident: &str, ops: &Value) -> Result<(), DriverError> {
        let path = format!("/v1/nodes/{}", path_segment(ident));
        self.send(self.request(reqwest::Method::PATCH, &path).json(ops), ident)
            .await
            .map(|_| ())
    }

    /// `PUT /v1/nodes/{id}/states/provision` with `target` and, for
    /// `active` and `rebuild`, an optional config drive.
    pub async fn set_provision_state(
        &self,
        ident: &str,
        target: &str,
        configdrive: Option<&str>,
    ) -> Result<(), DriverError> {
        let mut body = json!({ "target": target });
        if let Some(cd) = configdrive {
            body["configdrive"] = json!(cd);
        }
        let path = format!("/v1/nodes/{}/states/provision", path_segment(ident));
        self.put_json(&path, &body, ident).await
    }

    /// `GET /v1/nodes/{id}/validate`: `{interface: {"result", "reason"}}`.
    pub async fn validate_node(&self, ident: &str) -> Result<Value, DriverError> {
        let path = format!("/v1/nodes/{}/validate", path_segment(ident));
        self.get_json(&path, ident).await
    }

    /// The ids of the VIFs attached to the node.
    pub async fn list_vifs(&self, ident: &str) -> Result<Vec<String>, DriverError> {
        let path = format!("/v1/nodes/{}/vifs", path_segment(ident));
        let doc = self.get_json(&path, ident).await?;
        let list = doc["vifs"]
            .as_array()
            .ok_or_else(|| DriverError::Http(format!("unreadable VIF list: {doc}")))?;
        Ok(list
            .iter()
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect())
    }

    /// `POST /v1/nodes/{id}/vifs` `{"id": vif}`.
    pub async fn attach_vif(&self, ident: &str, vif: &str) -> Result<(), DriverError> {
        let path = format!("/v1/nodes/{}/vifs", path_segment(ident));
        self.send(
            self.request(reqwest::Method::POST, &path)
                .json(&json!({ "id": vif })),
            ident,
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /v1/nodes/{id}/vifs/{vif}`.
    pub async fn detach_vif(&self, ident: &str, vif: &str) -> Result<(), DriverError> {
        let path = format!(
            "/v1/nodes/{}/vifs/{}",
            path_segment(ident),
            path_segment(vif)
        );
        self.send(self.request(reqwest::Method::DELETE, &path), ident)
            .await
            .map(|_| ())
    }
}

impl IronicDriver {
    /// Run `call` again while the API answers 409 or 503, up to
    /// `max_retries` more times.
    async fn retry_busy<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, DriverError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DriverError>>,
    {
        let mut retries = 0;
        loop {
            match call().await {
                Err(e) if busy(&e) && retries < self.max_retries => {
                    retries += 1;
                    tracing::debug!(error = %e, retries, "{what}: the API is busy; retrying");
                    tokio::time::sleep(self.retry_interval).await;
                }
                other => return other,
            }
        }
    }

    async fn look(&self, uuid: &str) -> Result<Seen, DriverError> {
        match self.api.get_node(uuid).await {
            Ok(Some(n)) => Ok(Seen::Node(n)),
            Ok(None) => Ok(Seen::Gone),
            Err(e) if missed_poll(&e) => Ok(Seen::Missed(e)),
            Err(e) => Err(e),
        }
    }

    /// Poll until the node is ACTIVE (see [`active_check`]); at most
    /// `max_retries + 1` looks, `retry_interval` apart. A node that is gone
    /// means the instance is gone.
    pub async fn wait_for_active(
        &self,
        node_uuid: &str,
        instance: Option<&str>,
    ) -> Result<NodeView, DriverError> {
        let mut last = String::from("unknown");
        for attempt in 0..=self.max_retries {
            if attempt > 0 {
                tokio::time::sleep(self.retry_interval).await;
            }
            match self.look(node_uuid).await? {
                Seen::Gone => {
                    return Err(DriverError::InstanceRemoved(format!(
                        "instance {}: node {node_uuid} is gone",
                        instance.unwrap_or("(none)")
                    )))
                }
                Seen::Missed(e) => {
                    tracing::debug!(node = %node_uuid, attempt, error = %e, "missed a poll while waiting for ACTIVE");
                }
                Seen::Node(node) => {
                    if active_check(&node, instance)? {
                        tracing::debug!(node = %node.uuid, "the node is now ACTIVE");
                        return Ok(node);
                    }
                    tracing::debug!(
                        node = %node.uuid,
                        attempt,
                        provision_state = ?node.provision_state,
                        target_provision_state = ?node.target_provision_state,
                        "still waiting for the node to become ACTIVE"
                    );
                    last = node.provision_state.unwrap_or_else(|| "none".into());
                }
            }
        }
        Err(DriverError::Timeout(format!(
            "node {node_uuid} did not become ACTIVE within {} polls of {:?}; provision state still {last:?}",
            self.max_retries + 1,
            self.retry_interval
        )))
    }

    /// Attach each VIF (Nova's `_plug_vifs`): 400 fails the spawn, 409 means
    /// the VIF is already attached.
    async fn plug_vifs(&self, node_uuid: &str, vifs: &[String]) -> Result<(), DriverError> {
        for vif in vifs {
            match self.api.attach_vif(node_uuid, vif).await {
                Ok(()) => tracing::debug!(node = %node_uuid, vif = %vif, "VIF attached"),
                Err(DriverError::Conflict(_)) => {
                    tracing::debug!(node = %node_uuid, vif = %vif, "VIF already attached")
                }
                Err(DriverError::BadRequest(m)) => {
                    return Err(DriverError::VifPlugFailed(format!(
                        "Cannot attach VIF {vif} to the node {node_uuid} due to error: {m}"
                    )))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Detach each VIF (Nova's `_unplug_vifs`); a VIF that is not attached
    /// (400, 404) is skipped. Returns the VIFs detached.
    async fn unplug_vifs(
        &self,
        node_uuid: &str,
        vifs: &[String],
    ) -> Result<Vec<String>, DriverError> {
        let mut done = Vec::new();
        for vif in vifs {
            match self
                .retry_busy("VIF detach", || self.api.detach_vif(node_uuid, vif))
                .await
            {
                Ok(()) => done.push(vif.clone()),
                Err(DriverError::BadRequest(_) | DriverError::NotFound(_)) => {
                    tracing::debug!(node = %node_uuid, vif = %vif, "VIF is not attached to the node")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Nova's `_remove_instance_info_from_node`: a refusal (400) or a node
    /// that is gone is logged, not an error.
    async fn remove_instance_info(
        &self,
        node_uuid: &str,
        instance: &str,
    ) -> Result<(), DriverError> {
        let patch = remove_instance_patch();
        match self
            .retry_busy("instance info removal", || {
                self.api.patch_node(node_uuid, &patch)
            })
            .await
        {
            Ok(()) => Ok(()),
            Err(e @ (DriverError::BadRequest(_) | DriverError::NotFound(_))) => {
                tracing::warn!(
                    node = %node_uuid,
                    instance = %instance,
                    reason = %e,
                    "failed to remove the deploy parameters from the node"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Deploy an instance on the node, as Nova's `spawn`:
    /// 1. add the instance info and instance_uuid (PATCH); a 400 is a deploy
    ///    failure, and nothing is undone (the node may be someone else's);
    /// 2. validate: `deploy` and `power` must not fail;
    /// 3. attach the VIFs;
    /// 4. set the provision state to `active`, with the config drive;
    /// 5. wait for ACTIVE.
    ///
    /// A failure in steps 2 to 4 detaches the VIFs and, unless the node has
    /// started deploying, removes the instance info again (what Nova reaches
    /// through `_cleanup_deploy` and the compute manager's `destroy`). A
    /// failure while waiting (deploy failed, timeout) leaves the node as it
    /// is: `destroy` tears it down, as Nova's compute manager does next.
    pub async fn spawn(&self, ident: &str, req: &SpawnRequest) -> Result<NodeView, DriverError> {
        let node = self.node(ident).await?;
        let uuid = node.uuid.clone();
        let instance = req.instance_uuid.as_str();
        match self.api.patch_node(&uuid, &req.deploy_patch()).await {
            Ok(()) => {}
            Err(DriverError::BadRequest(m)) => {
                return Err(DriverError::DeployFailed(format!(
                    "Failed to add deploy parameters on node {uuid} when provisioning the instance {instance}: {m}"
                )))
            }
            Err(e) => return Err(e),
        }
        if let Err(e) = self.start_deploy(&uuid, req).await {
            tracing::error!(
                node = %uuid,
                instance = %instance,
                error = %e,
                "error preparing the deploy; cleaning up"
            );
            self.undo_spawn(&uuid, req).await;
            return Err(e);
        }
        let node = self.wait_for_active(&uuid, Some(instance)).await.map_err(|e| {
            tracing::error!(node = %uuid, instance = %instance, error = %e, "error deploying the instance");
            e
        })?;
        tracing::info!(node = %uuid, instance = %instance, "successfully provisioned the node");
        Ok(node)
    }

    async fn start_deploy(&self, uuid: &str, req: &SpawnRequest) -> Result<(), DriverError> {
        let doc = self.api.validate_node(uuid).await?;
        check_validation(uuid, &doc)?;
        self.plug_vifs(uuid, &req.vifs).await?;
        self.retry_busy("deploy", || {
            self.api
                .set_provision_state(uuid, states::ACTIVE, req.configdrive.as_deref())
        })
        .await
    }

    /// Best effort after a spawn that did not start: errors are logged.
    async fn undo_spawn(&self, uuid: &str, req: &SpawnRequest) {
        let instance = req.instance_uuid.as_str();
        if let Err(e) = self.unplug_vifs(uuid, &req.vifs).await {
            tracing::warn!(node = %uuid, error = %e, "could not detach the VIFs");
        }
        match self.api.get_node(uuid).await {
            Ok(Some(n)) if carries(&n, instance) && !state_in(&n, &UNPROVISION_STATES) => {
                if let Err(e) = self.remove_instance_info(uuid, instance).await {
                    tracing::warn!(node = %uuid, error = %e, "could not remove the instance info");
                }
            }
            Ok(Some(n)) if carries(&n, instance) => tracing::warn!(
                node = %uuid,
                provision_state = ?n.provision_state,
                "the node started deploying; leaving the tear down to destroy"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(node = %uuid, error = %e, "could not read the node back"),
        }
    }

    /// Tear the instance down, as Nova's `destroy` since bug 1659836:
    /// detach the node's VIFs first (that needs the node lock, which
    /// cleaning holds for long), then unprovision when the node is active,
    /// deploy failed, error, wait call-back or deploying, and wait until it
    /// is cleaning, clean wait, clean failed or available, or gone;
    /// otherwise remove the instance info. A missing node, or one that does
    /// not carry `instance_uuid`, is left alone and is not an error.
    pub async fn destroy(
        &self,
        ident: &str,
        instance_uuid: &str,
    ) -> Result<DestroyReport, DriverError> {
        let Some(node) = self.api.get_node(ident).await? else {
            tracing::warn!(node = %ident, instance = %instance_uuid, "destroy called on a node that does not exist");
            return Ok(DestroyReport {
                action: DestroyAction::NodeNotFound,
                vifs_unplugged: Vec::new(),
                node: None,
            });
        };
        if !carries(&node, instance_uuid) {
            tracing::warn!(
                node = %node.uuid,
                instance = %instance_uuid,
                carries = ?node.instance_uuid,
                "destroy called for an instance the node does not carry; leaving the node alone"
            );
            return Ok(DestroyReport {
                action: DestroyAction::NotAssociated,
                vifs_unplugged: Vec::new(),
                node: Some(node),
            });
        }
        let uuid = node.uuid.clone();

        // _cleanup_deploy, before anything takes the node into cleaning.
        let vifs = match self.api.list_vifs(&uuid).await {
            Ok(v) => v,
            Err(DriverError::NotFound(_)) => {
                tracing::debug!(node = %uuid, "no VIF list for the node");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let vifs_unplugged = self.unplug_vifs(&uuid, &vifs).await?;

        if state_in(&node, &UNPROVISION_STATES) {
            let last = self.unprovision(&uuid, instance_uuid).await?;
            tracing::info!(node = %uuid, instance = %instance_uuid, "successfully unprovisioned the node");
            Ok(DestroyReport {
                action: DestroyAction::Unprovisioned,
                vifs_unplugged,
                node: last,
            })
        } else {
            // Provisioning never started (a spawn failed before it).
            self.remove_instance_info(&uuid, instance_uuid).await?;
            tracing::info!(node = %uuid, instance = %instance_uuid, "removed the instance info from the node");
            let last = self.api.get_node(&uuid).await.ok().flatten();
            Ok(DestroyReport {
                action: DestroyAction::InstanceInfoRemoved,
                vifs_unplugged,
                node: last.or(Some(node)),
            })
        }
    }

    /// Nova's `_unprovision`: ask for `deleted` (a node that is already on
    /// its way out is fine), then wait. Returns the node as last seen.
    async fn unprovision(
        &self,
        uuid: &str,
        instance: &str,
    ) -> Result<Option<NodeView>, DriverError> {
        match self
            .retry_busy("tear down", || {
                self.api.set_provision_state(uuid, states::DELETED, None)
            })
            .await
        {
            Ok(()) => {}
            Err(DriverError::NotFound(_)) => return Ok(None),
            Err(DriverError::BadRequest(m)) => match self.api.get_node(uuid).await? {
                None => return Ok(None),
                Some(n)
                    if unprovisioned_check(&n, instance)
                        || n.provision_state.as_deref() == Some(states::DELETING) =>
                {
                    tracing::info!(
                        node = %uuid,
                        provision_state = ?n.provision_state,
                        "the node is already being unprovisioned"
                    );
                }
                Some(_) => return Err(DriverError::BadRequest(m)),
            },
            Err(e) => return Err(e),
        }

        let mut last = String::from("unknown");
        for attempt in 0..=self.max_retries {
            if attempt > 0 {
                tokio::time::sleep(self.retry_interval).await;
            }
            match self.look(uuid).await? {
                Seen::Gone => {
                    tracing::debug!(node = %uuid, "the node is gone; the instance is unprovisioned");
                    return Ok(None);
                }
                Seen::Missed(e) => {
                    tracing::debug!(node = %uuid, attempt, error = %e, "missed a poll while unprovisioning")
                }
                Seen::Node(n) => {
                    if unprovisioned_check(&n, instance) {
                        tracing::debug!(
                            node = %uuid,
                            provision_state = ?n.provision_state,
                            "the instance is now unprovisioned"
                        );
                        return Ok(Some(n));
                    }
                    tracing::debug!(
                        node = %uuid,
                        attempt,
                        provision_state = ?n.provision_state,
                        target_provision_state = ?n.target_provision_state,
                        "still waiting for the node to unprovision"
                    );
                    last = n.provision_state.unwrap_or_else(|| "none".into());
                }
            }
        }
        Err(DriverError::Timeout(format!(
            "Error destroying the instance on node {uuid}: provision state still {last:?} after {} polls of {:?}",
            self.max_retries + 1,
            self.retry_interval
        )))
    }

    /// Redeploy the node's instance, as Nova's `rebuild`: provision target
    /// `rebuild` (with an optional config drive), then wait for ACTIVE; the
    /// node must keep carrying the instance it carried before.
    pub async fn rebuild(
        &self,
        ident: &str,
        configdrive: Option<&str>,
    ) -> Result<NodeView, DriverError> {
        let node = self.node(ident).await?;
        let instance = node.instance_uuid.clone();
        self.retry_busy("rebuild", || {
            self.api
                .set_provision_state(&node.uuid, states::REBUILD, configdrive)
        })
        .await?;
        let n = self
            .wait_for_active(&node.uuid, instance.as_deref())
            .await?;
        tracing::info!(node = %n.uuid, instance = ?instance, "the instance was successfully rebuilt");
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};

    use super::*;

    const NODE: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";
    const INST: &str = "6d1f1e26-7c0a-4f38-a1b0-5a5d2a1f0c11";
    const OTHER: &str = "0f0e0d0c-0b0a-4909-8807-060504030201";
    const CD: &str = "H4sIAAAAAAAAA+3BAQ0AAADCoPdPbQ8HFAAAAAAAAAAAAADwNgAA";

    /// A node document.
    fn node(state: &str, instance: Option<&str>) -> Value {
        json!({
            "uuid": NODE,
            "name": "n1",
            "power_state": "power on",
            "target_power_state": null,
            "provision_state": state,
            "target_provision_state": null,
            "instance_uuid": instance,
            "last_error": null,
            "maintenance": false,
        })
    }

    fn with(mut doc: Value, key: &str, value: Value) -> Value {
        doc[key] = value;
        doc
    }

    fn ironic_error(msg: &str) -> Value {
        json!({"error_message": json!({"faultstring": msg, "faultcode": "Client", "debuginfo": null}).to_string()})
    }

    #[derive(Default)]
    struct Script {
        /// Every request: "METHOD /path" and its JSON body (null if none).
        log: Vec<(String, Value)>,
        /// The microversion header of each request.
        versions: Vec<Option<String>>,
        /// Successive answers to `GET /v1/nodes/{x}`; the last one stays.
        /// `None` answers 404.
        nodes: VecDeque<Option<Value>>,
        validate: Value,
        vifs: Vec<String>,
        /// Scripted answers per "METHOD /path", used before the defaults.
        answers: HashMap<String, VecDeque<(u16, Value)>>,
    }

    /// A scripted Ironic-like API on loopback.
    #[derive(Clone)]
    struct Mock(Arc<Mutex<Script>>);

    impl Mock {
        async fn start(nodes: Vec<Option<Value>>) -> (Mock, IronicDriver) {
            let script = Script {
                nodes: nodes.into(),
                validate: json!({
                    "deploy": {"result": true, "reason": null},
                    "power": {"result": true, "reason": null},
                    "management": {"result": true, "reason": null},
                    "console": {"result": null, "reason": "not supported"},
                }),
                ..Default::default()
            };
            let mock = Mock(Arc::new(Mutex::new(script)));
            let app = axum::Router::new()
                .fallback(handle)
                .with_state(mock.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            let api = ApiClient::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
            let mut d = IronicDriver::new(api);
            d.retry_interval = Duration::from_millis(1);
            d.max_retries = 5;
            (mock, d)
        }

        fn with<T>(&self, f: impl FnOnce(&mut Script) -> T) -> T {
            f(&mut self.0.lock().unwrap())
        }

        /// Queue an answer for "METHOD /path".
        fn answer(&self, key: &str, status: u16, body: Value) {
            self.with(|s| {
                s.answers
                    .entry(key.to_string())
                    .or_default()
                    .push_back((status, body))
            });
        }

        /// The requests, as "METHOD /path".
        fn calls(&self) -> Vec<String> {
            self.with(|s| s.log.iter().map(|(k, _)| k.clone()).collect())
        }

        fn body(&self, key: &str) -> Value {
            self.with(|s| {
                s.log
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_else(|| panic!("no {key} in {:?}", s.log))
            })
        }

        fn count(&self, key: &str) -> usize {
            self.calls().iter().filter(|k| *k == key).count()
        }

        fn position(&self, key: &str) -> usize {
            let calls = self.calls();
            calls
                .iter()
                .position(|k| k == key)
                .unwrap_or_else(|| panic!("no {key} in {calls:?}"))
        }
    }

    fn split_path(path: &str) -> Vec<&str> {
        path.trim_matches('/').split('/').collect()
    }

    async fn handle(
        State(mock): State<Mock>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let key = format!("{method} {}", uri.path());
        let (status, doc) = mock.with(|s| {
            s.log.push((key.clone(), body.clone()));
            s.versions.push(
                headers
                    .get("X-OpenStack-Ironic-API-Version")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            );
            if let Some(a) = s.answers.get_mut(&key).and_then(VecDeque::pop_front) {
                return a;
            }
            let seg = split_path(uri.path());
            match (method.as_str(), seg.as_slice()) {
                ("GET", ["v1", "nodes", _]) => {
                    let doc = if s.nodes.len() > 1 {
                        s.nodes.pop_front().flatten()
                    } else {
                        s.nodes.front().cloned().flatten()
                    };
                    match doc {
                        Some(d) => (200, d),
                        None => (404, ironic_error("Node could not be found.")),
                    }
                }
                ("PATCH", ["v1", "nodes", _]) => (200, json!({})),
                ("GET", ["v1", "nodes", _, "validate"]) => (200, s.validate.clone()),
                ("GET", ["v1", "nodes", _, "vifs"]) => {
                    let list: Vec<Value> = s.vifs.iter().map(|v| json!({ "id": v })).collect();
                    (200, json!({ "vifs": list }))
                }
                ("POST", ["v1", "nodes", _, "vifs"]) => {
                    if let Some(id) = body["id"].as_str() {
                        s.vifs.push(id.to_string());
                    }
                    (204, Value::Null)
                }
                ("DELETE", ["v1", "nodes", _, "vifs", vif]) => {
                    let before = s.vifs.len();
                    s.vifs.retain(|v| v != vif);
                    if s.vifs.len() < before {
                        (204, Value::Null)
                    } else {
                        (400, ironic_error("VIF is not attached to the node"))
                    }
                }
                ("PUT", ["v1", "nodes", _, "states", "provision"]) => (202, Value::Null),
                _ => (404, ironic_error("The resource could not be found.")),
            }
        });
        let status = StatusCode::from_u16(status).unwrap();
        if doc.is_null() {
            status.into_response()
        } else {
            (status, axum::Json(doc)).into_response()
        }
    }

    fn get_node() -> String {
        format!("GET /v1/nodes/{NODE}")
    }
    fn patch_node() -> String {
        format!("PATCH /v1/nodes/{NODE}")
    }
    fn provision() -> String {
        format!("PUT /v1/nodes/{NODE}/states/provision")
    }
    fn validate() -> String {
        format!("GET /v1/nodes/{NODE}/validate")
    }
    fn vifs() -> String {
        format!("GET /v1/nodes/{NODE}/vifs")
    }
    fn post_vif() -> String {
        format!("POST /v1/nodes/{NODE}/vifs")
    }
    fn delete_vif(v: &str) -> String {
        format!("DELETE /v1/nodes/{NODE}/vifs/{v}")
    }

    fn request() -> SpawnRequest {
        SpawnRequest {
            instance_uuid: INST.into(),
            image_source: "http://images.example/fedora.qcow2".into(),
            root_gb: Some(10),
            display_name: None,
            configdrive: Some(CD.into()),
            vifs: vec!["vif-1".into(), "vif-2".into()],
        }
    }

    #[tokio::test]
    async fn spawn_adds_instance_info_validates_plugs_then_deploys_and_waits() {
        let deploying = with(
            node(states::DEPLOYING, Some(INST)),
            "target_provision_state",
            json!("active"),
        );
        let (mock, d) = Mock::start(vec![
            Some(node(states::AVAILABLE, None)),
            Some(deploying),
            Some(node(states::DEPLOYWAIT, Some(INST))),
            Some(node(states::ACTIVE, Some(INST))),
        ])
        .await;
        let n = d.spawn("n1", &request()).await.unwrap();
        assert_eq!(n.provision_state.as_deref(), Some("active"));
        assert_eq!(n.instance_uuid.as_deref(), Some(INST));
        assert_eq!(
            mock.calls(),
            vec![
                "GET /v1/nodes/n1".to_string(),
                patch_node(),
                validate(),
                post_vif(),
                post_vif(),
                provision(),
                get_node(),
                get_node(),
                get_node(),
            ]
        );
        assert_eq!(
            mock.body(&patch_node()),
            json!([
                {"op": "add", "path": "/instance_info/image_source", "value": "http://images.example/fedora.qcow2"},
                {"op": "add", "path": "/instance_info/root_gb", "value": "10"},
                {"op": "add", "path": "/instance_uuid", "value": INST},
            ])
        );
        assert_eq!(
            mock.body(&provision()),
            json!({"target": "active", "configdrive": CD})
        );
        assert_eq!(
            mock.with(|s| s.vifs.clone()),
            vec!["vif-1".to_string(), "vif-2".to_string()]
        );
        assert!(mock.with(|s| s
            .versions
            .iter()
            .all(|v| v.as_deref() == Some(super::super::API_VERSION))));
    }

    #[tokio::test]
    async fn spawn_lets_unreported_interfaces_through_but_not_failed_ones() {
        let (mock, d) = Mock::start(vec![
            Some(node(states::AVAILABLE, None)),
            Some(node(states::ACTIVE, Some(INST))),
        ])
        .await;
        mock.with(|s| s.validate["deploy"] = json!({"result": null, "reason": "not supported"}));
        d.spawn(NODE, &request()).await.unwrap();
        assert_eq!(mock.count(&provision()), 1);

        let (mock, d) = Mock::start(vec![Some(node(states::AVAILABLE, None))]).await;
        mock.with(|s| {
            s.validate["deploy"] = json!({"result": false, "reason": "no image_source"});
            // The node now carries the instance (as after the PATCH).
            s.nodes = vec![Some(node(states::AVAILABLE, Some(INST)))].into();
        });
        let err = d.spawn(NODE, &request()).await.unwrap_err();
        let DriverError::ValidationFailed(m) = &err else {
            panic!("{err:?}")
        };
        assert!(m.contains("no image_source"), "{m}");
        // Nothing deployed, nothing plugged; the instance info is removed.
        assert_eq!(mock.count(&provision()), 0);
        assert_eq!(mock.count(&post_vif()), 0);
        let calls = mock.calls();
        assert_eq!(calls.last(), Some(&patch_node()), "{calls:?}");
        let removes = mock.with(|s| {
            s.log
                .iter()
                .filter(|(k, _)| *k == patch_node())
                .map(|(_, b)| b.clone())
                .collect::<Vec<_>>()
        });
        assert_eq!(removes.len(), 2);
        assert_eq!(removes[1], remove_instance_patch());
    }

    #[tokio::test]
    async fn spawn_deploy_failure_surfaces_last_error_and_leaves_the_node_to_destroy() {
        let failed = with(
            node(states::DEPLOYFAIL, Some(INST)),
            "last_error",
            json!("Timeout reached while waiting for callback for node"),
        );
        let (mock, d) = Mock::start(vec![
            Some(node(states::AVAILABLE, None)),
            Some(node(states::DEPLOYWAIT, Some(INST))),
            Some(failed),
        ])
        .await;
        let err = d.spawn(NODE, &request()).await.unwrap_err();
        match &err {
            DriverError::DeployFailed(m) => {
                assert!(
                    m.contains("Timeout reached while waiting for callback"),
                    "{m}"
                );
                assert!(m.contains(INST), "{m}");
            }
            e => panic!("{e:?}"),
        }
        // As in Nova, the failed deploy is not undone here: destroy does it.
        assert_eq!(mock.calls().last(), Some(&get_node()));
        assert_eq!(mock.count(&patch_node()), 1);
        assert!(!mock.calls().iter().any(|c| c.starts_with("DELETE")));
    }

    #[tokio::test]
    async fn spawn_wait_notices_a_removed_instance() {
        // The instance_uuid was cleared from under the deploy.
        let (_, d) = Mock::start(vec![
            Some(node(states::AVAILABLE, None)),
            Some(node(states::DEPLOYING, Some(INST))),
            Some(node(states::DEPLOYING, None)),
        ])
        .await;
        let err = d.spawn(NODE, &request()).await.unwrap_err();
        assert!(matches!(err, DriverError::InstanceRemoved(_)), "{err:?}");

        // Another instance took the node.
        let (_, d) = Mock::start(vec![
            Some(node(states::AVAILABLE, None)),
            Some(node(states::DEPLOYWAIT, Some(OTHER))),
        ])
        .await;
        let err = d.spawn(NODE, &request()).await.unwrap_err();
        assert!(matches!(err, DriverError::InstanceRemoved(_)), "{err:?}");

        // Torn down while deploying.
        let deleting = with(
            node(states::DELETING, Some(INST)),
            "target_provision_state",
            json!("available"),
        );
        let (_, d) = Mock::start(vec![Some(node(states::AVAILABLE, None)), Some(deleting)]).await;
        let err = d.spawn(NODE, &request()).await.unwrap_err();
        assert!(matches!(err, DriverError::InstanceRemoved(_)), "{err:?}");

        // The node disappeared.
        let (_, d) = Mock::start(vec![Some(node(states::AVAILABLE, None)), None]).await;
        let err = d.spawn(NODE, &request()).await.unwrap_err();
        assert!(matches!(err, DriverError::InstanceRemoved(_)), "{err:?}");

        // Provision state error.
        let (_, d) = Mock::start(vec![
            Some(node(states::AVAILABLE, None)),
            Some(with(
                node(states::ERROR, Some(INST)),
                "last_error",
                json!("boom"),
            )),
        ])
        .await;
        let err = d.spawn(NODE, &request()).await.unwrap_err();
        assert!(
            matches!(&err, DriverError::DeployFailed(m) if m.contains("boom") && m.contains("error")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn spawn_wait_gives_up_after_max_retries() {
        let (mock, mut d) = Mock::start(vec![
            Some(node(states::AVAILABLE, None)),
            Some(node(states::DEPLOYWAIT, Some(INST))),
        ])
        .await;
        d.max_retries = 3;
        let err = d.spawn(NODE, &request()).await.unwrap_err();
        match &err {
            DriverError::Timeout(m) => assert!(m.contains("wait call-back"), "{m}"),
            e => panic!("{e:?}"),
        }
        let after_put = mock.calls().len() - 1 - mock.position(&provision());
        assert_eq!(after_put, 4, "one look and max_retries more");
        assert_eq!(mock.count(&get_node()), 5);
    }

    #[tokio::test]
    async fn spawn_wait_rides_out_busy_polls() {
        let (mock, d) = Mock::start(vec![Some(node(states::ACTIVE, Some(INST)))]).await;
        // Spawn's own first look, then two busy answers to the wait's polls.
        mock.answer("GET /v1/nodes/n1", 200, node(states::AVAILABLE, None));
        mock.answer(&get_node(), 503, ironic_error("busy"));
        mock.answer(&get_node(), 409, ironic_error("locked"));
        let n = d.spawn("n1", &request()).await.unwrap();
        assert_eq!(n.provision_state.as_deref(), Some("active"));
        assert_eq!(mock.count(&get_node()), 3);
    }

    #[tokio::test]
    async fn spawn_wrong_state_400_is_bad_request_and_is_cleaned_up() {
        let (mock, d) = Mock::start(vec![Some(node(states::MANAGEABLE, Some(INST)))]).await;
        let msg = "The requested action \"active\" can not be performed on node \
                   \"1be26c0b\" while it is in state \"manageable\".";
        mock.answer(&provision(), 400, ironic_error(msg));
        let err = d.spawn(NODE, &request()).await.unwrap_err();
        assert_eq!(err, DriverError::BadRequest(msg.to_string()));
        let calls = mock.calls();
        let put = mock.position(&provision());
        assert_eq!(
            calls[put + 1..].to_vec(),
            vec![
                delete_vif("vif-1"),
                delete_vif("vif-2"),
                get_node(),
                patch_node()
            ]
        );
        assert_eq!(
            mock.with(|s| s.log.last().map(|(_, b)| b.clone())),
            Some(remove_instance_patch())
        );
        assert!(mock.with(|s| s.vifs.is_empty()));
    }

    #[tokio::test]
    async fn spawn_does_not_touch_a_node_it_could_not_claim() {
        let (mock, d) = Mock::start(vec![Some(node(states::ACTIVE, Some(OTHER)))]).await;
        mock.answer(
            &patch_node(),
            409,
            ironic_error("Node is associated with instance 0f0e0d0c."),
        );
        let err = d.spawn(NODE, &request()).await.unwrap_err();
        assert!(matches!(err, DriverError::Conflict(_)), "{err:?}");
        assert_eq!(mock.calls(), vec![get_node(), patch_node()]);

        let (mock, d) = Mock::start(vec![Some(node(states::AVAILABLE, None))]).await;
        mock.answer(&patch_node(), 400, ironic_error("bad instance_info"));
        let err = d.spawn(NODE, &request()).await.unwrap_err();
        assert!(
            matches!(&err, DriverError::DeployFailed(m) if m.contains("bad instance_info")),
            "{err:?}"
        );
        assert_eq!(mock.calls(), vec![get_node(), patch_node()]);
    }

    #[tokio::test]
    async fn spawn_vif_400_fails_and_409_means_already_attached() {
        let (mock, d) = Mock::start(vec![
            Some(node(states::AVAILABLE, Some(INST))),
            Some(node(states::ACTIVE, Some(INST))),
        ])
        .await;
        mock.answer(&post_vif(), 409, ironic_error("already attached"));
        d.spawn(NODE, &request()).await.unwrap();
        assert_eq!(mock.count(&provision()), 1);

        let (mock, d) = Mock::start(vec![Some(node(states::AVAILABLE, Some(INST)))]).await;
        mock.answer(&post_vif(), 204, Value::Null);
        mock.answer(&post_vif(), 400, ironic_error("no free port"));
        let err = d.spawn(NODE, &request()).await.unwrap_err();
        assert!(
            matches!(&err, DriverError::VifPlugFailed(m) if m.contains("vif-2") && m.contains("no free port")),
            "{err:?}"
        );
        assert_eq!(mock.count(&provision()), 0);
        // Both VIFs are detached again (the mock, which did not record the
        // scripted attach, answers 400: tolerated), the instance info is off.
        assert_eq!(mock.count(&delete_vif("vif-1")), 1);
        assert_eq!(mock.calls().last(), Some(&patch_node()));
    }

    #[tokio::test]
    async fn destroy_unplugs_vifs_before_unprovisioning_and_waits_for_cleaning() {
        let deleting = with(
            node(states::DELETING, Some(INST)),
            "target_provision_state",
            json!("available"),
        );
        let (mock, d) = Mock::start(vec![
            Some(node(states::ACTIVE, Some(INST))),
            Some(deleting.clone()),
            Some(with(deleting, "instance_uuid", Value::Null)),
            Some(node(states::CLEANING, None)),
        ])
        .await;
        mock.with(|s| s.vifs = vec!["vif-a".into(), "vif-b".into()]);
        let r = d.destroy("n1", INST).await.unwrap();
        assert_eq!(r.action, DestroyAction::Unprovisioned);
        assert_eq!(r.vifs_unplugged, vec!["vif-a", "vif-b"]);
        assert_eq!(
            r.node.as_ref().and_then(|n| n.provision_state.as_deref()),
            Some("cleaning")
        );
        assert_eq!(
            mock.calls(),
            vec![
                "GET /v1/nodes/n1".to_string(),
                vifs(),
                delete_vif("vif-a"),
                delete_vif("vif-b"),
                provision(),
                get_node(),
                get_node(),
                get_node(),
            ]
        );
        assert!(mock.position(&delete_vif("vif-b")) < mock.position(&provision()));
        assert_eq!(mock.body(&provision()), json!({"target": "deleted"}));
        assert_eq!(
            r.json(INST)["action"],
            json!("unprovisioned"),
            "{}",
            r.json(INST)
        );
    }

    #[tokio::test]
    async fn destroy_unprovisions_from_every_unprovision_state() {
        for state in UNPROVISION_STATES {
            let (mock, d) = Mock::start(vec![
                Some(node(state, Some(INST))),
                Some(node(states::AVAILABLE, None)),
            ])
            .await;
            let r = d.destroy(NODE, INST).await.unwrap();
            assert_eq!(r.action, DestroyAction::Unprovisioned, "{state}");
            assert_eq!(mock.count(&provision()), 1, "{state}");
            assert_eq!(mock.count(&patch_node()), 0, "{state}");
        }
    }

    #[tokio::test]
    async fn destroy_counts_a_vanished_node_as_done() {
        let (mock, d) = Mock::start(vec![
            Some(node(states::ACTIVE, Some(INST))),
            Some(node(states::DELETING, Some(INST))),
            None,
        ])
        .await;
        let r = d.destroy(NODE, INST).await.unwrap();
        assert_eq!(r.action, DestroyAction::Unprovisioned);
        assert_eq!(r.node, None);
        assert_eq!(mock.count(&get_node()), 3);
    }

    #[tokio::test]
    async fn destroy_wait_gives_up_after_max_retries() {
        let (mock, mut d) = Mock::start(vec![
            Some(node(states::ACTIVE, Some(INST))),
            Some(node(states::DELETING, Some(INST))),
        ])
        .await;
        d.max_retries = 2;
        let err = d.destroy(NODE, INST).await.unwrap_err();
        match &err {
            DriverError::Timeout(m) => assert!(m.contains("deleting"), "{m}"),
            e => panic!("{e:?}"),
        }
        // The first look, then max_retries more after the PUT.
        assert_eq!(mock.count(&get_node()), 1 + 3);
    }

    #[tokio::test]
    async fn destroy_before_provisioning_removes_the_instance_info() {
        let (mock, d) = Mock::start(vec![
            Some(node(states::AVAILABLE, Some(INST))),
            Some(node(states::AVAILABLE, None)),
        ])
        .await;
        mock.with(|s| s.vifs = vec!["vif-1".into()]);
        let r = d.destroy(NODE, INST).await.unwrap();
        assert_eq!(r.action, DestroyAction::InstanceInfoRemoved);
        assert_eq!(r.vifs_unplugged, vec!["vif-1"]);
        assert_eq!(
            mock.calls(),
            vec![
                get_node(),
                vifs(),
                delete_vif("vif-1"),
                patch_node(),
                get_node()
            ]
        );
        assert_eq!(mock.body(&patch_node()), remove_instance_patch());
        assert_eq!(mock.count(&provision()), 0);
    }

    #[tokio::test]
    async fn destroy_leaves_other_nodes_alone() {
        let (mock, d) = Mock::start(vec![Some(node(states::ACTIVE, Some(OTHER)))]).await;
        let r = d.destroy(NODE, INST).await.unwrap();
        assert_eq!(r.action, DestroyAction::NotAssociated);
        assert_eq!(mock.calls(), vec![get_node()]);

        let (mock, d) = Mock::start(vec![None]).await;
        let r = d.destroy(NODE, INST).await.unwrap();
        assert_eq!(r.action, DestroyAction::NodeNotFound);
        assert_eq!(mock.calls(), vec![get_node()]);
    }

    #[tokio::test]
    async fn destroy_tolerates_a_node_already_on_its_way_out() {
        let msg = "The requested action \"deleted\" can not be performed on node \
                   while it is in state \"deleting\".";
        let (mock, d) = Mock::start(vec![
            Some(node(states::ACTIVE, Some(INST))),
            Some(node(states::DELETING, Some(INST))),
            Some(node(states::CLEANWAIT, None)),
        ])
        .await;
        mock.answer(&provision(), 400, ironic_error(msg));
        let r = d.destroy(NODE, INST).await.unwrap();
        assert_eq!(r.action, DestroyAction::Unprovisioned);
        assert_eq!(
            r.node.and_then(|n| n.provision_state),
            Some("clean wait".into())
        );

        // But a refusal from a node that is not leaving is an error.
        let (mock, d) = Mock::start(vec![Some(node(states::DEPLOYFAIL, Some(INST)))]).await;
        mock.answer(&provision(), 400, ironic_error("Node is in maintenance"));
        let err = d.destroy(NODE, INST).await.unwrap_err();
        assert_eq!(
            err,
            DriverError::BadRequest("Node is in maintenance".to_string())
        );
    }

    #[tokio::test]
    async fn destroy_retries_a_locked_node() {
        let (mock, d) = Mock::start(vec![
            Some(node(states::ACTIVE, Some(INST))),
            Some(node(states::AVAILABLE, None)),
        ])
        .await;
        mock.with(|s| s.vifs = vec!["vif-1".into()]);
        mock.answer(&delete_vif("vif-1"), 409, ironic_error("Node is locked"));
        mock.answer(&provision(), 409, ironic_error("Node is locked"));
        mock.answer(&provision(), 503, ironic_error("busy"));
        let r = d.destroy(NODE, INST).await.unwrap();
        assert_eq!(r.action, DestroyAction::Unprovisioned);
        assert_eq!(r.vifs_unplugged, vec!["vif-1"]);
        assert_eq!(mock.count(&delete_vif("vif-1")), 2);
        assert_eq!(mock.count(&provision()), 3);

        // Locked for good: the conflict surfaces after max_retries.
        let (mock, mut d) = Mock::start(vec![Some(node(states::ACTIVE, Some(INST)))]).await;
        d.max_retries = 2;
        for _ in 0..10 {
            mock.answer(&provision(), 409, ironic_error("Node is locked"));
        }
        let err = d.destroy(NODE, INST).await.unwrap_err();
        assert!(matches!(err, DriverError::Conflict(_)), "{err:?}");
        assert_eq!(mock.count(&provision()), 3);
    }

    #[tokio::test]
    async fn rebuild_triggers_and_waits_for_active() {
        let (mock, d) = Mock::start(vec![
            Some(node(states::ACTIVE, Some(INST))),
            Some(with(
                node(states::DEPLOYING, Some(INST)),
                "target_provision_state",
                json!("active"),
            )),
            Some(node(states::ACTIVE, Some(INST))),
        ])
        .await;
        let n = d.rebuild("n1", Some(CD)).await.unwrap();
        assert_eq!(n.provision_state.as_deref(), Some("active"));
        assert_eq!(
            mock.calls(),
            vec![
                "GET /v1/nodes/n1".to_string(),
                provision(),
                get_node(),
                get_node()
            ]
        );
        assert_eq!(
            mock.body(&provision()),
            json!({"target": "rebuild", "configdrive": CD})
        );

        // Without a config drive, no key; a failed redeploy is a deploy failure.
        let (mock, d) = Mock::start(vec![
            Some(node(states::ACTIVE, Some(INST))),
            Some(with(
                node(states::DEPLOYFAIL, Some(INST)),
                "last_error",
                json!("image download failed"),
            )),
        ])
        .await;
        let err = d.rebuild(NODE, None).await.unwrap_err();
        assert!(
            matches!(&err, DriverError::DeployFailed(m) if m.contains("image download failed")),
            "{err:?}"
        );
        assert_eq!(mock.body(&provision()), json!({"target": "rebuild"}));

        // A wrong-state refusal is a BadRequest.
        let (mock, d) = Mock::start(vec![Some(node(states::AVAILABLE, None))]).await;
        mock.answer(&provision(), 400, ironic_error("wrong state"));
        let err = d.rebuild(NODE, None).await.unwrap_err();
        assert_eq!(err, DriverError::BadRequest("wrong state".into()));
        assert_eq!(mock.calls(), vec![get_node(), provision()]);
    }

    fn view(doc: Value) -> NodeView {
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn active_check_follows_nova() {
        let n = |s: &str| view(node(s, Some(INST)));
        assert_eq!(active_check(&n("active"), Some(INST)), Ok(true));
        assert_eq!(
            active_check(&n("active"), Some(&INST.to_uppercase())),
            Ok(true)
        );
        for s in ["deploying", "wait call-back", "manageable"] {
            assert_eq!(active_check(&n(s), Some(INST)), Ok(false), "{s}");
        }
        assert!(matches!(
            active_check(&n("available"), Some(INST)),
            Err(DriverError::InstanceRemoved(_))
        ));
        let leaving = view(with(
            node("deleting", Some(INST)),
            "target_provision_state",
            json!("available"),
        ));
        assert!(matches!(
            active_check(&leaving, Some(INST)),
            Err(DriverError::InstanceRemoved(_))
        ));
        let no_state = view(with(node("x", Some(INST)), "provision_state", Value::Null));
        assert!(matches!(
            active_check(&no_state, Some(INST)),
            Err(DriverError::InstanceRemoved(_))
        ));
        assert!(matches!(
            active_check(&n("deploy failed"), Some(INST)),
            Err(DriverError::DeployFailed(m)) if m.contains("no last_error recorded")
        ));
        // Rebuild of a node without an instance: not checked.
        assert_eq!(active_check(&view(node("active", None)), None), Ok(true));
    }

    #[test]
    fn unprovisioned_check_follows_nova() {
        for s in ["cleaning", "clean wait", "clean failed", "available"] {
            assert!(unprovisioned_check(&view(node(s, None)), INST), "{s}");
        }
        for s in ["active", "deleting", "deploy failed", "error"] {
            assert!(
                !unprovisioned_check(&view(node(s, Some(INST))), INST),
                "{s}"
            );
            assert!(!unprovisioned_check(&view(node(s, None)), INST), "{s}");
            // Another instance took the node: ours is gone.
            assert!(
                unprovisioned_check(&view(node(s, Some(OTHER))), INST),
                "{s}"
            );
        }
    }

    #[test]
    fn validation_checks_deploy_and_power_only() {
        let ok = json!({
            "deploy": {"result": true}, "power": {"result": true},
            "boot": {"result": false, "reason": "x"}, "console": {"result": null}
        });
        assert_eq!(check_validation(NODE, &ok), Ok(()));
        let unreported = json!({"deploy": {"result": null, "reason": "not supported"}, "power": {"result": true}});
        assert_eq!(check_validation(NODE, &unreported), Ok(()));
        for bad in [
            json!({"deploy": {"result": false, "reason": "no image"}, "power": {"result": true}}),
            json!({"deploy": {"result": true}, "power": {"result": false, "reason": "no BMC"}}),
            json!({"deploy": {"result": true}}),
            json!({"deploy": {"result": true}, "power": {}}),
            json!({}),
        ] {
            assert!(
                matches!(
                    check_validation(NODE, &bad),
                    Err(DriverError::ValidationFailed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn deploy_patch_is_novas() {
        let mut r = request();
        r.root_gb = None;
        r.display_name = Some("web-1".into());
        assert_eq!(
            r.deploy_patch(),
            json!([
                {"op": "add", "path": "/instance_info/image_source", "value": "http://images.example/fedora.qcow2"},
                {"op": "add", "path": "/instance_info/display_name", "value": "web-1"},
                {"op": "add", "path": "/instance_uuid", "value": INST},
            ])
        );
        // The config drive stays out of debug output.
        let dbg = format!("{r:?}");
        assert!(!dbg.contains(CD), "{dbg}");
        assert!(dbg.contains("bytes"), "{dbg}");
    }
}
