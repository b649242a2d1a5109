//! `ironrack sim`: serve N simulated BMCs until interrupted.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::ipmi::crypto::CipherSuite;
use crate::sim::netboot::{Loader, Mac, NetbootConfig, TftpSettings, DEFAULT_MAC_BASE};
use crate::sim::redfish::{RedfishFleet, RedfishFleetConfig};
use crate::sim::{BmcConfig, Fleet, FleetConfig};

#[derive(Args, Debug)]
pub struct SimArgs {
    /// UDP address of the first IPMI BMC; BMC i listens on port + i.
    /// Default 127.0.0.1:10000 unless only --redfish is given.
    #[arg(long)]
    pub ipmi: Option<SocketAddr>,
    /// HTTP(S) address of the Redfish service (systems sys-0000, sys-0001, ...).
    #[arg(long)]
    pub redfish: Option<SocketAddr>,
    /// Number of BMCs (and of Redfish systems).
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Serve Redfish over HTTPS with a self-signed certificate (written next to
    /// the stats file, or printed, as PEM).
    #[arg(long)]
    pub tls: bool,
    /// Fraction of Redfish requests answered 503 (0.1 = 10 %).
    #[arg(long, default_value_t = 0.0)]
    pub error_503_rate: f64,
    /// Put vendor enum values and OEM fields in the Redfish documents.
    #[arg(long)]
    pub unknown_enums: bool,
    /// User name every BMC accepts.
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// File holding the password (first line).
    #[arg(long)]
    pub password_file: PathBuf,
    /// File holding the BMC key K_G (first line); none by default.
    #[arg(long)]
    pub kg_file: Option<PathBuf>,
    /// Cipher suites offered, in order.
    #[arg(long, value_delimiter = ',', default_value = "3,17")]
    pub suites: Vec<u8>,
    /// Concurrent sessions per BMC before Open Session is refused.
    #[arg(long, default_value_t = 8)]
    pub max_sessions: usize,
    /// Idle seconds after which a session is forgotten.
    #[arg(long, default_value_t = 60.0)]
    pub session_timeout: f64,
    /// Milliseconds a power transition takes to land.
    #[arg(long, default_value_t = 0)]
    pub power_delay_ms: u64,
    /// Fraction of datagrams lost, each way (0.2 = 20 %).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Added latency per answer (IPMI) or request (Redfish), milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Random extra latency up to this many milliseconds (IPMI and Redfish).
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Indexes (0-based) of BMCs that never answer, e.g. 3,17.
    #[arg(long, value_delimiter = ',')]
    pub unresponsive: Vec<usize>,
    /// Garbage, rotated passwords and the control file (boxed: they keep
    /// the `sim` command small).
    #[command(flatten)]
    pub faults: Box<FaultArgs>,
    /// Refuse the diagnostic interrupt (NMI), like ipmi_sim.
    #[arg(long)]
    pub no_nmi: bool,
    /// Redfish: offer no GracefulShutdown / GracefulRestart reset types (and
    /// refuse them with 400), like a BMC without soft power control.
    #[arg(long)]
    pub no_graceful: bool,
    /// Write per-BMC counters as JSON to this file every second and at exit.
    #[arg(long)]
    pub stats_file: Option<PathBuf>,
    /// The simulated hosts echo what a serial-over-LAN console types, as a
    /// shell at its prompt would (for SOL round trips).
    #[arg(long)]
    pub sol_echo: bool,

    /// MAC of machine 0's PXE NIC; machine i gets this plus i. Redfish
    /// systems follow the IPMI machines (system i: base + count + i) when
    /// both are served.
    #[arg(long, default_value_t = DEFAULT_MAC_BASE.to_string())]
    pub mac_base: String,
    /// The agent's TFTP server (IP[:PORT], port 69 unless given). A machine
    /// booting with the boot device PXE fetches its per-MAC config there,
    /// then the kernel and ramdisk it names, then heartbeats to its
    /// ipa-api-url. Without it PXE boots fall back to the disk.
    #[arg(long, value_parser = parse_boot_server)]
    pub boot_server: Option<SocketAddr>,
    /// Loader the machines run: pxe (GRUB config with the UEFI boot flag,
    /// else PXELINUX, files over TFTP or HTTP URLs) or ipxe (ipxe/<mac>.ipxe
    /// over TFTP, files from its URLs).
    #[arg(long, default_value = "pxe", value_parser = clap::value_parser!(Loader))]
    pub netboot: Loader,
    /// TFTP blksize the machines ask for.
    #[arg(long, default_value_t = 1468, value_parser = clap::value_parser!(u16).range(8..=65464))]
    pub tftp_blksize: u16,
    /// TFTP windowsize the machines ask for (1: lock step, as a PXE ROM).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub tftp_windowsize: u16,
    /// TFTP retransmit timeout, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub tftp_timeout: f64,
    /// Bound on downloading one kernel or ramdisk, seconds.
    #[arg(long, default_value_t = 600.0)]
    pub download_timeout: f64,
    /// Seconds between heartbeats (the first goes at once).
    #[arg(long, default_value_t = 5.0)]
    pub heartbeat_interval: f64,
    /// Host put in the heartbeats' callback_url (default: the local address
    /// of the route to ipa-api-url); the port is the machine's BMC port.
    #[arg(long)]
    pub callback_host: Option<IpAddr>,
    /// Indexes (0-based) of machines whose kernel download fails (they ask
    /// for a file that is not there) and never heartbeat, e.g. 3,5 (IPMI
    /// BMCs and Redfish systems alike).
    #[arg(long, value_delimiter = ',')]
    pub fail_download: Vec<usize>,
    /// Indexes (0-based) of machines that download everything but never
    /// heartbeat, e.g. 7.
    #[arg(long, value_delimiter = ',')]
    pub no_heartbeat: Vec<usize>,
}

/// The simulator's fault flags beyond loss, latency and unresponsive BMCs.
#[derive(Args, Debug, Default)]
pub struct FaultArgs {
    /// Indexes (0-based) of IPMI BMCs that answer every datagram with
    /// garbage (random bytes, malformed RMCP, truncated answers), e.g. 7.
    #[arg(long, value_delimiter = ',')]
    pub garbage: Vec<usize>,
    /// Indexes (0-based) of IPMI BMCs whose password was changed: they
    /// refuse the configured one in RAKP (a random password nobody knows).
    #[arg(long, value_delimiter = ',')]
    pub reject_auth: Vec<usize>,
    /// A file of fault commands, one per line, checked every second: lines
    /// appended since the last check are applied (a file rewritten from
    /// scratch is applied from its start). Commands: `unresponsive ipmi|redfish LIST`,
    /// `responsive ipmi|redfish LIST`, `garbage LIST`, `no-garbage LIST`,
    /// `loss FRACTION`, `latency MS [JITTER_MS]` and `power ipmi|redfish
    /// LIST on|off` (someone pressing the button; LIST: `3,17,20-29`).
    /// Lets a script change faults and machines while the fleet runs.
    #[arg(long)]
    pub control: Option<PathBuf>,
}

/// `IP[:PORT]` (port 69 unless given), IPv6 with or without brackets.
fn parse_boot_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 69))
        .map_err(|_| format!("{s:?} is not IP[:PORT]"))
}

/// Seconds as a bounded positive duration.
fn secs(flag: &str, v: f64) -> Result<Duration, String> {
    if !(v > 0.0 && v < 86_400.0) {
        return Err(format!("--{flag} must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// The machines' network boot settings from the flags.
fn netboot_config(a: &SimArgs) -> Result<NetbootConfig, String> {
    Ok(NetbootConfig {
        boot_server: a.boot_server,
        loader: a.netboot,
        tftp: TftpSettings {
            blksize: Some(a.tftp_blksize),
            windowsize: (a.tftp_windowsize > 1).then_some(a.tftp_windowsize),
            timeout: secs("tftp-timeout", a.tftp_timeout)?,
            ..TftpSettings::default()
        },
        download_timeout: secs("download-timeout", a.download_timeout)?,
        heartbeat_interval: secs("heartbeat-interval", a.heartbeat_interval)?,
        callback_host: a.callback_host,
        ..NetbootConfig::default()
    })
}

/// `3,17,20-29` as indexes.
fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("{part:?} is not an index or a range a-b");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if b < a || b - a > 1_000_000 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(out)
}

/// Apply one line of the `--control` file.
fn control_line(
    line: &str,
    fleet: Option<&Fleet>,
    redfish: Option<&RedfishFleet>,
) -> Result<(), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let bmc = |i: usize| {
        fleet
            .and_then(|f| f.bmcs.get(i))
            .ok_or_else(|| format!("no IPMI BMC {i}"))
    };
    match words.as_slice() {
        [op @ ("unresponsive" | "responsive"), kind, list] => {
            let on = *op == "unresponsive";
            for i in parse_list(list)? {
                match *kind {
                    "ipmi" => bmc(i)?.faults.set_unresponsive(on),
                    "redfish" => redfish
                        .and_then(|r| r.get_system(i))
                        .ok_or_else(|| format!("no Redfish system {i}"))?
                        .set_unresponsive(on),
                    other => return Err(format!("{other:?}: ipmi or redfish")),
                }
            }
        }
        ["power", kind, list, state @ ("on" | "off")] => {
            let on = *state == "on";
            for i in parse_list(list)? {
                match *kind {
                    "ipmi" => bmc(i)?.with(|b| b.set_power(on, std::time::Instant::now())),
                    "redfish" => redfish
                        .and_then(|r| r.get_system(i))
                        .ok_or_else(|| format!("no Redfish system {i}"))?
                        .set_power(on),
                    other => return Err(format!("{other:?}: ipmi or redfish")),
                }
            }
        }
        [op @ ("garbage" | "no-garbage"), list] => {
            for i in parse_list(list)? {
                bmc(i)?.faults.set_garbage(*op == "garbage");
            }
        }
        ["loss", f] => {
            let f: f64 = f.parse().map_err(|_| format!("loss {f:?}: a fraction"))?;
            if !(0.0..=1.0).contains(&f) {
                return Err("loss is a fraction between 0 and 1".into());
            }
            for b in fleet.map(|f| f.bmcs.as_slice()).unwrap_or_default() {
                b.faults.set_loss(f);
            }
        }
        ["latency", ms, rest @ ..] if rest.len() <= 1 => {
            let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{v:?}: milliseconds"));
            let base = Duration::from_millis(num(ms)?);
            let jitter = Duration::from_millis(match rest.first() {
                Some(j) => num(j)?,
                None => 0,
            });
            for b in fleet.map(|f| f.bmcs.as_slice()).unwrap_or_default() {
                b.faults.set_latency(base, jitter);
            }
            if let Some(r) = redfish {
                r.set_latency(base);
                r.set_jitter(jitter);
            }
        }
        _ => return Err("unknown command".into()),
    }
    Ok(())
}

/// Read the control file and apply the complete lines added since the last
/// call (all of them when the file no longer starts with what was applied).
fn apply_control(
    path: &PathBuf,
    applied: &mut String,
    fleet: Option<&Fleet>,
    redfish: Option<&RedfishFleet>,
) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    // Only whole lines: a line still being written waits for the next check.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let (skip, fresh) = match complete.strip_prefix(applied.as_str()) {
        Some(rest) => (applied.lines().count(), rest),
        None => (0, complete),
    };
    for (n, line) in fresh.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        match control_line(line, fleet, redfish) {
            Ok(()) => println!("ironrack sim: control: {line}"),
            Err(e) => eprintln!("ironrack sim: {}:{}: {e}", path.display(), skip + n + 1),
        }
    }
    *applied = complete.to_string();
}

/// Every index of a fault list must name a machine.
fn check_indexes(flag: &str, list: &[usize], count: usize) -> Result<(), String> {
    match list.iter().find(|i| **i >= count) {
        Some(i) => Err(format!(
            "--{flag} {i}: there are only {count} machine(s) (indexes from 0)"
        )),
        None => Ok(()),
    }
}

pub async fn run(a: SimArgs) -> i32 {
    match serve(a).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ironrack sim: {e}");
            2
        }
    }
}

fn write_stats(fleet: Option<&Fleet>, redfish: Option<&RedfishFleet>, path: &PathBuf) {
    let ipmi: Vec<_> = fleet
        .map(|f| {
            f.bmcs
                .iter()
                .map(|b| {
                    serde_json::json!({"addr": b.addr.to_string(), "mac": b.mac(), "stats": b.stats()})
                })
                .collect()
        })
        .unwrap_or_default();
    let systems: Vec<_> = redfish
        .map(|r| {
            r.systems()
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let nb = r.netboot(i);
                    serde_json::json!({"id": s.id(), "power_on": s.power_on(),
                        "nmi_count": s.nmi_count(), "requests": s.requests(),
                        "mac": nb.map(|n| n.mac().to_string()),
                        "netboot": nb.map(|n| n.stats())})
                })
                .collect()
        })
        .unwrap_or_default();
    let doc = serde_json::json!({
        "ipmi": ipmi,
        "netboot_totals": fleet.map(|f| f.netboot_totals()),
        "redfish": {
            "systems": systems,
            "requests": redfish.map(|r| r.requests()),
            "sessions_created": redfish.map(|r| r.sessions_created()),
            "active_sessions": redfish.map(|r| r.active_sessions()),
        },
    });
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    if std::fs::write(&tmp, body).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

async fn serve(a: SimArgs) -> Result<(), String> {
    let password = super::read_secret_file(&a.password_file)?;
    let mut bmc = BmcConfig::new(&a.user, &password);
    if bmc.username.len() > 16 || password.len() > 20 {
        return Err("user name must be at most 16 bytes and password at most 20".into());
    }
    if let Some(k) = &a.kg_file {
        bmc.kg = Some(super::read_secret_file(k)?);
    }
    bmc.suites = a
        .suites
        .iter()
        .map(|id| {
            CipherSuite::by_id(*id)
                .ok_or_else(|| format!("the simulator offers suites 0, 3 and 17, not {id}"))
        })
        .collect::<Result<_, _>>()?;
    bmc.max_sessions = a.max_sessions.max(1);
    bmc.session_timeout = Duration::from_secs_f64(a.session_timeout.max(0.1));
    bmc.power_delay = Duration::from_millis(a.power_delay_ms);
    bmc.nmi = !a.no_nmi;
    bmc.sol.echo = a.sol_echo;
    if !(0.0..=1.0).contains(&a.loss) {
        return Err("--loss is a fraction between 0 and 1".into());
    }
    let mac_base: Mac = a.mac_base.parse().map_err(|e| format!("--mac-base: {e}"))?;
    let machines = if a.redfish.is_some() && a.ipmi.is_some() {
        a.count.saturating_mul(2)
    } else {
        a.count
    };
    if machines > 0 && mac_base.checked_add(machines as u64 - 1).is_none() {
        return Err(format!(
            "--mac-base {mac_base}: {machines} machines would run past ff:ff:ff:ff:ff:ff"
        ));
    }
    let netboot = netboot_config(&a)?;
    bmc.mac = Some(mac_base);
    bmc.netboot = netboot.clone();
    check_indexes("fail-download", &a.fail_download, a.count)?;
    check_indexes("garbage", &a.faults.garbage, a.count)?;
    check_indexes("reject-auth", &a.faults.reject_auth, a.count)?;
    check_indexes("no-heartbeat", &a.no_heartbeat, a.count)?;
    let ipmi_addr = match (a.ipmi, a.redfish) {
        (Some(x), _) => Some(x),
        (None, None) => Some(SocketAddr::from(([127, 0, 0, 1], 10000))),
        (None, Some(_)) => None,
    };
    let fleet = match ipmi_addr {
        None => None,
        Some(first) => {
            let fleet = Fleet::start(FleetConfig {
                first,
                count: a.count,
                bmc,
                loss: a.loss,
                latency: Duration::from_millis(a.latency_ms),
                jitter: Duration::from_millis(a.jitter_ms),
                unresponsive: a.unresponsive.clone(),
            })
            .await
            .map_err(|e| e.to_string())?;
            for i in &a.fail_download {
                if let Some(b) = fleet.bmcs.get(*i) {
                    b.update_netboot(|n| n.fail_download = true);
                }
            }
            for i in &a.faults.garbage {
                if let Some(b) = fleet.bmcs.get(*i) {
                    b.faults.set_garbage(true);
                }
            }
            for i in &a.faults.reject_auth {
                if let Some(b) = fleet.bmcs.get(*i) {
                    let rotated: String = (0..16)
                        .map(|_| char::from(b"0123456789abcdef"[rand::random::<usize>() % 16]))
                        .collect();
                    b.set_password(rotated.as_bytes());
                }
            }
            if !a.faults.garbage.is_empty() || !a.faults.reject_auth.is_empty() {
                println!(
                    "ironrack sim: BMCs answering garbage {:?}, refusing the password {:?}",
                    a.faults.garbage, a.faults.reject_auth
                );
            }
            for i in &a.no_heartbeat {
                if let Some(b) = fleet.bmcs.get(*i) {
                    b.update_netboot(|n| n.no_heartbeat = true);
                }
            }
            println!(
                "ironrack sim: {} IPMI BMC(s) on {}:{}-{} (suites {:?})",
                a.count,
                first.ip(),
                fleet.bmcs.first().map(|b| b.addr.port()).unwrap_or(0),
                fleet.bmcs.last().map(|b| b.addr.port()).unwrap_or(0),
                a.suites
            );
            println!(
                "ironrack sim: machine MACs {}-{}, network boot {} from {}",
                fleet.bmcs.first().map(|b| b.mac()).unwrap_or_default(),
                fleet.bmcs.last().map(|b| b.mac()).unwrap_or_default(),
                a.netboot.name(),
                a.boot_server
                    .map(|s| format!("TFTP {s}"))
                    .unwrap_or_else(
                        || "nowhere (no --boot-server: PXE boots fall back to disk)".into()
                    )
            );
            Some(fleet)
        }
    };
    let redfish = match a.redfish {
        None => None,
        Some(listen) => {
            let pw = zeroize::Zeroizing::new(
                String::from_utf8(password.to_vec())
                    .map_err(|_| "the password is not UTF-8".to_string())?,
            );
            let mut cfg = RedfishFleetConfig::new(listen, a.count, &a.user, &pw);
            cfg.tls = a.tls;
            cfg.power_delay = Duration::from_millis(a.power_delay_ms);
            cfg.session_timeout = Duration::from_secs_f64(a.session_timeout.max(0.1));
            cfg.latency = Duration::from_millis(a.latency_ms);
            cfg.jitter = Duration::from_millis(a.jitter_ms);
            if !(0.0..=1.0).contains(&a.error_503_rate) {
                return Err("--error-503-rate is a fraction between 0 and 1".into());
            }
            cfg.error_503_rate = a.error_503_rate;
            cfg.allow_nmi = !a.no_nmi;
            cfg.unknown_enums = a.unknown_enums;
            cfg.no_graceful = a.no_graceful;
            let skip = if fleet.is_some() { a.count as u64 } else { 0 };
            cfg.mac_base = Some(mac_base.checked_add(skip).ok_or_else(|| {
                format!(
                    "--mac-base {mac_base}: the Redfish systems would run past ff:ff:ff:ff:ff:ff"
                )
            })?);
            cfg.netboot = netboot.clone();
            let rf = RedfishFleet::start(cfg).await.map_err(|e| e.to_string())?;
            for i in &a.unresponsive {
                if let Some(s) = rf.get_system(*i) {
                    s.set_unresponsive(true);
                }
            }
            for i in &a.fail_download {
                if let Some(n) = rf.netboot(*i) {
                    n.update(|n| n.fail_download = true);
                }
            }
            for i in &a.no_heartbeat {
                if let Some(n) = rf.netboot(*i) {
                    n.update(|n| n.no_heartbeat = true);
                }
            }
            println!(
                "ironrack sim: {} Redfish system(s) at {} (sys-0000 ..)",
                a.count,
                rf.base_url()
            );
            if let Some(pem) = rf.cert_pem() {
                match &a.stats_file {
                    Some(p) => {
                        let cert = p.with_extension("cert.pem");
                        std::fs::write(&cert, pem)
                            .map_err(|e| format!("{}: {e}", cert.display()))?;
                        println!("ironrack sim: TLS certificate in {}", cert.display());
                    }
                    None => println!("{pem}"),
                }
            }
            Some(rf)
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut control_seen = String::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(p) = &a.faults.control {
                    apply_control(p, &mut control_seen, fleet.as_ref(), redfish.as_ref());
                }
                if let Some(p) = &a.stats_file { write_stats(fleet.as_ref(), redfish.as_ref(), p) }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    if let Some(p) = &a.stats_file {
        write_stats(fleet.as_ref(), redfish.as_ref(), p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lists_and_ranges() {
        assert_eq!(parse_list("3, 17,20-22").unwrap(), vec![3, 17, 20, 21, 22]);
        assert_eq!(parse_list("").unwrap(), Vec::<usize>::new());
        assert!(parse_list("5-2").is_err());
        assert!(parse_list("x").is_err());
        assert!(parse_list("1-").is_err());
    }

    #[tokio::test]
    async fn the_control_file_applies_appended_lines_once() {
        let fleet = Fleet::start(FleetConfig {
            first: "127.0.0.1:0".parse().unwrap(),
            count: 2,
            bmc: BmcConfig::new("admin", b"pw"),
            loss: 0.0,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            unresponsive: vec![],
        })
        .await
        .unwrap();
        let path = std::env::temp_dir().join(format!(
            "ironrack-sim-control-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut applied = String::new();
        let apply = |applied: &mut String| apply_control(&path, applied, Some(&fleet), None);
        std::fs::write(&path, "unresponsive ipmi 1\n# a comment\nloss 0.5").unwrap();
        apply(&mut applied);
        assert!(fleet.bmcs[1].faults.is_unresponsive());
        assert!(!fleet.bmcs[0].faults.is_unresponsive());
        // Appended lines only; the unfinished line now complete.
        std::fs::write(
            &path,
            "unresponsive ipmi 1\n# a comment\nloss 0.5\nresponsive ipmi 1\npower ipmi 0 on\n",
        )
        .unwrap();
        apply(&mut applied);
        assert!(!fleet.bmcs[1].faults.is_unresponsive());
        assert!(fleet.bmcs[0].with(|b| b.machine.on));
        // Nothing new: nothing re-applied.
        fleet.bmcs[0].with(|b| b.set_power(false, std::time::Instant::now()));
        apply(&mut applied);
        assert!(!fleet.bmcs[0].with(|b| b.machine.on));
        // Rewritten from scratch: applied from the start.
        std::fs::write(&path, "garbage 0-1\n").unwrap();
        apply(&mut applied);
        assert!(fleet.bmcs[0].faults.is_garbage() && fleet.bmcs[1].faults.is_garbage());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn control_lines_are_checked_without_a_fleet() {
        assert!(control_line("loss 0.2", None, None).is_ok());
        assert!(control_line("latency 50 30", None, None).is_ok());
        assert!(control_line("loss 2", None, None).is_err());
        assert!(control_line("unresponsive ipmi 3", None, None)
            .unwrap_err()
            .contains("no IPMI BMC 3"));
        assert!(control_line("unresponsive serial 3", None, None).is_err());
        assert!(control_line("reboot everything", None, None).is_err());
        assert!(control_line("power ipmi 1 sideways", None, None).is_err());
        assert!(control_line("power redfish 1 on", None, None)
            .unwrap_err()
            .contains("no Redfish system 1"));
    }
}
