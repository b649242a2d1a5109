//! `ironrack ipmi`: ipmitool's flags and commands, with fleet mode like ipmipower.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::{HostResult, Outcome};
use crate::ipmi::{BootDevice, ChassisControl, IpmiClient, IpmiError, Privilege, SessionConfig};
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
        IpmiCommand::Mc { .. } => false,
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
