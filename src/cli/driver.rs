//! `ironrack driver ...`: the Nova-side driver layer from the command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::json;
use zeroize::Zeroizing;

use crate::driver::{ApiClient, DriverError, IronicDriver, NodeView, RebootType, SpawnRequest};

#[derive(Args, Debug)]
pub struct DriverArgs {
    /// The agent's (or Ironic's) API endpoint.
    #[arg(long, env = "IRONRACK_API", default_value = "http://127.0.0.1:6385")]
    pub api: String,
    /// User for http_basic auth; the password comes from IRONRACK_API_PASSWORD.
    #[arg(long, env = "IRONRACK_API_USER")]
    pub user: Option<String>,
    /// Seconds between polls while a power or provision change lands (Nova's
    /// api_retry_interval).
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
    /// Deploy an instance: instance info, validate, VIFs, provision to
    /// active, and wait for ACTIVE (at most --max-retries polls).
    Spawn {
        node: String,
        #[arg(long)]
        instance_uuid: String,
        /// instance_info/image_source: an image URL.
        #[arg(long)]
        image_source: String,
        /// instance_info/root_gb.
        #[arg(long)]
        root_gb: Option<u64>,
        /// instance_info/display_name.
        #[arg(long)]
        display_name: Option<String>,
        /// The config drive: a gzip file, or its base64 text.
        #[arg(long)]
        configdrive_file: Option<PathBuf>,
        /// A VIF (port id) to attach; repeatable.
        #[arg(long = "vif", value_name = "ID")]
        vifs: Vec<String>,
    },
    /// Tear the instance down: VIFs off first, then unprovision and wait for
    /// cleaning or available (or only drop the instance info).
    Destroy {
        node: String,
        #[arg(long)]
        instance_uuid: String,
    },
    /// Redeploy the node's instance and wait for ACTIVE.
    Rebuild {
        node: String,
        /// A new config drive: a gzip file, or its base64 text.
        #[arg(long)]
        configdrive_file: Option<PathBuf>,
    },
}

/// gzip's magic and deflate method, and the same three bytes in base64.
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
const GZIP_MAGIC_B64: &str = "H4sI";

/// The config drive as Ironic takes it (gzipped, base64) from a file that
/// holds either the gzip itself or its base64 text.
pub fn configdrive_from_bytes(bytes: &[u8]) -> Result<String, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if bytes.starts_with(&GZIP_MAGIC) {
        return Ok(b64.encode(bytes));
    }
    let text: String = std::str::from_utf8(bytes)
        .map_err(|_| "not gzip data nor base64 text".to_string())?
        .split_ascii_whitespace()
        .collect();
    if !text.starts_with(GZIP_MAGIC_B64) {
        return Err("not gzip data nor the base64 text of gzip data (gzip the image first)".into());
    }
    b64.decode(&text)
        .map_err(|e| format!("invalid base64 text: {e}"))?;
    Ok(text)
}

fn read_configdrive(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    configdrive_from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The config drive named by the operation, if any.
fn op_configdrive(op: &DriverOp) -> Result<Option<String>, String> {
    match op {
        DriverOp::Spawn {
            configdrive_file: Some(p),
            ..
        }
        | DriverOp::Rebuild {
            configdrive_file: Some(p),
            ..
        } => read_configdrive(p).map(Some),
        _ => Ok(None),
    }
}

/// Argument checks the API would only make after the node is touched.
fn check_op(op: &DriverOp) -> Result<(), String> {
    match op {
        DriverOp::Spawn { instance_uuid, .. } | DriverOp::Destroy { instance_uuid, .. } => {
            uuid::Uuid::parse_str(instance_uuid)
                .map(|_| ())
                .map_err(|_| format!("--instance-uuid {instance_uuid:?} is not a UUID"))
        }
        _ => Ok(()),
    }
}

fn node_json(n: &NodeView) -> serde_json::Value {
    json!({
        "uuid": n.uuid,
        "power_state": n.power_state,
        "state": crate::driver::map_power_state(n.power_state.as_deref()).name(),
        "last_error": n.last_error,
    })
}

fn provision_json(n: &NodeView) -> serde_json::Value {
    let mut v = node_json(n);
    v["provision_state"] = json!(n.provision_state);
    v["instance_uuid"] = json!(n.instance_uuid);
    v
}

async fn run_op(
    driver: &IronicDriver,
    op: DriverOp,
    configdrive: Option<String>,
) -> Result<serde_json::Value, DriverError> {
    Ok(match op {
        DriverOp::Spawn {
            node,
            instance_uuid,
            image_source,
            root_gb,
            display_name,
            configdrive_file: _,
            vifs,
        } => {
            let req = SpawnRequest {
                instance_uuid,
                image_source,
                root_gb,
                display_name,
                configdrive,
                vifs,
            };
            provision_json(&driver.spawn(&node, &req).await?)
        }
        DriverOp::Destroy {
            node,
            instance_uuid,
        } => driver
            .destroy(&node, &instance_uuid)
            .await?
            .json(&instance_uuid),
        DriverOp::Rebuild { node, .. } => {
            provision_json(&driver.rebuild(&node, configdrive.as_deref()).await?)
        }
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
    let configdrive = match check_op(&a.op).and_then(|()| op_configdrive(&a.op)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ironrack driver: {e}");
            return 2;
        }
    };
    let mut driver = IronicDriver::new(api);
    driver.retry_interval = Duration::from_secs_f64(a.retry_interval);
    driver.max_retries = a.max_retries;
    match run_op(&driver, a.op, configdrive).await {
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn op(args: &[&str]) -> DriverOp {
        let mut argv = vec!["ironrack", "driver"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Driver(a),
                ..
            }) => a.op,
            Ok(other) => panic!("{other:?}"),
            Err(e) => panic!("{e}"),
        }
    }

    const U: &str = "6d1f1e26-7c0a-4f38-a1b0-5a5d2a1f0c11";

    #[test]
    fn provisioning_commands_parse() {
        match op(&[
            "spawn",
            "n1",
            "--instance-uuid",
            U,
            "--image-source",
            "http://img/x.qcow2",
            "--configdrive-file",
            "/tmp/cd.gz",
            "--vif",
            "p1",
            "--vif",
            "p2",
            "--root-gb",
            "10",
        ]) {
            DriverOp::Spawn {
                node,
                instance_uuid,
                image_source,
                root_gb,
                display_name,
                configdrive_file,
                vifs,
            } => {
                assert_eq!(node, "n1");
                assert_eq!(instance_uuid, U);
                assert_eq!(image_source, "http://img/x.qcow2");
                assert_eq!(root_gb, Some(10));
                assert_eq!(display_name, None);
                assert_eq!(configdrive_file, Some(PathBuf::from("/tmp/cd.gz")));
                assert_eq!(vifs, vec!["p1", "p2"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            op(&["destroy", "n1", "--instance-uuid", U]),
            DriverOp::Destroy { node, instance_uuid } if node == "n1" && instance_uuid == U
        ));
        assert!(matches!(
            op(&["rebuild", "n1"]),
            DriverOp::Rebuild { node, configdrive_file: None } if node == "n1"
        ));
        // The instance is required; a non-UUID one is refused before any call.
        let argv = ["ironrack", "driver", "spawn", "n1", "--image-source", "x"];
        assert!(Cli::try_parse_from(argv).is_err());
        let bad = op(&["destroy", "n1", "--instance-uuid", "nope"]);
        assert!(check_op(&bad).is_err());
        assert!(check_op(&op(&["destroy", "n1", "--instance-uuid", U])).is_ok());
    }

    #[test]
    fn configdrive_files_hold_gzip_or_its_base64() {
        let gz = [0x1f, 0x8b, 0x08, 0x00, 0x01, 0x02];
        let text = configdrive_from_bytes(&gz).unwrap();
        assert_eq!(text, "H4sIAAEC");
        // Base64 text as is, line breaks dropped.
        assert_eq!(configdrive_from_bytes(b"H4sI\nAAEC\n").unwrap(), "H4sIAAEC");
        assert!(configdrive_from_bytes(b"an ISO, not gzipped").is_err());
        assert!(configdrive_from_bytes(b"H4sI!!!!").is_err());
        assert!(configdrive_from_bytes(&[0xff, 0xfe, 0x00]).is_err());
    }
}
