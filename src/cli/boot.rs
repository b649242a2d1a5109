//! `ironrack boot render NODE`: print a node's rendered boot configs (from
//! the agent's `GET /v1/nodes/{id}/boot_config`); `ironrack boot prepare
//! NODE` / `clean-up NODE` make them live or take them away
//! (`PUT /v1/nodes/{id}/boot_config`) and wait for the agent's worker.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::driver::{path_segment, ApiClient, DriverError};

#[derive(Args, Debug)]
pub struct BootArgs {
    /// The agent's API endpoint.
    #[arg(long, env = "IRONRACK_API", default_value = "http://127.0.0.1:6385")]
    pub api: String,
    /// User for http_basic auth; the password comes from IRONRACK_API_PASSWORD.
    #[arg(long, env = "IRONRACK_API_USER")]
    pub user: Option<String>,
    /// Bound, seconds, on each API request.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    #[command(subcommand)]
    pub op: BootOp,
}

#[derive(Subcommand, Debug)]
pub enum BootOp {
    /// Print the node's configs as the boot servers render them: a header
    /// line per config path, then its text.
    Render {
        node: String,
        /// The API's JSON document instead.
        #[arg(long)]
        json: bool,
    },
    /// Make the node's configs live and set its next boot to PXE.
    Prepare {
        node: String,
        /// Return once the agent accepted the request (202).
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for the agent's worker.
        #[arg(long, default_value_t = 120.0)]
        wait_timeout: f64,
    },
    /// Stop serving the node's configs.
    CleanUp {
        node: String,
        #[arg(long)]
        no_wait: bool,
        #[arg(long, default_value_t = 120.0)]
        wait_timeout: f64,
    },
}

/// The human-readable form of a `boot_config` document.
pub fn format_configs(doc: &Value) -> String {
    let mut out = format!(
        "node {}: boot mode {}, prepared: {}\n",
        doc["node_uuid"].as_str().unwrap_or("?"),
        doc["boot_mode"].as_str().unwrap_or("?"),
        if doc["prepared"].as_bool() == Some(true) {
            "yes"
        } else {
            "no (configs not served)"
        }
    );
    for c in doc["configs"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        out.push_str(&format!(
            "\n==> {} <== ({}, MAC {})\n",
            c["path"].as_str().unwrap_or("?"),
            c["kind"].as_str().unwrap_or("?"),
            c["mac"].as_str().unwrap_or("?"),
        ));
        out.push_str(c["text"].as_str().unwrap_or(""));
    }
    out
}

/// PUT `prepared`, then (unless `no_wait`) poll until the node's lock is
/// released and check the outcome.
async fn change(
    api: &ApiClient,
    node: &str,
    prepared: bool,
    no_wait: bool,
    wait: Duration,
) -> Result<String, DriverError> {
    let path = format!("/v1/nodes/{}/boot_config", path_segment(node));
    api.put_json(&path, &json!({ "prepared": prepared }), node)
        .await?;
    let what = if prepared { "prepare" } else { "clean up" };
    if no_wait {
        return Ok(format!("node {node}: boot {what} accepted"));
    }
    let node_path = format!("/v1/nodes/{}", path_segment(node));
    let deadline = Instant::now() + wait;
    loop {
        let n = api.get_json(&node_path, node).await?;
        if n["reservation"].is_null() {
            let doc = api.get_json(&path, node).await;
            let now = match &doc {
                Ok(d) => d["prepared"].as_bool(),
                // A node that cannot be rendered is not prepared.
                Err(DriverError::BadRequest(_)) => Some(false),
                Err(e) => return Err(e.clone()),
            };
            if now == Some(prepared) {
                return Ok(match prepared {
                    true => format!("node {node}: boot prepared (configs live, next boot PXE)"),
                    false => format!("node {node}: boot cleaned up (configs no longer served)"),
                });
            }
            let why = n["last_error"].as_str().unwrap_or("no last_error recorded");
            return Err(DriverError::Api {
                status: 0,
                message: format!("the boot {what} of node {node} failed: {why}"),
            });
        }
        if Instant::now() >= deadline {
            return Err(DriverError::Timeout(format!(
                "node {node} is still locked after {} s",
                wait.as_secs_f64()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn change_cmd(
    api: &ApiClient,
    node: &str,
    prepared: bool,
    no_wait: bool,
    wait_timeout: f64,
) -> Result<String, (i32, String)> {
    if !(wait_timeout > 0.0 && wait_timeout < 86_400.0) {
        return Err((
            2,
            "--wait-timeout must be a positive number of seconds".into(),
        ));
    }
    let wait = Duration::from_secs_f64(wait_timeout);
    change(api, node, prepared, no_wait, wait)
        .await
        .map(|s| s + "\n")
        .map_err(|e| (1, e.to_string()))
}

pub async fn run(a: BootArgs) -> i32 {
    let timeout = match super::parse_timeout(a.timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ironrack boot: {e}");
            return 2;
        }
    };
    let mut api = match ApiClient::new(&a.api, timeout) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ironrack boot: {e}");
            return 2;
        }
    };
    if let Some(user) = &a.user {
        match std::env::var("IRONRACK_API_PASSWORD") {
            Ok(p) => api = api.with_basic_auth(user, Zeroizing::new(p)),
            Err(_) => {
                eprintln!("ironrack boot: --user needs the password in IRONRACK_API_PASSWORD");
                return 2;
            }
        }
    }
    let result = match a.op {
        BootOp::Render { node, json } => {
            let path = format!("/v1/nodes/{}/boot_config", path_segment(&node));
            api.get_json(&path, &node)
                .await
                .map(|doc| {
                    if json {
                        format!("{doc:#}\n")
                    } else {
                        format_configs(&doc)
                    }
                })
                .map_err(|e| (1, e.to_string()))
        }
        BootOp::Prepare {
            node,
            no_wait,
            wait_timeout,
        } => change_cmd(&api, &node, true, no_wait, wait_timeout).await,
        BootOp::CleanUp {
            node,
            no_wait,
            wait_timeout,
        } => change_cmd(&api, &node, false, no_wait, wait_timeout).await,
    };
    match result {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err((code, e)) => {
            eprintln!("ironrack boot: {e}");
            code
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_output_has_a_header_per_config() {
        let doc = json!({
            "node_uuid": "u-1",
            "boot_mode": "bios",
            "prepared": true,
            "configs": [
                {"kind": "pxelinux", "path": "pxelinux.cfg/01-aa-bb-cc-dd-ee-ff",
                 "mac": "aa:bb:cc:dd:ee:ff", "text": "default deploy\n"},
                {"kind": "ipxe", "path": "ipxe/aa:bb:cc:dd:ee:ff.ipxe",
                 "mac": "aa:bb:cc:dd:ee:ff", "text": "#!ipxe\n"},
            ],
        });
        assert_eq!(
            format_configs(&doc),
            "node u-1: boot mode bios, prepared: yes\n\
             \n==> pxelinux.cfg/01-aa-bb-cc-dd-ee-ff <== (pxelinux, MAC aa:bb:cc:dd:ee:ff)\n\
             default deploy\n\
             \n==> ipxe/aa:bb:cc:dd:ee:ff.ipxe <== (ipxe, MAC aa:bb:cc:dd:ee:ff)\n\
             #!ipxe\n"
        );
    }
}
