//! `ironrack sim`: serve N simulated BMCs until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::ipmi::crypto::CipherSuite;
use crate::sim::{BmcConfig, Fleet, FleetConfig};

#[derive(Args, Debug)]
pub struct SimArgs {
    /// UDP address of the first BMC; BMC i listens on port + i.
    #[arg(long, default_value = "127.0.0.1:10000")]
    pub ipmi: SocketAddr,
    /// Number of BMCs.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
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
    /// Added latency per answer, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Random extra latency up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Indexes (0-based) of BMCs that never answer, e.g. 3,17.
    #[arg(long, value_delimiter = ',')]
    pub unresponsive: Vec<usize>,
    /// Refuse the diagnostic interrupt (NMI), like ipmi_sim.
    #[arg(long)]
    pub no_nmi: bool,
    /// Write per-BMC counters as JSON to this file every second and at exit.
    #[arg(long)]
    pub stats_file: Option<PathBuf>,
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

fn write_stats(fleet: &Fleet, path: &PathBuf) {
    let stats: Vec<_> = fleet
        .bmcs
        .iter()
        .map(|b| serde_json::json!({"addr": b.addr.to_string(), "stats": b.stats()}))
        .collect();
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec_pretty(&stats).unwrap_or_default();
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
    if !(0.0..=1.0).contains(&a.loss) {
        return Err("--loss is a fraction between 0 and 1".into());
    }
    let fleet = Fleet::start(FleetConfig {
        first: a.ipmi,
        count: a.count,
        bmc,
        loss: a.loss,
        latency: Duration::from_millis(a.latency_ms),
        jitter: Duration::from_millis(a.jitter_ms),
        unresponsive: a.unresponsive.clone(),
    })
    .await
    .map_err(|e| e.to_string())?;
    let last = fleet.bmcs.last().map(|b| b.addr.port()).unwrap_or(0);
    println!(
        "ironrack sim: {} BMC(s) on {}:{}-{} (suites {:?})",
        a.count,
        a.ipmi.ip(),
        fleet.bmcs.first().map(|b| b.addr.port()).unwrap_or(0),
        last,
        a.suites
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(p) = &a.stats_file { write_stats(&fleet, p) }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    if let Some(p) = &a.stats_file {
        write_stats(&fleet, p);
    }
    Ok(())
}
