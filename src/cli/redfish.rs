//! `ironrack redfish`: the IPMI CLI's `power`, `bootdev` and `--json`, over
//! Redfish, plus virtual media. Several `--system` values (or a range such as
//! `sys-[0000-0999]`) sweep many systems behind one service concurrently.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Subcommand};
use serde_json::json;
use tokio::sync::Semaphore;

use super::{Clients, HostResult, Outcome};
use crate::bmc::redfish::RedfishBmc;
use crate::bmc::{Bmc, BmcError, BootDevice, BootMode, BootSetting, PowerAction};
use crate::profiles::Profiles;
use crate::redfish::RedfishConfig;

#[derive(Args, Debug)]
pub struct RedfishArgs {
    /// Service URL: https://host[:port] (http:// for emulators).
    #[arg(long)]
    pub url: String,
    /// System id, path or UUID; repeat it or use a range such as sys-[0000-0999].
    /// Default: the only system of the service.
    #[arg(long = "system")]
    pub systems: Vec<String>,
    /// User name.
    #[arg(short = 'U', long, default_value = "")]
    pub user: String,
    /// Read the password from the REDFISH_PASSWORD environment variable.
    #[arg(short = 'E', conflicts_with = "password_file")]
    pub env_password: bool,
    /// Read the password from a file (first line).
    #[arg(short = 'f', long = "password-file")]
    pub password_file: Option<PathBuf>,
    /// Do not verify the BMC's TLS certificate (only for this call).
    #[arg(long)]
    pub insecure: bool,
    /// Extra trusted CA certificates (PEM).
    #[arg(long = "ca")]
    pub ca_bundle: Option<PathBuf>,
    /// Hardware profile; default: matched from the system's Manufacturer/Model.
    #[arg(long)]
    pub profile: Option<String>,
    /// Extra profile directory.
    #[arg(long)]
    pub profiles_dir: Option<PathBuf>,
    /// Bound on one HTTP exchange, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Systems worked on at once.
    #[arg(long, default_value_t = 256)]
    pub fanout: usize,
    /// Run the command this many times over the same sessions and connections.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: RedfishCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum RedfishCommand {
    /// Power: status, on, off, soft, reboot (reset), soft-reboot, cycle, nmi.
    Power {
        #[arg(value_parser = ["status", "on", "off", "soft", "reboot", "reset", "soft-reboot", "cycle", "nmi"])]
        action: String,
    },
    /// Boot source override.
    Bootdev {
        #[command(subcommand)]
        action: BootdevAction,
    },
    /// Virtual media (CD): insert URL, eject, status.
    Vmedia {
        #[command(subcommand)]
        action: VmediaAction,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum BootdevAction {
    /// Show the boot override.
    Get,
    /// Set the boot device: pxe, disk, cdrom, bios, uefi_http.
    Set {
        device: BootDevice,
        /// Keep it for all future boots (Continuous); default: next boot (Once).
        #[arg(long)]
        persistent: bool,
        /// UEFI boot mode.
        #[arg(long, conflicts_with = "legacy")]
        uefi: bool,
        /// Legacy BIOS boot mode.
        #[arg(long)]
        legacy: bool,
    },
    /// The boot devices the system accepts.
    Supported,
}

#[derive(Subcommand, Debug, Clone)]
pub enum VmediaAction {
    /// Insert an image by URL.
    Insert { url: String },
    /// Eject the CD.
    Eject,
    /// Show the CD's image.
    Status,
}

pub async fn run(a: RedfishArgs) -> i32 {
    match run_inner(a).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ironrack redfish: {e}");
            2
        }
    }
}

fn base_config(a: &RedfishArgs) -> Result<RedfishConfig, String> {
    let password =
        super::read_password(a.env_password, "REDFISH_PASSWORD", a.password_file.as_ref())?;
    let password = String::from_utf8(password.to_vec())
        .map_err(|_| "the password is not UTF-8".to_string())?;
    let mut cfg = RedfishConfig::new(a.url.clone(), a.user.clone(), password);
    cfg.verify_tls = !a.insecure;
    cfg.ca_bundle = a.ca_bundle.clone();
    cfg.request_timeout = super::parse_timeout(a.timeout)?;
    cfg.operation_timeout = cfg.request_timeout * 6;
    Ok(cfg)
}

/// Build the BMC for one system, with the named profile or the one matching
/// the system's Manufacturer and Model.
async fn connect(
    profiles: &Profiles,
    named: Option<&str>,
    mut cfg: RedfishConfig,
) -> Result<RedfishBmc, BmcError> {
    if let Some(name) = named {
        cfg.quirks = profiles
            .get(name)
            .map_err(|e| BmcError::Config(e.to_string()))?
            .redfish
            .clone();
        return RedfishBmc::new(cfg);
    }
    let probe = RedfishBmc::new(cfg.clone())?;
    let (system, _) = probe.client().system().await?;
    let manufacturer = system.manufacturer.unwrap_or_default();
    let model = system.model.unwrap_or_default();
    let quirks = profiles
        .for_redfish(&manufacturer, &model)
        .map(|p| p.redfish.clone())
        .unwrap_or_default();
    if quirks == cfg.quirks {
        return Ok(probe);
    }
    tracing::debug!(
        manufacturer,
        model,
        "applying the matching hardware profile"
    );
    probe.close().await;
    cfg.quirks = quirks;
    RedfishBmc::new(cfg)
}

async fn run_inner(a: RedfishArgs) -> Result<i32, String> {
    let profiles = Profiles::load(a.profiles_dir.as_deref()).map_err(|e| e.to_string())?;
    if let Some(p) = &a.profile {
        profiles.get(p).map_err(|e| e.to_string())?;
    }
    let base = base_config(&a)?;
    let mut systems: Vec<Option<String>> = Vec::new();
    for s in &a.systems {
        systems.extend(super::hosts::expand(s)?.into_iter().map(Some));
    }
    if systems.is_empty() {
        systems.push(None);
    }
    if a.repeat == 0 {
        return Err("--repeat must be at least 1".into());
    }
    let fleet = systems.len() > 1;
    let sem = Arc::new(Semaphore::new(a.fanout.max(1)));
    let profiles = Arc::new(profiles);

    // Connect (discovery and profile matching) under the same fan-out bound.
    let mut pending = Vec::with_capacity(systems.len());
    for s in systems {
        let mut cfg = base.clone();
        cfg.system_id = s.clone();
        let (sem, profiles, named) = (sem.clone(), profiles.clone(), a.profile.clone());
        pending.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let name = s.unwrap_or_else(|| "system".into());
            (
                name,
                connect(&profiles, named.as_deref(), cfg)
                    .await
                    .map_err(|e| e.to_string()),
            )
        }));
    }
    let mut clients = Vec::with_capacity(pending.len());
    for t in pending {
        clients.push(t.await.map_err(|e| format!("task failed: {e}"))?);
    }
    let clients: Clients<RedfishBmc> = Arc::new(clients);

    let mut sweeps = Vec::with_capacity(a.repeat);
    let mut results: Vec<HostResult> = Vec::new();
    for _ in 0..a.repeat {
        let started = Instant::now();
        let cmd = a.command.clone();
        results = super::sweep(&clients, &sem, fleet, move |clients, i| {
            let cmd = cmd.clone();
            async move {
                match &clients[i].1 {
                    Ok(b) => execute(b, &cmd).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.clone()),
                }
            }
        })
        .await;
        sweeps.push(started.elapsed());
    }
    let closing: Vec<_> = (0..clients.len())
        .map(|i| {
            let clients = clients.clone();
            tokio::spawn(async move {
                if let Ok(b) = &clients[i].1 {
                    b.close().await;
                }
            })
        })
        .collect();
    for c in closing {
        let _ = c.await;
    }
    super::report(a.json, fleet, &results, &sweeps);
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    Ok(if failed > 0 { 1 } else { 0 })
}

fn done(what: &str) -> Outcome {
    Outcome {
        text: "ok".into(),
        json: json!({"action": what, "result": "ok"}),
    }
}

async fn execute(b: &RedfishBmc, cmd: &RedfishCommand) -> Result<Outcome, BmcError> {
    Ok(match cmd {
        RedfishCommand::Power { action } => {
            let act = match action.as_str() {
                "status" => {
                    let s = b.power_state().await?;
                    return Ok(Outcome {
                        text: s.word().to_string(),
                        json: json!({"power_state": s.ironic()}),
                    });
                }
                "nmi" => {
                    b.inject_nmi().await?;
                    return Ok(done("nmi"));
                }
                "on" => PowerAction::On,
                "off" => PowerAction::Off,
                "soft" => PowerAction::SoftOff,
                "reboot" | "reset" => PowerAction::Reboot,
                "soft-reboot" => PowerAction::SoftReboot,
                "cycle" => PowerAction::Cycle,
                other => return Err(BmcError::Config(format!("unknown power action {other}"))),
            };
            b.set_power(act).await?;
            done(action)
        }
        RedfishCommand::Bootdev { action } => match action {
            BootdevAction::Get => {
                let s = b.boot_device().await?;
                let dev = s.device.map(|d| d.name()).unwrap_or("none");
                let mode = match s.mode {
                    Some(BootMode::Uefi) => "uefi",
                    Some(BootMode::Bios) => "bios",
                    None => "unknown",
                };
                Outcome {
                    text: format!(
                        "{dev} ({}, {mode})",
                        if s.persistent {
                            "persistent"
                        } else {
                            "next boot"
                        }
                    ),
                    json: json!({"boot_device": s.device.map(|d| d.name()), "persistent": s.persistent,
                                 "boot_mode": s.mode.map(|_| mode)}),
                }
            }
            BootdevAction::Set {
                device,
                persistent,
                uefi,
                legacy,
            } => {
                let mode = match (uefi, legacy) {
                    (true, _) => Some(BootMode::Uefi),
                    (_, true) => Some(BootMode::Bios),
                    _ => None,
                };
                b.set_boot_device(BootSetting {
                    device: Some(*device),
                    persistent: *persistent,
                    mode,
                })
                .await?;
                let mut o = done("bootdev set");
                o.json = json!({"boot_device": device.name(), "persistent": persistent});
                if b.needs_reassert() {
                    o.text = "ok (the BMC refused Continuous: set for the next boot only)".into();
                    o.json["persistent"] = json!(false);
                }
                o
            }
            BootdevAction::Supported => {
                let list: Vec<&str> = b
                    .supported_boot_devices()
                    .await?
                    .into_iter()
                    .map(|d| d.name())
                    .collect();
                Outcome {
                    text: list.join(" "),
                    json: json!({"supported_boot_devices": list}),
                }
            }
        },
        RedfishCommand::Vmedia { action } => match action {
            VmediaAction::Insert { url } => {
                b.insert_virtual_media(url).await?;
                done("vmedia insert")
            }
            VmediaAction::Eject => {
                b.eject_virtual_media().await?;
                done("vmedia eject")
            }
            VmediaAction::Status => {
                let v = b.virtual_media().await?;
                Outcome {
                    text: match (&v.image, v.inserted) {
                        (Some(i), true) => format!("inserted: {i}"),
                        _ => "empty".into(),
                    },
                    json: json!({"image": v.image, "inserted": v.inserted}),
                }
            }
        },
    })
}
