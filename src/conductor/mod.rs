//! The conductor, after ironic.conductor.manager: exclusive per-node locks,
//! a bounded worker pool, power changes that answer at once and land in a
//! worker, the power sync loop and power-failure recovery.
//!
//! INTERFACE STUB: implemented by the conductor work; the API codes against
//! these signatures.

use std::sync::Arc;
use std::time::Duration;

use crate::bmc::{BmcError, BootDevice, BootSetting, PowerAction, PowerState};
use crate::config::ConductorConfig;
use crate::profiles::Profiles;
use crate::store::{NewNode, Node, Store, StoreError};

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
        todo!()
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

pub struct Conductor {
    _todo: (),
}

impl Conductor {
    pub fn new(store: Store, cfg: ConductorConfig, profiles: Profiles, host: String) -> Arc<Conductor> {
        let _ = (store, cfg, profiles, host);
        todo!()
    }

    pub fn store(&self) -> &Store {
        todo!()
    }

    /// This conductor's host name (shown as a node's `reservation` while locked).
    pub fn host(&self) -> &str {
        todo!()
    }

    /// The host holding `uuid`'s lock, if any (Ironic's `reservation`). Never waits.
    pub fn reservation(&self, uuid: &str) -> Option<String> {
        let _ = uuid;
        todo!()
    }

    /// Start the power sync and power-failure recovery loops.
    pub fn start(self: &Arc<Self>) {
        todo!()
    }

    /// Stop background loops and close BMC sessions.
    pub async fn shutdown(&self) {
        todo!()
    }

    /// Validate driver and driver_info and enroll the node (`enroll` state).
    pub fn create_node(&self, new: NewNode) -> Result<Node, ConductorError> {
        let _ = new;
        todo!()
    }

    /// Change a node under its lock (PATCH); the result is validated again
    /// and the node's cached BMC client is dropped if driver_info changed.
    pub fn update_node(
        &self,
        ident: &str,
        f: impl FnOnce(&mut Node) -> Result<(), ConductorError>,
    ) -> Result<Node, ConductorError> {
        let _ = (ident, f);
        todo!()
    }

    pub async fn delete_node(&self, ident: &str) -> Result<(), ConductorError> {
        let _ = ident;
        todo!()
    }

    /// Operator maintenance on / off (off also clears fault and reason).
    pub fn set_maintenance(&self, ident: &str, on: bool, reason: Option<String>) -> Result<Node, ConductorError> {
        let _ = (ident, on, reason);
        todo!()
    }

    /// Validate, take the lock and a worker, set target_power_state and return
    /// the node at once; the worker acts, waits and records the outcome.
    pub async fn change_node_power_state(
        self: &Arc<Self>,
        ident: &str,
        target: PowerTarget,
        timeout: Option<Duration>,
    ) -> Result<Node, ConductorError> {
        let _ = (ident, target, timeout);
        todo!()
    }

    pub async fn get_boot_device(&self, ident: &str) -> Result<BootSetting, ConductorError> {
        let _ = ident;
        todo!()
    }

    pub async fn set_boot_device(&self, ident: &str, device: BootDevice, persistent: bool) -> Result<(), ConductorError> {
        let _ = (ident, device, persistent);
        todo!()
    }

    pub async fn supported_boot_devices(&self, ident: &str) -> Result<Vec<BootDevice>, ConductorError> {
        let _ = ident;
        todo!()
    }

    pub async fn inject_nmi(&self, ident: &str) -> Result<(), ConductorError> {
        let _ = ident;
        todo!()
    }

    pub async fn validate(&self, ident: &str) -> Result<Vec<InterfaceCheck>, ConductorError> {
        let _ = ident;
        todo!()
    }

    /// One power sync sweep over all unlocked, non-maintenance nodes.
    pub async fn sync_power_states(&self) -> SyncReport {
        todo!()
    }

    /// One recovery pass over nodes in maintenance with fault "power failure".
    /// Returns how many recovered.
    pub async fn recover_power_failures(&self) -> usize {
        todo!()
    }

    /// BMC sessions (clients) currently held open.
    pub fn open_sessions(&self) -> usize {
        todo!()
    }
}
