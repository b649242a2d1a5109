//! Per-node boot configs, rendered in memory from the inventory: PXELINUX
//! (`pxelinux.cfg/01-<mac-with-dashes>`), UEFI GRUB
//! (`grub/grub.cfg-01-<mac-with-dashes>`) and iPXE (`ipxe/<mac>.ipxe`, plus
//! `boot.ipxe` which chains to it). Each points at the node's deploy kernel
//! and ramdisk with kernel arguments naming the agent's API URL and the
//! node's uuid, as Ironic's `ipa-api-url` does.

use crate::store::{Node, Port};

/// `driver_internal_info` key set by `prepare` and removed by `clean_up`:
/// only prepared nodes get their configs served.
pub const PREPARED_KEY: &str = "boot_prepared";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootMode {
    Uefi,
    Bios,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigKind {
    Pxelinux,
    Grub,
    Ipxe,
}

/// What configs point at and how they are built.
#[derive(Clone, Debug)]
pub struct RenderContext {
    /// The agent's API URL, given to the ramdisk as `ipa-api-url`.
    pub api_url: String,
    /// The HTTP boot server's base URL; iPXE scripts fetch over it.
    pub http_url: Option<String>,
    pub default_boot_mode: BootMode,
    /// Arguments for every deploy ramdisk, before the node's own.
    pub kernel_append_params: String,
}

/// A request name that asks for a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigRequest {
    pub kind: ConfigKind,
    /// Normalised `aa:bb:cc:dd:ee:ff`; `None` for the default config or `boot.ipxe`.
    pub mac: Option<String>,
}

/// One rendered config.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rendered {
    /// The request name it is served under.
    pub path: String,
    pub mac: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Invalid(String),
}

/// Does `path` (already normalised) name a config? Per-MAC names, the
/// defaults, and `boot.ipxe`.
pub fn parse_request(path: &str) -> Option<ConfigRequest> {
    let _ = path;
    todo!()
}

/// The node's boot mode: `properties.capabilities` `boot_mode:uefi|bios`, else the default.
pub fn boot_mode(node: &Node, ctx: &RenderContext) -> BootMode {
    let _ = (node, ctx);
    todo!()
}

/// Whether the node's configs are live (set by `prepare`).
pub fn is_prepared(node: &Node) -> bool {
    let _ = node;
    todo!()
}

/// Every config of the node, one set per port MAC. An error when
/// `deploy_kernel` or `deploy_ramdisk` is missing or unusable.
pub fn render_node(
    node: &Node,
    ports: &[Port],
    ctx: &RenderContext,
) -> Result<Vec<Rendered>, RenderError> {
    let _ = (node, ports, ctx);
    todo!()
}
