//! Provisioning, after ironic.conductor.manager's `do_provisioning_action`,
//! `do_node_deploy`, `do_node_tear_down` and `heartbeat`: a request is
//! checked against the state machine in [`super::states`], the node enters
//! its new state under the lock and the request answers at once (202); a
//! worker holding the lock carries the plan out and records the outcome.
//!
//! Deploy: validate, prepare boot (configs live, next boot PXE), power on
//! (or reboot), then `wait call-back`, which releases the lock. The
//! ramdisk's first heartbeat resumes it: boot configs cleaned up, boot
//! device disk (persistent), reboot, `active`.
//!
//! Tear down: power off, drop the instance (instance_info, instance_uuid,
//! VIFs, config drive), all before cleaning starts, so nothing waits on a
//! node lock held through a long clean (Launchpad bug 1659836); then clean
//! the same way as a deploy boots (`clean wait` until the heartbeat), or go
//! straight to `available` when automated cleaning is off.
//!
//! Waits are bounded by `deploy_callback_timeout` / `clean_callback_timeout`
//! counted from `provision_updated_at`, which is stored: after a restart
//! the timers resume where they were. Nodes found in a state only a worker
//! holds (a crash mid-way) are failed at start-up.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value};

use super::lock::NodeLock;
use super::states::{self, Verb, Work};
use super::{Conductor, ConductorError, PowerTarget};
use crate::bmc::{BmcError, BootDevice, BootSetting, PowerState};
use crate::store::{now, Node, NodeQuery};

/// `instance_info` key of the config drive (as Ironic keeps it).
pub const CONFIGDRIVE_KEY: &str = "configdrive";
/// `driver_internal_info` key: the VIFs attached to the node.
pub const VIFS_KEY: &str = "vifs";
/// `driver_internal_info` keys written by heartbeats.
pub const AGENT_URL_KEY: &str = "agent_url";
pub const AGENT_VERSION_KEY: &str = "agent_version";
pub const AGENT_HEARTBEAT_KEY: &str = "agent_last_heartbeat";

/// Largest config drive accepted, encoded (Ironic's partition is 64 MiB).
const MAX_CONFIGDRIVE: usize = 64 * 1024 * 1024;

/// The `fault` of a node whose cleaning failed (Ironic's `faults.CLEAN_FAILURE`).
pub const CLEAN_FAILURE: &str = "clean failure";

/// Check a config drive as Ironic accepts it: an http(s) URL, or gzipped
/// data in base64.
pub fn check_configdrive(v: &Value) -> Result<String, ConductorError> {
    let bad = |m: &str| ConductorError::InvalidParameter(format!("Invalid configdrive: {m}"));
    let s = match v {
        Value::String(s) => s.trim(),
        Value::Object(_) => {
            return Err(bad(
                "a JSON config drive is not supported here; send it gzipped and base64-encoded",
            ))
        }
        _ => return Err(bad("expected a string")),
    };
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s.len() > MAX_CONFIGDRIVE {
        return Err(bad(&format!(
            "it is larger than {} MiB",
            MAX_CONFIGDRIVE >> 20
        )));
    }
    if s.starts_with("http://") || s.starts_with("https://") {
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("the URL holds whitespace or control characters"));
        }
        return Ok(s.to_string());
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|e| bad(&format!("not base64 ({e})")))?;
    if !data.starts_with(&[0x1f, 0x8b]) {
        return Err(bad("the decoded data is not gzipped"));
    }
    Ok(s.to_string())
}

/// Seconds since an RFC 3339 timestamp (`None` when it does not parse).
fn age(stamp: &str) -> Option<Duration> {
    let t =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    let d = time::OffsetDateTime::now_utc() - t;
    Some(Duration::from_secs_f64(d.as_seconds_f64().max(0.0)))
}

/// The VIFs recorded on a node.
pub fn vifs_of(node: &Node) -> Vec<String> {
    node.driver_internal_info
        .get(VIFS_KEY)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// How a worker's step failed: the message for `last_error`.
type Step<T> = Result<T, String>;

impl Conductor {
    /// `PUT /v1/nodes/{id}/states/provision`: check the verb against the
    /// node's state (400), take the lock (409) and a worker (503), enter the
    /// new state and return; the worker does the rest.
    pub async fn do_provisioning_action(
        self: &Arc<Self>,
        ident: &str,
        verb: Verb,
        configdrive: Option<Value>,
    ) -> Result<Node, ConductorError> {
        let node = self.node(ident)?;
        // The lock first, as Ironic's task manager: a busy node is 409
        // whatever its state says at this instant.
        let lock = self
            .locks
            .try_lock(&node.uuid)
            .ok_or_else(|| self.locked(&node.uuid))?;
        let node = self.node(lock.uuid())?;
        let plan = states::plan(&node.provision_state, verb)
            .map_err(|m| ConductorError::InvalidState(format!("Node {}: {m}", node.uuid)))?;
        let configdrive = match configdrive {
            None | Some(Value::Null) => None,
            Some(_) if !matches!(verb, Verb::Deploy | Verb::Rebuild) => {
                return Err(ConductorError::InvalidParameter(format!(
                    "A configdrive can only be given with the \"active\" or \"rebuild\" \
                     targets, not \"{}\"",
                    verb.name()
                )))
            }
            Some(v) => Some(check_configdrive(&v)?),
        };
        if matches!(verb, Verb::Deploy | Verb::Rebuild | Verb::Provide) && node.maintenance {
            return Err(ConductorError::InvalidState(format!(
                "Node {} is in maintenance mode; take it out of maintenance to {}",
                node.uuid,
                verb.name()
            )));
        }
        if plan.work == Work::Deploy {
            self.check_deploy(&node)?;
        }
        if plan.work == Work::Clean && self.cfg.automated_clean {
            self.check_boot(&node)?;
        }
        let permit = if plan.work == Work::None {
            None
        } else {
            Some(
                self.workers
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| ConductorError::NoFreeWorker)?,
            )
        };
        // Under the lock nothing else moves the node: the plan still holds.
        let node = self
            .store
            .update_node(&node.uuid, |n| {
                n.last_error = None;
                n.provision_state = plan.state.to_string();
                n.target_provision_state = plan.target.map(str::to_string);
                n.provision_updated_at = Some(now());
                if let Some(cd) = &configdrive {
                    n.instance_info
                        .insert(CONFIGDRIVE_KEY.into(), Value::String(cd.clone()));
                }
                Ok(())
            })
            .map_err(|e| self.node_err(ident, e))?;
        tracing::info!(
            node = %node.uuid,
            action = verb.name(),
            state = %node.provision_state,
            target = ?node.target_provision_state,
            "provisioning action accepted"
        );
        if let Some(permit) = permit {
            let this = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                this.provision_worker(lock, plan.work).await;
            });
        }
        Ok(node)
    }

    /// What a deploy needs before it is accepted: an image to deploy (as
    /// Nova sets it) and boot configs that render.
    fn check_deploy(&self, node: &Node) -> Result<(), ConductorError> {
        let image = node
            .instance_info
            .get("image_source")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty());
        if image.is_none() {
            return Err(ConductorError::InvalidParameter(format!(
                "Cannot deploy node {}: instance_info.image_source is missing (set it with a \
                 node update first, as Nova does)",
                node.uuid
            )));
        }
        self.check_boot(node)?;
        Ok(())
    }

    async fn provision_worker(&self, lock: NodeLock, work: Work) {
        let uuid = lock.uuid().to_string();
        match work {
            Work::None => {}
            Work::Verify => self.verify_worker(&lock).await,
            Work::Deploy => self.deploy_worker(&lock).await,
            Work::TearDown => self.tear_down_worker(&lock).await,
            Work::Clean => self.clean_worker(&lock).await,
            Work::Abort => self.abort_worker(&lock).await,
        }
        tracing::debug!(node = %uuid, ?work, "provisioning worker done");
        drop(lock);
    }

    /// Enter `state` (and `target`), stamping `provision_updated_at`; `f`
    /// may change more. A failure to write is logged: the node keeps its
    /// previous state, and the start-up recovery handles transient ones.
    fn enter(
        &self,
        uuid: &str,
        state: &str,
        target: Option<&str>,
        f: impl FnOnce(&mut Node),
    ) -> Option<Node> {
        let r = self.store.update_node(uuid, |n| {
            n.provision_state = state.to_string();
            n.target_provision_state = target.map(str::to_string);
            n.provision_updated_at = Some(now());
            f(n);
            Ok(())
        });
        match r {
            Ok(n) => {
                tracing::info!(node = %uuid, state, target = ?target, "provision state changed");
                Some(n)
            }
            Err(e) => {
                tracing::error!(node = %uuid, state, error = %e, "cannot record the provision state");
                None
            }
        }
    }

    /// Enter a failure state with `msg` in last_error.
    fn fail(&self, uuid: &str, state: &str, target: Option<&str>, msg: String) {
        tracing::warn!(node = %uuid, state, "{msg}");
        let maintenance = state == states::CLEANFAIL;
        self.enter(uuid, state, target, |n| {
            n.last_error = Some(msg);
            if maintenance {
                n.maintenance = true;
                n.fault = Some(CLEAN_FAILURE.to_string());
            }
        });
    }

    /// Drive the power to `target` and record the outcome in power_state.
    async fn power_locked(&self, node: &Node, target: PowerTarget) -> Step<()> {
        let mut last: Option<PowerState> = None;
        let mut last_error: Option<BmcError> = None;
        let bound = self.timing.change;
        let r =
            tokio::time::timeout(bound, self.drive(node, target, &mut last, &mut last_error)).await;
        let (state, result) = match r {
            Ok(Ok(())) => (Some(target.end_state()), Ok(())),
            Ok(Err(e)) => (last, Err(format!("{e}"))),
            Err(_) => (
                last,
                Err(format!(
                    "the node did not reach '{}' within {} seconds{}",
                    target.end_state().ironic(),
                    bound.as_secs_f64(),
                    last_error
                        .map(|e| format!(" (last poll failed: {e})"))
                        .unwrap_or_default()
                )),
            ),
        };
        if let Some(s) = state {
            let _ = self.store.update_node(&node.uuid, |n| {
                n.power_state = Some(s.ironic().to_string());
                Ok(())
            });
        }
        result.map_err(|e| format!("Failed to {} node {}: {e}", target.ironic(), node.uuid))
    }

    /// Power on, or reboot a node that is on (so it boots what was just set).
    async fn boot_locked(&self, node: &Node) -> Step<()> {
        self.power_locked(node, PowerTarget::Reboot).await
    }

    fn fresh(&self, uuid: &str) -> Step<Node> {
        self.node(uuid).map_err(|e| e.to_string())
    }

    // ------------------------------------------------------------ verify

    async fn verify_worker(&self, lock: &NodeLock) {
        let uuid = lock.uuid();
        let r: Step<PowerState> = async {
            let node = self.fresh(uuid)?;
            self.bmc_call(&node, |b| async move {
                b.validate().await?;
                b.power_state().await
            })
            .await
            .map_err(|e| format!("Failed to verify node {uuid}: {e}"))
        }
        .await;
        match r {
            Ok(p) => {
                self.enter(uuid, states::MANAGEABLE, None, |n| {
                    n.power_state = Some(p.ironic().to_string());
                });
            }
            Err(m) => self.fail(uuid, states::ENROLL, None, m),
        }
    }

    // ------------------------------------------------------------ deploy

    async fn deploy_worker(&self, lock: &NodeLock) {
        let uuid = lock.uuid();
        let checked = async {
            let node = self.fresh(uuid)?;
            self.bmc_call(&node, |b| async move { b.validate().await })
                .await
                .map_err(|e| {
                    format!("Failed to validate the power and management of node {uuid}: {e}")
                })?;
            Ok(node)
        }
        .await;
        self.boot_to_ramdisk(
            lock,
            checked,
            "to deploy",
            (states::DEPLOYWAIT, Some(states::ACTIVE)),
            (states::DEPLOYFAIL, Some(states::ACTIVE)),
        )
        .await;
    }

    /// Make the boot configs live and boot the node into the ramdisk, then
    /// wait for its heartbeat in `wait`; on a failure (of `checked` too),
    /// take the configs back and enter `failed`.
    async fn boot_to_ramdisk(
        &self,
        lock: &NodeLock,
        checked: Step<Node>,
        what: &str,
        wait: (&str, Option<&str>),
        failed: (&str, Option<&str>),
    ) {
        let uuid = lock.uuid();
        let r: Step<()> = async {
            let node = self
                .prepare_boot_locked(lock, &checked?)
                .await
                .map_err(|e| format!("Failed to prepare node {uuid} {what}: {e}"))?;
            self.boot_locked(&node).await
        }
        .await;
        match r {
            Ok(()) => {
                self.enter(uuid, wait.0, wait.1, |_| {});
            }
            Err(m) => {
                self.take_boot_back(lock);
                self.fail(uuid, failed.0, failed.1, m);
            }
        }
    }

    /// After the ramdisk's heartbeat: boot from disk from now on, reboot.
    async fn finish_deploy_worker(&self, lock: &NodeLock) {
        let uuid = lock.uuid();
        let r: Step<()> = async {
            let node = self.fresh(uuid)?;
            let node = self
                .clean_up_boot_locked(lock, &node)
                .map_err(|e| e.to_string())?;
            let disk = BootSetting {
                device: Some(BootDevice::Disk),
                persistent: true,
                mode: None,
            };
            self.bmc_call(&node, |b| async move { b.set_boot_device(disk).await })
                .await
                .map_err(|e| {
                    format!("Failed to set the boot device of node {uuid} to disk: {e}")
                })?;
            self.boot_locked(&node).await
        }
        .await;
        match r {
            Ok(()) => {
                self.enter(uuid, states::ACTIVE, None, |_| {});
            }
            Err(m) => {
                self.take_boot_back(lock);
                self.fail(uuid, states::DEPLOYFAIL, Some(states::ACTIVE), m);
            }
        }
    }

    /// Best effort: no configs served for a node whose boot failed.
    fn take_boot_back(&self, lock: &NodeLock) {
        if let Ok(node) = self.node(lock.uuid()) {
            if let Err(e) = self.clean_up_boot_locked(lock, &node) {
                tracing::error!(node = %node.uuid, error = %e, "cannot clean up the boot configs");
            }
        }
    }

    // ------------------------------------------------- tear down and clean

    async fn tear_down_worker(&self, lock: &NodeLock) {
        let uuid = lock.uuid();
        let r: Step<()> = async {
            let node = self.fresh(uuid)?;
            self.power_locked(&node, PowerTarget::Off).await?;
            let node = self.fresh(uuid)?;
            self.clean_up_boot_locked(lock, &node)
                .map_err(|e| e.to_string())?;
            // The instance's resources go before cleaning holds the lock.
            self.store
                .update_node(uuid, |n| {
                    n.instance_info = Map::new();
                    n.instance_uuid = None;
                    for k in [VIFS_KEY, AGENT_URL_KEY, AGENT_VERSION_KEY, AGENT_HEARTBEAT_KEY] {
                        n.driver_internal_info.remove(k);
                    }
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
            tracing::info!(node = %uuid, "instance removed: instance_info, VIFs and config drive cleared");
            Ok(())
        }
        .await;
        match r {
            Ok(()) => {
                self.enter(uuid, states::CLEANING, Some(states::AVAILABLE), |_| {});
                self.clean_worker(lock).await;
            }
            Err(m) => self.fail(
                uuid,
                states::ERROR,
                None,
                format!("Failed to tear down node {uuid}. Error: {m}"),
            ),
        }
    }

    /// Boot the ramdisk to clean, or go to `available` when cleaning is off.
    async fn clean_worker(&self, lock: &NodeLock) {
        let uuid = lock.uuid();
        if !self.cfg.automated_clean {
            self.enter(uuid, states::AVAILABLE, None, |_| {});
            return;
        }
        self.boot_to_ramdisk(
            lock,
            self.fresh(uuid),
            "for cleaning",
            (states::CLEANWAIT, Some(states::AVAILABLE)),
            (states::CLEANFAIL, None),
        )
        .await;
    }

    /// After the cleaning ramdisk's heartbeat: configs away, power off, available.
    async fn finish_clean_worker(&self, lock: &NodeLock) {
        let uuid = lock.uuid();
        let r: Step<()> = async {
            let node = self.fresh(uuid)?;
            let node = self
                .clean_up_boot_locked(lock, &node)
                .map_err(|e| e.to_string())?;
            self.power_locked(&node, PowerTarget::Off).await
        }
        .await;
        match r {
            Ok(()) => {
                self.enter(uuid, states::AVAILABLE, None, |_| {});
            }
            Err(m) => self.fail(uuid, states::CLEANFAIL, None, m),
        }
    }

    /// `abort` of a wait: the state was entered on accept; stop the ramdisk.
    async fn abort_worker(&self, lock: &NodeLock) {
        let uuid = lock.uuid();
        self.take_boot_back(lock);
        let Ok(node) = self.node(uuid) else { return };
        let what = if node.provision_state == states::CLEANFAIL {
            "Clean"
        } else {
            "Deploy"
        };
        let mut msg = format!("{what} aborted by request for node {uuid}.");
        if let Err(e) = self.power_locked(&node, PowerTarget::Off).await {
            msg.push_str(&format!(" Powering it off failed: {e}"));
        }
        tracing::info!(node = %uuid, "{msg}");
        let _ = self.store.update_node(uuid, |n| {
            n.last_error = Some(msg);
            Ok(())
        });
    }

    // ---------------------------------------------------------- heartbeat

    /// `POST /v1/heartbeat/{node}`: the ramdisk reports in. In `wait
    /// call-back` it resumes the deploy, in `clean wait` it finishes the
    /// clean; anywhere else it changes nothing and is refused (409).
    pub async fn heartbeat(
        self: &Arc<Self>,
        ident: &str,
        callback_url: &str,
        agent_version: Option<&str>,
    ) -> Result<Node, ConductorError> {
        let cb = callback_url.trim();
        let ok_url = (cb.starts_with("http://") || cb.starts_with("https://"))
            && cb.len() <= 2048
            && !cb.chars().any(|c| c.is_control() || c.is_whitespace());
        if !ok_url {
            return Err(ConductorError::InvalidParameter(
                "callback_url must be an http(s) URL".into(),
            ));
        }
        if let Some(v) = agent_version {
            if v.len() > 255 || v.chars().any(char::is_control) {
                return Err(ConductorError::InvalidParameter(
                    "agent_version must be a short printable string".into(),
                ));
            }
        }
        let node = self.node(ident)?;
        let refuse = |n: &Node| {
            ConductorError::Conflict(format!(
                "Node {} is in provision state \"{}\"; a heartbeat is only expected in \"{}\" \
                 or \"{}\". Nothing was changed.",
                n.uuid,
                n.provision_state,
                states::DEPLOYWAIT,
                states::CLEANWAIT
            ))
        };
        if states::on_heartbeat(&node.provision_state).is_none() {
            return Err(refuse(&node));
        }
        let lock = self
            .locks
            .try_lock(&node.uuid)
            .ok_or_else(|| self.locked(&node.uuid))?;
        let node = self.node(lock.uuid())?;
        let Some((state, target)) = states::on_heartbeat(&node.provision_state) else {
            return Err(refuse(&node));
        };
        if node.maintenance {
            return Err(ConductorError::Conflict(format!(
                "Node {} is in maintenance mode; the heartbeat was not acted upon.",
                node.uuid
            )));
        }
        let permit = self
            .workers
            .clone()
            .try_acquire_owned()
            .map_err(|_| ConductorError::NoFreeWorker)?;
        let updated = self
            .store
            .update_node(&node.uuid, |n| {
                n.provision_state = state.to_string();
                n.target_provision_state = target.map(str::to_string);
                n.provision_updated_at = Some(now());
                let info = &mut n.driver_internal_info;
                info.insert(AGENT_URL_KEY.into(), Value::String(cb.to_string()));
                if let Some(v) = agent_version {
                    info.insert(AGENT_VERSION_KEY.into(), Value::String(v.to_string()));
                }
                info.insert(AGENT_HEARTBEAT_KEY.into(), Value::String(now()));
                Ok(())
            })
            .map_err(|e| self.node_err(ident, e))?;
        let deploy = node.provision_state == states::DEPLOYWAIT;
        tracing::info!(
            node = %updated.uuid,
            from = %node.provision_state,
            agent_version = ?agent_version,
            "heartbeat: resuming"
        );
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if deploy {
                this.finish_deploy_worker(&lock).await;
            } else {
                this.finish_clean_worker(&lock).await;
            }
            drop(lock);
        });
        Ok(updated)
    }

    // --------------------------------------------------- timers and crashes

    /// Fail the waits that outlived their timeout (deploy: `deploy failed`;
    /// clean: `clean failed` and powered off). Locked nodes are skipped
    /// until the next check. Returns how many timed out.
    pub async fn check_provision_timeouts(self: &Arc<Self>) -> usize {
        let mut expired = 0;
        for (state, bound) in [
            (states::DEPLOYWAIT, self.timing.deploy_callback),
            (states::CLEANWAIT, self.timing.clean_callback),
        ] {
            let q = NodeQuery {
                provision_state: Some(state.to_string()),
                ..NodeQuery::default()
            };
            let nodes = match self.store.list_nodes(&q) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "cannot list nodes waiting for a call-back");
                    continue;
                }
            };
            for node in nodes {
                let waited = node.provision_updated_at.as_deref().and_then(age);
                // A missing or unreadable stamp counts as expired: the
                // node would otherwise wait for ever.
                if waited.is_some_and(|w| w < bound) {
                    continue;
                }
                let Some(lock) = self.locks.try_lock(&node.uuid) else {
                    continue;
                };
                match self.node(&node.uuid) {
                    Ok(n)
                        if n.provision_state == state
                            && n.provision_updated_at == node.provision_updated_at => {}
                    _ => continue,
                }
                expired += 1;
                let this = self.clone();
                let secs = bound.as_secs_f64();
                tokio::spawn(async move {
                    let uuid = lock.uuid().to_string();
                    this.take_boot_back(&lock);
                    if state == states::DEPLOYWAIT {
                        this.fail(
                            &uuid,
                            states::DEPLOYFAIL,
                            Some(states::ACTIVE),
                            format!(
                                "Timeout reached while waiting for callback for node {uuid} \
                                 (deploy_callback_timeout {secs} s)"
                            ),
                        );
                    } else {
                        let mut msg = format!(
                            "Timeout reached while cleaning the node {uuid}: no heartbeat within \
                             clean_callback_timeout {secs} s"
                        );
                        if let Ok(n) = this.node(&uuid) {
                            if let Err(e) = this.power_locked(&n, PowerTarget::Off).await {
                                msg.push_str(&format!("; powering it off failed: {e}"));
                            }
                        }
                        this.fail(&uuid, states::CLEANFAIL, None, msg);
                    }
                    drop(lock);
                });
            }
        }
        expired
    }

    /// At start-up, before any worker runs: nodes left in a state only a
    /// worker holds (the agent died mid-way) fail with a clear last_error,
    /// and their boot configs are taken away. `wait call-back` and `clean
    /// wait` are left as they are: their timers resume from the stored
    /// `provision_updated_at`. Returns the nodes changed.
    pub fn recover_provision_states(&self) -> Vec<String> {
        let mut changed = Vec::new();
        for state in states::TRANSIENT {
            let q = NodeQuery {
                provision_state: Some(state.to_string()),
                ..NodeQuery::default()
            };
            let Ok(nodes) = self.store.list_nodes(&q) else {
                continue;
            };
            for node in nodes {
                let Some((to, target)) = states::after_crash(state) else {
                    continue;
                };
                let msg = format!(
                    "The agent stopped while node {} was in \"{state}\" (crash or kill); \
                     it was moved to \"{to}\" on restart.",
                    node.uuid
                );
                let maintenance = to == states::CLEANFAIL;
                let r = self.store.update_node(&node.uuid, |n| {
                    n.provision_state = to.to_string();
                    n.target_provision_state = target.map(str::to_string);
                    n.provision_updated_at = Some(now());
                    n.last_error = Some(msg.clone());
                    n.driver_internal_info
                        .remove(crate::boot::render::PREPARED_KEY);
                    if maintenance {
                        n.maintenance = true;
                        n.fault = Some(CLEAN_FAILURE.to_string());
                    }
                    Ok(())
                });
                match r {
                    Ok(_) => {
                        tracing::warn!(node = %node.uuid, from = state, to, "{msg}");
                        changed.push(node.uuid);
                    }
                    Err(e) => {
                        tracing::error!(node = %node.uuid, error = %e, "cannot recover the provision state")
                    }
                }
            }
        }
        changed
    }

    // ---------------------------------------------------------------- VIFs

    /// The node's VIFs (`GET /v1/nodes/{id}/vifs`).
    pub fn vif_list(&self, ident: &str) -> Result<Vec<String>, ConductorError> {
        Ok(vifs_of(&self.node(ident)?))
    }

    /// Attach a VIF under the node lock (409 when held, as during cleaning):
    /// at most one per port.
    pub fn vif_attach(&self, ident: &str, vif: &str) -> Result<Node, ConductorError> {
        if vif.is_empty() || vif.len() > 255 || vif.chars().any(|c| c.is_control()) {
            return Err(ConductorError::InvalidParameter(
                "A VIF id must be 1-255 printable characters".into(),
            ));
        }
        let (_lock, node) = self.lock_node(ident)?;
        let ports = self
            .store
            .list_ports(Some(&node.uuid), 0, None)
            .map_err(|e| self.node_err(ident, e))?
            .len();
        let mut vifs = vifs_of(&node);
        if vifs.iter().any(|v| v == vif) {
            return Err(ConductorError::Conflict(format!(
                "Unable to attach VIF {vif}, it is already attached to node {}.",
                node.uuid
            )));
        }
        if vifs.len() >= ports {
            return Err(ConductorError::InvalidParameter(format!(
                "Unable to attach VIF {vif} to node {}: not enough free ports ({ports} ports, \
                 {} VIFs attached).",
                node.uuid,
                vifs.len()
            )));
        }
        vifs.push(vif.to_string());
        self.set_vifs(ident, &node.uuid, vifs)
    }

    /// Detach a VIF under the node lock (409 when held).
    pub fn vif_detach(&self, ident: &str, vif: &str) -> Result<Node, ConductorError> {
        let (_lock, node) = self.lock_node(ident)?;
        let mut vifs = vifs_of(&node);
        let before = vifs.len();
        vifs.retain(|v| v != vif);
        if vifs.len() == before {
            return Err(ConductorError::InvalidParameter(format!(
                "Unable to detach VIF {vif} from node {}: it is not attached.",
                node.uuid
            )));
        }
        self.set_vifs(ident, &node.uuid, vifs)
    }

    fn set_vifs(&self, ident: &str, uuid: &str, vifs: Vec<String>) -> Result<Node, ConductorError> {
        self.store
            .update_node(uuid, |n| {
                if vifs.is_empty() {
                    n.driver_internal_info.remove(VIFS_KEY);
                } else {
                    n.driver_internal_info.insert(
                        VIFS_KEY.into(),
                        Value::Array(vifs.into_iter().map(Value::String).collect()),
                    );
                }
                Ok(())
            })
            .map_err(|e| self.node_err(ident, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz_b64(data: &[u8]) -> String {
        let mut v = vec![0x1f, 0x8b, 0x08, 0x00];
        v.extend_from_slice(data);
        base64::engine::general_purpose::STANDARD.encode(v)
    }

    #[test]
    fn config_drives_are_checked_as_ironic_accepts_them() {
        let ok = gz_b64(b"payload");
        assert_eq!(check_configdrive(&Value::String(ok.clone())), Ok(ok));
        assert!(check_configdrive(&Value::String("http://h/cd.iso.gz".into())).is_ok());
        for bad in [
            Value::String(String::new()),
            Value::String("not base64!".into()),
            Value::String(base64::engine::general_purpose::STANDARD.encode(b"plain")),
            Value::String("http://h/a b".into()),
            Value::Bool(true),
            serde_json::json!({"meta_data": {}}),
        ] {
            let e = check_configdrive(&bad).unwrap_err();
            assert!(e.to_string().starts_with("Invalid configdrive"), "{e}");
        }
    }

    #[test]
    fn ages_read_the_stores_stamps() {
        let a = age(&now()).unwrap();
        assert!(a < Duration::from_secs(60));
        let old = age("2020-01-01T00:00:00.000000+00:00").unwrap();
        assert!(old > Duration::from_secs(86400));
        assert_eq!(age("yesterday"), None);
    }

    #[test]
    fn vifs_are_read_leniently() {
        let mut n = Node::default();
        assert!(vifs_of(&n).is_empty());
        n.driver_internal_info
            .insert(VIFS_KEY.into(), serde_json::json!(["a", 3, "b"]));
        assert_eq!(vifs_of(&n), vec!["a".to_string(), "b".to_string()]);
    }
}
