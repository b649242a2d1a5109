//! Command-line interface: `ironrack ipmi ...` (ipmitool's habits, plus fleet
//! mode like ipmipower) and `ironrack sim ...` (the BMC fleet simulator).

pub mod boot;
pub mod driver;
pub mod hosts;
pub mod ipmi;
pub mod redfish;
pub mod serve;
pub mod sim;
pub mod tftp;

use std::path::PathBuf;

use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use zeroize::Zeroizing;

#[derive(Parser, Debug)]
#[command(name = "ironrack", version, about = "Rack-local bare-metal agent")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Talk to BMCs over IPMI 2.0 (RMCP+), one or a whole fleet.
    Ipmi(ipmi::IpmiArgs),
    /// Talk to a Redfish BMC (or many systems behind one service).
    Redfish(redfish::RedfishArgs),
    /// Run simulated BMCs: RMCP+ (suites 3 and 17) on consecutive UDP ports,
    /// and Redfish systems behind one HTTP(S) endpoint.
    Sim(sim::SimArgs),
    /// Run the agent: the conductor and the Ironic-compatible API.
    Serve(serve::ServeArgs),
    /// The Nova-side driver layer: get-info, power-on, power-off, reboot,
    /// get-serial-console, spawn, destroy, rebuild.
    Driver(driver::DriverArgs),
    /// Boot configs of a node, as the agent renders them.
    Boot(boot::BootArgs),
    /// TFTP: serve a directory, fetch a file, or load-test a server.
    Tftp(tftp::TftpArgs),
}

/// The outcome of one command on one BMC, as text and JSON.
pub struct Outcome {
    pub text: String,
    pub json: Value,
}

/// A host (or system) and what happened there.
pub type HostResult = (String, Result<Outcome, String>);

/// Read a secret from a file: the first line, without its line ending.
pub fn read_secret_file(path: &PathBuf) -> Result<Zeroizing<Vec<u8>>, String> {
    let raw = Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    let end = raw
        .iter()
        .position(|b| *b == b'\n' || *b == b'\r')
        .unwrap_or(raw.len());
    Ok(Zeroizing::new(raw[..end].to_vec()))
}

/// Read a secret from an environment variable.
pub fn read_secret_env(var: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    match std::env::var_os(var) {
        Some(v) => Ok(Zeroizing::new(v.into_encoded_bytes())),
        None => Err(format!("{var} is not set")),
    }
}

/// The password from `$var` (with `-E`) or a file (`-f`); never from argv.
pub fn read_password(
    env: bool,
    var: &str,
    file: Option<&PathBuf>,
) -> Result<Zeroizing<Vec<u8>>, String> {
    match (env, file) {
        (true, _) => read_secret_env(var),
        (false, Some(f)) => read_secret_file(f),
        (false, None) => Err(format!(
            "no password: use -E ({var}) or -f FILE; passwords are never taken on the command line"
        )),
    }
}

/// A `--timeout` in seconds: positive and under a day.
pub fn parse_timeout(secs: f64) -> Result<Duration, String> {
    if !(secs > 0.0 && secs < 86_400.0) {
        return Err("--timeout must be a positive number of seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn init_logging(format: &str) {
    init_logging_with(format, "warn");
}

/// Logging on stderr at `default` level unless RUST_LOG says otherwise.
pub fn init_logging_with(format: &str, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

pub async fn run(cli: Cli) -> i32 {
    match &cli.command {
        Command::Serve(_) => init_logging_with(&cli.log_format, "info"),
        Command::Tftp(a) if a.is_serve() => init_logging_with(&cli.log_format, "info"),
        _ => init_logging(&cli.log_format),
    }
    match cli.command {
        Command::Ipmi(a) => ipmi::run(a).await,
        Command::Redfish(a) => redfish::run(a).await,
        Command::Sim(a) => sim::run(a).await,
        Command::Serve(a) => serve::run(a).await,
        Command::Driver(a) => driver::run(a).await,
        Command::Boot(a) => boot::run(a).await,
        Command::Tftp(a) => tftp::run(a).await,
    }
}

/// The clients of a fleet: a name per host or system, and its client or why
/// there is none.
pub type Clients<T> = std::sync::Arc<Vec<(String, Result<T, String>)>>;

/// Run `op` once for every client, at most `sem`'s permits at a time, with a
/// progress bar on a terminal.
pub async fn sweep<T, F, Fut>(
    clients: &Clients<T>,
    sem: &std::sync::Arc<tokio::sync::Semaphore>,
    fleet: bool,
    op: F,
) -> Vec<HostResult>
where
    T: Send + Sync + 'static,
    F: Fn(Clients<T>, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Outcome, String>> + Send + 'static,
{
    use std::io::IsTerminal;
    let bar = (fleet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(clients.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} BMCs {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut tasks = Vec::with_capacity(clients.len());
    for i in 0..clients.len() {
        let (clients, sem, bar, op) = (clients.clone(), sem.clone(), bar.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let name = clients[i].0.clone();
            let r = op(clients, i).await;
            if let Some(b) = &bar {
                b.inc(1);
            }
            (name, r)
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(r) => results.push(r),
            Err(e) => results.push((clients[i].0.clone(), Err(format!("task failed: {e}")))),
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    results
}

/// Print the results of a sweep: one line per host and a summary, or JSON.
pub fn report(json_out: bool, fleet: bool, results: &[HostResult], sweeps: &[Duration]) {
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let secs: Vec<f64> = sweeps.iter().map(|d| d.as_secs_f64()).collect();
    let last = secs.last().copied().unwrap_or(0.0);
    if json_out {
        let v = if fleet || sweeps.len() > 1 {
            let rows: Vec<Value> = results
                .iter()
                .map(|(h, r)| match r {
                    Ok(o) => {
                        let mut v = o.json.clone();
                        v["host"] = json!(h);
                        v["ok"] = json!(true);
                        v
                    }
                    Err(e) => json!({"host": h, "ok": false, "error": e}),
                })
                .collect();
            json!({"results": rows, "ok": results.len() - failed, "failed": failed,
                   "elapsed_s": last, "sweeps_s": secs})
        } else {
            match &results[0].1 {
                Ok(o) => o.json.clone(),
                Err(e) => json!({"error": e}),
            }
        };
        println!("{v}");
        return;
    }
    if !fleet && sweeps.len() == 1 {
        match &results[0].1 {
            Ok(o) => println!("{}", o.text),
            Err(e) => eprintln!("{}: {e}", results[0].0),
        }
        return;
    }
    for (h, r) in results {
        match r {
            Ok(o) => println!("{h}: {}", o.text),
            Err(e) => println!("{h}: error: {e}"),
        }
    }
    println!(
        "{} hosts: {} ok, {} failed in {:.3} s",
        results.len(),
        results.len() - failed,
        failed,
        last
    );
    if sweeps.len() > 1 {
        let list: Vec<String> = secs.iter().map(|s| format!("{s:.3}")).collect();
        println!("sweeps (s): {}", list.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_first_line() {
        let dir = std::env::temp_dir().join(format!("ironrack-secret-{}", std::process::id()));
        std::fs::write(&dir, b"s3cret\nignored\n").unwrap();
        assert_eq!(read_secret_file(&dir).unwrap().as_slice(), b"s3cret");
        std::fs::remove_file(&dir).unwrap();
        assert!(read_secret_file(&dir).is_err());
    }
}
