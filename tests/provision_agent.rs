//! Provisioning through `ironrack serve` as a process: the provision state
//! machine over `PUT /v1/nodes/{id}/states/provision`, the ramdisk's
//! heartbeat, call-back timeouts that survive a restart, tear down with
//! cleaning, VIFs, and delete refusals. The heartbeats here are sent by the
//! test, so each step can be checked on its own; `provision_e2e.rs` runs
//! the same flows with simulated machines that really boot.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use ironrack::ipmi::{BootDevice, BootFlags};
use ironrack::sim::Fleet;
use serde_json::{json, Value};

use common::agent::{enroll, faultstring, ipmi_node, wait_node, Agent};
use common::{fleet, free_udp_port, Scratch};

const MAC: &str = "52:54:00:7e:00:01";

fn boot_root() -> Scratch {
    let dir = Scratch::new("provroot");
    std::fs::create_dir_all(dir.0.join("deploy")).unwrap();
    std::fs::write(dir.0.join("deploy/vmlinuz"), vec![7u8; 10_000]).unwrap();
    std::fs::write(dir.0.join("deploy/initrd.img"), vec![9u8; 20_000]).unwrap();
    dir
}

fn conf(root: &Path, extra: &str) -> String {
    format!(
        "[conductor]\nsync_power_state_interval = 0\npower_poll_interval = 0.1\nbmc_timeout = 2\n\
         check_provision_state_interval = 0.3\n{extra}\n\
         [tftp]\nlisten = \"127.0.0.1:{}\"\nroot = \"{}\"\n\
         [http_boot]\nlisten = \"127.0.0.1:0\"\nroot = \"{}\"\n",
        free_udp_port(),
        root.display(),
        root.display()
    )
}

/// An IPMI node on the simulator with deploy images, one port and an image
/// to deploy, moved to `available` through manage and provide.
async fn available_node(agent: &Agent, name: &str, bmc_port: u16) -> String {
    let mut body = ipmi_node(name, bmc_port);
    body["driver_info"]["deploy_kernel"] = json!("deploy/vmlinuz");
    body["driver_info"]["deploy_ramdisk"] = json!("deploy/initrd.img");
    body["instance_info"] = json!({"image_source": "http://images.example/deploy.qcow2"});
    let uuid = enroll(agent, body).await;
    let (s, p) = agent
        .post("/v1/ports", &json!({"address": MAC, "node_uuid": uuid}))
        .await;
    assert_eq!(s, 201, "{p}");
    provision(agent, &uuid, "manage", 202).await;
    settled(agent, &uuid, "manageable").await;
    provision(agent, &uuid, "provide", 202).await;
    uuid
}

async fn provision(agent: &Agent, node: &str, target: &str, want: u16) -> Value {
    let (s, v) = agent
        .put(
            &format!("/v1/nodes/{node}/states/provision"),
            &json!({ "target": target }),
        )
        .await;
    assert_eq!(s, want, "{target}: {v}");
    v
}

/// Wait until the node is in `state` with no lock held.
async fn settled(agent: &Agent, node: &str, state: &str) -> Value {
    wait_node(agent, node, 60, |n| {
        n["provision_state"] == state && n["reservation"].is_null()
    })
    .await
}

async fn heartbeat(agent: &Agent, node: &str) -> (u16, Value) {
    agent
        .post(
            &format!("/v1/heartbeat/{node}"),
            &json!({"callback_url": "http://127.0.0.1:9999", "agent_version": "test 1.0"}),
        )
        .await
}

fn flags(fleet: &Fleet) -> Option<BootFlags> {
    fleet.bmcs[0].with(|b| BootFlags::parse(&b.machine.boot_flags))
}

fn powered(fleet: &Fleet) -> bool {
    fleet.bmcs[0].stats().power_on
}

async fn prepared(agent: &Agent, node: &str) -> bool {
    let (s, v) = agent.get(&format!("/v1/nodes/{node}/boot_config")).await;
    assert_eq!(s, 200, "{v}");
    v["prepared"].as_bool().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_tear_down_follow_the_state_machine() {
    let root = boot_root();
    let fleet = fleet(1, |_| {}).await;
    let agent = Agent::start(&conf(&root.0, "")).await;
    let node = available_node(&agent, "n1", fleet.bmcs[0].addr.port()).await;

    // provide with automated cleaning boots the ramdisk: clean wait.
    let n = settled(&agent, &node, "clean wait").await;
    assert_eq!(n["target_provision_state"], "available");
    assert!(prepared(&agent, &node).await);
    assert!(powered(&fleet));
    assert_eq!(heartbeat(&agent, &node).await.0, 202);
    let n = settled(&agent, &node, "available").await;
    assert!(n["target_provision_state"].is_null(), "{n}");
    assert!(!prepared(&agent, &node).await);
    assert!(!powered(&fleet), "cleaning ends powered off");

    // Deploy: configs live, PXE once, powered on, waiting for the call-back.
    let boots_before = fleet.bmcs[0].stats().boots;
    provision(&agent, &node, "active", 202).await;
    let n = settled(&agent, &node, "wait call-back").await;
    assert_eq!(n["target_provision_state"], "active");
    assert_eq!(n["power_state"], "power on");
    assert!(prepared(&agent, &node).await);
    let f = flags(&fleet).unwrap();
    assert_eq!(f.device, BootDevice::Pxe);
    assert!(fleet.bmcs[0].stats().boots > boots_before);
    // Asking again in the wrong state is refused, and changes nothing.
    let v = provision(&agent, &node, "active", 400).await;
    assert!(faultstring(&v).contains("wait call-back"), "{v}");

    // The heartbeat finishes it: configs away, disk for good, rebooted.
    assert_eq!(heartbeat(&agent, &node).await.0, 202);
    let n = settled(&agent, &node, "active").await;
    assert!(n["target_provision_state"].is_null(), "{n}");
    assert!(n["last_error"].is_null(), "{n}");
    assert_eq!(
        n["driver_internal_info"]["agent_url"],
        "http://127.0.0.1:9999"
    );
    assert_eq!(n["driver_internal_info"]["agent_version"], "test 1.0");
    assert!(!prepared(&agent, &node).await);
    let f = flags(&fleet).unwrap();
    assert_eq!(f.device, BootDevice::Disk);
    assert!(f.persistent);
    assert!(powered(&fleet));

    // An active node cannot be deleted.
    let (s, v) = agent.delete(&format!("/v1/nodes/{node}")).await;
    assert_eq!(s, 400, "{v}");
    assert!(faultstring(&v).contains("active"), "{v}");

    // VIFs: attach one (one port, so a second is refused), tear down drops it.
    let (s, v) = agent
        .post(&format!("/v1/nodes/{node}/vifs"), &json!({"id": "vif-1"}))
        .await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = agent
        .post(&format!("/v1/nodes/{node}/vifs"), &json!({"id": "vif-2"}))
        .await;
    assert_eq!(s, 400, "{v}");
    let (_, v) = agent.get(&format!("/v1/nodes/{node}/vifs")).await;
    assert_eq!(v, json!({"vifs": [{"id": "vif-1"}]}));

    // Tear down: off, instance gone, then cleaning boots the ramdisk again.
    provision(&agent, &node, "deleted", 202).await;
    let n = settled(&agent, &node, "clean wait").await;
    assert_eq!(n["instance_info"], json!({}));
    assert!(n["instance_uuid"].is_null());
    let (_, v) = agent.get(&format!("/v1/nodes/{node}/vifs")).await;
    assert_eq!(v, json!({"vifs": []}));
    assert_eq!(flags(&fleet).unwrap().device, BootDevice::Pxe);
    assert_eq!(heartbeat(&agent, &node).await.0, 202);
    settled(&agent, &node, "available").await;
    assert!(!powered(&fleet));

    // Deploying without an image is refused up front.
    let v = provision(&agent, &node, "active", 400).await;
    assert!(faultstring(&v).contains("image_source"), "{v}");
    let (s, v) = agent.delete(&format!("/v1/nodes/{node}")).await;
    assert_eq!(s, 204, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_requests_change_nothing() {
    let root = boot_root();
    let fleet = fleet(1, |_| {}).await;
    let agent = Agent::start(&conf(&root.0, "automated_clean = false")).await;
    let mut body = ipmi_node("w", fleet.bmcs[0].addr.port());
    body["driver_info"]["deploy_kernel"] = json!("deploy/vmlinuz");
    body["driver_info"]["deploy_ramdisk"] = json!("deploy/initrd.img");
    let node = enroll(&agent, body).await;

    // enroll: only manage is allowed.
    for target in ["active", "provide", "deleted", "abort", "rebuild"] {
        let v = provision(&agent, &node, target, 400).await;
        let msg = faultstring(&v);
        assert!(msg.contains("enroll") && msg.contains(target), "{msg}");
    }
    let v = provision(&agent, &node, "inspect-me", 400).await;
    assert!(faultstring(&v).contains("not a valid"), "{v}");
    let (s, _) = agent
        .put(
            &format!("/v1/nodes/{node}/states/provision"),
            &json!({"target": "manage", "configdrive": "H4sI"}),
        )
        .await;
    assert_eq!(s, 400);

    // Heartbeats: unknown node 404, bad URL 400, wrong state 409 and no change.
    let (s, _) = heartbeat(&agent, "no-such-node").await;
    assert_eq!(s, 404);
    let (s, v) = agent
        .post(
            &format!("/v1/heartbeat/{node}"),
            &json!({"callback_url": "ftp://x"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (_, before) = agent.get(&format!("/v1/nodes/{node}")).await;
    let (s, v) = heartbeat(&agent, &node).await;
    assert_eq!(s, 409, "{v}");
    assert!(faultstring(&v).contains("enroll"), "{v}");
    let (_, after) = agent.get(&format!("/v1/nodes/{node}")).await;
    assert_eq!(before, after, "a refused heartbeat changed the node");

    // manage, then provide without cleaning: available at once.
    provision(&agent, &node, "manage", 202).await;
    settled(&agent, &node, "manageable").await;
    provision(&agent, &node, "provide", 202).await;
    let n = settled(&agent, &node, "available").await;
    assert!(n["last_error"].is_null(), "{n}");
    let (s, v) = heartbeat(&agent, &node).await;
    assert_eq!(s, 409, "{v}");

    // A configdrive that is not gzip+base64 is refused before anything moves.
    let (s, v) = agent
        .put(
            &format!("/v1/nodes/{node}/states/provision"),
            &json!({"target": "active", "configdrive": "bm90IGd6aXA="}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(faultstring(&v).contains("configdrive"), "{v}");
    let (_, n) = agent.get(&format!("/v1/nodes/{node}")).await;
    assert_eq!(n["provision_state"], "available");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_heartbeat_fails_the_deploy_and_a_configdrive_is_kept_masked() {
    let root = boot_root();
    let fleet = fleet(1, |_| {}).await;
    let agent = Agent::start(&conf(
        &root.0,
        "automated_clean = false\ndeploy_callback_timeout = 2",
    ))
    .await;
    let node = available_node(&agent, "t", fleet.bmcs[0].addr.port()).await;
    settled(&agent, &node, "available").await;
    // gzip magic + payload, base64.
    let cd = "H4sIAAAAAAAAA8tIzcnJBwCGphA2BQAAAA==";
    let (s, v) = agent
        .put(
            &format!("/v1/nodes/{node}/states/provision"),
            &json!({"target": "active", "configdrive": cd}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let n = settled(&agent, &node, "wait call-back").await;
    assert_eq!(n["instance_info"]["configdrive"], "******");
    let n = settled(&agent, &node, "deploy failed").await;
    assert_eq!(n["target_provision_state"], "active");
    let err = n["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("Timeout reached while waiting for callback"),
        "{n}"
    );
    assert!(
        !prepared(&agent, &node).await,
        "a failed deploy keeps no configs"
    );
    // A late heartbeat changes nothing.
    let (s, _) = heartbeat(&agent, &node).await;
    assert_eq!(s, 409);
    assert_eq!(
        settled(&agent, &node, "deploy failed").await["last_error"],
        n["last_error"]
    );
    // deploy failed → deleted → available (cleaning off).
    provision(&agent, &node, "deleted", 202).await;
    let n = settled(&agent, &node, "available").await;
    assert!(n["instance_info"].as_object().unwrap().is_empty(), "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_the_call_back_timer_from_the_store() {
    const TIMEOUT: u64 = 8;
    let root = boot_root();
    let fleet = fleet(1, |_| {}).await;
    let mut agent = Agent::start(&conf(
        &root.0,
        &format!("automated_clean = false\ndeploy_callback_timeout = {TIMEOUT}"),
    ))
    .await;
    let node = available_node(&agent, "r", fleet.bmcs[0].addr.port()).await;
    settled(&agent, &node, "available").await;
    provision(&agent, &node, "active", 202).await;
    let n = settled(&agent, &node, "wait call-back").await;
    let entered = n["provision_updated_at"].clone();

    // Down for longer than the timeout: had the timer restarted with the
    // agent, the node would wait TIMEOUT more seconds after the restart.
    agent.kill9();
    tokio::time::sleep(Duration::from_secs(TIMEOUT + 1)).await;
    agent.restart().await;
    let back = Instant::now();
    let (_, n) = agent.get(&format!("/v1/nodes/{node}")).await;
    // The wait itself survived the restart untouched.
    if n["provision_state"] == "wait call-back" {
        assert_eq!(n["provision_updated_at"], entered);
    }
    let n = settled(&agent, &node, "deploy failed").await;
    assert!(
        back.elapsed() < Duration::from_secs(TIMEOUT),
        "the timer restarted instead of resuming: {n}"
    );
    let err = n["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("Timeout reached"), "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_stops_a_wait_and_locked_nodes_answer_409() {
    let root = boot_root();
    // Slow power, so the deploy worker holds the lock long enough to see 409.
    let fleet = fleet(1, |c| c.bmc.power_delay = Duration::from_secs(2)).await;
    let agent = Agent::start(&conf(&root.0, "automated_clean = false")).await;
    let node = available_node(&agent, "a", fleet.bmcs[0].addr.port()).await;
    settled(&agent, &node, "available").await;
    provision(&agent, &node, "active", 202).await;
    let v = provision(&agent, &node, "deleted", 409).await;
    assert!(faultstring(&v).contains("locked"), "{v}");
    let (s, _) = heartbeat(&agent, &node).await;
    assert_eq!(s, 409);
    settled(&agent, &node, "wait call-back").await;
    provision(&agent, &node, "abort", 202).await;
    let n = settled(&agent, &node, "deploy failed").await;
    assert!(
        n["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("aborted"),
        "{n}"
    );
    assert!(!prepared(&agent, &node).await);
    wait_node(&agent, &node, 30, |n| n["power_state"] == "power off").await;
    // Deploy again from deploy failed, then the stock CLI tears it down.
    provision(&agent, &node, "active", 202).await;
    settled(&agent, &node, "wait call-back").await;
    let out = common::run(agent.baremetal().args(["node", "undeploy", &node])).await;
    assert!(out.status.success(), "{}", common::text(&out));
    settled(&agent, &node, "available").await;
}
