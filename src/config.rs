//! `ironrack serve --config FILE`: the agent's TOML configuration. Every key
//! has a default, so an empty file (or no file) is a working configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub api: ApiConfig,
    pub store: StoreConfig,
    pub conductor: ConductorConfig,
    /// TFTP server; runs only when the section is present.
    pub tftp: Option<TftpConfig>,
    /// HTTP boot server (iPXE, UEFI HTTP); runs only when the section is present.
    pub http_boot: Option<HttpBootConfig>,
    /// How per-node boot configs are rendered and looked up.
    pub boot: BootConfig,
    /// Serial consoles bridged to TCP.
    pub console: ConsoleConfig,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    #[default]
    Noauth,
    HttpBasic,
}

/// One address or a list of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Listen {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: Listen,
    pub auth: AuthMode,
    /// bcrypt htpasswd file, as Ironic's `[json_rpc]`/`[DEFAULT] http_basic_auth_user_file`.
    pub htpasswd: Option<PathBuf>,
    /// The URL clients (and deploy ramdisks) use to reach the API; derived
    /// from the first listen address when unset.
    pub public_url: Option<String>,
    /// Most items a list returns per page (Ironic's `[api] max_limit`).
    pub max_limit: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: Listen::One("127.0.0.1:6385".into()),
            auth: AuthMode::Noauth,
            htpasswd: None,
            public_url: None,
            max_limit: 1000,
        }
    }
}

impl ApiConfig {
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        let list = match &self.listen {
            Listen::One(s) => vec![s.clone()],
            Listen::Many(v) => v.clone(),
        };
        if list.is_empty() {
            return Err("[api] listen names no address".into());
        }
        list.iter()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .map_err(|e| format!("[api] listen: {s:?} is not an IP:port address: {e}"))
            })
            .collect()
    }

    /// Refuse configurations that would expose an unauthenticated API.
    pub fn check(&self) -> Result<Vec<SocketAddr>, String> {
        let addrs = self.listen_addrs()?;
        match self.auth {
            AuthMode::Noauth => {
                if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                    return Err(format!(
                        "refusing to start: auth = \"noauth\" but [api] listen includes {a}, \
                         which is not a loopback address; use auth = \"http_basic\" with an \
                         htpasswd file, or listen on 127.0.0.1 / ::1 only"
                    ));
                }
            }
            AuthMode::HttpBasic => {
                if self.htpasswd.is_none() {
                    return Err(
                        "auth = \"http_basic\" needs [api] htpasswd = \"PATH\" (a bcrypt htpasswd file)"
                            .into(),
                    );
                }
            }
        }
        Ok(addrs)
    }

    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite database (WAL mode).
    pub path: PathBuf,
    /// The AEAD key for secrets at rest; created with mode 0600 on first
    /// start. Defaults to `<path>.key`.
    pub key_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("ironrack.db"),
            key_file: None,
        }
    }
}

impl StoreConfig {
    pub fn key_path(&self) -> PathBuf {
        match &self.key_file {
            Some(p) => p.clone(),
            None => {
                let mut s = self.path.as_os_str().to_owned();
                s.push(".key");
                PathBuf::from(s)
            }
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConductorConfig {
    /// Worker pool size for asynchronous actions (power changes).
    pub workers: usize,
    /// Seconds between power sync sweeps; 0 disables the loop.
    pub sync_power_state_interval: f64,
    /// BMCs queried at once during a sweep.
    pub sync_power_state_workers: usize,
    /// Failed syncs in a row before a node goes to maintenance.
    pub power_state_sync_max_retries: u32,
    /// Default bound, seconds, for a power change to land.
    pub power_state_change_timeout: f64,
    /// Default bound, seconds, for a soft power off (or the off half of a soft reboot).
    pub soft_power_off_timeout: f64,
    /// Seconds between attempts to recover nodes in "power failure"; 0 disables.
    pub power_failure_recovery_interval: f64,
    /// When the hardware disagrees with the database, make the hardware follow
    /// the database (Ironic's `force_power_state_during_sync`).
    pub force_power_state_during_sync: bool,
    /// Bound, seconds, on one BMC request (IPMI command or Redfish call).
    pub bmc_timeout: f64,
    /// Interval, seconds, between power state polls while a change lands.
    pub power_poll_interval: f64,
    /// Extra hw-profiles (TOML files) on top of the built-in ones.
    pub hw_profiles_dir: Option<PathBuf>,
    /// Seconds a node may stay in `wait call-back` before the deploy fails
    /// (Ironic's `deploy_callback_timeout`).
    pub deploy_callback_timeout: f64,
    /// Seconds a node may stay in `clean wait` before cleaning fails
    /// (Ironic's `clean_callback_timeout`).
    pub clean_callback_timeout: f64,
    /// Clean (boot the ramdisk and wait for it) on tear down and provide;
    /// when false, nodes go straight to `available` (Ironic's `automated_clean`).
    pub automated_clean: bool,
    /// Seconds between checks of the call-back timeouts
    /// (Ironic's `check_provision_state_interval`).
    pub check_provision_state_interval: f64,
}

impl Default for ConductorConfig {
    fn default() -> Self {
        ConductorConfig {
            workers: 100,
            sync_power_state_interval: 60.0,
            sync_power_state_workers: 64,
            power_state_sync_max_retries: 3,
            power_state_change_timeout: 60.0,
            soft_power_off_timeout: 600.0,
            power_failure_recovery_interval: 300.0,
            force_power_state_during_sync: false,
            bmc_timeout: 5.0,
            power_poll_interval: 1.0,
            hw_profiles_dir: None,
            deploy_callback_timeout: 1800.0,
            clean_callback_timeout: 1800.0,
            automated_clean: true,
            check_provision_state_interval: 60.0,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TftpConfig {
    /// UDP address for read requests (port 69 needs CAP_NET_BIND_SERVICE).
    pub listen: String,
    /// The boot root: loaders, kernels, ramdisks. Only regular files under
    /// it are served.
    pub root: Option<PathBuf>,
    /// Largest `blksize` granted (also capped by the path MTU).
    pub max_blksize: u16,
    /// Largest `windowsize` (RFC 7440) granted.
    pub max_windowsize: u16,
    /// Transfers in flight at once; further requests get ERROR "server busy".
    pub max_transfers: usize,
    /// Retransmit timeout, seconds, unless the client's `timeout` option says otherwise.
    pub timeout: f64,
    /// Retransmissions of one window (or OACK) before the transfer is dropped.
    pub max_retries: u32,
}

impl Default for TftpConfig {
    fn default() -> Self {
        TftpConfig {
            listen: "0.0.0.0:69".into(),
            root: None,
            max_blksize: 1468,
            max_windowsize: 64,
            max_transfers: 512,
            timeout: 1.0,
            max_retries: 5,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpBootConfig {
    /// TCP address of the HTTP boot server.
    pub listen: String,
    /// Defaults to `[tftp] root`.
    pub root: Option<PathBuf>,
    /// The URL machines use to reach this server (iPXE scripts name it);
    /// derived from the listen address when unset.
    pub public_url: Option<String>,
}

impl Default for HttpBootConfig {
    fn default() -> Self {
        HttpBootConfig {
            listen: "0.0.0.0:8080".into(),
            root: None,
            public_url: None,
        }
    }
}

/// What a config request for a MAC that belongs to no prepared node gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownMac {
    /// The root's default config (`pxelinux.cfg/default`, `grub/grub.cfg`,
    /// `ipxe/default.ipxe`), or a built-in one that boots the local disk.
    #[default]
    Default,
    /// TFTP "file not found" / HTTP 404; the loader falls back by itself.
    NotFound,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootConfig {
    pub unknown_mac: UnknownMac,
    /// Boot mode of nodes whose capabilities name none (Ironic's default is uefi).
    pub default_boot_mode: String,
    /// Kernel arguments for every deploy ramdisk, before the node's
    /// `driver_info.kernel_append_params` (Ironic's `[pxe] kernel_append_params`).
    pub kernel_append_params: String,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            unknown_mac: UnknownMac::Default,
            default_boot_mode: "uefi".into(),
            kernel_append_params: "nofb nomodeset vga=normal".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The address console ports listen on, and the host in `console_info`:
    /// the agent's management address.
    pub host: String,
    /// TCP ports handed to consoles, `FIRST-LAST`.
    pub port_range: String,
    /// Console logs, one directory per node.
    pub log_dir: PathBuf,
    /// A console log file is rotated past this size.
    pub log_max_bytes: u64,
    /// Log files kept per node.
    pub log_keep: usize,
    /// Recent output shown to a viewer on connect.
    pub replay_bytes: usize,
    pub max_viewers: usize,
    /// When set, viewers must send this file's first line before anything else.
    pub token_file: Option<PathBuf>,
    /// Take over a SOL payload another session left active (Ironic does the
    /// same with `sol deactivate` before `sol activate`).
    pub console_force: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            host: "127.0.0.1".into(),
            port_range: "10000-10999".into(),
            log_dir: PathBuf::from("console-logs"),
            log_max_bytes: 4 << 20,
            log_keep: 5,
            replay_bytes: 16 << 10,
            max_viewers: 32,
            token_file: None,
            console_force: true,
        }
    }
}

/// Most bytes of replay a console keeps in memory (one per enabled console).
pub const MAX_REPLAY_BYTES: usize = 16 << 20;
/// Smallest console log file before rotation: smaller would mean a new file
/// every few lines of output.
pub const MIN_LOG_MAX_BYTES: u64 = 4 << 10;

impl ConsoleConfig {
    /// `[console]` checked with the rest of the file, so a bad value is
    /// refused with its key named (sizes would otherwise never be checked).
    pub fn check(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("[console] host must be the IP address console ports listen on".into());
        }
        self.host.parse::<std::net::IpAddr>().map_err(|_| {
            format!(
                "[console] host {:?} is not an IP address (console ports listen on it)",
                self.host
            )
        })?;
        crate::console::manager::parse_range(&self.port_range)
            .map_err(|e| format!("[console] {e} (ports are 1-65535)"))?;
        if self.log_dir.as_os_str().is_empty() {
            return Err("[console] log_dir must name a directory".into());
        }
        if self.log_max_bytes < MIN_LOG_MAX_BYTES {
            return Err(format!(
                "[console] log_max_bytes must be at least {MIN_LOG_MAX_BYTES}"
            ));
        }
        if self.log_keep == 0 {
            return Err("[console] log_keep must be at least 1".into());
        }
        if self.replay_bytes > MAX_REPLAY_BYTES {
            return Err(format!(
                "[console] replay_bytes must be at most {MAX_REPLAY_BYTES} (0 turns replay off)"
            ));
        }
        if self.max_viewers == 0 {
            return Err("[console] max_viewers must be at least 1".into());
        }
        if self
            .token_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err("[console] token_file must name a file (or be left out)".into());
        }
        Ok(())
    }
}

/// Seconds from the config as a Duration; `None` for 0 (disabled) or nonsense.
pub fn secs(v: f64) -> Option<Duration> {
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Some(Duration::from_secs_f64(v))
    } else {
        None
    }
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The boot root: `[http_boot] root`, else `[tftp] root`.
    pub fn http_boot_root(&self) -> Option<PathBuf> {
        self.http_boot
            .as_ref()
            .and_then(|h| h.root.clone())
            .or_else(|| self.tftp.as_ref().and_then(|t| t.root.clone()))
    }

    fn validate(&self) -> Result<(), String> {
        let c = &self.conductor;
        if c.workers == 0 {
            return Err("[conductor] workers must be at least 1".into());
        }
        if c.sync_power_state_workers == 0 {
            return Err("[conductor] sync_power_state_workers must be at least 1".into());
        }
        for (name, v) in [
            ("power_state_change_timeout", c.power_state_change_timeout),
            ("soft_power_off_timeout", c.soft_power_off_timeout),
            ("bmc_timeout", c.bmc_timeout),
            ("power_poll_interval", c.power_poll_interval),
            ("deploy_callback_timeout", c.deploy_callback_timeout),
            ("clean_callback_timeout", c.clean_callback_timeout),
            (
                "check_provision_state_interval",
                c.check_provision_state_interval,
            ),
        ] {
            if secs(v).is_none() {
                return Err(format!(
                    "[conductor] {name} must be a positive number of seconds"
                ));
            }
        }
        for (name, v) in [
            ("sync_power_state_interval", c.sync_power_state_interval),
            (
                "power_failure_recovery_interval",
                c.power_failure_recovery_interval,
            ),
        ] {
            if !(v.is_finite() && (0.0..1e9).contains(&v)) {
                return Err(format!(
                    "[conductor] {name} must be 0 (off) or a positive number of seconds"
                ));
            }
        }
        if self.api.max_limit == 0 {
            return Err("[api] max_limit must be at least 1".into());
        }
        self.api.listen_addrs()?;
        if let Some(t) = &self.tftp {
            t.listen.parse::<SocketAddr>().map_err(|e| {
                format!(
                    "[tftp] listen: {:?} is not an IP:port address: {e}",
                    t.listen
                )
            })?;
            if t.root.is_none() {
                return Err("[tftp] needs root = \"PATH\" (the boot root)".into());
            }
            if !(8..=65464).contains(&t.max_blksize) {
                return Err("[tftp] max_blksize must be between 8 and 65464".into());
            }
            if t.max_windowsize == 0 {
                return Err("[tftp] max_windowsize must be at least 1".into());
            }
            if t.max_transfers == 0 {
                return Err("[tftp] max_transfers must be at least 1".into());
            }
            if secs(t.timeout).is_none() || t.timeout > 255.0 {
                return Err("[tftp] timeout must be between 0 and 255 seconds".into());
            }
        }
        if let Some(h) = &self.http_boot {
            h.listen.parse::<SocketAddr>().map_err(|e| {
                format!(
                    "[http_boot] listen: {:?} is not an IP:port address: {e}",
                    h.listen
                )
            })?;
            if self.http_boot_root().is_none() {
                return Err("[http_boot] needs root = \"PATH\" (or [tftp] root)".into());
            }
        }
        if !matches!(self.boot.default_boot_mode.as_str(), "uefi" | "bios") {
            return Err("[boot] default_boot_mode must be \"uefi\" or \"bios\"".into());
        }
        self.console.check()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_complete() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.conductor.workers, 100);
        assert_eq!(c.conductor.sync_power_state_workers, 64);
        assert_eq!(c.api.auth, AuthMode::Noauth);
        assert_eq!(
            c.api.check().unwrap(),
            vec!["127.0.0.1:6385".parse().unwrap()]
        );
        assert_eq!(c.store.key_path(), PathBuf::from("ironrack.db.key"));
    }

    #[test]
    fn issue_example_parses() {
        let c = Config::parse(
            r#"
            [api]
            listen = "127.0.0.1:6385"
            auth = "http_basic"
            htpasswd = "/etc/ironrack/htpasswd"
            [store]
            path = "/var/lib/ironrack/ironrack.db"
            [conductor]
            workers = 100
            sync_power_state_interval = 60
            sync_power_state_workers = 64
            power_state_sync_max_retries = 3
            power_state_change_timeout = 60
            soft_power_off_timeout = 600
            power_failure_recovery_interval = 300
            "#,
        )
        .unwrap();
        assert_eq!(c.api.auth, AuthMode::HttpBasic);
        assert_eq!(c.conductor.soft_power_off_timeout, 600.0);
        assert!(c.api.check().is_ok());
    }

    #[test]
    fn noauth_off_loopback_is_refused() {
        let c = Config::parse("[api]\nlisten = [\"127.0.0.1:1\", \"0.0.0.0:6385\"]\n").unwrap();
        let e = c.api.check().unwrap_err();
        assert!(e.contains("0.0.0.0:6385") && e.contains("noauth"), "{e}");
        let c = Config::parse("[api]\nlisten = \"[::1]:6385\"\n").unwrap();
        assert!(c.api.check().is_ok());
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        assert!(Config::parse("[api]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .contains("nowhere"));
        assert!(Config::parse("[conductor]\nworkers = 0\n")
            .unwrap_err()
            .contains("workers"));
        assert!(Config::parse("[conductor]\nbogus = 1\n")
            .unwrap_err()
            .contains("bogus"));
        assert!(Config::parse("[api]\nauth = \"http_basic\"\n")
            .unwrap()
            .api
            .check()
            .unwrap_err()
            .contains("htpasswd"));
    }

    #[test]
    fn console_section_is_checked() {
        let c = Config::parse(
            "[console]\nhost = \"10.0.0.1\"\nport_range = \"12000-12099\"\nmax_viewers = 1\n\
             replay_bytes = 0\nlog_max_bytes = 4096\nlog_keep = 1\n",
        )
        .unwrap();
        assert_eq!(c.console.port_range, "12000-12099");
        assert!(Config::parse("[console]\nport_range = \"1-65535\"\nhost = \"::1\"\n").is_ok());
        let err = |conf: &str| Config::parse(&format!("[console]\n{conf}\n")).expect_err(conf);
        for (conf, says) in [
            ("port_range = \"10999-10000\"", "FIRST <= LAST"),
            ("port_range = \"0-10\"", "FIRST <= LAST"),
            ("port_range = \"10000-70000\"", "bad last port"),
            ("port_range = \"10000\"", "FIRST-LAST"),
            ("port_range = \"\"", "FIRST-LAST"),
            ("port_range = \"a-b\"", "bad first port"),
            ("max_viewers = 0", "max_viewers"),
            ("replay_bytes = 1073741824", "replay_bytes"),
            ("log_max_bytes = 0", "log_max_bytes"),
            ("log_max_bytes = 100", "log_max_bytes"),
            ("log_keep = 0", "log_keep"),
            ("host = \"\"", "host"),
            ("host = \"  \"", "host"),
            ("host = \"console.example\"", "not an IP address"),
            ("log_dir = \"\"", "log_dir"),
            ("token_file = \"\"", "token_file"),
            ("max_viewers = -1", "max_viewers"),
        ] {
            let e = err(conf);
            assert!(e.contains(says), "{conf}: {e}");
        }
    }
}
