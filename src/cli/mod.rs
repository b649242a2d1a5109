//! Command-line interface: `ironrack ipmi ...` (ipmitool's habits, plus fleet
//! mode like ipmipower) and `ironrack sim ...` (the BMC fleet simulator).

pub mod hosts;
pub mod ipmi;
pub mod sim;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
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
    /// Run simulated BMCs (RMCP+ suites 3 and 17) on consecutive UDP ports.
    Sim(sim::SimArgs),
}

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

pub fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

pub async fn run(cli: Cli) -> i32 {
    init_logging(&cli.log_format);
    match cli.command {
        Command::Ipmi(a) => ipmi::run(a).await,
        Command::Sim(a) => sim::run(a).await,
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
