//! The conductor, after ironic.conductor.manager: exclusive per-node locks,
//! a bounded worker pool, power changes that answer at once and land in a
//! worker, the power sync loop and power-failure recovery.
//!
//! Layout: [`lock`] (the per-node locks), [`bmcs`] (BMC clients from
//! `driver_info`, cached per node), `power` (power changes), `sync` (the power
//! sync sweep and power-failure recovery), `boot` (boot prepare / clean up)
//! and [`metrics`] (metric names).
//!
//! One conductor runs per agent, so the locks live in memory; a node's
//! `reservation` is this host while a lock is held.

mod bmcs;
mod boot;
mod console;
mod lock;
pub mod metrics;
mod power;
pub mod provision;
pub mod states;
mod sync;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::bmc::{Bmc, BmcError, BootDevice, BootSetting, PowerAction, PowerState};
use crate::config::{secs, ConductorConfig};
use crate::profiles::Profiles;
use crate::store::{NewNode, Node, Store, StoreError};

pub use bmcs::{address_key, DRIVERS};
use bmcs::{BmcCache, ClientTiming};
pub use boot::{BootContext, BootView};
pub use console::{ConsoleState, CONSOLE_PORT_KEY};
use lock::{LockTable, NodeLock};

/// The `fault` of a node the power sync put in maintenance (Ironic's
/// `faults.POWER_FAILURE`).
pub const POWER_FAILURE: &str = "power failure";

/// Ironic's hardware interfaces (`driver_base.ALL_INTERFACES`), in its
/// (alphabetical) order. [`Conductor::validate`] reports all but `vendor`.
pub const INTERFACES: [&str; 13] = [
    "bios",
    "boot",
    "console",
    "deploy",
    "firmware",
    "inspect",
    "management",
    "network",
    "power",
    "raid",
    "rescue",
    "storage",
    "vendor",
];

/// Ironic's power targets (`PUT /v1/nodes/{id}/states/power`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerTarget {
    On,
    Off,
    Reboot,
    SoftOff,
    SoftReboot,
}

impl PowerTarget {
    /// `power on`, `power off`, `rebooting`, `soft power off`, `soft rebooting`.
    pub fn parse(s: &str) -> Option<PowerTarget> {
        Some(match s {
            "power on" => PowerTarget::On,
            "power off" => PowerTarget::Off,
            "rebooting" => PowerTarget::Reboot,
            "soft power off" => PowerTarget::SoftOff,
            "soft rebooting" => PowerTarget::SoftReboot,
            _ => return None,
        })
    }

    pub fn ironic(self) -> &'static str {
        match self {
            PowerTarget::On => "power on",
            PowerTarget::Off => "power off",
            PowerTarget::Reboot => "rebooting",
            PowerTarget::SoftOff => "soft power off",
            PowerTarget::SoftReboot => "soft rebooting",
        }
    }

    pub fn action(self) -> PowerAction {
        match self {
            PowerTarget::On => PowerAction::On,
            PowerTarget::Off => PowerAction::Off,
            PowerTarget::Reboot => PowerAction::Reboot,
            PowerTarget::SoftOff => PowerAction::SoftOff,
            PowerTarget::SoftReboot => PowerAction::SoftReboot,
        }
    }

    /// The state a finished change leaves: a reboot ends in `power on`.
    pub fn end_state(self) -> PowerState {
        self.action().target()
    }
}

/// Errors with Ironic's names; the API maps them to status and faultstring.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConductorError {
    #[error("Node {0} could not be found.")]
    NodeNotFound(String),
    #[error("Node {node} is locked by host {host}, please retry after the current operation is completed.")]
    NodeLocked { node: String, host: String },
    #[error("Requested action cannot be performed due to lack of free conductor workers.")]
    NoFreeWorker,
    /// 400.
    #[error("{0}")]
    InvalidParameter(String),
    /// 400: the node's driver cannot do this (e.g. soft power off).
    #[error("{0}")]
    Unsupported(String),
    /// 400: the action is not allowed in the node's provision state
    /// (Ironic's `InvalidStateRequested` / `InvalidState`).
    #[error("{0}")]
    InvalidState(String),
    /// 409: a uniqueness conflict.
    #[error("{0}")]
    Conflict(String),
    /// A BMC failure in a synchronous call (boot device, NMI, validate).
    #[error("{0}")]
    Bmc(BmcError),
    #[error("{0}")]
    Store(StoreError),
}

impl ConductorError {
    /// HTTP status as Ironic answers.
    pub fn status(&self) -> u16 {
        match self {
            ConductorError::NodeNotFound(_) => 404,
            ConductorError::NodeLocked { .. } => 409,
            ConductorError::NoFreeWorker => 503,
            ConductorError::InvalidParameter(_)
            | ConductorError::Unsupported(_)
            | ConductorError::InvalidState(_) => 400,
            ConductorError::Conflict(_) => 409,
            ConductorError::Store(e) => match e {
                StoreError::NotFound { .. } => 404,
                StoreError::Duplicate(_) => 409,
                StoreError::Invalid(_) => 400,
                StoreError::Db(_) | StoreError::Crypto(_) => 500,
            },
            ConductorError::Bmc(e) => match e {
                BmcError::Unsupported(_) | BmcError::Config(_) => 400,
                _ => 500,
            },
        }
    }

    /// A store error, with uniqueness conflicts as [`ConductorError::Conflict`].
    fn store(e: StoreError) -> ConductorError {
        match e {
            StoreError::Duplicate(m) => ConductorError::Conflict(m),
            e => ConductorError::Store(e),
        }
    }
}

/// Result of one interface's validation (`GET /v1/nodes/{id}/validate`).
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceCheck {
    pub interface: &'static str,
    /// `None`: not supported by this driver.
    pub result: Option<bool>,
    pub reason: Option<String>,
}

/// What one sync sweep did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncReport {
    pub checked: usize,
    pub changed: usize,
    pub failed: usize,
    pub to_maintenance: usize,
    pub skipped_locked: usize,
    pub duration: Duration,
}

/// The configuration as durations, with the defaults for nonsense values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub client: ClientTiming,
    /// Default bound on a power change.
    pub change: Duration,
    /// Default bound on a soft power off.
    pub soft: Duration,
    pub sync_interval: Option<Duration>,
    pub recovery_interval: Option<Duration>,
    /// Bound on `wait call-back`.
    pub deploy_callback: Duration,
    /// Bound on `clean wait`.
    pub clean_callback: Duration,
    /// How often the call-back bounds are checked.
    pub provision_check: Duration,
}

impl Timing {
    fn new(cfg: &ConductorConfig) -> Timing {
        let or = |v: f64, d: f64| secs(v).unwrap_or(Duration::from_secs_f64(d));
        let change = or(cfg.power_state_change_timeout, 60.0);
        let soft = or(cfg.soft_power_off_timeout, 600.0);
        Timing {
            client: ClientTiming {
                bmc_timeout: or(cfg.bmc_timeout, 5.0),
                poll_interval: or(cfg.power_poll_interval, 1.0),
                soft_timeout: soft,
                operation_timeout: change,
            },
            change,
            soft,
            sync_interval: secs(cfg.sync_power_state_interval),
            recovery_interval: secs(cfg.power_failure_recovery_interval),
            deploy_callback: or(cfg.deploy_callback_timeout, 1800.0),
            clean_callback: or(cfg.clean_callback_timeout, 1800.0),
            provision_check: or(cfg.check_provision_state_interval, 60.0),
        }
    }
}

/// The conductor: see the module documentation.
pub struct Conductor {
    store: Store,
    cfg: ConductorConfig,
    profiles: Profiles,
    host: String,
    timing: Timing,
    locks: Arc<LockTable>,
    workers: Arc<Semaphore>,
    bmcs: BmcCache,
    /// Failed power syncs in a row, per node uuid (reset on success).
    sync_failures: Mutex<HashMap<String, u32>>,
    stop: watch::Sender<bool>,
    loops: Mutex<Vec<JoinHandle<()>>>,
    /// What boot configs are rendered with (`None` until the agent sets it).
    boot: Mutex<Option<Arc<BootContext>>>,
    /// Consoles (`None` until the agent installs its manager).
    consoles: Mutex<Option<Arc<crate::console::manager::ConsoleManager>>>,
    /// This conductor, for the tasks it spawns.
    me: Weak<Conductor>,
}

impl std::fmt::Debug for Conductor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conductor")
            .field("host", &self.host)
            .field("workers", &self.cfg.workers)
            .field("locked", &self.locks.held())
            .field("open_sessions", &self.bmcs.open())
            .finish_non_exhaustive()
    }
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conductor {
    pub fn new(
        store: Store,
        cfg: ConductorConfig,
        profiles: Profiles,
        host: String,
    ) -> Arc<Conductor> {
        let timing = Timing::new(&cfg);
        let workers = Arc::new(Semaphore::new(cfg.workers.max(1)));
        let (stop, _) = watch::channel(false);
        Arc::new_cyclic(|me| Conductor {
            store,
            cfg,
            profiles,
            host,
            timing,
            locks: Arc::new(LockTable::default()),
            workers,
            bmcs: BmcCache::default(),
            sync_failures: Mutex::new(HashMap::new()),
            stop,
            loops: Mutex::new(Vec::new()),
            boot: Mutex::new(None),
            consoles: Mutex::new(None),
            me: me.clone(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This conductor's host name (shown as a node's `reservation` while locked).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn config(&self) -> &ConductorConfig {
        &self.cfg
    }

    /// The host holding `uuid`'s lock, if any (Ironic's `reservation`). Never waits.
    pub fn reservation(&self, uuid: &str) -> Option<String> {
        self.locks.is_locked(uuid).then(|| self.host.clone())
    }

    /// Workers free for asynchronous actions.
    pub fn free_workers(&self) -> usize {
        self.workers.available_permits()
    }

    /// Start the power sync and power-failure recovery loops (each only when
    /// its interval is not 0) and the provisioning timeout check. Calling it again does nothing. Targets left by
    /// a previous run are the caller's to clear first
    /// ([`Store::clear_stale_targets`]): until then the sync skips those nodes.
    pub fn start(self: &Arc<Self>) {
        let mut loops = guard(&self.loops);
        if !loops.is_empty() || *self.stop.borrow() {
            return;
        }
        if let Some(every) = self.timing.sync_interval {
            loops.push(tokio::spawn(periodic(
                Arc::downgrade(self),
                every,
                self.stop.subscribe(),
                Periodic::Sync,
            )));
        }
        if let Some(every) = self.timing.recovery_interval {
            loops.push(tokio::spawn(periodic(
                Arc::downgrade(self),
                every,
                self.stop.subscribe(),
                Periodic::Recovery,
            )));
        }
        loops.push(tokio::spawn(periodic(
            Arc::downgrade(self),
            self.timing.provision_check,
            self.stop.subscribe(),
            Periodic::Provision,
        )));
        tracing::info!(
            host = %self.host,
            workers = self.cfg.workers,
            sync_interval = ?self.timing.sync_interval,
            recovery_interval = ?self.timing.recovery_interval,
            "conductor started"
        );
    }

    /// Stop background loops and close BMC sessions.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        // Consoles first: SOL is deactivated on the sessions closed below.
        self.stop_consoles().await;
        let loops: Vec<_> = guard(&self.loops).drain(..).collect();
        for mut h in loops {
            if tokio::time::timeout(Duration::from_secs(5), &mut h)
                .await
                .is_err()
            {
                h.abort();
            }
        }
        let clients = self.bmcs.drain();
        let n = clients.len();
        let bound = self.timing.client.bmc_timeout;
        let mut closing = tokio::task::JoinSet::new();
        for c in clients {
            closing.spawn(async move {
                let _ = tokio::time::timeout(bound, c.close()).await;
            });
        }
        while closing.join_next().await.is_some() {}
        tracing::info!(closed = n, "conductor stopped; BMC sessions closed");
    }

    /// Validate driver and driver_info and enroll the node (`enroll` state).
    pub fn create_node(&self, new: NewNode) -> Result<Node, ConductorError> {
        bmcs::parse(
            &new.driver,
            &new.driver_info,
            &self.profiles,
            &self.timing.client,
        )?;
        let node = self.store.create_node(new).map_err(ConductorError::store)?;
        tracing::info!(node = %node.uuid, driver = %node.driver, "node enrolled");
        Ok(node)
    }

    /// Change a node under its lock (PATCH); the result is validated again
    /// and the node's cached BMC client is dropped if driver_info changed.
    /// An enabled console is then started again on the new line (see
    /// `restart_console_later`), the lock passing to that worker.
    ///
    /// The power and provision state fields are not the closure's to change
    /// (they have their own endpoints): changing them is an InvalidParameter.
    pub fn update_node(
        self: &Arc<Self>,
        ident: &str,
        f: impl FnOnce(&mut Node) -> Result<(), ConductorError>,
    ) -> Result<Node, ConductorError> {
        let (lock, node) = self.lock_node(ident)?;
        let mut failure: Option<ConductorError> = None;
        let profiles = &self.profiles;
        let timing = &self.timing.client;
        let result = self.store.update_node(&node.uuid, |n| {
            let before = n.clone();
            let checked = f(n)
                .and_then(|()| read_only_unchanged(&before, n))
                .and_then(|()| {
                    if n.driver != before.driver || n.driver_info != before.driver_info {
                        bmcs::parse(&n.driver, &n.driver_info, profiles, timing).map(|_| ())
                    } else {
                        Ok(())
                    }
                });
            match checked {
                Ok(()) => Ok(()),
                Err(e) => {
                    let msg = e.to_string();
                    failure = Some(e);
                    Err(StoreError::Invalid(msg))
                }
            }
        });
        let updated = match result {
            Ok(n) => n,
            Err(e) => {
                return Err(match failure {
                    Some(f) => f,
                    None => self.node_err(ident, e),
                })
            }
        };
        if let Some(old) = self
            .bmcs
            .remove_if_stale(&updated.uuid, bmcs::fingerprint(&updated))
        {
            tracing::info!(node = %updated.uuid, "driver_info changed: BMC client dropped");
            bmcs::close_later(old, self.timing.client.bmc_timeout);
        }
        if updated.driver_info != node.driver_info || updated.driver != node.driver {
            guard(&self.sync_failures).remove(&updated.uuid);
            if updated.console_enabled {
                self.restart_console_later(lock, &updated);
            }
        }
        Ok(updated)
    }

    /// Delete a node: refused while it has an instance (409) or is in a
    /// state other than enroll, manageable, available or clean failed,
    /// unless it is in maintenance (400), as Ironic's `destroy_node`.
    pub async fn delete_node(&self, ident: &str) -> Result<(), ConductorError> {
        let (lock, node) = self.lock_node(ident)?;
        if let Some(i) = &node.instance_uuid {
            return Err(ConductorError::Conflict(format!(
                "Node {} is associated with instance {i}.",
                node.uuid
            )));
        }
        if !node.maintenance && !states::DELETE_ALLOWED.contains(&node.provision_state.as_str()) {
            return Err(ConductorError::InvalidState(format!(
                "Can not delete node \"{}\" while it is in provision state \"{}\". Valid \
                 provision states to start deletion are: {}, or any state in maintenance mode.",
                node.uuid,
                node.provision_state,
                states::DELETE_ALLOWED.join(", ")
            )));
        }
        self.store
            .delete_node(&node.uuid)
            .map_err(|e| self.node_err(ident, e))?;
        let consoles = guard(&self.consoles).clone();
        if let Some(mgr) = consoles {
            mgr.stop(&node.uuid).await;
        }
        if let Some(bmc) = self.bmcs.remove(&node.uuid) {
            let _ = tokio::time::timeout(self.timing.client.bmc_timeout, bmc.close()).await;
        }
        guard(&self.sync_failures).remove(&node.uuid);
        drop(lock);
        self.locks.forget(&node.uuid);
        tracing::info!(node = %node.uuid, "node deleted");
        Ok(())
    }

    /// Operator maintenance on / off (off also clears fault and reason).
    ///
    /// Turning it on also clears a `fault`: the maintenance is the
    /// operator's from then on, and power-failure recovery leaves it alone.
    pub fn set_maintenance(
        &self,
        ident: &str,
        on: bool,
        reason: Option<String>,
    ) -> Result<Node, ConductorError> {
        let (_lock, node) = self.lock_node(ident)?;
        let updated = self
            .store
            .update_node(&node.uuid, |n| {
                n.maintenance = on;
                n.fault = None;
                n.maintenance_reason = if on { reason } else { None };
                Ok(())
            })
            .map_err(|e| self.node_err(ident, e))?;
        if !on {
            guard(&self.sync_failures).remove(&updated.uuid);
        }
        tracing::info!(node = %updated.uuid, maintenance = on, "maintenance set");
        Ok(updated)
    }

    pub async fn get_boot_device(&self, ident: &str) -> Result<BootSetting, ConductorError> {
        self.locked_call(ident, |b| async move { b.boot_device().await })
            .await
    }

    pub async fn set_boot_device(
        &self,
        ident: &str,
        device: BootDevice,
        persistent: bool,
    ) -> Result<(), ConductorError> {
        let setting = BootSetting {
            device: Some(device),
            persistent,
            mode: None,
        };
        self.locked_call(ident, |b| async move { b.set_boot_device(setting).await })
            .await
    }

    pub async fn supported_boot_devices(
        &self,
        ident: &str,
    ) -> Result<Vec<BootDevice>, ConductorError> {
        self.locked_call(ident, |b| async move { b.supported_boot_devices().await })
            .await
    }

    pub async fn inject_nmi(&self, ident: &str) -> Result<(), ConductorError> {
        self.locked_call(ident, |b| async move { b.inject_nmi().await })
            .await
    }

    /// The power actions the node's BMC offers, bounded by `bmc_timeout`
    /// (no lock).
    pub async fn supported_power_actions(
        &self,
        ident: &str,
    ) -> Result<Vec<PowerAction>, ConductorError> {
        let node = self.node(ident)?;
        self.bmc_call(&node, |b| async move { b.supported_power_actions().await })
            .await
            .map_err(ConductorError::Bmc)
    }

    /// Ironic's interface validation. `power` and `management` ask the BMC
    /// (bounded by `bmc_timeout`, without the lock); `boot` renders the
    /// configs and checks the deploy images; `deploy` also needs
    /// `instance_info.image_source`; `console` says whether the node has a
    /// console line; the other interfaces are not supported.
    pub async fn validate(&self, ident: &str) -> Result<Vec<InterfaceCheck>, ConductorError> {
        let node = self.node(ident)?;
        let bmc = match bmcs::parse(
            &node.driver,
            &node.driver_info,
            &self.profiles,
            &self.timing.client,
        ) {
            Err(e) => Err(e.to_string()),
            Ok(_) => self
                .bmc_call(&node, |b| async move { b.validate().await })
                .await
                .map_err(|e| e.to_string()),
        };
        let boot = self
            .check_boot(&node)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let deploy = boot.clone().and_then(|()| {
            let image = node
                .instance_info
                .get("image_source")
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.trim().is_empty());
            match image {
                Some(_) => Ok(()),
                None => Err("instance_info.image_source is missing".to_string()),
            }
        });
        let console = console::line_of(&node).map(|_| ());
        let check = |r: &Result<(), String>| match r {
            Ok(()) => (Some(true), None),
            Err(m) => (Some(false), Some(m.clone())),
        };
        Ok(INTERFACES
            .iter()
            .filter(|i| **i != "vendor")
            .map(|&interface| {
                let (result, reason) = match interface {
                    "power" | "management" => check(&bmc),
                    "boot" => check(&boot),
                    "deploy" => check(&deploy),
                    "console" => match &console {
                        Ok(()) => (Some(true), None),
                        Err(e) => (None, Some(e.to_string())),
                    },
                    _ => (None, Some("not supported".to_string())),
                };
                InterfaceCheck {
                    interface,
                    result,
                    reason,
                }
            })
            .collect())
    }

    /// BMC sessions (clients) currently held open.
    pub fn open_sessions(&self) -> usize {
        self.bmcs.open()
    }

    // ------------------------------------------------------------ helpers

    fn arc(&self) -> Option<Arc<Conductor>> {
        self.me.upgrade()
    }

    /// A store error for a node lookup: NotFound names the node as asked.
    fn node_err(&self, ident: &str, e: StoreError) -> ConductorError {
        match e {
            StoreError::NotFound { .. } => ConductorError::NodeNotFound(ident.to_string()),
            e => ConductorError::store(e),
        }
    }

    fn node(&self, ident: &str) -> Result<Node, ConductorError> {
        self.store
            .get_node(ident)
            .map_err(|e| self.node_err(ident, e))
    }

    fn locked(&self, uuid: &str) -> ConductorError {
        ConductorError::NodeLocked {
            node: uuid.to_string(),
            host: self.host.clone(),
        }
    }

    /// Take the node's lock (409 when held) and read it again under the lock.
    fn lock_node(&self, ident: &str) -> Result<(NodeLock, Node), ConductorError> {
        let node = self.node(ident)?;
        let lock = self
            .locks
            .try_lock(&node.uuid)
            .ok_or_else(|| self.locked(&node.uuid))?;
        let node = self.node(lock.uuid())?;
        Ok((lock, node))
    }

    /// What every 202 needs: the node's lock (409 when held), a worker (503
    /// when none is free), and the node updated by `f` under the lock
    /// (`last_error` cleared first). Dropping the lock or permit on an error
    /// path releases it.
    fn accept(
        &self,
        node: &Node,
        ident: &str,
        f: impl FnOnce(&mut Node),
    ) -> Result<(NodeLock, tokio::sync::OwnedSemaphorePermit, Node), ConductorError> {
        let lock = self
            .locks
            .try_lock(&node.uuid)
            .ok_or_else(|| self.locked(&node.uuid))?;
        let permit = self
            .workers
            .clone()
            .try_acquire_owned()
            .map_err(|_| ConductorError::NoFreeWorker)?;
        let node = self
            .store
            .update_node(&node.uuid, |n| {
                n.last_error = None;
                f(n);
                Ok(())
            })
            .map_err(|e| self.node_err(ident, e))?;
        Ok((lock, permit, node))
    }

    /// A worker's failure: logged, and kept in the node's `last_error`.
    fn record_failure(&self, uuid: &str, msg: String) {
        tracing::warn!(node = %uuid, "{msg}");
        if let Err(e) = self.store.update_node(uuid, |n| {
            n.last_error = Some(msg);
            Ok(())
        }) {
            tracing::error!(node = %uuid, error = %e, "cannot record a failure in last_error");
        }
    }

    /// The node's cached client.
    async fn client(&self, node: &Node) -> Result<Arc<dyn Bmc>, BmcError> {
        self.bmcs
            .get(node, &self.profiles, &self.timing.client)
            .await
    }

    /// Run `f` on the node's client, the whole bounded by `bmc_timeout`;
    /// errors are counted.
    async fn bmc_call<T, F, Fut>(&self, node: &Node, f: F) -> Result<T, BmcError>
    where
        F: FnOnce(Arc<dyn Bmc>) -> Fut,
        Fut: Future<Output = Result<T, BmcError>>,
    {
        let bound = self.timing.client.bmc_timeout;
        let r = match tokio::time::timeout(bound, async {
            let b = self.client(node).await?;
            f(b).await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(BmcError::Timeout(bound)),
        };
        if let Err(e) = &r {
            metrics::bmc_error(&node.driver, e);
        }
        r
    }

    /// A synchronous management call under the node's lock.
    async fn locked_call<T, F, Fut>(&self, ident: &str, f: F) -> Result<T, ConductorError>
    where
        F: FnOnce(Arc<dyn Bmc>) -> Fut,
        Fut: Future<Output = Result<T, BmcError>>,
    {
        let (_lock, node) = self.lock_node(ident)?;
        self.bmc_call(&node, f).await.map_err(|e| {
            tracing::warn!(node = %node.uuid, driver = %node.driver, error = %e, "BMC call failed");
            ConductorError::Bmc(e)
        })
    }

    fn sync_failures(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        guard(&self.sync_failures)
    }
}

/// Refuse changes to the fields that have their own endpoints.
fn read_only_unchanged(before: &Node, after: &Node) -> Result<(), ConductorError> {
    let fields: [(&str, bool); 6] = [
        ("power_state", before.power_state == after.power_state),
        (
            "target_power_state",
            before.target_power_state == after.target_power_state,
        ),
        (
            "provision_state",
            before.provision_state == after.provision_state,
        ),
        (
            "target_provision_state",
            before.target_provision_state == after.target_provision_state,
        ),
        (
            "provision_updated_at",
            before.provision_updated_at == after.provision_updated_at,
        ),
        ("uuid", before.uuid == after.uuid),
    ];
    match fields.iter().find(|(_, same)| !same) {
        None => Ok(()),
        Some((field, _)) => Err(ConductorError::InvalidParameter(format!(
            "{field} cannot be changed by a node update; use the node's states endpoints"
        ))),
    }
}

#[derive(Clone, Copy, Debug)]
enum Periodic {
    Sync,
    Recovery,
    Provision,
}

/// Run a periodic task every `every` until stopped or the conductor is gone.
async fn periodic(
    me: Weak<Conductor>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    what: Periodic,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let Some(c) = me.upgrade() else { return };
        tokio::select! {
            _ = async {
                match what {
                    Periodic::Sync => {
                        c.sync_power_states().await;
                    }
                    Periodic::Recovery => {
                        c.recover_power_failures().await;
                    }
                    Periodic::Provision => {
                        c.check_provision_timeouts().await;
                    }
                }
            } => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API keeps an `Arc<Conductor>` in its state and awaits these
    /// futures in handlers: all of it must be Send (+ Sync).
    #[allow(dead_code)]
    fn futures_are_send(c: Arc<Conductor>) {
        fn send<T: Send>(_: T) {}
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Conductor>();
        send(c.change_node_power_state("x", PowerTarget::On, None));
        send(c.get_boot_device("x"));
        send(c.set_boot_device("x", BootDevice::Pxe, false));
        send(c.supported_boot_devices("x"));
        send(c.supported_power_actions("x"));
        send(c.inject_nmi("x"));
        send(c.validate("x"));
        send(c.delete_node("x"));
        send(c.sync_power_states());
        send(c.recover_power_failures());
        send(c.shutdown());
        send(c.set_boot_prepared("x", true));
        send(c.prepare_boot("x"));
    }

    #[test]
    fn statuses_follow_ironic() {
        use ConductorError as E;
        assert_eq!(E::NodeNotFound("x".into()).status(), 404);
        assert_eq!(
            E::NodeLocked {
                node: "x".into(),
                host: "h".into()
            }
            .status(),
            409
        );
        assert_eq!(E::NoFreeWorker.status(), 503);
        assert_eq!(E::InvalidParameter("x".into()).status(), 400);
        assert_eq!(E::Unsupported("x".into()).status(), 400);
        assert_eq!(E::Conflict("x".into()).status(), 409);
        assert_eq!(
            E::Store(StoreError::NotFound {
                kind: "Node",
                ident: "x".into()
            })
            .status(),
            404
        );
        assert_eq!(E::Store(StoreError::Duplicate("x".into())).status(), 409);
        assert_eq!(E::Store(StoreError::Invalid("x".into())).status(), 400);
        assert_eq!(E::Store(StoreError::Db("x".into())).status(), 500);
        assert_eq!(E::Bmc(BmcError::Unsupported("x".into())).status(), 400);
        assert_eq!(E::Bmc(BmcError::Config("x".into())).status(), 400);
        assert_eq!(
            E::Bmc(BmcError::Timeout(Duration::from_secs(1))).status(),
            500
        );
        assert_eq!(
            E::store(StoreError::Duplicate("d".into())),
            E::Conflict("d".into())
        );
    }

    #[test]
    fn targets_parse_and_end_states() {
        for t in [
            PowerTarget::On,
            PowerTarget::Off,
            PowerTarget::Reboot,
            PowerTarget::SoftOff,
            PowerTarget::SoftReboot,
        ] {
            assert_eq!(PowerTarget::parse(t.ironic()), Some(t));
        }
        assert_eq!(PowerTarget::Reboot.end_state(), PowerState::On);
        assert_eq!(PowerTarget::SoftReboot.end_state(), PowerState::On);
        assert_eq!(PowerTarget::SoftOff.end_state(), PowerState::Off);
        assert_eq!(PowerTarget::parse("reboot"), None);
    }

    #[test]
    fn timing_uses_defaults_for_nonsense() {
        let cfg = ConductorConfig {
            bmc_timeout: -1.0,
            sync_power_state_interval: 0.0,
            power_failure_recovery_interval: 2.5,
            ..ConductorConfig::default()
        };
        let t = Timing::new(&cfg);
        assert_eq!(t.client.bmc_timeout, Duration::from_secs(5));
        assert_eq!(t.sync_interval, None);
        assert_eq!(t.recovery_interval, Some(Duration::from_millis(2500)));
        assert_eq!(t.soft, Duration::from_secs(600));
    }
}
