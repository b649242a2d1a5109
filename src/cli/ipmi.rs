//! `ironrack ipmi`: ipmitool's flags and commands, with fleet mode like ipmipower.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::{HostResult, Outcome};
use crate::ipmi::{
    BootDevice, ChassisControl, IpmiClient, IpmiError, Privilege, SessionConfig, SolOptions,
};
use crate::profiles::{IpmiQuirks, Profile, Profiles};

#[derive(Args, Debug)]
pub struct IpmiArgs {
    /// BMC host[:port]; repeat it or use ranges such as 127.0.0.1:[10000-10999].
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// File with one host spec per line.
    #[arg(long)]
    pub hosts_file: Option<PathBuf>,
    /// Default UDP port.
    #[arg(short = 'p', long, default_value_t = 623)]
    pub port: u16,
    /// User name.
    #[arg(short = 'U', long, default_value = "")]
    pub user: String,
    /// Read the password from the IPMI_PASSWORD environment variable.
    #[arg(short = 'E', conflicts_with = "password_file")]
    pub env_password: bool,
    /// Read the password from a file (first line).
    #[arg(short = 'f', long = "password-file")]
    pub password_file: Option<PathBuf>,
    /// Cipher suite (3 or 17); default: discover, preferring 17.
    #[arg(short = 'C', long)]
    pub cipher_suite: Option<u8>,
    /// Privilege level: callback, user, operator, administrator.
    #[arg(short = 'L', long, default_value = "administrator")]
    pub privilege: Privilege,
    /// Read the BMC key K_G from a file (first line). Secrets never go in argv.
    #[arg(short = 'k', long = "kg-file")]
    pub kg_file: Option<PathBuf>,
    /// Read the BMC key K_G from the IPMI_KGKEY environment variable.
    #[arg(short = 'K', conflicts_with = "kg_file")]
    pub env_kg: bool,
    /// Hardware profile whose quirks apply (see hw-profiles/). Default: session
    /// set-up as `generic`, and the boot and NMI quirks of the profile matching
    /// the BMC's manufacturer id (Get Device ID).
    #[arg(long)]
    pub profile: Option<String>,
    /// Extra profile directory.
    #[arg(long)]
    pub profiles_dir: Option<PathBuf>,
    /// Workarounds, as ipmipower's -W: opensesspriv.
    #[arg(short = 'W', long = "workaround", value_delimiter = ',')]
    pub workarounds: Vec<String>,
    /// Per-BMC timeout for the whole command, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// BMCs worked on at once in fleet mode.
    #[arg(long, default_value_t = 256)]
    pub fanout: usize,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Run the command this many times over the same sessions (the first
    /// sweep opens them, later ones reuse them); prints each sweep's time.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    #[command(subcommand)]
    pub command: IpmiCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum IpmiCommand {
    /// Chassis power: status, on, off, soft, cycle, reset, nmi.
    Power {
        #[arg(value_parser = ["status", "on", "off", "soft", "cycle", "reset", "nmi"])]
        action: String,
    },
    /// Boot device override.
    Bootdev {
        #[command(subcommand)]
        action: BootdevAction,
    },
    /// Management controller: `mc info` (Get Device ID).
    Mc {
        #[arg(value_parser = ["info"])]
        action: String,
    },
    /// Serial-over-LAN: the host's serial console.
    Sol {
        #[command(subcommand)]
        action: SolAction,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum SolAction {
    /// Attach stdin and stdout to the host's serial console (one BMC).
    /// Escapes after a newline: `~.` quits, `~B` sends a break, `~~` a `~`,
    /// `~?` lists them. End of input also quits.
    Activate {
        /// Refuse (instead of taking over) when SOL is already active.
        #[arg(long)]
        no_force: bool,
        /// SOL payload instance.
        #[arg(long, default_value_t = 1)]
        instance: u8,
        /// Escape character.
        #[arg(short = 'e', long, default_value_t = '~')]
        escape: char,
    },
    /// Deactivate SOL, whichever session has it.
    Deactivate {
        #[arg(long, default_value_t = 1)]
        instance: u8,
    },
    /// Whether SOL is active (Get Payload Activation Status).
    Info,
}

#[derive(Subcommand, Debug, Clone)]
pub enum BootdevAction {
    /// Show the boot flags.
    Get,
    /// Set the boot device: pxe, disk, cdrom, bios, safe.
    Set {
        device: BootDevice,
        /// Keep the setting for all future boots (default: next boot only).
        #[arg(long)]
        persistent: bool,
        /// UEFI boot (default: legacy BIOS).
        #[arg(long)]
        uefi: bool,
    },
}

pub async fn run(a: IpmiArgs) -> i32 {
    match run_inner(a).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ironrack ipmi: {e}");
            2
        }
    }
}

fn session_config(a: &IpmiArgs, profile: &Profile) -> Result<SessionConfig, String> {
    let password = super::read_password(a.env_password, "IPMI_PASSWORD", a.password_file.as_ref())?;
    let mut cfg = SessionConfig::new(&a.user, &password);
    cfg.privilege = a.privilege;
    cfg.cipher_suite = a.cipher_suite;
    profile.ipmi.apply(&mut cfg);
    for w in &a.workarounds {
        match w.as_str() {
            "opensesspriv" => cfg.opensesspriv = true,
            other => {
                return Err(format!(
                    "unknown workaround {other:?} (known: opensesspriv)"
                ))
            }
        }
    }
    if a.env_kg {
        cfg.kg = Some(super::read_secret_env("IPMI_KGKEY")?);
    } else if let Some(f) = &a.kg_file {
        cfg.kg = Some(super::read_secret_file(f)?);
    }
    cfg.command_timeout = super::parse_timeout(a.timeout)?;
    // Sweeps follow each other closely; no keepalive needed between them.
    cfg.keepalive = None;
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

async fn run_inner(a: IpmiArgs) -> Result<i32, String> {
    let profiles = Profiles::load(a.profiles_dir.as_deref()).map_err(|e| e.to_string())?;
    let named = match &a.profile {
        Some(n) => Some(profiles.get(n).map_err(|e| e.to_string())?),
        None => None,
    };
    let session_profile = match named {
        Some(p) => p,
        None => profiles.get("generic").map_err(|e| e.to_string())?,
    };
    let cfg = session_config(&a, session_profile)?;
    let quirks = named.map(|p| Arc::new(p.ipmi.clone()));
    let profiles = Arc::new(profiles);
    let mut specs = Vec::new();
    for h in &a.hosts {
        specs.extend(super::hosts::expand(h)?);
    }
    if let Some(f) = &a.hosts_file {
        let text =
            std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        specs.extend(super::hosts::from_file(&text)?);
    }
    if specs.is_empty() {
        return Err("no BMC given: use -H host[:port] or --hosts-file".into());
    }
    if a.repeat == 0 {
        return Err("--repeat must be at least 1".into());
    }
    let fleet = specs.len() > 1;
    if let IpmiCommand::Sol {
        action:
            SolAction::Activate {
                no_force,
                instance,
                escape,
            },
    } = &a.command
    {
        if fleet {
            return Err("sol activate works on one BMC at a time".into());
        }
        let addr = match specs.first() {
            Some(spec) => super::hosts::resolve(spec, a.port).await?,
            None => return Err("no BMC given".into()),
        };
        let client = IpmiClient::new(addr, cfg)
            .await
            .map_err(|e| e.to_string())?;
        let opts = SolOptions {
            force: !no_force,
            instance: *instance,
            ..SolOptions::default()
        };
        let code = sol_console::run(&client, opts, *escape).await;
        client.close().await;
        return Ok(code);
    }

    // One long-lived client per BMC: with --repeat, later sweeps reuse sessions.
    let mut clients: Vec<(String, Result<IpmiClient, String>)> = Vec::with_capacity(specs.len());
    for spec in specs {
        let c = match super::hosts::resolve(&spec, a.port).await {
            Ok(addr) => IpmiClient::new(addr, cfg.clone())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        clients.push((spec, c));
    }
    let clients = Arc::new(clients);
    let sem = Arc::new(Semaphore::new(a.fanout.max(1)));
    let mut sweeps = Vec::with_capacity(a.repeat);
    let mut results: Vec<HostResult> = Vec::new();
    for _ in 0..a.repeat {
        let started = Instant::now();
        let (cmd, quirks, profiles) = (a.command.clone(), quirks.clone(), profiles.clone());
        results = super::sweep(&clients, &sem, fleet, move |clients, i| {
            let (cmd, quirks, profiles) = (cmd.clone(), quirks.clone(), profiles.clone());
            async move {
                let c = match &clients[i].1 {
                    Ok(c) => c,
                    Err(e) => return Err(e.clone()),
                };
                let quirks = match quirks {
                    Some(q) => q,
                    None => matched_quirks(c, &cmd, &profiles)
                        .await
                        .map_err(|e| e.to_string())?,
                };
                execute(c, &cmd, &quirks).await.map_err(|e| e.to_string())
            }
        })
        .await;
        sweeps.push(started.elapsed());
    }
    let closing: Vec<_> = clients
        .iter()
        .filter_map(|(_, c)| c.as_ref().ok().cloned())
        .map(|c| tokio::spawn(async move { c.close().await }))
        .collect();
    for c in closing {
        let _ = c.await;
    }
    super::report(a.json, fleet, &results, &sweeps);
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    Ok(if failed > 0 { 1 } else { 0 })
}

/// The quirks of the profile matching the BMC's manufacturer id, asked for only
/// when the command has quirks to honour (boot flags, NMI).
async fn matched_quirks(
    c: &IpmiClient,
    cmd: &IpmiCommand,
    profiles: &Profiles,
) -> Result<Arc<IpmiQuirks>, IpmiError> {
    let needs = match cmd {
        IpmiCommand::Power { action } => action == "nmi",
        IpmiCommand::Bootdev { action } => matches!(action, BootdevAction::Set { .. }),
        IpmiCommand::Mc { .. } | IpmiCommand::Sol { .. } => false,
    };
    let generic = || {
        profiles
            .get("generic")
            .map(|p| p.ipmi.clone())
            .unwrap_or_default()
    };
    if !needs {
        return Ok(Arc::new(generic()));
    }
    let id = c.device_id().await?.manufacturer_id;
    let q = profiles
        .for_ipmi_manufacturer(id)
        .map(|p| {
            tracing::debug!(manufacturer_id = id, profile = %p.name, "matched hardware profile");
            p.ipmi.clone()
        })
        .unwrap_or_else(generic);
    Ok(Arc::new(q))
}

async fn execute(
    c: &IpmiClient,
    cmd: &IpmiCommand,
    quirks: &IpmiQuirks,
) -> Result<Outcome, IpmiError> {
    Ok(match cmd {
        IpmiCommand::Power { action } => {
            let ctl = match action.as_str() {
                "status" => {
                    let s = c.power_state().await?;
                    return Ok(Outcome {
                        text: s.word().to_string(),
                        json: json!({"power_state": s.ironic()}),
                    });
                }
                "on" => ChassisControl::PowerUp,
                "off" => ChassisControl::PowerDown,
                "soft" => ChassisControl::SoftShutdown,
                "cycle" => ChassisControl::PowerCycle,
                "reset" => ChassisControl::HardReset,
                "nmi" if quirks.no_nmi => {
                    return Err(IpmiError::Config(
                        "the hardware profile says this BMC has no NMI (diagnostic interrupt)"
                            .into(),
                    ))
                }
                "nmi" => ChassisControl::DiagnosticInterrupt,
                other => return Err(IpmiError::Config(format!("unknown power action {other}"))),
            };
            c.chassis_control(ctl).await?;
            Outcome {
                text: "ok".into(),
                json: json!({"action": action, "result": "ok"}),
            }
        }
        IpmiCommand::Bootdev { action } => match action {
            BootdevAction::Get => {
                // Like Ironic, report the selector whether or not the BMC still
                // marks the flags valid; `valid` says which.
                let f = c.boot_flags().await?;
                let device = f.device;
                Outcome {
                    text: format!(
                        "{} ({}, {}{})",
                        device.name(),
                        if f.persistent {
                            "persistent"
                        } else {
                            "next boot"
                        },
                        if f.uefi { "uefi" } else { "bios" },
                        if f.valid { "" } else { ", flags not valid" }
                    ),
                    json: json!({
                        "boot_device": device.name(),
                        "persistent": f.persistent,
                        "valid": f.valid,
                        "boot_mode": if f.uefi { "uefi" } else { "bios" },
                        "raw": format!("{:#04x}", f.raw_device_byte),
                    }),
                }
            }
            BootdevAction::Set {
                device,
                persistent,
                uefi,
            } => {
                c.set_boot_flags(
                    quirks.boot_flags(*device, *persistent, *uefi),
                    quirks.disable_boot_timeout,
                )
                .await?;
                Outcome {
                    text: "ok".into(),
                    json: json!({"boot_device": device.name(), "persistent": persistent,
                                 "boot_mode": if *uefi { "uefi" } else { "bios" }}),
                }
            }
        },
        IpmiCommand::Sol { action } => match action {
            SolAction::Activate { .. } => {
                return Err(IpmiError::Config(
                    "sol activate is interactive and runs on its own".into(),
                ))
            }
            SolAction::Deactivate { instance } => {
                let was = c.sol_deactivate(*instance).await?;
                Outcome {
                    text: if was {
                        "deactivated".into()
                    } else {
                        "was not active".into()
                    },
                    json: json!({"instance": instance, "deactivated": was}),
                }
            }
            SolAction::Info => {
                let st = c.sol_status().await?;
                let active: Vec<u8> = (1..=st.capacity.min(16))
                    .filter(|i| st.is_active(*i))
                    .collect();
                Outcome {
                    text: if active.is_empty() {
                        format!("inactive ({} instance(s))", st.capacity)
                    } else {
                        format!("active: instance(s) {active:?} of {}", st.capacity)
                    },
                    json: json!({"capacity": st.capacity, "active_instances": active}),
                }
            }
        },
        IpmiCommand::Mc { .. } => {
            let d = c.device_id().await?;
            Outcome {
                text: format!(
                    "device id {} rev {} firmware {} IPMI {} manufacturer {} product {:#06x}",
                    d.device_id,
                    d.device_revision,
                    d.firmware,
                    d.ipmi_version,
                    d.manufacturer_id,
                    d.product_id
                ),
                json: serde_json::to_value(&d).unwrap_or(Value::Null),
            }
        }
    })
}

/// `ironrack ipmi ... sol activate`: the terminal bridged to SOL, ipmitool-style.
mod sol_console {
    use std::io::{IsTerminal, Read, Write};

    use tokio::sync::mpsc;

    use crate::ipmi::sol::SolEvent;
    use crate::ipmi::{IpmiClient, SolOptions};

    /// What the keyboard asks for once escapes are taken out.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) enum Key {
        Data(Vec<u8>),
        Break,
        Help,
        Quit,
    }

    /// ipmitool's escapes: the escape character right after a newline (or at
    /// the start) introduces a command.
    pub(super) struct Escapes {
        esc: u8,
        at_line_start: bool,
        pending: bool,
    }

    impl Escapes {
        pub(super) fn new(esc: u8) -> Self {
            Escapes {
                esc,
                at_line_start: true,
                pending: false,
            }
        }

        pub(super) fn feed(&mut self, input: &[u8]) -> Vec<Key> {
            let mut out = Vec::new();
            let mut data = Vec::new();
            let flush = |data: &mut Vec<u8>, out: &mut Vec<Key>| {
                if !data.is_empty() {
                    out.push(Key::Data(std::mem::take(data)));
                }
            };
            for &c in input {
                if self.pending {
                    self.pending = false;
                    match c {
                        b'.' => {
                            flush(&mut data, &mut out);
                            out.push(Key::Quit);
                            return out;
                        }
                        b'B' => {
                            flush(&mut data, &mut out);
                            out.push(Key::Break);
                        }
                        b'?' => {
                            flush(&mut data, &mut out);
                            out.push(Key::Help);
                        }
                        c if c == self.esc => data.push(c),
                        c => {
                            data.push(self.esc);
                            data.push(c);
                        }
                    }
                    self.at_line_start = c == b'\r' || c == b'\n';
                    continue;
                }
                if self.at_line_start && c == self.esc {
                    self.pending = true;
                    continue;
                }
                data.push(c);
                self.at_line_start = c == b'\r' || c == b'\n';
            }
            flush(&mut data, &mut out);
            out
        }
    }

    /// The terminal in raw mode while SOL runs (keystrokes go through as
    /// typed, no local echo); restored on drop.
    struct RawMode(Option<libc::termios>);

    impl RawMode {
        fn enter() -> RawMode {
            if !std::io::stdin().is_terminal() {
                return RawMode(None);
            }
            // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own; a
            // failure leaves the terminal as it was.
            unsafe {
                let mut saved: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut saved) != 0 {
                    return RawMode(None);
                }
                let mut raw = saved;
                libc::cfmakeraw(&mut raw);
                if libc::tcsetattr(0, libc::TCSADRAIN, &raw) != 0 {
                    return RawMode(None);
                }
                RawMode(Some(saved))
            }
        }
    }

    impl Drop for RawMode {
        fn drop(&mut self) {
            if let Some(saved) = &self.0 {
                // SAFETY: restores the attributes read in `enter`.
                unsafe {
                    libc::tcsetattr(0, libc::TCSADRAIN, saved);
                }
            }
        }
    }

    fn note(text: &str) {
        // \r\n: the terminal may be in raw mode.
        eprint!("{text}\r\n");
    }

    pub(super) async fn run(client: &IpmiClient, opts: SolOptions, escape: char) -> i32 {
        let esc = if escape.is_ascii() {
            escape as u8
        } else {
            b'~'
        };
        let mut console = match client.sol_activate(opts).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ironrack ipmi: SOL activation failed: {e}");
                return 1;
            }
        };
        let _raw = RawMode::enter();
        note(&format!(
            "[SOL session operational. Use {}? for help]",
            esc as char
        ));
        // Standard input is read on a thread of its own (it blocks).
        let (key_tx, mut keys) = mpsc::channel::<Option<Vec<u8>>>(16);
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = key_tx.blocking_send(None);
                        return;
                    }
                    Ok(n) => {
                        if key_tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut escapes = Escapes::new(esc);
        let mut stdout = std::io::stdout();
        loop {
            tokio::select! {
                ev = console.recv() => match ev {
                    Some(SolEvent::Data(d)) => {
                        let _ = stdout.write_all(&d);
                        let _ = stdout.flush();
                    }
                    Some(SolEvent::Break) => note("[break detected on the host's serial port]"),
                    Some(SolEvent::TransmitOverrun) => note("[the BMC dropped host output]"),
                    Some(SolEvent::TransferUnavailable(true)) => note("[character transfer unavailable]"),
                    Some(SolEvent::Deactivated) => {
                        note("[SOL deactivated by the BMC]");
                        return 1;
                    }
                    Some(SolEvent::Lost(l)) => {
                        note(&format!("[SOL lost: {}]", l.reason));
                        return 1;
                    }
                    Some(_) => {}
                    None => {
                        note("[SOL ended]");
                        return 1;
                    }
                },
                k = keys.recv() => {
                    let Some(Some(input)) = k else {
                        // End of input: leave as ipmitool does.
                        break;
                    };
                    for key in escapes.feed(&input) {
                        let r = match key {
                            Key::Data(d) => console.send(&d).await,
                            Key::Break => console.send_break().await,
                            Key::Help => {
                                note(&format!(
                                    "Supported escape sequences:\r\n  {e}.  terminate the connection\r\n  {e}B  send a break\r\n  {e}?  this message\r\n  {e}{e}  send the escape character",
                                    e = esc as char
                                ));
                                Ok(())
                            }
                            Key::Quit => {
                                note(&format!("{}. [terminated ironrack]", esc as char));
                                let _ = console.flush().await;
                                return match console.deactivate().await {
                                    Ok(()) => 0,
                                    Err(e) => {
                                        note(&format!("SOL deactivation failed: {e}"));
                                        1
                                    }
                                };
                            }
                        };
                        if let Err(e) = r {
                            note(&format!("[SOL send failed: {e}]"));
                            return 1;
                        }
                    }
                }
            }
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), console.flush()).await;
        match console.deactivate().await {
            Ok(()) => 0,
            Err(e) => {
                note(&format!("SOL deactivation failed: {e}"));
                1
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn escapes_as_ipmitool() {
            let mut e = Escapes::new(b'~');
            assert_eq!(e.feed(b"~."), vec![Key::Quit], "at the start");
            let mut e = Escapes::new(b'~');
            assert_eq!(e.feed(b"a~.b"), vec![Key::Data(b"a~.b".to_vec())]);
            assert_eq!(e.feed(b"\r~B"), vec![Key::Data(b"\r".to_vec()), Key::Break]);
            let mut e = Escapes::new(b'~');
            assert_eq!(e.feed(b"~~x"), vec![Key::Data(b"~x".to_vec())]);
            assert_eq!(e.feed(b"\n~"), vec![Key::Data(b"\n".to_vec())]);
            assert_eq!(e.feed(b"?"), vec![Key::Help], "split across reads");
            assert_eq!(e.feed(b"~q"), vec![Key::Data(b"~q".to_vec())]);
            let mut e = Escapes::new(b'~');
            assert_eq!(
                e.feed(b"ls\r~.ignored"),
                vec![Key::Data(b"ls\r".to_vec()), Key::Quit]
            );
        }
    }
}
