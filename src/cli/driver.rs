//! `ironrack driver ...`: the Nova-side driver layer from the command line.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;
use zeroize::Zeroizing;

use crate::driver::{ApiClient, DriverError, IronicDriver, NodeView, RebootType};

#[derive(Args, Debug)]
pub struct DriverArgs {
    /// The agent's (or Ironic's) API endpoint.
    #[arg(long, env = "IRONRACK_API", default_value = "http://127.0.0.1:6385")]
    pub api: String,
    /// User for http_basic auth; the password comes from IRONRACK_API_PASSWORD.
    #[arg(long, env = "IRONRACK_API_USER")]
    pub user: Option<String>,
    /// Seconds between polls while a power change lands (Nova's api_retry_interval).
    #[arg(long, default_value_t = 2.0)]
    pub retry_interval: f64,
    /// Polls before giving up (Nova's api_max_retries).
    #[arg(long, default_value_t = 60)]
    pub max_retries: u32,
    /// Bound, seconds, on each API request.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    #[command(subcommand)]
    pub op: DriverOp,
}

#[derive(Subcommand, Debug)]
pub enum DriverOp {
    /// Print {"state": RUNNING|SHUTDOWN|NOSTATE, "power_state": ...}.
    GetInfo { node: String },
    /// Power on and wait.
    PowerOn { node: String },
    /// Power off and wait; with --timeout, soft first, then hard.
    PowerOff {
        node: String,
        /// Seconds to allow a soft power off before falling back to hard.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Reboot and wait; --soft falls back to hard when the driver refuses it.
    Reboot {
        node: String,
        #[arg(long)]
        soft: bool,
    },
    /// Hand out the node's serial console as Nova does (reset it first):
    /// prints {"host": ..., "port": ...}.
    GetSerialConsole { node: String },
}

fn node_json(n: &NodeView) -> serde_json::Value {
    json!({
        "uuid": n.uuid,
        "power_state": n.power_state,
        "state": crate::driver::map_power_state(n.power_state.as_deref()).name(),
        "last_error": n.last_error,
    })
}

async fn run_op(driver: &IronicDriver, op: DriverOp) -> Result<serde_json::Value, DriverError> {
    Ok(match op {
        DriverOp::GetInfo { node } => driver.get_info(&node).await?.json(),
        DriverOp::PowerOn { node } => node_json(&driver.power_on(&node).await?),
        DriverOp::PowerOff { node, timeout } => node_json(&driver.power_off(&node, timeout).await?),
        DriverOp::GetSerialConsole { node } => {
            let c = driver.get_serial_console(&node).await?;
            json!({"host": c.host, "port": c.port})
        }
        DriverOp::Reboot { node, soft } => {
            let kind = if soft {
                RebootType::Soft
            } else {
                RebootType::Hard
            };
            let (done, n) = driver.reboot(&node, kind).await?;
            let mut v = node_json(&n);
            v["reboot_type"] = json!(match done {
                RebootType::Soft => "SOFT",
                RebootType::Hard => "HARD",
            });
            v
        }
    })
}

pub async fn run(a: DriverArgs) -> i32 {
    let timeout = match super::parse_timeout(a.timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ironrack driver: {e}");
            return 2;
        }
    };
    if !(a.retry_interval > 0.0 && a.retry_interval < 3600.0) {
        eprintln!("ironrack driver: --retry-interval must be a positive number of seconds");
        return 2;
    }
    let mut api = match ApiClient::new(&a.api, timeout) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ironrack driver: {e}");
            return 2;
        }
    };
    if let Some(user) = &a.user {
        match std::env::var("IRONRACK_API_PASSWORD") {
            Ok(p) => api = api.with_basic_auth(user, Zeroizing::new(p)),
            Err(_) => {
                eprintln!("ironrack driver: --user needs the password in IRONRACK_API_PASSWORD");
                return 2;
            }
        }
    }
    let mut driver = IronicDriver::new(api);
    driver.retry_interval = Duration::from_secs_f64(a.retry_interval);
    driver.max_retries = a.max_retries;
    match run_op(&driver, a.op).await {
        Ok(v) => {
            println!("{v}");
            0
        }
        Err(e) => {
            eprintln!("ironrack driver: {e}");
            1
        }
    }
}
