//! The Nova-side driver layer (`ironrack::driver`, `ironrack driver ...`)
//! against a running agent and simulated BMCs: the power-state map, soft
//! power off with its hard fallback, soft reboot with its hard fallback, and
//! `get_info` on an unknown node.

mod common;

use std::time::Duration;

use common::agent::{enroll, Agent};
use common::*;
use ironrack::driver::{ApiClient, IronicDriver, NovaPowerState, RebootType};
use ironrack::sim::redfish::{RedfishFleet, RedfishFleetConfig};
use serde_json::{json, Value};

fn driver(agent: &Agent) -> IronicDriver {
    let api = ApiClient::new(&agent.url, Duration::from_secs(10)).unwrap();
    let mut d = IronicDriver::new(api);
    d.retry_interval = Duration::from_millis(100);
    d.max_retries = 300;
    d
}

const CONF: &str = "[conductor]\nsync_power_state_interval = 0\npower_poll_interval = 0.05\n\
                    soft_power_off_timeout = 2\nbmc_timeout = 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_power_on_off_with_soft_then_hard_fallback() {
    let fleet = fleet(1, |c| c.bmc.power_delay = Duration::from_millis(200)).await;
    let port = fleet.addrs()[0].port();
    let agent = Agent::start(CONF).await;
    let d = driver(&agent);

    // Unknown node: NOSTATE, not an error.
    let info = d.get_info("no-such-node").await.unwrap();
    assert_eq!(info.state, NovaPowerState::NoState);
    assert_eq!(info.power_state, None);

    let uuid = enroll(
        &agent,
        json!({"name": "n1", "driver": "ipmi", "driver_info": {
            "ipmi_address": "127.0.0.1", "ipmi_port": port,
            "ipmi_username": USER, "ipmi_password": PASSWORD}}),
    )
    .await;
    // Enrolled, never synced: no power state yet.
    assert_eq!(
        d.get_info("n1").await.unwrap().state,
        NovaPowerState::NoState
    );

    let n = d.power_on("n1").await.unwrap();
    assert_eq!(n.power_state.as_deref(), Some("power on"));
    assert!(fleet.bmcs[0].with(|b| b.machine.on));
    let info = d.get_info(&uuid).await.unwrap();
    assert_eq!(info.state, NovaPowerState::Running);
    assert_eq!(info.state.code(), 1);

    // The OS honours ACPI: the soft power off is enough.
    let n = d.power_off("n1", Some(30)).await.unwrap();
    assert_eq!(n.power_state.as_deref(), Some("power off"));
    assert_eq!(fleet.bmcs[0].with(|b| b.machine.soft_offs), 1);
    assert_eq!(
        d.get_info("n1").await.unwrap().state,
        NovaPowerState::Shutdown
    );

    // A hung OS ignores ACPI: soft off times out on the agent (1 s here), the
    // driver falls back to a hard power off.
    d.power_on("n1").await.unwrap();
    fleet.bmcs[0].with(|b| b.machine.ignore_soft_off = true);
    let n = d.power_off("n1", Some(1)).await.unwrap();
    assert_eq!(n.power_state.as_deref(), Some("power off"));
    assert_eq!(fleet.bmcs[0].with(|b| b.machine.soft_offs), 2);
    assert!(!fleet.bmcs[0].with(|b| b.machine.on));

    // Hard reboot from off ends powered on.
    let (kind, n) = d.reboot("n1", RebootType::Hard).await.unwrap();
    assert_eq!(kind, RebootType::Hard);
    assert_eq!(n.power_state.as_deref(), Some("power on"));
    assert!(fleet.bmcs[0].with(|b| b.machine.on));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_reboot_falls_back_to_hard_when_the_driver_answers_400() {
    let mut cfg = RedfishFleetConfig::new("127.0.0.1:0".parse().unwrap(), 2, USER, PASSWORD);
    cfg.no_graceful = true;
    let fleet = RedfishFleet::start(cfg).await.unwrap();
    let agent = Agent::start(CONF).await;
    enroll(
        &agent,
        json!({"name": "rf", "driver": "redfish", "driver_info": {
            "redfish_address": fleet.base_url(), "redfish_system_id": "/redfish/v1/Systems/sys-0000",
            "redfish_username": USER, "redfish_password": PASSWORD}}),
    )
    .await;
    let d = driver(&agent);
    d.power_on("rf").await.unwrap();
    let (kind, n) = d.reboot("rf", RebootType::Soft).await.unwrap();
    assert_eq!(kind, RebootType::Hard, "the agent refused the soft reboot");
    assert_eq!(n.power_state.as_deref(), Some("power on"));
    assert_eq!(n.last_error, None);

    // The CLI prints Nova's view.
    let out = run(ironrack().args(["driver", "--api", &agent.url, "get-info", "rf"])).await;
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"state": "RUNNING", "power_state": "power on"}));
    let out = run(ironrack()
        .args([
            "driver",
            "--retry-interval",
            "0.1",
            "reboot",
            "rf",
            "--soft",
        ])
        .env("IRONRACK_API", &agent.url))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reboot_type"], "HARD");
    assert_eq!(v["state"], "RUNNING");
    let out = run(ironrack().args(["driver", "--api", &agent.url, "get-info", "missing"])).await;
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!({"state": "NOSTATE", "power_state": null}));
}
