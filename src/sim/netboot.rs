//! Simulated network boot, sans-IO: what a simulated machine does when it
//! powers up with the boot device PXE, minus the sockets.
//!
//! - [`Mac`]: the machine's PXE NIC address (BMC i of a fleet gets base + i).
//! - [`decide`]: what the firmware does with the boot flags in effect at a
//!   boot (the local disk, or which per-MAC config to ask the boot server for).
//! - [`parse_config`]: read a PXELINUX, GRUB or iPXE config as the loader
//!   would and say what it boots: a kernel and initrds (each a TFTP path on
//!   the boot server, a TFTP path elsewhere, or an HTTP URL) with the kernel
//!   arguments, or the local disk. Anything else is a [`ParseError`] naming
//!   the line; nothing here panics on any input.
//! - [`BootEntry::ipa`]: `ipa-api-url` and `ipa-node-uuid` from the kernel
//!   arguments, as a deploy ramdisk reads them, and the heartbeat it sends.
//!
//! The tokio side (TFTP and HTTP downloads, heartbeats) is in
//! [`super::pxe`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::boot::render::ConfigKind;
use crate::ipmi::cmd::{BootDevice, BootFlags};

/// The first MAC of a fleet unless configured (a locally administered
/// address: QEMU's prefix): BMC i gets this plus i.
pub const DEFAULT_MAC_BASE: Mac = Mac([0x52, 0x54, 0x00, 0x00, 0x00, 0x00]);

/// The first MAC of a Redfish fleet started on its own unless configured
/// (far from the IPMI ones, so both fleets can run in one process).
pub const DEFAULT_REDFISH_MAC_BASE: Mac = Mac([0x52, 0x54, 0x00, 0x80, 0x00, 0x00]);

/// The Ironic API microversion a deploy ramdisk heartbeats with.
pub const HEARTBEAT_API_VERSION: &str = "1.36";

/// What a simulated ramdisk calls itself in `agent_version`.
pub fn agent_version() -> String {
    format!("ironrack-sim {}", env!("CARGO_PKG_VERSION"))
}

/// Longest config the simulated loaders accept.
pub const MAX_CONFIG_LEN: usize = 64 * 1024;

/// Suffix added to the kernel's name by the `fail_download` fault, so the
/// machine asks for a file that is not there.
pub const FAIL_SUFFIX: &str = ".ironrack-sim-missing";

// ---------------------------------------------------------------- MAC

/// A MAC address (the machine's PXE NIC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// This address plus `n` (as a 48-bit number); `None` past ff:ff:ff:ff:ff:ff.
    pub fn checked_add(self, n: u64) -> Option<Mac> {
        let mut v = [0u8; 8];
        v[2..].copy_from_slice(&self.0);
        let sum = u64::from_be_bytes(v).checked_add(n)?;
        if sum >= 1 << 48 {
            return None;
        }
        let b = sum.to_be_bytes();
        let mut out = [0u8; 6];
        out.copy_from_slice(&b[2..]);
        Some(Mac(out))
    }

    /// `aa-bb-cc-dd-ee-ff`, as PXELINUX and GRUB config names use it.
    pub fn dashes(&self) -> String {
        self.to_string().replace(':', "-")
    }
}

impl fmt::Display for Mac {
    /// `aa:bb:cc:dd:ee:ff`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;

    /// `aa:bb:cc:dd:ee:ff`, `aa-bb-..`, `aabb.ccdd.eeff` or `aabbccddeeff`, any case.
    fn from_str(s: &str) -> Result<Mac, String> {
        let norm = crate::store::normalize_mac(s.trim())
            .map_err(|_| format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
        let mut out = [0u8; 6];
        for (i, part) in norm.split(':').enumerate() {
            let slot = out
                .get_mut(i)
                .ok_or_else(|| format!("{s:?} is not a MAC address"))?;
            *slot =
                u8::from_str_radix(part, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
        }
        Ok(Mac(out))
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

// ---------------------------------------------------------------- settings

/// Which loader the simulated firmware runs after DHCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Loader {
    /// As Ironic's PXE boot: GRUB (`grub/grub.cfg-01-<mac>`) when the boot
    /// flags say UEFI, else PXELINUX (`pxelinux.cfg/01-<mac>`), both over TFTP.
    #[default]
    Pxe,
    /// iPXE: `ipxe/<mac>.ipxe` over TFTP, then what it names (HTTP URLs).
    Ipxe,
}

impl FromStr for Loader {
    type Err = String;
    fn from_str(s: &str) -> Result<Loader, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pxe" | "pxelinux" | "grub" => Ok(Loader::Pxe),
            "ipxe" => Ok(Loader::Ipxe),
            other => Err(format!(
                "{other:?} is not a loader: \"pxe\" (PXELINUX or GRUB by boot mode) or \"ipxe\""
            )),
        }
    }
}

impl Loader {
    pub fn name(self) -> &'static str {
        match self {
            Loader::Pxe => "pxe",
            Loader::Ipxe => "ipxe",
        }
    }
}

/// TFTP transfer settings of the simulated firmware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TftpSettings {
    /// `blksize` to ask for (a PXE ROM asks for 1468, or 1432).
    pub blksize: Option<u16>,
    /// `windowsize` to ask for; `None` (or 1) is lock step, as a PXE ROM.
    pub windowsize: Option<u16>,
    /// Retransmit timeout.
    pub timeout: Duration,
    /// Retransmissions before a transfer is given up.
    pub retries: u32,
}

impl Default for TftpSettings {
    fn default() -> Self {
        TftpSettings {
            blksize: Some(1468),
            windowsize: None,
            timeout: Duration::from_secs(1),
            retries: 5,
        }
    }
}

/// How a simulated machine network-boots. Part of
/// [`BmcConfig`](super::BmcConfig); changeable per BMC while the fleet runs
/// ([`SimBmc::update_netboot`](super::SimBmc::update_netboot)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetbootConfig {
    /// The agent's TFTP server. Without one a PXE boot falls back to the disk
    /// (and says so in `last_error`).
    pub boot_server: Option<SocketAddr>,
    pub loader: Loader,
    pub tftp: TftpSettings,
    /// Bound on fetching the per-MAC config.
    pub config_timeout: Duration,
    /// Bound on downloading one kernel or ramdisk.
    pub download_timeout: Duration,
    /// Bound on an HTTP connection and on the wait for each chunk.
    pub http_idle_timeout: Duration,
    /// Between two heartbeats (the first goes at once).
    pub heartbeat_interval: Duration,
    /// Bound on one heartbeat request.
    pub heartbeat_timeout: Duration,
    /// Host in the heartbeat's `callback_url`; by default the local address
    /// of the route to `ipa-api-url`. The port is the BMC's.
    pub callback_host: Option<IpAddr>,
    /// Fault: the kernel download fails (the machine asks for a file that is
    /// not there); no heartbeat follows.
    pub fail_download: bool,
    /// Fault: everything downloads, but the ramdisk never heartbeats.
    pub no_heartbeat: bool,
}

impl Default for NetbootConfig {
    fn default() -> Self {
        NetbootConfig {
            boot_server: None,
            loader: Loader::Pxe,
            tftp: TftpSettings::default(),
            config_timeout: Duration::from_secs(30),
            download_timeout: Duration::from_secs(600),
            http_idle_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(10),
            callback_host: None,
            fail_download: false,
            no_heartbeat: false,
        }
    }
}

// ---------------------------------------------------------------- firmware

/// What the firmware does at a boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirmwareAction {
    /// Boot the local disk (boot device disk, none, or anything but PXE).
    Disk,
    /// Network boot: fetch this per-MAC config over TFTP.
    Network { kind: ConfigKind, path: String },
}

/// The firmware's choice for a boot with `flags` in effect: PXE when the
/// flags are valid and name PXE (once or persistent), with the config of
/// the loader (`loader`, and the UEFI bit for PXELINUX vs GRUB).
pub fn decide(flags: Option<&BootFlags>, loader: Loader, mac: Mac) -> FirmwareAction {
    let Some(f) = flags else {
        return FirmwareAction::Disk;
    };
    if !f.valid || f.device != BootDevice::Pxe {
        return FirmwareAction::Disk;
    }
    let kind = match loader {
        Loader::Ipxe => ConfigKind::Ipxe,
        Loader::Pxe if f.uefi => ConfigKind::Grub,
        Loader::Pxe => ConfigKind::Pxelinux,
    };
    FirmwareAction::Network {
        kind,
        path: kind.path(&mac.to_string()),
    }
}

/// The boot flags a Redfish system's firmware acts on: the
/// `BootSourceOverrideTarget` in effect at the boot (`None` when the
/// override was disabled) and `BootSourceOverrideMode`. Only `Pxe` network
/// boots; anything else is the disk.
pub fn redfish_boot_flags(target: Option<&str>, mode: &str) -> Option<BootFlags> {
    (target == Some("Pxe"))
        .then(|| BootFlags::new(BootDevice::Pxe, false, mode.eq_ignore_ascii_case("UEFI")))
}

// ---------------------------------------------------------------- configs

/// Where a loader fetches a file from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// Over TFTP: from `server`, or (`None`) the server the config came from.
    Tftp {
        server: Option<SocketAddr>,
        path: String,
    },
    /// Over HTTP(S).
    Http { url: String },
}

impl Fetch {
    /// The same file with [`FAIL_SUFFIX`] on its name (the `fail_download`
    /// fault).
    pub fn failing(&self) -> Fetch {
        match self {
            Fetch::Tftp { server, path } => Fetch::Tftp {
                server: *server,
                path: format!("{path}{FAIL_SUFFIX}"),
            },
            Fetch::Http { url } => {
                let cut = url.find(['?', '#']).unwrap_or(url.len());
                let (head, tail) = url.split_at(cut);
                Fetch::Http {
                    url: format!("{head}{FAIL_SUFFIX}{tail}"),
                }
            }
        }
    }

    /// For logs: `tftp://server/path` or the URL.
    pub fn describe(&self, boot_server: Option<SocketAddr>) -> String {
        match self {
            Fetch::Tftp { server, path } => {
                let s = server
                    .or(boot_server)
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "?".into());
                format!("tftp://{s}/{}", path.trim_start_matches('/'))
            }
            Fetch::Http { url } => url.clone(),
        }
    }
}

/// The entry a config boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootEntry {
    pub kernel: Fetch,
    pub initrds: Vec<Fetch>,
    /// Kernel arguments, as words (PXELINUX's `initrd=` taken out).
    pub args: Vec<String>,
}

/// What a config makes the loader do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Boot(BootEntry),
    /// Boot the local disk (`localboot`, GRUB `exit`, iPXE `sanboot`/`exit`):
    /// what the agent serves an unknown MAC.
    LocalBoot,
}

/// A config the simulated loader cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} config{}: {msg}", line.map(|n| format!(", line {n}")).unwrap_or_default())]
pub struct ParseError {
    pub kind: &'static str,
    /// 1-based.
    pub line: Option<usize>,
    pub msg: String,
}

/// What the loader knows besides the text: the machine's MAC (iPXE's
/// `${mac}`) and the path the config was fetched as (relative iPXE URIs
/// resolve against it).
#[derive(Clone, Debug)]
pub struct ConfigEnv {
    pub mac: Mac,
    pub config_path: String,
}

/// Parse a config fetched as `kind`. The bytes must be text (UTF-8, no NUL),
/// at most [`MAX_CONFIG_LEN`].
pub fn parse_config(kind: ConfigKind, bytes: &[u8], env: &ConfigEnv) -> Result<Parsed, ParseError> {
    let bad = |msg: String| ParseError {
        kind: kind.name(),
        line: None,
        msg,
    };
    if bytes.len() > MAX_CONFIG_LEN {
        return Err(bad(format!(
            "{} bytes is larger than a loader config can be ({MAX_CONFIG_LEN})",
            bytes.len()
        )));
    }
    if bytes.contains(&0) {
        return Err(bad("contains NUL bytes: not a text config".into()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| bad(format!("is not UTF-8 text ({e})")))?;
    let r = match kind {
        ConfigKind::Pxelinux => parse_pxelinux(text),
        ConfigKind::Grub => parse_grub(text),
        ConfigKind::Ipxe => parse_ipxe(text, env),
    };
    r.map_err(|(line, msg)| ParseError {
        kind: kind.name(),
        line,
        msg,
    })
}

/// A parser's error: the line (1-based) if it is about one, and what is wrong.
type PErr = (Option<usize>, String);

/// An error about line `n`.
fn at(n: usize) -> impl Fn(String) -> PErr {
    move |msg| (Some(n), msg)
}

/// An error about the whole config.
fn whole(msg: String) -> PErr {
    (None, msg)
}

/// Lines with their 1-based numbers, trimmed, without blank lines and `#`
/// comments.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// `keyword rest`, keyword in lower case.
fn split_keyword(line: &str) -> (String, &str) {
    match line.find(char::is_whitespace) {
        Some(i) => (line[..i].to_ascii_lowercase(), line[i..].trim()),
        None => (line.to_ascii_lowercase(), ""),
    }
}

/// `host[:port]` (IP literal, brackets allowed for IPv6) with a default port.
fn host_port(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("{s:?} is not an IP address (the simulator does not resolve names)"))
}

fn is_http(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

// ------------------------------------------------------------ PXELINUX

#[derive(Default)]
struct PxeLabel {
    name: String,
    kernel: Option<(String, usize)>,
    append: Option<(String, usize)>,
    initrd: Option<(String, usize)>,
    localboot: bool,
}

/// A PXELINUX file name: a path on the server the config came from,
/// `::path` (the same), `host::path`, or an http URL (lpxelinux).
fn pxelinux_fetch(s: &str) -> Result<Fetch, String> {
    if is_http(s) {
        return Ok(Fetch::Http { url: s.to_string() });
    }
    if s.contains("://") {
        return Err(format!(
            "{s:?}: only http:// URLs or TFTP paths are supported"
        ));
    }
    if let Some(p) = s.strip_prefix("::") {
        return Ok(Fetch::Tftp {
            server: None,
            path: p.to_string(),
        });
    }
    if let Some((host, p)) = s.split_once("::") {
        return Ok(Fetch::Tftp {
            server: Some(host_port(host, 69)?),
            path: p.to_string(),
        });
    }
    Ok(Fetch::Tftp {
        server: None,
        path: s.to_string(),
    })
}

fn parse_pxelinux(text: &str) -> Result<Parsed, PErr> {
    let mut default: Option<(String, usize)> = None;
    let mut global_append: Option<(String, usize)> = None;
    let mut labels: Vec<PxeLabel> = Vec::new();
    let mut in_help = false;
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if in_help {
            if line.eq_ignore_ascii_case("endtext") {
                in_help = false;
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kw, rest) = split_keyword(line);
        let need = |what: &str| -> Result<String, PErr> {
            if rest.is_empty() {
                Err(at(n)(format!("{kw} needs {what}")))
            } else {
                Ok(rest.to_string())
            }
        };
        match kw.as_str() {
            "default" => default = Some((need("a label")?, n)),
            "label" => labels.push(PxeLabel {
                name: need("a name")?,
                ..PxeLabel::default()
            }),
            "kernel" | "linux" => match labels.last_mut() {
                Some(l) => l.kernel = Some((need("a file name")?, n)),
                None => return Err(at(n)(format!("{kw} outside a label"))),
            },
            "append" => match labels.last_mut() {
                Some(l) => l.append = Some((rest.to_string(), n)),
                None => global_append = Some((rest.to_string(), n)),
            },
            "initrd" => match labels.last_mut() {
                Some(l) => l.initrd = Some((need("a file name")?, n)),
                None => return Err(at(n)("initrd outside a label".into())),
            },
            "localboot" => match labels.last_mut() {
                Some(l) => l.localboot = true,
                None => return Err(at(n)("localboot outside a label".into())),
            },
            "text" => in_help = rest.to_ascii_lowercase().starts_with("help"),
            "menu" | "ui" | "prompt" | "timeout" | "totaltimeout" | "ontimeout" | "onerror"
            | "say" | "display" | "serial" | "font" | "kbdmap" | "implicit" | "allowoptions"
            | "noescape" | "nocomplete" | "console" | "path" | "ipappend" | "sysappend" | "f1"
            | "f2" | "f3" | "f4" | "f5" | "f6" | "f7" | "f8" | "f9" | "f10" | "f11" | "f12" => {}
            "include" | "config" | "com32" | "comboot" | "bss" | "boot" | "pxe" | "fdimage" => {
                return Err(at(n)(format!(
                    "{kw} is not supported by the simulated PXELINUX (only Linux kernels boot)"
                )))
            }
            _ => return Err(at(n)(format!("unknown keyword {kw:?}"))),
        }
    }
    let Some((want, dline)) = default else {
        return Err(whole(
            "no DEFAULT line: nothing says which label to boot".into(),
        ));
    };
    let (kernel, kline, append, initrd) = match labels.iter().find(|l| l.name == want) {
        Some(l) if l.localboot => return Ok(Parsed::LocalBoot),
        Some(l) => {
            let Some((k, kl)) = l.kernel.clone() else {
                return Err(whole(format!(
                    "label {:?} boots no kernel (no KERNEL line)",
                    l.name
                )));
            };
            (k, kl, l.append.clone().or(global_append), l.initrd.clone())
        }
        // DEFAULT names a kernel command line when no label matches.
        None => {
            let (k, args) = match want.split_once(char::is_whitespace) {
                Some((k, a)) => (k.to_string(), a.trim().to_string()),
                None => (want.clone(), String::new()),
            };
            let append = match global_append {
                Some((g, l)) => Some((format!("{args} {g}"), l)),
                None => Some((args, dline)),
            };
            (k, dline, append, None)
        }
    };
    let kernel = pxelinux_fetch(&kernel).map_err(at(kline))?;
    let mut initrds = Vec::new();
    if let Some((list, l)) = initrd {
        for f in list.split(',').filter(|s| !s.is_empty()) {
            initrds.push(pxelinux_fetch(f).map_err(at(l))?);
        }
    }
    let mut args = Vec::new();
    if let Some((a, l)) = append {
        if a.trim() != "-" {
            for w in a.split_whitespace() {
                match w.strip_prefix("initrd=") {
                    Some(list) => {
                        for f in list.split(',').filter(|s| !s.is_empty()) {
                            initrds.push(pxelinux_fetch(f).map_err(at(l))?);
                        }
                    }
                    None => args.push(w.to_string()),
                }
            }
        }
    }
    Ok(Parsed::Boot(BootEntry {
        kernel,
        initrds,
        args,
    }))
}

// ------------------------------------------------------------ GRUB

/// Split a GRUB line into words: whitespace separates, `'...'` and `"..."`
/// quote, a backslash escapes the next character (not inside single quotes).
fn grub_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                has = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                has = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => cur.push(x),
                            None => return Err("backslash at the end of the line".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(x) => {
                    has = true;
                    cur.push(x)
                }
                None => return Err("backslash at the end of the line".into()),
            },
            c if c.is_whitespace() => {
                if has {
                    words.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                has = true;
                cur.push(c)
            }
        }
    }
    if has {
        words.push(cur);
    }
    Ok(words)
}

/// A GRUB file name: `/path` on the device the config came from (TFTP),
/// `(tftp[,host])/path`, `(pxe)/path`, `($root)/path` or
/// `(http,host[:port])/path`.
fn grub_fetch(s: &str) -> Result<Fetch, String> {
    if let Some(rest) = s.strip_prefix('(') {
        let Some((dev, path)) = rest.split_once(')') else {
            return Err(format!("{s:?}: unterminated (device)"));
        };
        if !path.starts_with('/') {
            return Err(format!(
                "{s:?}: the path after the device must start with /"
            ));
        }
        let mut parts = dev.splitn(2, ',');
        let name = parts.next().unwrap_or("").trim();
        let host = parts.next().map(str::trim).filter(|h| !h.is_empty());
        return match (name, host) {
            ("tftp" | "pxe", None) | ("$root" | "${root}" | "$cmdpath" | "${cmdpath}", None) => {
                Ok(Fetch::Tftp {
                    server: None,
                    path: path.to_string(),
                })
            }
            ("tftp" | "pxe", Some(h)) => Ok(Fetch::Tftp {
                server: Some(host_port(h, 69)?),
                path: path.to_string(),
            }),
            ("http", Some(h)) => {
                if h.contains(['/', '@', ' ']) {
                    return Err(format!("{s:?}: {h:?} is not a host[:port]"));
                }
                Ok(Fetch::Http {
                    url: format!("http://{h}{path}"),
                })
            }
            ("http", None) => Err(format!("{s:?}: (http) needs a host: (http,host[:port])")),
            (other, _) => Err(format!(
                "{s:?}: device {other:?} is not supported (tftp, pxe or http)"
            )),
        };
    }
    if s.starts_with('$') {
        return Err(format!("{s:?}: variables are not supported in file names"));
    }
    if !s.starts_with('/') {
        return Err(format!("{s:?}: a GRUB file name starts with / or (device)"));
    }
    Ok(Fetch::Tftp {
        server: None,
        path: s.to_string(),
    })
}

#[derive(Default)]
struct GrubEntry {
    title: String,
    id: Option<String>,
    line: usize,
    kernel: Option<(Fetch, Vec<String>)>,
    initrds: Vec<Fetch>,
    local: bool,
}

fn parse_grub(text: &str) -> Result<Parsed, PErr> {
    let mut default: Option<String> = None;
    let mut entries: Vec<GrubEntry> = Vec::new();
    let mut open: Option<GrubEntry> = None;
    // linux / initrd outside any menuentry (a config that boots directly).
    let mut top = GrubEntry::default();
    for (n, line) in lines(text) {
        let words = grub_words(line).map_err(at(n))?;
        let Some(cmd) = words.first().map(String::as_str) else {
            continue;
        };
        let args = &words[1..];
        let target = match open.as_mut() {
            Some(e) => {
                if cmd == "}" {
                    if let Some(e) = open.take() {
                        entries.push(e);
                    }
                    continue;
                }
                e
            }
            None => match cmd {
                "menuentry" => {
                    if !args.is_empty() && args.last().map(String::as_str) != Some("{") {
                        return Err(at(n)(
                            "menuentry must end with { (its commands on the following lines)"
                                .into(),
                        ));
                    }
                    let (Some(title), true) = (args.first(), args.len() >= 2) else {
                        return Err(at(n)("menuentry needs a title".into()));
                    };
                    let mut id = None;
                    let opts = args.get(1..args.len() - 1).unwrap_or(&[]);
                    let mut i = 0;
                    while i < opts.len() {
                        let o = opts[i].as_str();
                        if let Some(v) = o.strip_prefix("--id=") {
                            id = Some(v.to_string());
                        } else if o == "--id" {
                            id = opts.get(i + 1).cloned();
                            i += 1;
                        } else if matches!(o, "--class" | "--users" | "--hotkey") {
                            i += 1;
                        }
                        i += 1;
                    }
                    open = Some(GrubEntry {
                        title: title.clone(),
                        id,
                        line: n,
                        ..GrubEntry::default()
                    });
                    continue;
                }
                "set" => {
                    for a in args {
                        if let Some(v) = a.strip_prefix("default=") {
                            default = Some(v.to_string());
                        }
                    }
                    continue;
                }
                "}" => return Err(at(n)("} without a menuentry".into())),
                "submenu" | "if" | "then" | "else" | "elif" | "fi" | "function" | "for"
                | "while" | "source" | "configfile" | "normal" => {
                    return Err(at(n)(format!(
                        "{cmd} is not supported by the simulated GRUB"
                    )))
                }
                _ => &mut top,
            },
        };
        match cmd {
            "linux" | "linuxefi" | "linux16" => {
                let Some(k) = args.first() else {
                    return Err(at(n)(format!("{cmd} needs a kernel file name")));
                };
                target.kernel = Some((grub_fetch(k).map_err(at(n))?, args[1..].to_vec()));
            }
            "initrd" | "initrdefi" | "initrd16" => {
                if args.is_empty() {
                    return Err(at(n)(format!("{cmd} needs a file name")));
                }
                for a in args {
                    target.initrds.push(grub_fetch(a).map_err(at(n))?);
                }
            }
            "exit" | "chainloader" => target.local = true,
            "reboot" | "halt" => {
                return Err(at(n)(format!("{cmd}: the config never boots a kernel")))
            }
            "menuentry" | "submenu" => {
                return Err(at(n)(format!("{cmd} inside a menuentry is not supported")))
            }
            "boot" | "insmod" | "set" | "echo" | "search" | "load_video" | "terminal_output"
            | "terminal_input" | "sleep" | "export" | "serial" | "timeout" => {}
            other => return Err(at(n)(format!("unknown command {other:?}"))),
        }
    }
    if let Some(e) = open {
        return Err(at(e.line)(format!(
            "menuentry {:?} is not closed with }}",
            e.title
        )));
    }
    let chosen = if entries.is_empty() {
        top
    } else {
        let want = default.unwrap_or_else(|| "0".into());
        let idx = match want.parse::<usize>() {
            Ok(i) => Some(i),
            Err(_) => entries
                .iter()
                .position(|e| e.title == want || e.id.as_deref() == Some(want.as_str())),
        };
        match idx {
            Some(i) if i < entries.len() => entries.swap_remove(i),
            _ => return Err(whole(format!("default {want:?} names no menuentry"))),
        }
    };
    match chosen.kernel {
        Some((kernel, args)) => Ok(Parsed::Boot(BootEntry {
            kernel,
            initrds: chosen.initrds,
            args,
        })),
        None if chosen.local => Ok(Parsed::LocalBoot),
        None if chosen.title.is_empty() => Err(whole("no menuentry and no linux command".into())),
        None => Err(whole(format!(
            "menuentry {:?} loads no kernel (no linux command)",
            chosen.title
        ))),
    }
}

// ------------------------------------------------------------ iPXE

/// Substitute the variables the simulated iPXE knows in a URI (`${mac}`,
/// `${netX/mac}`, `${mac:hexhyp}`); any other is an error.
fn ipxe_subst(s: &str, env: &ConfigEnv) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else {
            return Err(format!("{s:?}: unterminated ${{"));
        };
        let name = &after[..j];
        let (var, ty) = match name.split_once(':') {
            Some((v, t)) => (v, Some(t)),
            None => (name, None),
        };
        let is_mac = var == "mac"
            || var
                .strip_prefix("net")
                .and_then(|r| r.split_once('/'))
                .is_some_and(|(d, v)| v == "mac" && d.chars().all(|c| c.is_ascii_digit()));
        if !is_mac {
            return Err(format!(
                "{s:?}: the simulated iPXE knows only ${{mac}}, not ${{{name}}}"
            ));
        }
        match ty {
            None | Some("hex") => out.push_str(&env.mac.to_string()),
            Some("hexhyp") => out.push_str(&env.mac.dashes()),
            Some(t) => return Err(format!("{s:?}: unknown setting type {t:?}")),
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// An iPXE URI: http(s), `tftp://host[:port]/path`, or a path resolved
/// against the script's own URI (TFTP, on the boot server).
fn ipxe_fetch(uri: &str, env: &ConfigEnv) -> Result<Fetch, String> {
    let uri = ipxe_subst(uri, env)?;
    if is_http(&uri) {
        return Ok(Fetch::Http { url: uri });
    }
    if uri.to_ascii_lowercase().starts_with("tftp://") {
        let rest = &uri["tftp://".len()..];
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => return Err(format!("{uri:?} names no file")),
        };
        return Ok(Fetch::Tftp {
            server: Some(host_port(host, 69)?),
            path: path.to_string(),
        });
    }
    if uri.contains("://") {
        return Err(format!(
            "{uri:?}: only http, https and tftp URIs are supported"
        ));
    }
    let path = if uri.starts_with('/') {
        uri
    } else {
        match env.config_path.rfind('/') {
            Some(i) => format!("{}/{uri}", &env.config_path[..i]),
            None => uri,
        }
    };
    Ok(Fetch::Tftp { server: None, path })
}

/// `[--options] URI [args...]` of kernel / initrd / chain.
fn ipxe_image<'a>(words: &'a [&'a str]) -> Result<(&'a str, &'a [&'a str]), String> {
    let mut i = 1;
    while let Some(w) = words.get(i) {
        if !w.starts_with('-') {
            break;
        }
        let takes_value = matches!(*w, "--name" | "-n" | "--timeout" | "-t");
        i += if takes_value { 2 } else { 1 };
    }
    match words.get(i) {
        Some(uri) => Ok((uri, words.get(i + 1..).unwrap_or(&[]))),
        None => Err(format!(
            "{} needs an image URI",
            words.first().unwrap_or(&"")
        )),
    }
}

fn parse_ipxe(text: &str, env: &ConfigEnv) -> Result<Parsed, PErr> {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if !(first.starts_with("#!ipxe") || first.starts_with("#!gpxe")) {
        return Err(whole(
            "not an iPXE script (it must start with #!ipxe)".into(),
        ));
    }
    // Commands (each cut at its first || or &&: the simulated iPXE assumes
    // every command succeeds) and labels.
    let mut prog: Vec<(usize, Vec<&str>)> = Vec::new();
    let mut labels: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (n, line) in lines(text) {
        if let Some(label) = line.strip_prefix(':') {
            labels.insert(label.trim(), prog.len());
            continue;
        }
        let words: Vec<&str> = line
            .split_whitespace()
            .take_while(|w| *w != "||" && *w != "&&")
            .collect();
        if !words.is_empty() {
            prog.push((n, words));
        }
    }
    let mut kernel: Option<(Fetch, Vec<String>)> = None;
    let mut initrds: Vec<Fetch> = Vec::new();
    let mut pc = 0;
    let mut steps = 0;
    let mut booted = false;
    while let Some((n, words)) = prog.get(pc) {
        let n = *n;
        pc += 1;
        steps += 1;
        if steps > 10_000 {
            return Err(whole("the script loops without booting".into()));
        }
        let cmd = words.first().copied().unwrap_or("");
        match cmd {
            "kernel" | "chain" | "imgexec" => {
                let (uri, args) = ipxe_image(words).map_err(at(n))?;
                let f = ipxe_fetch(uri, env).map_err(at(n))?;
                kernel = Some((f, args.iter().map(|s| s.to_string()).collect()));
                if cmd != "kernel" {
                    booted = true;
                    break;
                }
            }
            "initrd" | "imgfetch" | "module" => {
                let (uri, _) = ipxe_image(words).map_err(at(n))?;
                initrds.push(ipxe_fetch(uri, env).map_err(at(n))?);
            }
            "boot" | "imgboot" => {
                if kernel.is_none() {
                    return Err(at(n)(format!("{cmd} with no kernel loaded")));
                }
                booted = true;
                break;
            }
            "imgfree" => {
                kernel = None;
                initrds.clear();
            }
            "goto" => {
                let Some(l) = words.get(1) else {
                    return Err(at(n)("goto needs a label".into()));
                };
                match labels.get(l) {
                    Some(i) => pc = *i,
                    None => return Err(at(n)(format!("goto {l}: no such label"))),
                }
            }
            "sanboot" | "exit" => {
                if kernel.is_none() {
                    return Ok(Parsed::LocalBoot);
                }
                return Err(at(n)(format!("{cmd} after loading a kernel")));
            }
            "poweroff" | "reboot" | "shell" => {
                return Err(at(n)(format!("the script runs {cmd} before booting")))
            }
            "menu" | "item" | "choose" | "login" => {
                return Err(at(n)(format!(
                    "{cmd}: interactive scripts are not supported"
                )))
            }
            "set" | "echo" | "sleep" | "iseq" | "isset" | "inc" | "dhcp" | "ifopen" | "ifconf"
            | "ifclose" | "ifstat" | "route" | "prompt" | "imgtrust" | "imgverify" | "ntp"
            | "cpuid" | "params" | "param" | "console" | "colour" | "cpair" | "nslookup"
            | "show" | "clear" | "time" | "sync" | "imgstat" | "imgselect" | "imgargs" => {}
            other => return Err(at(n)(format!("unknown command {other:?}"))),
        }
    }
    match kernel {
        Some((kernel, args)) if booted => Ok(Parsed::Boot(BootEntry {
            kernel,
            initrds,
            args,
        })),
        _ => Err(whole("the script ends without booting".into())),
    }
}

// ------------------------------------------------------------ the ramdisk

/// What a deploy ramdisk needs from its kernel command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipa {
    /// `ipa-api-url`, without a trailing slash.
    pub api_url: String,
    pub node_uuid: String,
}

impl Ipa {
    /// `{ipa-api-url}/v1/heartbeat/{ipa-node-uuid}`.
    pub fn heartbeat_url(&self) -> String {
        format!("{}/v1/heartbeat/{}", self.api_url, self.node_uuid)
    }
}

/// The value of the last `key=value` word with this key (later ones win,
/// as in the ramdisk's reading of /proc/cmdline).
pub fn kernel_arg<'a>(args: &'a [String], key: &str) -> Option<&'a str> {
    args.iter()
        .rev()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

impl BootEntry {
    /// The kernel, then the initrds, in the order the loader fetches them.
    pub fn files(&self) -> Vec<&Fetch> {
        std::iter::once(&self.kernel).chain(&self.initrds).collect()
    }

    /// `ipa-api-url` and `ipa-node-uuid`, checked.
    pub fn ipa(&self) -> Result<Ipa, String> {
        let api = kernel_arg(&self.args, "ipa-api-url")
            .ok_or("the kernel arguments have no ipa-api-url")?;
        let uuid = kernel_arg(&self.args, "ipa-node-uuid")
            .ok_or("the kernel arguments have no ipa-node-uuid")?;
        let url = reqwest::Url::parse(api).map_err(|e| format!("ipa-api-url {api:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("ipa-api-url {api:?} is not an http(s) URL"));
        }
        if uuid.is_empty()
            || !uuid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!("ipa-node-uuid {uuid:?} is not a node identifier"));
        }
        Ok(Ipa {
            api_url: api.trim_end_matches('/').to_string(),
            node_uuid: uuid.to_string(),
        })
    }
}

/// The heartbeat body a deploy ramdisk sends.
pub fn heartbeat_body(callback_url: &str) -> serde_json::Value {
    serde_json::json!({
        "callback_url": callback_url,
        "agent_version": agent_version(),
    })
}

/// `http://host:port`, brackets around IPv6.
pub fn callback_url(host: IpAddr, port: u16) -> String {
    format!("http://{}", SocketAddr::new(host, port))
}

/// An HTTP download against its Content-Length.
pub fn check_http_size(announced: Option<u64>, got: u64) -> Result<(), String> {
    match announced {
        Some(n) if n != got => Err(format!("received {got} bytes but Content-Length said {n}")),
        _ => Ok(()),
    }
}

/// Counters and state of one machine's network boots (a snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetbootStats {
    /// Boots with PXE in effect (a netboot started).
    pub netboots: u64,
    /// Boots from the disk (no PXE in the boot flags).
    pub disk_boots: u64,
    /// PXE boots that ended on the disk: no boot server, the per-MAC config
    /// not found, or a config that boots the local disk.
    pub disk_fallbacks: u64,
    /// Per-MAC configs fetched.
    pub configs_fetched: u64,
    /// Configs the simulated loader could not use.
    pub config_errors: u64,
    /// Kernel / ramdisk files completed over TFTP, and bytes received
    /// (configs and failed transfers included in the bytes).
    pub tftp_files: u64,
    pub tftp_bytes: u64,
    /// The same over HTTP.
    pub http_files: u64,
    pub http_bytes: u64,
    /// Netboots whose config or kernel / ramdisk download failed.
    pub download_failures: u64,
    pub heartbeats_sent: u64,
    /// Answered 2xx.
    pub heartbeats_accepted: u64,
    /// Answered 4xx / 5xx.
    pub heartbeats_refused: u64,
    /// No answer (connection refused, timeout).
    pub heartbeat_errors: u64,
    /// Status of the last heartbeat answer.
    pub last_heartbeat_status: Option<u16>,
    /// `off`, `disk`, `config`, `downloading`, `heartbeating`, `booted`
    /// (no heartbeat: fault or no ipa arguments), `failed`.
    pub state: String,
    /// The config the last netboot fetched (its path).
    pub last_config: Option<String>,
    /// From the last config's kernel arguments.
    pub node_uuid: Option<String>,
    pub api_url: Option<String>,
    /// The heartbeat's `callback_url` of the last netboot.
    pub callback_url: Option<String>,
    /// Why the last netboot did not get to heartbeating, or why its last
    /// heartbeat was refused (cleared when a netboot starts).
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::render::{render_node, BootMode, RenderContext};
    use crate::store::{Node, Port};
    use serde_json::json;

    const UUID: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";
    const MAC: Mac = Mac([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);

    fn env(kind: ConfigKind) -> ConfigEnv {
        ConfigEnv {
            mac: MAC,
            config_path: kind.path(&MAC.to_string()),
        }
    }

    fn parse(kind: ConfigKind, text: &str) -> Result<Parsed, ParseError> {
        parse_config(kind, text.as_bytes(), &env(kind))
    }

    fn boot(kind: ConfigKind, text: &str) -> BootEntry {
        match parse(kind, text) {
            Ok(Parsed::Boot(e)) => e,
            other => panic!("{kind:?}: {other:?}\n{text}"),
        }
    }

    fn err(kind: ConfigKind, text: &str) -> String {
        match parse(kind, text) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("{kind:?} parsed: {p:?}\n{text}"),
        }
    }

    fn tftp(path: &str) -> Fetch {
        Fetch::Tftp {
            server: None,
            path: path.into(),
        }
    }

    fn http(url: &str) -> Fetch {
        Fetch::Http { url: url.into() }
    }

    /// What the agent renders for a node, through its own renderer.
    fn rendered(
        info: serde_json::Value,
        mode: &str,
        http_url: Option<&str>,
    ) -> Vec<(ConfigKind, String, String)> {
        let ctx = RenderContext {
            api_url: "http://10.0.0.1:6385".into(),
            http_url: http_url.map(str::to_string),
            default_boot_mode: BootMode::Uefi,
            kernel_append_params: "nofb nomodeset vga=normal".into(),
        };
        let node = Node {
            uuid: UUID.into(),
            driver: "ipmi".into(),
            driver_info: serde_json::from_value(info).unwrap(),
            properties: serde_json::from_value(
                json!({ "capabilities": format!("boot_mode:{mode}") }),
            )
            .unwrap(),
            ..Node::default()
        };
        let port = Port {
            id: 1,
            uuid: "p".into(),
            address: MAC.to_string(),
            node_uuid: UUID.into(),
            pxe_enabled: true,
            extra: Default::default(),
            local_link_connection: Default::default(),
            physical_network: None,
            created_at: String::new(),
            updated_at: None,
        };
        render_node(&node, &[port], &ctx)
            .unwrap()
            .into_iter()
            .map(|r| (r.kind, r.path, r.text))
            .collect()
    }

    fn images() -> serde_json::Value {
        json!({"deploy_kernel": "deploy/vmlinuz", "deploy_ramdisk": "/deploy/initrd.img"})
    }

    fn check_ipa(e: &BootEntry) {
        let ipa = e.ipa().unwrap();
        assert_eq!(ipa.api_url, "http://10.0.0.1:6385");
        assert_eq!(ipa.node_uuid, UUID);
        assert_eq!(
            ipa.heartbeat_url(),
            format!("http://10.0.0.1:6385/v1/heartbeat/{UUID}")
        );
        assert_eq!(kernel_arg(&e.args, "BOOTIF"), Some("01-52-54-00-ab-cd-ef"));
        assert_eq!(kernel_arg(&e.args, "vga"), Some("normal"));
        assert!(e.args.iter().any(|a| a == "nofb"));
    }

    #[test]
    fn mac_parse_print_add() {
        let m: Mac = "52-54-00-AB-CD-EF".parse().unwrap();
        assert_eq!(m, MAC);
        assert_eq!(m.to_string(), "52:54:00:ab:cd:ef");
        assert_eq!(m.dashes(), "52-54-00-ab-cd-ef");
        assert_eq!("525400abcdef".parse::<Mac>().unwrap(), MAC);
        assert_eq!(
            MAC.checked_add(0x11).unwrap().to_string(),
            "52:54:00:ab:ce:00"
        );
        assert_eq!(
            DEFAULT_MAC_BASE.checked_add(1000).unwrap().to_string(),
            "52:54:00:00:03:e8"
        );
        assert_eq!(Mac([0xff; 6]).checked_add(1), None);
        assert_eq!(Mac([0xff; 6]).checked_add(0), Some(Mac([0xff; 6])));
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:zz",
            "hello",
            "52:54:00:ab:cd:ef:01",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_value(MAC).unwrap(),
            json!("52:54:00:ab:cd:ef")
        );
    }

    #[test]
    fn firmware_follows_the_boot_flags() {
        let pxe = BootFlags::new(BootDevice::Pxe, false, false);
        let pxe_uefi = BootFlags::new(BootDevice::Pxe, true, true);
        let disk = BootFlags::new(BootDevice::Disk, false, false);
        assert_eq!(
            decide(Some(&pxe), Loader::Pxe, MAC),
            FirmwareAction::Network {
                kind: ConfigKind::Pxelinux,
                path: "pxelinux.cfg/01-52-54-00-ab-cd-ef".into()
            }
        );
        assert_eq!(
            decide(Some(&pxe_uefi), Loader::Pxe, MAC),
            FirmwareAction::Network {
                kind: ConfigKind::Grub,
                path: "grub/grub.cfg-01-52-54-00-ab-cd-ef".into()
            }
        );
        assert_eq!(
            decide(Some(&pxe_uefi), Loader::Ipxe, MAC),
            FirmwareAction::Network {
                kind: ConfigKind::Ipxe,
                path: "ipxe/52:54:00:ab:cd:ef.ipxe".into()
            }
        );
        assert_eq!(decide(Some(&disk), Loader::Pxe, MAC), FirmwareAction::Disk);
        assert_eq!(decide(None, Loader::Pxe, MAC), FirmwareAction::Disk);
        let mut stale = pxe;
        stale.valid = false;
        assert_eq!(decide(Some(&stale), Loader::Pxe, MAC), FirmwareAction::Disk);
        // From the raw parameter bytes, as the simulated BMC keeps them.
        let raw = BootFlags::parse(&[0x80, 0x04, 0, 0, 0]).unwrap();
        assert!(matches!(
            decide(Some(&raw), Loader::Pxe, MAC),
            FirmwareAction::Network {
                kind: ConfigKind::Pxelinux,
                ..
            }
        ));
        assert_eq!("iPXE".parse::<Loader>().unwrap(), Loader::Ipxe);
        // Redfish: the override target at the boot, and the mode.
        let uefi = redfish_boot_flags(Some("Pxe"), "UEFI");
        assert!(matches!(
            decide(uefi.as_ref(), Loader::Pxe, MAC),
            FirmwareAction::Network {
                kind: ConfigKind::Grub,
                ..
            }
        ));
        let legacy = redfish_boot_flags(Some("Pxe"), "Legacy");
        assert!(matches!(
            decide(legacy.as_ref(), Loader::Pxe, MAC),
            FirmwareAction::Network {
                kind: ConfigKind::Pxelinux,
                ..
            }
        ));
        for t in [
            None,
            Some("None"),
            Some("Hdd"),
            Some("Cd"),
            Some("UefiHttp"),
        ] {
            let f = redfish_boot_flags(t, "UEFI");
            assert_eq!(decide(f.as_ref(), Loader::Pxe, MAC), FirmwareAction::Disk);
        }
        assert!("uboot".parse::<Loader>().is_err());
    }

    #[test]
    fn agent_pxelinux_config() {
        let r = rendered(images(), "bios", Some("http://10.0.0.1:8080"));
        let (kind, path, text) = &r[0];
        assert_eq!(*kind, ConfigKind::Pxelinux);
        assert_eq!(path, "pxelinux.cfg/01-52-54-00-ab-cd-ef");
        let e = boot(*kind, text);
        assert_eq!(e.kernel, tftp("/deploy/vmlinuz"));
        assert_eq!(e.initrds, vec![tftp("/deploy/initrd.img")]);
        assert!(!e.args.iter().any(|a| a.starts_with("initrd=")));
        check_ipa(&e);
        // The renderer's own fixture, verbatim.
        let fixture = "default deploy\n\nlabel deploy\nkernel /deploy/vmlinuz\n\
                       append initrd=/deploy/initrd.img nofb nomodeset ipa-api-url=http://10.0.0.1:6385 \
                       ipa-node-uuid=1be26c0b-03f2-4d2e-ae87-c02d7f33c123 BOOTIF=01-52-54-00-ab-cd-ef\n";
        assert_eq!(
            boot(ConfigKind::Pxelinux, fixture).kernel,
            tftp("/deploy/vmlinuz")
        );
    }

    #[test]
    fn agent_grub_config() {
        let r = rendered(images(), "uefi", Some("http://10.0.0.1:8080"));
        let (kind, path, text) = &r[0];
        assert_eq!(*kind, ConfigKind::Grub);
        assert_eq!(path, "grub/grub.cfg-01-52-54-00-ab-cd-ef");
        let e = boot(*kind, text);
        assert_eq!(e.kernel, tftp("/deploy/vmlinuz"));
        assert_eq!(e.initrds, vec![tftp("/deploy/initrd.img")]);
        check_ipa(&e);
    }

    #[test]
    fn agent_ipxe_script() {
        let r = rendered(images(), "uefi", Some("http://10.0.0.1:8080"));
        let (kind, path, text) = &r[1];
        assert_eq!(*kind, ConfigKind::Ipxe);
        assert_eq!(path, "ipxe/52:54:00:ab:cd:ef.ipxe");
        let e = boot(*kind, text);
        assert_eq!(e.kernel, http("http://10.0.0.1:8080/deploy/vmlinuz"));
        assert_eq!(
            e.initrds,
            vec![http("http://10.0.0.1:8080/deploy/initrd.img")]
        );
        check_ipa(&e);
        assert_eq!(
            e.args.last().map(String::as_str),
            Some("initrd=deploy_ramdisk")
        );
        // Without an HTTP boot server: root paths, resolved against the
        // script's TFTP URI.
        let r = rendered(images(), "bios", None);
        let e = boot(ConfigKind::Ipxe, &r[1].2);
        assert_eq!(e.kernel, tftp("/deploy/vmlinuz"));
    }

    #[test]
    fn agent_configs_with_urls() {
        let info = json!({
            "deploy_kernel": "http://images.example:8000/ipa/kernel",
            "deploy_ramdisk": "http://192.0.2.7/ipa/ramdisk?v=2",
        });
        let r = rendered(info.clone(), "uefi", None);
        let grub = boot(ConfigKind::Grub, &r[0].2);
        assert_eq!(grub.kernel, http("http://images.example:8000/ipa/kernel"));
        assert_eq!(grub.initrds, vec![http("http://192.0.2.7/ipa/ramdisk?v=2")]);
        check_ipa(&grub);
        let ipxe = boot(ConfigKind::Ipxe, &r[1].2);
        assert_eq!(ipxe.kernel, grub.kernel);
        assert_eq!(ipxe.initrds, grub.initrds);
        let r = rendered(info, "bios", None);
        let pxe = boot(ConfigKind::Pxelinux, &r[0].2);
        assert_eq!(pxe.kernel, grub.kernel);
        assert_eq!(pxe.initrds, grub.initrds);
        check_ipa(&pxe);
    }

    #[test]
    fn builtin_defaults_boot_the_disk() {
        for kind in [ConfigKind::Pxelinux, ConfigKind::Grub, ConfigKind::Ipxe] {
            assert_eq!(
                parse(kind, kind.builtin_default()),
                Ok(Parsed::LocalBoot),
                "{kind:?}"
            );
        }
        // boot.ipxe chains to the per-MAC script (the MAC substituted).
        let chained = boot(
            ConfigKind::Ipxe,
            "#!ipxe\n\nchain http://10.0.0.1:8080/ipxe/${mac}.ipxe || goto local\n\n:local\nsanboot --drive 0x80 || exit\n",
        );
        assert_eq!(
            chained.kernel,
            http("http://10.0.0.1:8080/ipxe/52:54:00:ab:cd:ef.ipxe")
        );
    }

    #[test]
    fn hand_written_configs() {
        // PXELINUX: labels, a menu, several initrds, host::path, append -.
        let e = boot(
            ConfigKind::Pxelinux,
            "# comment\r\nUI menu.c32\r\nPROMPT 0\r\nTIMEOUT 50\r\nDEFAULT two\r\n\r\n\
             LABEL one\r\n  KERNEL k1\r\n  APPEND a=1\r\nLABEL two\r\n  MENU LABEL Two\r\n\
             TEXT HELP\r\n  whatever kernel x\r\nENDTEXT\r\n  KERNEL ::/k2\r\n  INITRD i1,10.0.0.9::i2\r\n  \
             APPEND initrd=i3 ipa-api-url=http://h:1/ ipa-node-uuid=n-1\r\n",
        );
        assert_eq!(e.kernel, tftp("/k2"));
        assert_eq!(
            e.initrds,
            vec![
                tftp("i1"),
                Fetch::Tftp {
                    server: Some("10.0.0.9:69".parse().unwrap()),
                    path: "i2".into()
                },
                tftp("i3")
            ]
        );
        let ipa = e.ipa().unwrap();
        assert_eq!(ipa.api_url, "http://h:1");
        assert_eq!(ipa.heartbeat_url(), "http://h:1/v1/heartbeat/n-1");
        let e = boot(
            ConfigKind::Pxelinux,
            "default vmlinuz console=ttyS0\nappend initrd=r\n",
        );
        assert_eq!(e.kernel, tftp("vmlinuz"));
        assert_eq!(e.initrds, vec![tftp("r")]);
        assert_eq!(e.args, vec!["console=ttyS0"]);
        let e = boot(
            ConfigKind::Pxelinux,
            "default x\nlabel x\nkernel k\nappend -\n",
        );
        assert!(e.args.is_empty() && e.initrds.is_empty());
        assert!(e.ipa().unwrap_err().contains("no ipa-api-url"));
        // GRUB: ids, indexes, quoting, devices.
        let text = "set timeout=1\nset default='second'\ninsmod http\n\
                    menuentry 'first' --id one {\n linux /a\n}\n\
                    menuentry \"sec\\\"ond\" --class os --id=second {\n  \
                    linuxefi (tftp,192.0.2.1)/k a=\"b c\" ipa-node-uuid=u\n  \
                    initrdefi (http,192.0.2.2:8080)/r1 ($root)/r2\n  boot\n}\n";
        let e = boot(ConfigKind::Grub, text);
        assert_eq!(
            e.kernel,
            Fetch::Tftp {
                server: Some("192.0.2.1:69".parse().unwrap()),
                path: "/k".into()
            }
        );
        assert_eq!(
            e.initrds,
            vec![http("http://192.0.2.2:8080/r1"), tftp("/r2")]
        );
        assert_eq!(e.args, vec!["a=b c", "ipa-node-uuid=u"]);
        let e = boot(ConfigKind::Grub, &text.replace("'second'", "0"));
        assert_eq!(e.kernel, tftp("/a"));
        let e = boot(ConfigKind::Grub, &text.replace("'second'", "sec\\\"ond"));
        assert!(e.args.contains(&"ipa-node-uuid=u".to_string()));
        let e = boot(ConfigKind::Grub, "linux /k x=1\ninitrd /r\nboot\n");
        assert_eq!((e.kernel, e.args), (tftp("/k"), vec!["x=1".to_string()]));
        // iPXE: options, relative URIs, tftp://, goto.
        let e = boot(
            ConfigKind::Ipxe,
            "#!ipxe\ngoto go\nshell\n:go\nkernel --name k --autofree images/k a=1 ipa-api-url=https://api.example/\n\
             initrd -n r tftp://192.0.2.3:6969/r\nimgargs k a=2\nboot k || goto go\n",
        );
        assert_eq!(e.kernel, tftp("ipxe/images/k"));
        assert_eq!(
            e.initrds,
            vec![Fetch::Tftp {
                server: Some("192.0.2.3:6969".parse().unwrap()),
                path: "/r".into()
            }]
        );
        assert_eq!(
            kernel_arg(&e.args, "ipa-api-url"),
            Some("https://api.example/")
        );
    }

    #[test]
    fn garbage_is_refused_clearly() {
        use ConfigKind::*;
        let cases: &[(ConfigKind, &[u8], &str)] = &[
            (Pxelinux, b"", "no DEFAULT line"),
            (
                Pxelinux,
                b"hello world\n",
                "line 1: unknown keyword \"hello\"",
            ),
            (Pxelinux, b"\xff\xfe\x00\x01", "NUL"),
            (Pxelinux, b"default x\n\xc3\x28\n", "not UTF-8"),
            (
                Pxelinux,
                b"default deploy\nlabel deploy\nappend x\n",
                "boots no kernel",
            ),
            (Pxelinux, b"kernel /k\n", "line 1: kernel outside a label"),
            (
                Pxelinux,
                b"default x\nlabel x\nkernel ftp://h/k\n",
                "line 3",
            ),
            (
                Pxelinux,
                b"default x\nlabel x\ncom32 menu.c32\n",
                "com32 is not supported",
            ),
            (
                Pxelinux,
                b"default x\nlabel x\nkernel k\nappend initrd=h.example::r\n",
                "not an IP",
            ),
            (Pxelinux, b"default\n", "line 1: default needs a label"),
            (Grub, b"", "no menuentry and no linux"),
            (
                Grub,
                b"menuentry \"x\" {\n linux /k\n",
                "line 1: menuentry \"x\" is not closed",
            ),
            (Grub, b"menuentry \"x\" {\n linux relative/k\n}\n", "line 2"),
            (
                Grub,
                b"menuentry \"x\" {\n linux (nfs)/k\n}\n",
                "device \"nfs\"",
            ),
            (
                Grub,
                b"menuentry \"x\" {\n linux (http)/k\n}\n",
                "needs a host",
            ),
            (Grub, b"menuentry \"x\" {\n linux \"/k\n}\n", "unterminated"),
            (Grub, b"menuentry x\n", "must end with {"),
            (Grub, b"}\n", "without a menuentry"),
            (
                Grub,
                b"set default=7\nmenuentry x {\nlinux /k\n}\n",
                "default \"7\" names no menuentry",
            ),
            (Grub, b"menuentry x {\necho hi\n}\n", "loads no kernel"),
            (
                Grub,
                b"menuentry x {\nfrobnicate\n}\n",
                "line 2: unknown command",
            ),
            (Grub, b"if true; then\n", "not supported"),
            (Ipxe, b"kernel http://h/k\nboot\n", "must start with #!ipxe"),
            (Ipxe, b"#!ipxe\nboot\n", "line 2: boot with no kernel"),
            (Ipxe, b"#!ipxe\nkernel http://h/k\n", "ends without booting"),
            (Ipxe, b"#!ipxe\n:a\ngoto a\n", "loops"),
            (Ipxe, b"#!ipxe\ngoto nowhere\n", "no such label"),
            (Ipxe, b"#!ipxe\nkernel\n", "needs an image URI"),
            (
                Ipxe,
                b"#!ipxe\nkernel http://h/${serial}\nboot\n",
                "only ${mac}",
            ),
            (Ipxe, b"#!ipxe\nkernel nfs://h/k\nboot\n", "only http"),
            (Ipxe, b"#!ipxe\npoweroff\n", "runs poweroff"),
            (Ipxe, b"#!ipxe\nfrob\n", "unknown command \"frob\""),
        ];
        for (kind, bytes, want) in cases {
            let e = parse_config(*kind, bytes, &env(*kind));
            let msg = match e {
                Err(e) => e.to_string(),
                Ok(p) => panic!(
                    "{kind:?} {:?} parsed: {p:?}",
                    String::from_utf8_lossy(bytes)
                ),
            };
            assert!(
                msg.contains(want),
                "{kind:?} {:?}: {msg}",
                String::from_utf8_lossy(bytes)
            );
            assert!(msg.starts_with(kind.name()), "{msg}");
        }
        let big = vec![b'#'; MAX_CONFIG_LEN + 1];
        assert!(err_bytes(Ipxe, &big).contains("larger"));
        // Bad kernel arguments for the heartbeat.
        let e = boot(
            Pxelinux,
            "default x\nlabel x\nkernel k\nappend ipa-api-url=ftp://h ipa-node-uuid=u\n",
        );
        assert!(e.ipa().unwrap_err().contains("not an http(s) URL"));
        let e = boot(
            Pxelinux,
            "default x\nlabel x\nkernel k\nappend ipa-api-url=http://h ipa-node-uuid=a/../b\n",
        );
        assert!(e.ipa().unwrap_err().contains("not a node identifier"));
        let e = boot(
            Pxelinux,
            "default x\nlabel x\nkernel k\nappend ipa-api-url=http://h\n",
        );
        assert!(e.ipa().unwrap_err().contains("no ipa-node-uuid"));
        assert!(err(Grub, "menuentry {\n").contains("line 1: menuentry needs a title"));
    }

    fn err_bytes(kind: ConfigKind, bytes: &[u8]) -> String {
        parse_config(kind, bytes, &env(kind))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn no_input_panics() {
        // Every prefix of every config, and some byte noise, parse or fail
        // without panicking.
        let mut texts: Vec<String> = Vec::new();
        for mode in ["bios", "uefi"] {
            for (_, _, t) in rendered(images(), mode, Some("http://10.0.0.1:8080")) {
                texts.push(t);
            }
        }
        for kind in [ConfigKind::Pxelinux, ConfigKind::Grub, ConfigKind::Ipxe] {
            texts.push(kind.builtin_default().to_string());
        }
        for t in &texts {
            for kind in [ConfigKind::Pxelinux, ConfigKind::Grub, ConfigKind::Ipxe] {
                for cut in 0..=t.len() {
                    let _ = parse_config(kind, &t.as_bytes()[..cut], &env(kind));
                }
            }
        }
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet = b"#!:(){}\"'\\$ =,/|&\n\tabcdefkernlitdpx0123456789";
        for _ in 0..3000 {
            let n = rng.gen_range(0..200);
            let bytes: Vec<u8> = (0..n)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            for kind in [ConfigKind::Pxelinux, ConfigKind::Grub, ConfigKind::Ipxe] {
                let _ = parse_config(kind, &bytes, &env(kind));
            }
        }
    }

    #[test]
    fn fetch_failing_and_describe() {
        assert_eq!(
            tftp("/deploy/k").failing(),
            tftp("/deploy/k.ironrack-sim-missing")
        );
        assert_eq!(
            http("http://h/k?v=1").failing(),
            http("http://h/k.ironrack-sim-missing?v=1")
        );
        let server: SocketAddr = "127.0.0.1:69".parse().unwrap();
        assert_eq!(tftp("/k").describe(Some(server)), "tftp://127.0.0.1:69/k");
        assert_eq!(http("http://h/k").describe(None), "http://h/k");
    }

    #[test]
    fn heartbeat_pieces() {
        assert_eq!(
            callback_url("127.0.0.1".parse().unwrap(), 10000),
            "http://127.0.0.1:10000"
        );
        assert_eq!(
            callback_url("::1".parse().unwrap(), 9999),
            "http://[::1]:9999"
        );
        let b = heartbeat_body("http://127.0.0.1:10000");
        assert_eq!(b["callback_url"], "http://127.0.0.1:10000");
        assert_eq!(
            b["agent_version"],
            format!("ironrack-sim {}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(check_http_size(Some(10), 10), Ok(()));
        assert_eq!(check_http_size(None, 10), Ok(()));
        assert!(check_http_size(Some(11), 10)
            .unwrap_err()
            .contains("Content-Length said 11"));
    }
}
