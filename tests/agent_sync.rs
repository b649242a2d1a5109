//! The running agent (`ironrack serve`, a real process) against simulated
//! BMCs in this test process: the power sync loop, the power-failure
//! maintenance and its recovery, per-node locking over the API, and
//! durability across `kill -9`.
//!
//! The simulators are the witnesses: their machine state is read directly,
//! and changes "behind the agent's back" are made with ipmitool.

mod common;

use std::time::Duration;

use common::agent::{enroll, ipmi_node, wait_node, Agent};
use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_records_changes_made_behind_the_agents_back() {
    let fleet = fleet(1, |_| {}).await;
    let port = fleet.addrs()[0].port();
    let agent = Agent::start(
        "[conductor]\nsync_power_state_interval = 0.5\npower_poll_interval = 0.05\nbmc_timeout = 1\n",
    )
    .await;
    let uuid = enroll(&agent, ipmi_node("n1", port)).await;
    // The first sweep records the initial state (off) where there was none.
    wait_node(&agent, &uuid, 20, |n| n["power_state"] == "power off").await;

    let agent_sessions = fleet.bmcs[0].stats().sessions_opened;
    assert_eq!(agent_sessions, 1, "the agent's sweeps share one session");
    // ipmitool turns the machine on without telling the agent.
    let pwfile = Scratch::new("pw");
    let pw = pwfile.file("pw", PASSWORD);
    let out = run(tokio::process::Command::new(require("ipmitool"))
        .args([
            "-I",
            "lanplus",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            USER,
            "-f",
        ])
        .arg(&pw)
        .args(["-C", "17", "chassis", "power", "on"]))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(fleet.bmcs[0].with(|b| b.machine.on));
    let n = wait_node(&agent, &uuid, 20, |n| n["power_state"] == "power on").await;
    assert_eq!(n["maintenance"], false);
    assert_eq!(n["last_error"], Value::Null);
    // The change is counted in the metrics.
    let metrics = agent.text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ironrack_power_state_changes_total")),
        "{metrics}"
    );
    // One long-lived session served every sweep: the only new one is ipmitool's.
    assert_eq!(fleet.bmcs[0].stats().sessions_opened, agent_sessions + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_bmc_goes_to_maintenance_and_recovers_operator_maintenance_untouched() {
    let fleet = fleet(2, |_| {}).await;
    let ports: Vec<u16> = fleet.addrs().iter().map(|a| a.port()).collect();
    let agent = Agent::start(
        "[conductor]\nsync_power_state_interval = 0.3\npower_state_sync_max_retries = 2\n\
         power_failure_recovery_interval = 0.5\nbmc_timeout = 0.5\npower_poll_interval = 0.05\n",
    )
    .await;
    let dead = enroll(&agent, ipmi_node("dead", ports[0])).await;
    let ops = enroll(&agent, ipmi_node("ops", ports[1])).await;
    wait_node(&agent, &dead, 20, |n| n["power_state"] == "power off").await;
    // An operator puts the second node in maintenance.
    let (status, body) = agent
        .put("/v1/nodes/ops/maintenance", &json!({"reason": "disk swap"}))
        .await;
    assert_eq!(status, 202, "{body}");

    fleet.bmcs[0].faults.set_unresponsive(true);
    fleet.bmcs[1].faults.set_unresponsive(true);
    let n = wait_node(&agent, &dead, 30, |n| n["maintenance"] == true).await;
    assert_eq!(n["fault"], "power failure", "{n:#}");
    let err = n["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("max retries"), "{err}");
    // Meanwhile the operator's node kept its reason and got no fault.
    let (_, o) = agent.get(&format!("/v1/nodes/{ops}")).await;
    assert_eq!(o["maintenance"], true);
    assert_eq!(o["maintenance_reason"], "disk swap");
    assert_eq!(o["fault"], Value::Null);

    // The failures are counted by kind, and every sweep is timed.
    let metrics = agent.text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ironrack_bmc_errors_total{") && l.contains("kind=\"timeout\"")),
        "{metrics}"
    );
    assert!(
        metrics.contains("ironrack_sync_sweep_seconds_count"),
        "{metrics}"
    );

    // The BMCs answer again: the fault clears, the operator's maintenance stays.
    fleet.bmcs[0].faults.set_unresponsive(false);
    fleet.bmcs[1].faults.set_unresponsive(false);
    let n = wait_node(&agent, &dead, 30, |n| n["maintenance"] == false).await;
    assert_eq!(n["fault"], Value::Null);
    assert_eq!(n["power_state"], "power off");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, o) = agent.get(&format!("/v1/nodes/{ops}")).await;
    assert_eq!(o["maintenance"], true, "{o:#}");
    assert_eq!(o["maintenance_reason"], "disk swap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_power_requests_give_one_202_and_one_409() {
    let fleet = fleet(1, |c| c.bmc.power_delay = Duration::from_secs(2)).await;
    let port = fleet.addrs()[0].port();
    let agent =
        Agent::start("[conductor]\nsync_power_state_interval = 0\npower_poll_interval = 0.05\n")
            .await;
    let uuid = enroll(&agent, ipmi_node("n1", port)).await;
    let path = format!("/v1/nodes/{uuid}/states/power");
    let body = json!({"target": "power on"});
    let (a, b) = tokio::join!(agent.put(&path, &body), agent.put(&path, &body));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "{} / {}", a.1, b.1);
    let conflict = if a.0 == 409 { &a.1 } else { &b.1 };
    let fault = common::agent::faultstring(conflict);
    assert!(fault.contains("locked"), "{fault}");
    let n = wait_node(&agent, &uuid, 30, |n| n["target_power_state"].is_null()).await;
    assert_eq!(n["power_state"], "power on");
    assert!(fleet.bmcs[0].with(|b| b.machine.on));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_power_change_loses_nothing_and_clears_the_stale_target() {
    // The machine takes a minute to power on: the change is in flight when the
    // agent dies.
    let fleet = fleet(2, |c| c.bmc.power_delay = Duration::from_secs(60)).await;
    let ports: Vec<u16> = fleet.addrs().iter().map(|a| a.port()).collect();
    let mut agent =
        Agent::start("[conductor]\nsync_power_state_interval = 0\npower_poll_interval = 0.05\n")
            .await;
    let a = enroll(&agent, ipmi_node("a", ports[0])).await;
    let b = enroll(&agent, ipmi_node("b", ports[1])).await;
    let (status, port) = agent
        .post(
            "/v1/ports",
            &json!({"node_uuid": a, "address": "52:54:00:12:34:56"}),
        )
        .await;
    assert_eq!(status, 201, "{port}");
    let (status, body) = agent
        .put(
            &format!("/v1/nodes/{a}/states/power"),
            &json!({"target": "power on"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (_, n) = agent.get(&format!("/v1/nodes/{a}")).await;
    assert_eq!(n["target_power_state"], "power on");
    let before: Vec<Value> = agent.get("/v1/nodes/detail").await.1["nodes"]
        .as_array()
        .unwrap()
        .clone();

    agent.kill9();
    agent.restart().await;

    let (_, n) = agent.get(&format!("/v1/nodes/{a}")).await;
    assert_eq!(n["target_power_state"], Value::Null, "{n:#}");
    let err = n["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("'power on'") && err.contains("restart"),
        "{err}"
    );
    // Everything else is as it was.
    let after: Vec<Value> = agent.get("/v1/nodes/detail").await.1["nodes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(after.len(), before.len());
    for (x, y) in before.iter().zip(after.iter()) {
        for k in [
            "uuid",
            "name",
            "driver",
            "driver_info",
            "properties",
            "provision_state",
        ] {
            assert_eq!(x[k], y[k], "{k} changed across the crash");
        }
    }
    let (_, ports_doc) = agent.get(&format!("/v1/nodes/{a}/ports")).await;
    assert_eq!(ports_doc["ports"][0]["address"], "52:54:00:12:34:56");
    let (_, nb) = agent.get(&format!("/v1/nodes/{b}")).await;
    assert_eq!(nb["last_error"], Value::Null);
    // The sealed password still opens: the restarted agent can drive the BMC.
    let (status, body) = agent
        .put(
            &format!("/v1/nodes/{b}/states/power"),
            &json!({"target": "power off"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let n = wait_node(&agent, &b, 20, |n| n["target_power_state"].is_null()).await;
    assert_eq!(n["power_state"], "power off", "{n:#}");
    assert_eq!(n["last_error"], Value::Null);
}
