//! Boot preparation, after Ironic's PXE boot interface (`prepare_ramdisk` /
//! `clean_up_ramdisk`): `prepare` makes a node's rendered configs live (the
//! `boot_prepared` flag in `driver_internal_info`, persisted, so it survives
//! a restart) and sets its next boot to PXE, once; `clean_up` takes the
//! configs away. Nothing is written per node on disk: the boot servers
//! render a prepared node's configs from the store on each request.
//!
//! The `*_locked` functions run under a node lock the caller already holds
//! (an API-triggered worker here, a deploy worker later); the public ones
//! take the lock themselves.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::lock::NodeLock;
use super::{guard, Conductor, ConductorError};
use crate::bmc::{BootDevice, BootMode as BmcBootMode, BootSetting};
use crate::boot::path;
use crate::boot::render::{self, BootMode, RenderContext, Rendered, PREPARED_KEY};
use crate::store::Node;

/// What boot configs are rendered with, set once the agent knows its URLs.
#[derive(Clone, Debug)]
pub struct BootContext {
    pub render: RenderContext,
    /// The boot roots (TFTP, HTTP boot) a deploy kernel or ramdisk given
    /// as a path must be found under.
    pub roots: Vec<PathBuf>,
}

/// A node's configs as they would be served, for the API's debugging view.
#[derive(Clone, Debug)]
pub struct BootView {
    pub node: Node,
    pub prepared: bool,
    pub boot_mode: BootMode,
    pub configs: Vec<Rendered>,
}

fn invalid(node: &Node, e: impl std::fmt::Display) -> ConductorError {
    ConductorError::InvalidParameter(format!(
        "Cannot render the boot configs of node {}: {e}",
        node.uuid
    ))
}

impl Conductor {
    /// Install the boot context (the agent does it after binding its
    /// listeners, so the API and HTTP boot URLs are known).
    pub fn set_boot_context(&self, ctx: BootContext) {
        *guard(&self.boot) = Some(Arc::new(ctx));
    }

    pub fn boot_context(&self) -> Option<Arc<BootContext>> {
        guard(&self.boot).clone()
    }

    fn need_boot_context(&self) -> Result<Arc<BootContext>, ConductorError> {
        self.boot_context().ok_or_else(|| {
            ConductorError::InvalidParameter(
                "Boot configs cannot be rendered: the agent has no boot context \
                 (its API URL is not known yet)"
                    .into(),
            )
        })
    }

    /// Render the node's configs (no file checks): what `GET boot_config` shows.
    pub fn boot_view(&self, ident: &str) -> Result<BootView, ConductorError> {
        let ctx = self.need_boot_context()?;
        let node = self.node(ident)?;
        let (boot_mode, configs) = self.render_boot(&ctx, &node)?;
        Ok(BootView {
            prepared: render::is_prepared(&node),
            boot_mode,
            configs,
            node,
        })
    }

    fn render_boot(
        &self,
        ctx: &BootContext,
        node: &Node,
    ) -> Result<(BootMode, Vec<Rendered>), ConductorError> {
        let mode = render::boot_mode(node, &ctx.render).map_err(|e| invalid(node, e))?;
        let ports = self
            .store
            .list_ports(Some(&node.uuid), 0, None)
            .map_err(|e| self.node_err(&node.uuid, e))?;
        let configs =
            render::render_node(node, &ports, &ctx.render).map_err(|e| invalid(node, e))?;
        Ok((mode, configs))
    }

    /// Everything `prepare` checks before changing anything: the configs
    /// render, and a deploy kernel or ramdisk given as a path is a regular
    /// file under every boot root.
    pub fn check_boot(&self, node: &Node) -> Result<(BootMode, Vec<Rendered>), ConductorError> {
        let ctx = self.need_boot_context()?;
        let out = self.render_boot(&ctx, node)?;
        let (kernel, ramdisk) = render::deploy_images(node).map_err(|e| invalid(node, e))?;
        for (key, loc) in [("deploy_kernel", &kernel), ("deploy_ramdisk", &ramdisk)] {
            let Some(rel) = loc.root_path() else { continue };
            for root in &ctx.roots {
                if let Err(e) = path::open_request(root, rel) {
                    return Err(ConductorError::InvalidParameter(format!(
                        "driver_info.{key} of node {} is {rel:?}, which is not a file the boot \
                         servers can serve from {}: {e}",
                        node.uuid,
                        root.display()
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Accept a prepare (`prepared`) or clean-up request: check what can be
    /// checked at once, take the lock and a worker, and return; the worker
    /// does the rest and records a failure in `last_error`.
    pub async fn set_boot_prepared(
        self: &Arc<Self>,
        ident: &str,
        prepared: bool,
    ) -> Result<Node, ConductorError> {
        let node = self.node(ident)?;
        if prepared {
            self.check_boot(&node)?;
        }
        let (lock, permit, node) = self.accept(&node, ident, |_| {})?;
        tracing::info!(
            node = %node.uuid,
            action = if prepared { "prepare" } else { "clean_up" },
            "boot change accepted"
        );
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            this.boot_worker(lock, prepared).await;
        });
        Ok(node)
    }

    async fn boot_worker(&self, lock: NodeLock, prepared: bool) {
        let uuid = lock.uuid().to_string();
        let result = match self.node(&uuid) {
            Err(e) => Err(e),
            Ok(node) if prepared => self.prepare_boot_locked(&lock, &node).await,
            Ok(node) => self.clean_up_boot_locked(&lock, &node),
        };
        if let Err(e) = result {
            let msg = format!(
                "Failed to {} the boot of node {uuid}. Error: {e}",
                if prepared { "prepare" } else { "clean up" }
            );
            self.record_failure(&uuid, msg);
        }
        drop(lock);
    }

    /// Prepare under the node's lock, taken here (409 when held).
    pub async fn prepare_boot(&self, ident: &str) -> Result<Node, ConductorError> {
        let (lock, node) = self.lock_node(ident)?;
        self.prepare_boot_locked(&lock, &node).await
    }

    /// Clean up under the node's lock, taken here (409 when held).
    pub fn clean_up_boot(&self, ident: &str) -> Result<Node, ConductorError> {
        let (lock, node) = self.lock_node(ident)?;
        self.clean_up_boot_locked(&lock, &node)
    }

    /// Check, make the configs live, then set the next boot to PXE (once,
    /// in the node's boot mode). When the BMC refuses, the flag is taken
    /// back and the BMC's error returned.
    pub(crate) async fn prepare_boot_locked(
        &self,
        lock: &NodeLock,
        node: &Node,
    ) -> Result<Node, ConductorError> {
        debug_assert_eq!(lock.uuid(), node.uuid);
        let (mode, configs) = self.check_boot(node)?;
        let prepared = self.set_prepared_flag(&node.uuid, true)?;
        let setting = BootSetting {
            device: Some(BootDevice::Pxe),
            persistent: false,
            mode: Some(match mode {
                BootMode::Uefi => BmcBootMode::Uefi,
                BootMode::Bios => BmcBootMode::Bios,
            }),
        };
        if let Err(e) = self
            .bmc_call(node, |b| async move { b.set_boot_device(setting).await })
            .await
        {
            tracing::warn!(node = %node.uuid, error = %e, "cannot set the boot device to PXE");
            if let Err(e2) = self.set_prepared_flag(&node.uuid, false) {
                tracing::error!(node = %node.uuid, error = %e2, "cannot take the boot configs back");
            }
            return Err(ConductorError::Bmc(e));
        }
        let paths: Vec<&str> = configs.iter().map(|c| c.path.as_str()).collect();
        tracing::info!(
            node = %node.uuid,
            boot_mode = mode.name(),
            configs = ?paths,
            "boot prepared: configs live, next boot PXE"
        );
        Ok(prepared)
    }

    /// Take the node's configs away (its MACs are unknown again).
    pub(crate) fn clean_up_boot_locked(
        &self,
        lock: &NodeLock,
        node: &Node,
    ) -> Result<Node, ConductorError> {
        debug_assert_eq!(lock.uuid(), node.uuid);
        let n = self.set_prepared_flag(&node.uuid, false)?;
        tracing::info!(node = %node.uuid, "boot cleaned up: configs no longer served");
        Ok(n)
    }

    fn set_prepared_flag(&self, uuid: &str, on: bool) -> Result<Node, ConductorError> {
        self.store
            .update_node(uuid, |n| {
                if on {
                    n.driver_internal_info
                        .insert(PREPARED_KEY.to_string(), Value::Bool(true));
                } else {
                    n.driver_internal_info.remove(PREPARED_KEY);
                }
                Ok(())
            })
            .map_err(|e| self.node_err(uuid, e))
    }
}
