//! Consoles, after Ironic's `set_console_mode` / `get_console_information`:
//! enabling answers 202 and a worker starts the console under the node
//! lock; the `console_enabled` flag is stored, so enabled consoles come back
//! when the agent restarts. A node with `driver_info.serial_device` gets its
//! serial line; an IPMI node otherwise gets serial-over-LAN on its cached
//! client (the same RMCP+ session its power commands use); anything else is
//! "console not supported by this driver".

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::lock::NodeLock;
use super::{guard, Conductor, ConductorError};
use crate::console::manager::{ConsoleManager, LineSpec};
use crate::ipmi::SolOptions;
use crate::store::Node;

/// `driver_internal_info` key: the console's last port, tried first next time.
pub const CONSOLE_PORT_KEY: &str = "console_port";

/// What `GET .../states/console` shows.
#[derive(Clone, Debug)]
pub struct ConsoleState {
    pub enabled: bool,
    pub info: Option<Value>,
}

pub(super) enum Line {
    Serial { device: PathBuf, baud: u32 },
    Sol,
}

pub(super) fn line_of(node: &Node) -> Result<Line, ConductorError> {
    if let Some(dev) = node.driver_info.get("serial_device") {
        let device = dev.as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
            ConductorError::InvalidParameter(format!(
                "driver_info.serial_device of node {} must be a device path",
                node.uuid
            ))
        })?;
        let baud = match node.driver_info.get("serial_baud") {
            None => 115_200,
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|b| (50..=4_000_000).contains(b))
                .ok_or_else(|| {
                    ConductorError::InvalidParameter(format!(
                        "driver_info.serial_baud of node {} must be a baud rate such as 115200",
                        node.uuid
                    ))
                })? as u32,
        };
        return Ok(Line::Serial {
            device: PathBuf::from(device),
            baud,
        });
    }
    if node.driver == "ipmi" {
        return Ok(Line::Sol);
    }
    Err(ConductorError::Unsupported(format!(
        "Node {} : console not supported by this driver ({}); set driver_info.serial_device \
         to use a local serial line",
        node.uuid, node.driver
    )))
}

impl Conductor {
    /// Install the console manager (the agent does it at start-up).
    pub fn set_console_manager(&self, mgr: Arc<ConsoleManager>) {
        *guard(&self.consoles) = Some(mgr);
    }

    fn console_manager(&self) -> Result<Arc<ConsoleManager>, ConductorError> {
        guard(&self.consoles).clone().ok_or_else(|| {
            ConductorError::Unsupported("Consoles are not configured on this agent".into())
        })
    }

    /// `PUT .../states/console`: check, take the lock and a worker, return;
    /// the worker starts or stops the console and stores the flag.
    pub async fn set_console_mode(
        self: &Arc<Self>,
        ident: &str,
        enabled: bool,
    ) -> Result<Node, ConductorError> {
        let node = self.node(ident)?;
        self.console_manager()?;
        if enabled {
            line_of(&node)?;
        }
        let (lock, permit, node) = self.accept(&node, ident, |_| {})?;
        tracing::info!(node = %node.uuid, enabled, "console change accepted");
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let uuid = lock.uuid().to_string();
            if let Err(e) = this.set_console_locked(&lock, enabled).await {
                let msg = format!(
                    "Failed to {} the console of node {uuid}. Error: {e}",
                    if enabled { "enable" } else { "disable" }
                );
                this.record_failure(&uuid, msg);
            }
            drop(lock);
        });
        Ok(node)
    }

    /// Start or stop the console under a lock the caller holds.
    pub(crate) async fn set_console_locked(
        &self,
        lock: &NodeLock,
        enabled: bool,
    ) -> Result<(), ConductorError> {
        let mgr = self.console_manager()?;
        let node = self.node(lock.uuid())?;
        if !enabled {
            mgr.stop(&node.uuid).await;
            self.store
                .update_node(&node.uuid, |n| {
                    n.console_enabled = false;
                    Ok(())
                })
                .map_err(|e| self.node_err(&node.uuid, e))?;
            return Ok(());
        }
        self.start_console(&mgr, &node).await?;
        self.store
            .update_node(&node.uuid, |n| {
                n.console_enabled = true;
                Ok(())
            })
            .map_err(|e| self.node_err(&node.uuid, e))?;
        Ok(())
    }

    async fn start_console(&self, mgr: &ConsoleManager, node: &Node) -> Result<(), ConductorError> {
        let spec = match line_of(node)? {
            Line::Serial { device, baud } => LineSpec::Serial { device, baud },
            Line::Sol => {
                let bmc = self.client(node).await.map_err(ConductorError::Bmc)?;
                let client = bmc.ipmi_client().ok_or_else(|| {
                    ConductorError::Unsupported(format!(
                        "Node {} : console not supported by this driver ({})",
                        node.uuid, node.driver
                    ))
                })?;
                let opts = SolOptions {
                    force: mgr.config().console_force,
                    ..SolOptions::default()
                };
                LineSpec::Sol { client, opts }
            }
        };
        let preferred = node
            .driver_internal_info
            .get(CONSOLE_PORT_KEY)
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok());
        let info = mgr
            .start(&node.uuid, spec, preferred)
            .await
            .map_err(|e| ConductorError::InvalidParameter(e.to_string()))?;
        if preferred != Some(info.port) {
            self.store
                .update_node(&node.uuid, |n| {
                    n.driver_internal_info
                        .insert(CONSOLE_PORT_KEY.into(), Value::from(info.port));
                    Ok(())
                })
                .map_err(|e| self.node_err(&node.uuid, e))?;
        }
        Ok(())
    }

    /// After `driver` or `driver_info` changed: an enabled console is
    /// started again on the new line (another BMC, new credentials, another
    /// serial device), keeping its port, by a worker that holds `lock` (the
    /// update's). Viewers of the old line are disconnected. A failure lands
    /// in `last_error`; the console stays enabled, so the next enable or
    /// agent start tries again.
    pub(super) fn restart_console_later(self: &Arc<Self>, lock: NodeLock, node: &Node) {
        let Ok(mgr) = self.console_manager() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(node = %node.uuid, "no runtime to restart the console on");
            return;
        };
        let this = self.clone();
        rt.spawn(async move {
            let uuid = lock.uuid().to_string();
            let result = match this.node(&uuid) {
                Ok(n) if n.console_enabled => this.start_console(&mgr, &n).await,
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    tracing::info!(node = %uuid, "console restarted on the changed driver_info")
                }
                Err(e) => this.record_failure(
                    &uuid,
                    format!(
                        "Failed to restart the console of node {uuid} after its driver_info \
                         changed. Error: {e}"
                    ),
                ),
            }
            drop(lock);
        });
    }

    /// `GET .../states/console`.
    pub async fn console_state(&self, ident: &str) -> Result<ConsoleState, ConductorError> {
        let node = self.node(ident)?;
        let mgr = guard(&self.consoles).clone();
        let info = match mgr {
            Some(mgr) if node.console_enabled => mgr.info(&node.uuid).await.map(|i| i.ironic()),
            _ => None,
        };
        Ok(ConsoleState {
            enabled: node.console_enabled,
            info,
        })
    }

    /// Bring back the consoles that were enabled when the agent stopped.
    /// Each starts in the background; a failure lands in `last_error`.
    pub async fn restore_consoles(self: &Arc<Self>) {
        let Ok(mgr) = self.console_manager() else {
            return;
        };
        let nodes = match self.store.list_nodes(&Default::default()) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("cannot list nodes to restore consoles: {e}");
                return;
            }
        };
        for node in nodes.into_iter().filter(|n| n.console_enabled) {
            let this = self.clone();
            let mgr = mgr.clone();
            tokio::spawn(async move {
                match this.start_console(&mgr, &node).await {
                    Ok(()) => tracing::info!(node = %node.uuid, "console restored"),
                    Err(e) => {
                        let msg = format!(
                            "Failed to restore the console of node {}. Error: {e}",
                            node.uuid
                        );
                        this.record_failure(&node.uuid, msg);
                    }
                }
            });
        }
    }

    /// Stop every console (agent shutdown).
    pub async fn stop_consoles(&self) {
        let mgr = guard(&self.consoles).clone();
        if let Some(mgr) = mgr {
            mgr.stop_all().await;
        }
    }
}
