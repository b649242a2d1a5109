//! Per-node boot configs, rendered in memory from the inventory: PXELINUX
//! (`pxelinux.cfg/01-<mac-with-dashes>`), UEFI GRUB
//! (`grub/grub.cfg-01-<mac-with-dashes>`) and iPXE (`ipxe/<mac>.ipxe`, plus
//! `boot.ipxe` which chains to it). Each points at the node's deploy kernel
//! and ramdisk with kernel arguments naming the agent's API URL and the
//! node's uuid, as Ironic's `ipa-api-url` does.
//!
//! As Ironic does, a node gets the config of its boot mode (bios: PXELINUX,
//! uefi: GRUB) and an iPXE script, one set per PXE-enabled port.
//!
//! Values from the inventory end up inside config syntax, so they are
//! checked rather than escaped: a newline, a quote or a shell-like
//! metacharacter (`$ ; & | < > { } # \` and backquote) in a path, URL or
//! kernel argument makes the node unrenderable with an error that says which
//! field and character; nothing half-valid is ever served.

use serde_json::Value;

use crate::store::{normalize_mac, Node, Port};

/// `driver_internal_info` key set by `prepare` and removed by `clean_up`:
/// only prepared nodes get their configs served.
pub const PREPARED_KEY: &str = "boot_prepared";

/// The generic iPXE script (chains to the per-MAC one).
pub const BOOT_IPXE: &str = "boot.ipxe";

/// The iPXE image name the kernel's `initrd=` argument refers to (EFI stub).
const IPXE_INITRD_NAME: &str = "deploy_ramdisk";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    Uefi,
    Bios,
}

impl BootMode {
    pub fn parse(s: &str) -> Option<BootMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uefi" => Some(BootMode::Uefi),
            "bios" => Some(BootMode::Bios),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BootMode::Uefi => "uefi",
            BootMode::Bios => "bios",
        }
    }

    /// The loader config this mode gets besides the iPXE script.
    pub fn config_kind(self) -> ConfigKind {
        match self {
            BootMode::Uefi => ConfigKind::Grub,
            BootMode::Bios => ConfigKind::Pxelinux,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigKind {
    Pxelinux,
    Grub,
    Ipxe,
}

impl ConfigKind {
    pub fn name(self) -> &'static str {
        match self {
            ConfigKind::Pxelinux => "pxelinux",
            ConfigKind::Grub => "grub",
            ConfigKind::Ipxe => "ipxe",
        }
    }

    /// The request name of the config for `mac` (colon form, lower case).
    pub fn path(self, mac: &str) -> String {
        let dashes = mac.replace(':', "-");
        match self {
            ConfigKind::Pxelinux => format!("pxelinux.cfg/01-{dashes}"),
            ConfigKind::Grub => format!("grub/grub.cfg-01-{dashes}"),
            ConfigKind::Ipxe => format!("ipxe/{mac}.ipxe"),
        }
    }

    /// The request name of the loader's default config.
    pub fn default_path(self) -> &'static str {
        match self {
            ConfigKind::Pxelinux => "pxelinux.cfg/default",
            ConfigKind::Grub => "grub/grub.cfg",
            ConfigKind::Ipxe => "ipxe/default.ipxe",
        }
    }

    /// The built-in default config: boot from the local disk.
    pub fn builtin_default(self) -> &'static str {
        match self {
            ConfigKind::Pxelinux => "default local\n\nlabel local\nlocalboot 0\n",
            ConfigKind::Grub => {
                "set default=local\nset timeout=0\n\nmenuentry \"local\" {\n    exit\n}\n"
            }
            ConfigKind::Ipxe => "#!ipxe\n\nsanboot --no-describe --drive 0x80 || exit\n",
        }
    }
}

/// What configs point at and how they are built.
#[derive(Clone, Debug)]
pub struct RenderContext {
    /// The agent's API URL, given to the ramdisk as `ipa-api-url`.
    pub api_url: String,
    /// The HTTP boot server's base URL; iPXE scripts fetch over it. Without
    /// it, iPXE scripts name root paths (`/deploy/vmlinuz`), which iPXE
    /// resolves against the script's own URL (TFTP or HTTP).
    pub http_url: Option<String>,
    pub default_boot_mode: BootMode,
    /// Arguments for every deploy ramdisk, before the node's own.
    pub kernel_append_params: String,
}

/// A request name that asks for a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigRequest {
    /// A per-MAC config; `mac` is normalised `aa:bb:cc:dd:ee:ff`.
    Node { kind: ConfigKind, mac: String },
    /// The loader's default config (`pxelinux.cfg/default`, `grub/grub.cfg`,
    /// `ipxe/default.ipxe`).
    Default(ConfigKind),
    /// `boot.ipxe`, which chains to `ipxe/${mac}.ipxe`.
    BootIpxe,
}

/// One rendered config.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rendered {
    pub kind: ConfigKind,
    /// The request name it is served under.
    pub path: String,
    pub mac: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> RenderError {
    RenderError::Invalid(msg.into())
}

/// `01-aa-bb-cc-dd-ee-ff` (any case) as `aa:bb:cc:dd:ee:ff`.
fn mac_01(s: &str) -> Option<String> {
    let rest = s.strip_prefix("01-")?;
    (rest.len() == 17 && rest.contains('-'))
        .then(|| normalize_mac(rest).ok())
        .flatten()
}

/// `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` (any case), normalised.
fn mac_plain(s: &str) -> Option<String> {
    (s.len() == 17).then(|| normalize_mac(s).ok()).flatten()
}

/// Does `path` (already normalised) name a config? Per-MAC names, the
/// defaults, and `boot.ipxe`.
pub fn parse_request(path: &str) -> Option<ConfigRequest> {
    let p = path.trim_start_matches('/');
    if p == BOOT_IPXE {
        return Some(ConfigRequest::BootIpxe);
    }
    if let Some(rest) = p.strip_prefix("pxelinux.cfg/") {
        if rest == "default" {
            return Some(ConfigRequest::Default(ConfigKind::Pxelinux));
        }
        return mac_01(rest).map(|mac| ConfigRequest::Node {
            kind: ConfigKind::Pxelinux,
            mac,
        });
    }
    if let Some(rest) = p.strip_prefix("grub/") {
        if rest == "grub.cfg" {
            return Some(ConfigRequest::Default(ConfigKind::Grub));
        }
        return rest
            .strip_prefix("grub.cfg-")
            .and_then(mac_01)
            .map(|mac| ConfigRequest::Node {
                kind: ConfigKind::Grub,
                mac,
            });
    }
    if let Some(rest) = p.strip_prefix("ipxe/") {
        let stem = rest.strip_suffix(".ipxe")?;
        if stem == "default" {
            return Some(ConfigRequest::Default(ConfigKind::Ipxe));
        }
        return mac_plain(stem).map(|mac| ConfigRequest::Node {
            kind: ConfigKind::Ipxe,
            mac,
        });
    }
    None
}

/// `properties.capabilities` as key/value pairs: Ironic's `"k:v,k2:v2"`
/// string or a JSON object.
fn capability(node: &Node, key: &str) -> Result<Option<String>, RenderError> {
    match node.properties.get("capabilities") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            for item in s.split(',') {
                let item = item.trim();
                if item.is_empty() {
                    continue;
                }
                let Some((k, v)) = item.split_once(':') else {
                    return Err(invalid(format!(
                        "properties.capabilities {s:?} is not of the form \"key:value,key2:value2\""
                    )));
                };
                if k.trim() == key {
                    return Ok(Some(v.trim().to_string()));
                }
            }
            Ok(None)
        }
        Some(Value::Object(m)) => match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(other) => Err(invalid(format!(
                "properties.capabilities.{key} must be a string, not {other}"
            ))),
        },
        Some(other) => Err(invalid(format!(
            "properties.capabilities must be a \"key:value,...\" string or an object, not {other}"
        ))),
    }
}

/// The node's boot mode: `properties.capabilities` `boot_mode:uefi|bios`,
/// else the default. Any other value is an error.
pub fn boot_mode(node: &Node, ctx: &RenderContext) -> Result<BootMode, RenderError> {
    match capability(node, "boot_mode")? {
        None => Ok(ctx.default_boot_mode),
        Some(v) => BootMode::parse(&v).ok_or_else(|| {
            invalid(format!(
                "properties.capabilities boot_mode {v:?} is not \"uefi\" or \"bios\""
            ))
        }),
    }
}

/// Whether the node's configs are live (set by `prepare`).
pub fn is_prepared(node: &Node) -> bool {
    node.driver_internal_info.get(PREPARED_KEY) == Some(&Value::Bool(true))
}

/// Characters that mean something to a PXELINUX, GRUB or iPXE parser (or a
/// shell-like one), refused in every value put into a config.
const META: &[char] = &[
    '"', '\'', '`', '\\', '$', ';', '&', '|', '<', '>', '{', '}', '#',
];

/// A value's first character that cannot go into a config, described.
fn bad_char(s: &str, allow_space: bool, extra: &[char]) -> Option<String> {
    s.chars().find_map(|c| {
        if c.is_control() {
            Some(format!("a control character ({:?})", c))
        } else if !c.is_ascii() {
            Some(format!("a non-ASCII character ({c:?})"))
        } else if c == ' ' && !allow_space {
            Some("a space".to_string())
        } else if META.contains(&c) || extra.contains(&c) {
            Some(format!("{c:?}"))
        } else {
            None
        }
    })
}

/// Kernel arguments, checked, as words.
fn check_params(field: &str, s: &str) -> Result<Vec<String>, RenderError> {
    if let Some(what) = bad_char(s, true, &[]) {
        return Err(invalid(format!(
            "{field} contains {what}, which cannot be put in a boot config"
        )));
    }
    let words: Vec<String> = s.split_whitespace().map(str::to_string).collect();
    // PXELINUX takes `initrd=` off the command line as the files to load,
    // and the kernel's EFI stub loads it too: it would change the ramdisk.
    if let Some(w) = words.iter().find(|w| w.starts_with("initrd=")) {
        return Err(invalid(format!(
            "{field} contains {w:?}: the loaders read initrd= as the ramdisk to load; \
             the deploy ramdisk is driver_info.deploy_ramdisk"
        )));
    }
    Ok(words)
}

/// Check `[boot] kernel_append_params` (at start-up).
pub fn check_global_params(s: &str) -> Result<(), RenderError> {
    check_params("[boot] kernel_append_params", s).map(|_| ())
}

/// Where a loader fetches the kernel or ramdisk from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A path under the boot root, relative, `/`-separated.
    Root(String),
    /// An http(s) URL, as given.
    Url {
        url: String,
        https: bool,
        /// `host[:port]`.
        authority: String,
        /// From the first `/` after the authority (at least `/`; a query
        /// straight after the authority gets a `/` before it).
        path: String,
    },
}

impl Location {
    /// Parse a `deploy_kernel` / `deploy_ramdisk` value.
    pub fn parse(field: &str, s: &str) -> Result<Location, RenderError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(invalid(format!("{field} is empty")));
        }
        // ',' separates initrds in PXELINUX's `append initrd=a,b`.
        if let Some(what) = bad_char(s, false, &[',']) {
            return Err(invalid(format!(
                "{field} {s:?} contains {what}, which cannot be put in a boot config"
            )));
        }
        let lower = s.to_ascii_lowercase();
        let (https, rest) = if lower.starts_with("http://") {
            (false, &s["http://".len()..])
        } else if lower.starts_with("https://") {
            (true, &s["https://".len()..])
        } else if lower.contains("://") {
            return Err(invalid(format!(
                "{field} {s:?}: only http:// and https:// URLs or paths under the boot root are supported"
            )));
        } else {
            let mut parts = Vec::new();
            for part in s.split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        return Err(invalid(format!(
                            "{field} {s:?} climbs out of the boot root with '..'"
                        )))
                    }
                    p => parts.push(p),
                }
            }
            if parts.is_empty() {
                return Err(invalid(format!("{field} {s:?} names no file")));
            }
            // PXELINUX reads `host::path` as a file on another TFTP server.
            if s.contains("::") {
                return Err(invalid(format!(
                    "{field} {s:?} contains '::', which PXELINUX reads as host::path \
                     (a file on another TFTP server)"
                )));
            }
            return Ok(Location::Root(parts.join("/")));
        };
        // The authority ends at the path or the query (`#` is refused
        // above); GRUB's `(http,authority)path` needs the path to start
        // with `/`.
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() {
            return Err(invalid(format!("{field} {s:?} has no host")));
        }
        // A URL no loader (or ramdisk) could use, such as a port that is not
        // a number, is refused here rather than rendered into a config.
        match reqwest::Url::parse(s) {
            Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(_) => return Err(invalid(format!("{field} {s:?} has no host"))),
            Err(e) => return Err(invalid(format!("{field} {s:?} is not a valid URL: {e}"))),
        }
        Ok(Location::Url {
            url: s.to_string(),
            https,
            authority: authority.to_string(),
            path,
        })
    }

    /// As PXELINUX (lpxelinux) names it: a root path, or an http URL.
    fn pxelinux(&self, field: &str) -> Result<String, RenderError> {
        match self {
            Location::Root(p) => Ok(format!("/{p}")),
            Location::Url {
                https: false, url, ..
            } => Ok(url.clone()),
            Location::Url { url, .. } => Err(invalid(format!(
                "{field} {url:?}: PXELINUX cannot fetch https URLs (boot_mode bios); \
                 use an http URL or a path under the boot root"
            ))),
        }
    }

    /// As GRUB names it: a root path (on the TFTP device it was loaded
    /// from), or `(http,host[:port])/path`.
    fn grub(&self, field: &str) -> Result<String, RenderError> {
        match self {
            Location::Root(p) => Ok(format!("/{p}")),
            Location::Url {
                https: false,
                authority,
                path,
                url,
            } => {
                if authority.contains(['@', '[', ']', ',', '(', ')']) {
                    return Err(invalid(format!(
                        "{field} {url:?}: GRUB cannot name this host \
                         (no user info or bracketed IPv6 addresses)"
                    )));
                }
                Ok(format!("(http,{authority}){path}"))
            }
            Location::Url { url, .. } => Err(invalid(format!(
                "{field} {url:?}: GRUB cannot fetch https URLs (boot_mode uefi); \
                 use an http URL or a path under the boot root"
            ))),
        }
    }

    /// As iPXE names it: `<http_url>/<path>` (or `/<path>`, resolved against
    /// the script's URL, without an HTTP boot server), or the URL.
    fn ipxe(&self, ctx: &RenderContext) -> String {
        match self {
            Location::Root(p) => match &ctx.http_url {
                Some(base) => format!("{}/{p}", base.trim_end_matches('/')),
                None => format!("/{p}"),
            },
            Location::Url { url, .. } => url.clone(),
        }
    }

    /// The path under the boot root, if it is one.
    pub fn root_path(&self) -> Option<&str> {
        match self {
            Location::Root(p) => Some(p),
            Location::Url { .. } => None,
        }
    }
}

/// A node's `driver_info` string field.
fn info_str<'a>(node: &'a Node, key: &str) -> Result<Option<&'a str>, RenderError> {
    match node.driver_info.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(format!(
            "driver_info.{key} must be a string, not {other}"
        ))),
    }
}

/// The node's deploy kernel and ramdisk.
pub fn deploy_images(node: &Node) -> Result<(Location, Location), RenderError> {
    let get = |key: &str| -> Result<Location, RenderError> {
        let field = format!("driver_info.{key}");
        match info_str(node, key)? {
            Some(v) => Location::parse(&field, v),
            None => Err(invalid(format!(
                "{field} is not set: it must name the deploy {} \
                 (a path under the boot root or an http(s) URL)",
                if key == "deploy_kernel" {
                    "kernel"
                } else {
                    "ramdisk"
                }
            ))),
        }
    };
    Ok((get("deploy_kernel")?, get("deploy_ramdisk")?))
}

/// The kernel command line: `[boot] kernel_append_params`, the node's
/// `driver_info.kernel_append_params` (where `%default%`, as in Ironic,
/// stands for the former instead of prepending it), `ipa-api-url`,
/// `ipa-node-uuid` and `BOOTIF`.
fn kernel_args(node: &Node, ctx: &RenderContext, mac: &str) -> Result<String, RenderError> {
    let global = check_params("[boot] kernel_append_params", &ctx.kernel_append_params)?;
    let mut words: Vec<String> = Vec::new();
    match info_str(node, "kernel_append_params")? {
        Some(own) => {
            let own = check_params("driver_info.kernel_append_params", own)?;
            if own.iter().any(|w| w == "%default%") {
                for w in own {
                    if w == "%default%" {
                        words.extend(global.iter().cloned());
                    } else {
                        words.push(w);
                    }
                }
            } else {
                words.extend(global);
                words.extend(own);
            }
        }
        None => words.extend(global),
    }
    // As checked: without surrounding white space (a newline after the URL
    // would end the config line early).
    let api = ctx.api_url.trim().trim_end_matches('/');
    // What is checked is what is rendered: white space left inside once the
    // slashes are gone ("http://h/\n/") is refused, not trimmed again.
    if let Some(what) = bad_char(api, false, &[]) {
        return Err(invalid(format!(
            "the API URL {api:?} contains {what}, which cannot be put in a boot config"
        )));
    }
    match Location::parse("the API URL", api)? {
        Location::Url { .. } => {}
        Location::Root(_) => {
            return Err(invalid(format!(
                "the API URL {api:?} is not an http(s) URL ([api] public_url)"
            )))
        }
    }
    words.push(format!("ipa-api-url={api}"));
    words.push(format!("ipa-node-uuid={}", node.uuid));
    words.push(format!("BOOTIF=01-{}", mac.replace(':', "-")));
    Ok(words.join(" "))
}

fn pxelinux_text(kernel: &str, ramdisk: &str, args: &str) -> String {
    format!("default deploy\n\nlabel deploy\nkernel {kernel}\nappend initrd={ramdisk} {args}\n")
}

fn grub_text(kernel: &str, ramdisk: &str, args: &str) -> String {
    format!(
        "set default=deploy\nset timeout=5\n\nmenuentry \"deploy\" {{\n    \
         linux {kernel} {args}\n    initrd {ramdisk}\n}}\n"
    )
}

fn ipxe_text(kernel: &str, ramdisk: &str, args: &str) -> String {
    format!(
        "#!ipxe\n\
         \n\
         set attempts:int32 10\n\
         set i:int32 0\n\
         \n\
         :deploy\n\
         imgfree\n\
         kernel {kernel} {args} initrd={IPXE_INITRD_NAME} || goto retry\n\
         initrd --name {IPXE_INITRD_NAME} {ramdisk} || goto retry\n\
         boot\n\
         \n\
         :retry\n\
         iseq ${{i}} ${{attempts}} && goto fail ||\n\
         inc i\n\
         echo Failed to download the deploy kernel or ramdisk, retrying in 5 seconds\n\
         sleep 5\n\
         goto deploy\n\
         \n\
         :fail\n\
         echo Failed to download the deploy kernel or ramdisk ${{attempts}} times, powering off\n\
         sleep 30\n\
         poweroff\n"
    )
}

/// The generic `boot.ipxe`: chain to this machine's own script by the MAC
/// it booted from, and boot the local disk when there is none.
pub fn boot_ipxe(ctx: &RenderContext) -> String {
    let base = ctx
        .http_url
        .as_deref()
        .map(|u| u.trim_end_matches('/'))
        .unwrap_or("");
    format!(
        "#!ipxe\n\
         \n\
         chain {base}/ipxe/${{mac}}.ipxe || goto local\n\
         \n\
         :local\n\
         echo No boot script for ${{mac}}, booting from the local disk\n\
         sanboot --no-describe --drive 0x80 || exit\n"
    )
}

/// Every config of the node, one set per PXE-enabled port MAC: the config
/// of its boot mode (GRUB for uefi, PXELINUX for bios), then its iPXE
/// script. An error when `deploy_kernel` or `deploy_ramdisk` is missing or
/// unusable, a value cannot be put in a config safely, or no port is
/// PXE-enabled.
pub fn render_node(
    node: &Node,
    ports: &[Port],
    ctx: &RenderContext,
) -> Result<Vec<Rendered>, RenderError> {
    let mode = boot_mode(node, ctx)?;
    let (kernel, ramdisk) = deploy_images(node)?;
    let ports: Vec<&Port> = ports.iter().filter(|p| p.pxe_enabled).collect();
    if ports.is_empty() {
        return Err(invalid(
            "the node has no port with pxe_enabled: boot configs are per MAC address; \
             create a port with the MAC the machine PXE boots from",
        ));
    }
    let loader = match mode {
        BootMode::Bios => (
            kernel.pxelinux("driver_info.deploy_kernel")?,
            ramdisk.pxelinux("driver_info.deploy_ramdisk")?,
        ),
        BootMode::Uefi => (
            kernel.grub("driver_info.deploy_kernel")?,
            ramdisk.grub("driver_info.deploy_ramdisk")?,
        ),
    };
    let (ipxe_kernel, ipxe_ramdisk) = (kernel.ipxe(ctx), ramdisk.ipxe(ctx));
    if let Some(base) = &ctx.http_url {
        if let Some(what) = bad_char(base, false, &[',']) {
            return Err(invalid(format!(
                "the HTTP boot URL {base:?} contains {what}, which cannot be put in a boot config"
            )));
        }
        if let Location::Root(_) = Location::parse("the HTTP boot URL", base)? {
            return Err(invalid(format!(
                "the HTTP boot URL {base:?} is not an http(s) URL ([http_boot] public_url)"
            )));
        }
    }
    let mut out = Vec::with_capacity(ports.len() * 2);
    for port in ports {
        let mac = normalize_mac(&port.address).map_err(|e| invalid(e.to_string()))?;
        let args = kernel_args(node, ctx, &mac)?;
        let kind = mode.config_kind();
        let text = match mode {
            BootMode::Bios => pxelinux_text(&loader.0, &loader.1, &args),
            BootMode::Uefi => grub_text(&loader.0, &loader.1, &args),
        };
        out.push(Rendered {
            kind,
            path: kind.path(&mac),
            mac: mac.clone(),
            text,
        });
        out.push(Rendered {
            kind: ConfigKind::Ipxe,
            path: ConfigKind::Ipxe.path(&mac),
            mac: mac.clone(),
            text: ipxe_text(&ipxe_kernel, &ipxe_ramdisk, &args),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const UUID: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";
    const MAC: &str = "52:54:00:ab:cd:ef";

    fn ctx() -> RenderContext {
        RenderContext {
            api_url: "http://10.0.0.1:6385".into(),
            http_url: Some("http://10.0.0.1:8080".into()),
            default_boot_mode: BootMode::Uefi,
            kernel_append_params: "nofb nomodeset".into(),
        }
    }

    fn node(info: Value, props: Value) -> Node {
        Node {
            uuid: UUID.into(),
            driver: "ipmi".into(),
            driver_info: serde_json::from_value(info).unwrap(),
            properties: serde_json::from_value(props).unwrap(),
            ..Node::default()
        }
    }

    fn port(mac: &str, pxe: bool) -> Port {
        Port {
            id: 1,
            uuid: "p".into(),
            address: mac.into(),
            node_uuid: UUID.into(),
            pxe_enabled: pxe,
            extra: Default::default(),
            local_link_connection: Default::default(),
            physical_network: None,
            created_at: String::new(),
            updated_at: None,
        }
    }

    fn images() -> Value {
        json!({"deploy_kernel": "deploy/vmlinuz", "deploy_ramdisk": "/deploy/initrd.img"})
    }

    const ARGS: &str = "nofb nomodeset ipa-api-url=http://10.0.0.1:6385 \
                        ipa-node-uuid=1be26c0b-03f2-4d2e-ae87-c02d7f33c123 \
                        BOOTIF=01-52-54-00-ab-cd-ef";

    /// Found by `fuzz/fuzz_targets/netboot.rs` (fuzz/regressions/netboot/):
    /// an API URL with a port that is not a number was rendered into the
    /// kernel command line, and the ramdisk could never call back.
    #[test]
    fn invalid_urls_are_refused() {
        let input = b"deploy/vmlinuz\x1edeploy/Vnitrd\x1econsole=ttyS0,115200n8\x1e\
                      nofb nomodeset vga=normal\x1ehttp://10.0.0.1:63z5/\x1e\x1ebios";
        let f: Vec<&str> = input
            .split(|b| *b == 0x1e)
            .map(|f| std::str::from_utf8(f).unwrap())
            .collect();
        let n = node(
            json!({"deploy_kernel": f[0], "deploy_ramdisk": f[1], "kernel_append_params": f[2]}),
            json!({"capabilities": format!("boot_mode:{}", f[6])}),
        );
        let c = RenderContext {
            api_url: f[4].into(),
            http_url: None,
            default_boot_mode: BootMode::Uefi,
            kernel_append_params: f[3].into(),
        };
        let e = render_node(&n, &[port(MAC, true)], &c).unwrap_err();
        assert!(e.to_string().contains("the API URL"), "{e}");
        for bad in [
            "http://10.0.0.1:63z5/k",
            "http://10.0.0.1:99999/k",
            "https://[::1/k",
        ] {
            let n = node(
                json!({"deploy_kernel": bad, "deploy_ramdisk": "deploy/initrd"}),
                json!({}),
            );
            let e = render_node(&n, &[port(MAC, true)], &ctx()).unwrap_err();
            assert!(
                e.to_string().contains("driver_info.deploy_kernel"),
                "{bad}: {e}"
            );
        }
        assert!(Location::parse("k", "http://10.0.0.1:8080/k").is_ok());
        // fuzz/regressions/netboot/api-url-trailing-newlines: the URL was
        // checked trimmed but rendered as given, newlines and all, which
        // broke the GRUB config's `linux` line.
        for api in ["http://10.0.0.1:6385\n\n\n", " http://10.0.0.1:6385/ \t\n"] {
            let c = RenderContext {
                api_url: api.into(),
                ..ctx()
            };
            let configs = render_node(&node(images(), json!({})), &[port(MAC, true)], &c).unwrap();
            for cfg in configs {
                assert!(
                    cfg.text.contains("ipa-api-url=http://10.0.0.1:6385 "),
                    "{api:?}: {}",
                    cfg.text
                );
            }
        }
        // fuzz/regressions/netboot/api-url-newline-slash: white space before
        // a last slash was left in after the slashes were trimmed.
        for api in ["http://10.0.0.1:6385/\n\n/", "http://10.0.0.1:6385/ /"] {
            let c = RenderContext {
                api_url: api.into(),
                ..ctx()
            };
            let e = render_node(&node(images(), json!({})), &[port(MAC, true)], &c).unwrap_err();
            assert!(e.to_string().contains("the API URL"), "{api:?}: {e}");
        }
        // fuzz/regressions/netboot/http-boot-url-scheme: an HTTP boot URL
        // that is not one went into iPXE scripts as is.
        for bad in [
            "ht4p://10.0.0.1:8080/",
            "10.0.0.1:8080",
            "http://10.0.0.1:80a0",
        ] {
            let c = RenderContext {
                http_url: Some(bad.into()),
                ..ctx()
            };
            let e = render_node(&node(images(), json!({})), &[port(MAC, true)], &c).unwrap_err();
            assert!(e.to_string().contains("the HTTP boot URL"), "{bad}: {e}");
        }
    }

    /// Found by `fuzz/fuzz_targets/netboot.rs` in CI
    /// (fuzz/regressions/netboot/pxelinux-*, grub-http-query): values each
    /// loader reads differently from what the node asked for.
    #[test]
    fn values_a_loader_would_read_otherwise_are_refused() {
        // `initrd=` on the command line: PXELINUX loads it as the ramdisk
        // (here a TFTP path it could not even name), the kernel's EFI stub
        // too. Refused in the node's parameters and in the global ones.
        for own in [
            "initrd=x",
            "quiet initrd=ftp://x",
            "initrd=/evil,/deploy/initrd",
        ] {
            let mut info = images();
            info["kernel_append_params"] = json!(own);
            for props in [json!({}), json!({"capabilities": "boot_mode:bios"})] {
                let e = render_node(&node(info.clone(), props), &[port(MAC, true)], &ctx());
                let msg = e.unwrap_err().to_string();
                assert!(
                    msg.contains("driver_info.kernel_append_params"),
                    "{own}: {msg}"
                );
                assert!(msg.contains("initrd="), "{own}: {msg}");
            }
        }
        assert!(check_global_params("nofb initrd=/x").is_err());
        assert!(check_global_params("rd.initrd=x myinitrd=y").is_ok());
        // `host::path` is another TFTP server to PXELINUX: a path under the
        // boot root with `::` in it is refused (in every boot mode, so that
        // switching modes does not change which values are accepted).
        for bad in ["deploy/a::b", "::deploy/k", "10.0.0.9::k"] {
            let mut info = images();
            info["deploy_kernel"] = json!(bad);
            for props in [json!({}), json!({"capabilities": "boot_mode:bios"})] {
                let e = render_node(&node(info.clone(), props), &[port(MAC, true)], &ctx());
                let msg = e.unwrap_err().to_string();
                assert!(msg.contains("driver_info.deploy_kernel"), "{bad}: {msg}");
                assert!(msg.contains("::"), "{bad}: {msg}");
            }
        }
        // A URL with a query straight after the host: GRUB's device is the
        // host alone and the query goes after a `/`, as the URL means.
        let mut info = images();
        info["deploy_kernel"] = json!("http://10.0.0.5:8080?img=k");
        let r = render_node(&node(info, json!({})), &[port(MAC, true)], &ctx()).unwrap();
        assert!(
            r[0].text.contains("linux (http,10.0.0.5:8080)/?img=k nofb"),
            "{}",
            r[0].text
        );
        assert!(
            r[1].text.contains("kernel http://10.0.0.5:8080?img=k nofb"),
            "{}",
            r[1].text
        );
        match Location::parse("k", "http://h:1?q/r").unwrap() {
            Location::Url {
                authority, path, ..
            } => assert_eq!((authority.as_str(), path.as_str()), ("h:1", "/?q/r")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uefi_node_gets_grub_and_ipxe() {
        let n = node(images(), json!({}));
        let r = render_node(&n, &[port(MAC, true)], &ctx()).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].kind, ConfigKind::Grub);
        assert_eq!(r[0].path, "grub/grub.cfg-01-52-54-00-ab-cd-ef");
        assert_eq!(r[0].mac, MAC);
        assert_eq!(
            r[0].text,
            format!(
                "set default=deploy\nset timeout=5\n\nmenuentry \"deploy\" {{\n    \
                 linux /deploy/vmlinuz {ARGS}\n    initrd /deploy/initrd.img\n}}\n"
            )
        );
        assert_eq!(r[1].kind, ConfigKind::Ipxe);
        assert_eq!(r[1].path, "ipxe/52:54:00:ab:cd:ef.ipxe");
        let expected = format!(
            "#!ipxe\n\nset attempts:int32 10\nset i:int32 0\n\n:deploy\nimgfree\n\
             kernel http://10.0.0.1:8080/deploy/vmlinuz {ARGS} initrd=deploy_ramdisk || goto retry\n\
             initrd --name deploy_ramdisk http://10.0.0.1:8080/deploy/initrd.img || goto retry\n\
             boot\n\n:retry\niseq ${{i}} ${{attempts}} && goto fail ||\ninc i\n\
             echo Failed to download the deploy kernel or ramdisk, retrying in 5 seconds\n\
             sleep 5\ngoto deploy\n\n:fail\n\
             echo Failed to download the deploy kernel or ramdisk ${{attempts}} times, powering off\n\
             sleep 30\npoweroff\n"
        );
        assert_eq!(r[1].text, expected);
    }

    #[test]
    fn bios_node_gets_pxelinux() {
        for caps in [
            json!({"capabilities": "cpu_vt:true,boot_mode:bios"}),
            json!({"capabilities": {"boot_mode": "bios"}}),
        ] {
            let n = node(images(), caps);
            let r = render_node(&n, &[port("52-54-00-AB-CD-EF", true)], &ctx()).unwrap();
            assert_eq!(r[0].kind, ConfigKind::Pxelinux);
            assert_eq!(r[0].path, "pxelinux.cfg/01-52-54-00-ab-cd-ef");
            assert_eq!(
                r[0].text,
                format!(
                    "default deploy\n\nlabel deploy\nkernel /deploy/vmlinuz\n\
                     append initrd=/deploy/initrd.img {ARGS}\n"
                )
            );
            assert_eq!(r[1].kind, ConfigKind::Ipxe);
        }
        // The default mode applies without a capability.
        let mut c = ctx();
        c.default_boot_mode = BootMode::Bios;
        let n = node(images(), json!({"capabilities": "cpu_vt:true"}));
        assert_eq!(boot_mode(&n, &c).unwrap(), BootMode::Bios);
        let bad = node(images(), json!({"capabilities": "boot_mode:legacy"}));
        assert!(boot_mode(&bad, &c)
            .unwrap_err()
            .to_string()
            .contains("legacy"));
        let bad = node(images(), json!({"capabilities": "nonsense"}));
        assert!(boot_mode(&bad, &c).is_err());
    }

    #[test]
    fn urls_are_used_as_each_loader_needs() {
        let info = json!({
            "deploy_kernel": "http://images.example:8000/ipa/kernel",
            "deploy_ramdisk": "http://images.example/ipa/ramdisk?v=2",
        });
        let n = node(info.clone(), json!({}));
        let mut c = ctx();
        c.http_url = None;
        let r = render_node(&n, &[port(MAC, true)], &c).unwrap();
        assert!(r[0]
            .text
            .contains("linux (http,images.example:8000)/ipa/kernel nofb nomodeset ipa-api-url"));
        assert!(r[0]
            .text
            .contains("initrd (http,images.example)/ipa/ramdisk?v=2\n"));
        assert!(r[1]
            .text
            .contains("kernel http://images.example:8000/ipa/kernel nofb"));
        assert!(r[1]
            .text
            .contains("initrd --name deploy_ramdisk http://images.example/ipa/ramdisk?v=2 ||"));
        let bios = node(info, json!({"capabilities": "boot_mode:bios"}));
        let r = render_node(&bios, &[port(MAC, true)], &c).unwrap();
        assert!(r[0]
            .text
            .contains("kernel http://images.example:8000/ipa/kernel\n"));
        assert!(r[0]
            .text
            .contains("append initrd=http://images.example/ipa/ramdisk?v=2 nofb"));
        // Root paths without an HTTP boot server: iPXE resolves them
        // against the script's own URL.
        let n = node(images(), json!({}));
        let r = render_node(&n, &[port(MAC, true)], &c).unwrap();
        assert!(r[1].text.contains("kernel /deploy/vmlinuz nofb"));
        // https: iPXE only.
        let https = json!({"deploy_kernel": "https://h/k", "deploy_ramdisk": "https://h/r"});
        let e = render_node(&node(https.clone(), json!({})), &[port(MAC, true)], &c).unwrap_err();
        assert!(e.to_string().contains("GRUB cannot fetch https"), "{e}");
        let e = render_node(
            &node(https, json!({"capabilities": "boot_mode:bios"})),
            &[port(MAC, true)],
            &c,
        )
        .unwrap_err();
        assert!(e.to_string().contains("PXELINUX cannot fetch https"), "{e}");
    }

    #[test]
    fn kernel_params_order_and_default_placeholder() {
        let mut info = images();
        info["kernel_append_params"] = json!("console=ttyS0,115200n8  ipa-debug=1");
        let n = node(info.clone(), json!({}));
        let r = render_node(&n, &[port(MAC, true)], &ctx()).unwrap();
        assert!(r[0].text.contains(
            "linux /deploy/vmlinuz nofb nomodeset console=ttyS0,115200n8 ipa-debug=1 ipa-api-url="
        ));
        info["kernel_append_params"] = json!("a=1 %default% b=2");
        let n = node(info, json!({}));
        let r = render_node(&n, &[port(MAC, true)], &ctx()).unwrap();
        assert!(r[0]
            .text
            .contains("linux /deploy/vmlinuz a=1 nofb nomodeset b=2 ipa-api-url="));
    }

    #[test]
    fn one_set_per_pxe_enabled_port() {
        let n = node(images(), json!({}));
        let r = render_node(
            &n,
            &[
                port(MAC, true),
                port("52:54:00:00:00:02", false),
                port("52:54:00:00:00:03", true),
            ],
            &ctx(),
        )
        .unwrap();
        let paths: Vec<&str> = r.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "grub/grub.cfg-01-52-54-00-ab-cd-ef",
                "ipxe/52:54:00:ab:cd:ef.ipxe",
                "grub/grub.cfg-01-52-54-00-00-00-03",
                "ipxe/52:54:00:00:00:03.ipxe",
            ]
        );
        assert!(r[2].text.contains("BOOTIF=01-52-54-00-00-00-03"));
        let e = render_node(&n, &[port(MAC, false)], &ctx()).unwrap_err();
        assert!(e.to_string().contains("pxe_enabled"), "{e}");
        let e = render_node(&n, &[], &ctx()).unwrap_err();
        assert!(e.to_string().contains("no port"), "{e}");
    }

    #[test]
    fn injection_is_refused() {
        let cases = [
            ("kernel_append_params", "quiet\nkernel /evil"),
            ("kernel_append_params", "quiet\r\nboot"),
            ("kernel_append_params", "a=\"b\""),
            ("kernel_append_params", "x=${mac}"),
            ("kernel_append_params", "x || reboot"),
            ("kernel_append_params", "x; reboot"),
            ("kernel_append_params", "}\nmenuentry x {"),
            ("deploy_kernel", "deploy/vmlinuz\ninitrd /evil"),
            ("deploy_kernel", "deploy/vm linuz"),
            ("deploy_kernel", "http://h/k\"x"),
            ("deploy_ramdisk", "a,b"),
            ("deploy_ramdisk", "../../etc/shadow"),
            ("deploy_ramdisk", "ftp://h/r"),
        ];
        for (key, value) in cases {
            let mut info = images();
            info[key] = json!(value);
            for props in [json!({}), json!({"capabilities": "boot_mode:bios"})] {
                let n = node(info.clone(), props);
                let e = render_node(&n, &[port(MAC, true)], &ctx());
                assert!(e.is_err(), "{key}={value:?} was rendered: {e:?}");
                let msg = e.unwrap_err().to_string();
                assert!(msg.contains(key), "{key}={value:?}: {msg}");
            }
        }
        let mut c = ctx();
        c.kernel_append_params = "ok\nbad".into();
        let e = render_node(&node(images(), json!({})), &[port(MAC, true)], &c).unwrap_err();
        assert!(e.to_string().contains("[boot] kernel_append_params"), "{e}");
        assert!(check_global_params("nofb vga=normal console=tty0,x").is_ok());
        assert!(check_global_params("a'b").is_err());
    }

    #[test]
    fn missing_images_are_named() {
        let n = node(json!({"deploy_kernel": "k"}), json!({}));
        let e = render_node(&n, &[port(MAC, true)], &ctx()).unwrap_err();
        assert!(
            e.to_string()
                .contains("driver_info.deploy_ramdisk is not set"),
            "{e}"
        );
        let n = node(
            json!({"deploy_ramdisk": "r", "deploy_kernel": 5}),
            json!({}),
        );
        let e = render_node(&n, &[port(MAC, true)], &ctx()).unwrap_err();
        assert!(
            e.to_string().contains("deploy_kernel must be a string"),
            "{e}"
        );
    }

    #[test]
    fn requests_are_recognised() {
        use ConfigRequest as R;
        let node = |kind, mac: &str| {
            Some(R::Node {
                kind,
                mac: mac.to_string(),
            })
        };
        assert_eq!(
            parse_request("pxelinux.cfg/01-52-54-00-ab-cd-ef"),
            node(ConfigKind::Pxelinux, MAC)
        );
        assert_eq!(
            parse_request("/pxelinux.cfg/01-52-54-00-AB-CD-EF"),
            node(ConfigKind::Pxelinux, MAC)
        );
        assert_eq!(
            parse_request("grub/grub.cfg-01-52-54-00-ab-cd-ef"),
            node(ConfigKind::Grub, MAC)
        );
        assert_eq!(
            parse_request("ipxe/52:54:00:ab:cd:ef.ipxe"),
            node(ConfigKind::Ipxe, MAC)
        );
        assert_eq!(
            parse_request("ipxe/52-54-00-AB-CD-EF.ipxe"),
            node(ConfigKind::Ipxe, MAC)
        );
        assert_eq!(
            parse_request("pxelinux.cfg/default"),
            Some(R::Default(ConfigKind::Pxelinux))
        );
        assert_eq!(
            parse_request("grub/grub.cfg"),
            Some(R::Default(ConfigKind::Grub))
        );
        assert_eq!(
            parse_request("ipxe/default.ipxe"),
            Some(R::Default(ConfigKind::Ipxe))
        );
        assert_eq!(parse_request("boot.ipxe"), Some(R::BootIpxe));
        for not in [
            "pxelinux.0",
            "ldlinux.c32",
            "boot.ipxe.bak",
            "ipxe/boot.ipxe",
            "pxelinux.cfg/C0A80001",
            "pxelinux.cfg/01-52:54:00:ab:cd:ef",
            "pxelinux.cfg/52-54-00-ab-cd-ef",
            "pxelinux.cfg/01-52-54-00-ab-cd-zz",
            "pxelinux.cfg/01-52-54-00-ab-cd-ef-00",
            "pxelinux.cfg/44454c4c-3700-1034-8056-b1c04f4a5931",
            "grub/grub.cfg-C0A80001",
            "grub/grub.cfg-01-525400abcdef",
            "grub.cfg",
            "ipxe/52:54:00:ab:cd:ef",
            "ipxe/525400abcdef.ipxe",
            "ipxe.efi",
            "undionly.kpxe",
        ] {
            assert_eq!(parse_request(not), None, "{not}");
        }
    }

    #[test]
    fn paths_follow_each_loader() {
        assert_eq!(
            ConfigKind::Pxelinux.path(MAC),
            "pxelinux.cfg/01-52-54-00-ab-cd-ef"
        );
        for k in [ConfigKind::Pxelinux, ConfigKind::Grub, ConfigKind::Ipxe] {
            assert_eq!(
                parse_request(&k.path(MAC)),
                Some(ConfigRequest::Node {
                    kind: k,
                    mac: MAC.into()
                })
            );
            assert_eq!(
                parse_request(k.default_path()),
                Some(ConfigRequest::Default(k))
            );
        }
        assert!(ConfigKind::Pxelinux
            .builtin_default()
            .contains("localboot 0"));
        assert!(ConfigKind::Ipxe
            .builtin_default()
            .contains("sanboot --no-describe --drive 0x80"));
    }

    #[test]
    fn boot_ipxe_chains_by_mac() {
        assert_eq!(
            boot_ipxe(&ctx()),
            "#!ipxe\n\nchain http://10.0.0.1:8080/ipxe/${mac}.ipxe || goto local\n\n:local\n\
             echo No boot script for ${mac}, booting from the local disk\n\
             sanboot --no-describe --drive 0x80 || exit\n"
        );
        let mut c = ctx();
        c.http_url = None;
        assert!(boot_ipxe(&c).contains("chain /ipxe/${mac}.ipxe || goto local\n"));
    }

    #[test]
    fn prepared_flag() {
        let mut n = node(images(), json!({}));
        assert!(!is_prepared(&n));
        n.driver_internal_info
            .insert(PREPARED_KEY.into(), json!(true));
        assert!(is_prepared(&n));
        n.driver_internal_info
            .insert(PREPARED_KEY.into(), json!("true"));
        assert!(!is_prepared(&n));
    }
}
