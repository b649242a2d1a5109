//! The Nova-side provisioning (`IronicDriver::spawn`, `destroy`, `rebuild`
//! and `ironrack driver spawn | destroy | rebuild`) against a running agent
//! and a simulated IPMI BMC. The test plays the deploy ramdisk: a task
//! heartbeats to the agent whenever the node waits for a call-back (`wait
//! call-back`, `clean wait`), as the simulated machines' ramdisk does.
//!
//! Every test is ignored: enabled once the agent provisions (issue 7:
//! `PUT /v1/nodes/{id}/states/provision`, heartbeats, VIFs).

mod common;

use std::path::Path;
use std::time::Duration;

use common::agent::{enroll, ipmi_node, wait_node, Agent};
use common::*;
use ironrack::driver::{ApiClient, DestroyAction, DriverError, IronicDriver, SpawnRequest};
use serde_json::{json, Value};

/// base64 of a gzipped, empty config drive image.
const CONFIGDRIVE: &str = "H4sIAAAAAAAAA+3BAQ0AAADCoPdPbQ8HFAAAAAAAAAAAAADwNgAA";
const IMAGE: &str = "http://127.0.0.1:9/images/fedora.qcow2";

fn driver(agent: &Agent) -> IronicDriver {
    let api = ApiClient::new(&agent.url, Duration::from_secs(10)).unwrap();
    let mut d = IronicDriver::new(api);
    d.retry_interval = Duration::from_millis(100);
    d.max_retries = 300;
    d
}

fn instance() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn request(instance_uuid: &str, vifs: &[&str]) -> SpawnRequest {
    SpawnRequest {
        instance_uuid: instance_uuid.to_string(),
        image_source: IMAGE.to_string(),
        root_gb: Some(10),
        display_name: Some("test-instance".into()),
        configdrive: Some(CONFIGDRIVE.into()),
        vifs: vifs.iter().map(|v| v.to_string()).collect(),
    }
}

/// A boot root with a deploy kernel and ramdisk.
fn boot_root() -> Scratch {
    let dir = Scratch::new("provision");
    std::fs::create_dir_all(dir.0.join("deploy")).unwrap();
    std::fs::write(dir.0.join("deploy/vmlinuz"), vec![7u8; 4096]).unwrap();
    std::fs::write(dir.0.join("deploy/initrd.img"), vec![9u8; 8192]).unwrap();
    dir
}

fn conf(root: &Path, extra: &str) -> String {
    format!(
        "[conductor]\nsync_power_state_interval = 0\npower_poll_interval = 0.05\nbmc_timeout = 2\n\
         check_provision_state_interval = 0.2\n{extra}\
         [tftp]\nlisten = \"127.0.0.1:{}\"\nroot = \"{}\"\n\
         [boot]\ndefault_boot_mode = \"bios\"\n",
        free_udp_port(),
        root.display()
    )
}

/// Enroll an IPMI node on `port` with deploy images and `ports` PXE ports
/// (one per VIF to attach), and bring it to `available` (manage, provide).
async fn available_node(agent: &Agent, name: &str, port: u16, ports: u8) -> String {
    let mut body = ipmi_node(name, port);
    body["driver_info"]["deploy_kernel"] = json!("deploy/vmlinuz");
    body["driver_info"]["deploy_ramdisk"] = json!("deploy/initrd.img");
    let uuid = enroll(agent, body).await;
    for i in 0..ports {
        let mac = format!("52:54:00:12:34:{i:02x}");
        let (s, p) = agent
            .post("/v1/ports", &json!({"address": mac, "node_uuid": uuid}))
            .await;
        assert_eq!(s, 201, "{p}");
    }
    for (target, state) in [("manage", "manageable"), ("provide", "available")] {
        let (s, v) = agent
            .put(
                &format!("/v1/nodes/{uuid}/states/provision"),
                &json!({ "target": target }),
            )
            .await;
        assert_eq!(s, 202, "{target}: {v}");
        wait_node(agent, &uuid, 60, |n| {
            n["provision_state"] == state && n["reservation"].is_null()
        })
        .await;
    }
    uuid
}

/// The deploy ramdisk of node `name`: heartbeat while the node waits for a
/// call-back (deploy or cleaning). Start it before the node exists.
fn fake_ramdisk(api: &str, name: &str) -> tokio::task::JoinHandle<()> {
    let (api, name) = (api.to_string(), name.to_string());
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let node: Option<Value> = match http
                .get(format!("{api}/v1/nodes/{name}"))
                .header("X-OpenStack-Ironic-API-Version", "latest")
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => r.json().await.ok(),
                _ => None,
            };
            if let Some(n) = node {
                let state = n["provision_state"].as_str().unwrap_or("");
                let uuid = n["uuid"].as_str().unwrap_or("");
                if state == "wait call-back" || state == "clean wait" {
                    let _ = http
                        .post(format!("{api}/v1/heartbeat/{uuid}"))
                        .header("X-OpenStack-Ironic-API-Version", "1.36")
                        .json(&json!({"callback_url": "http://127.0.0.1:9999", "agent_version": "test"}))
                        .send()
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn vif_ids(agent: &Agent, uuid: &str) -> Vec<String> {
    let (s, v) = agent.get(&format!("/v1/nodes/{uuid}/vifs")).await;
    assert_eq!(s, 200, "{v}");
    v["vifs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_rebuild_destroy_round_trip() {
    let fleet = fleet(1, |c| c.bmc.power_delay = Duration::from_millis(100)).await;
    let root = boot_root();
    let agent = Agent::start(&conf(&root.0, "automated_clean = true\n")).await;
    let ramdisk = fake_ramdisk(&agent.url, "p1");
    let uuid = available_node(&agent, "p1", fleet.addrs()[0].port(), 2).await;
    let d = driver(&agent);
    let inst = instance();

    let n = d
        .spawn("p1", &request(&inst, &["port-a", "port-b"]))
        .await
        .unwrap();
    assert_eq!(n.provision_state.as_deref(), Some("active"));
    assert_eq!(n.instance_uuid.as_deref(), Some(inst.as_str()));
    assert_eq!(n.last_error, None);
    let (_, doc) = agent.get(&format!("/v1/nodes/{uuid}")).await;
    assert_eq!(doc["instance_info"]["root_gb"], "10", "{doc:#}");
    assert_eq!(doc["instance_info"]["display_name"], "test-instance");
    assert!(doc["instance_info"]["image_source"].is_string(), "{doc:#}");
    assert_eq!(vif_ids(&agent, &uuid).await, vec!["port-a", "port-b"]);
    assert!(fleet.bmcs[0].with(|b| b.machine.on));

    // Rebuild: through deploying and back to active, same instance.
    let n = d.rebuild(&uuid, Some(CONFIGDRIVE)).await.unwrap();
    assert_eq!(n.provision_state.as_deref(), Some("active"));
    assert_eq!(n.instance_uuid.as_deref(), Some(inst.as_str()));

    // Destroy: VIFs first, then tear down; returns once cleaning (or later).
    let r = d.destroy(&uuid, &inst).await.unwrap();
    assert_eq!(r.action, DestroyAction::Unprovisioned);
    assert_eq!(r.vifs_unplugged, vec!["port-a", "port-b"]);
    let state = r.node.as_ref().and_then(|n| n.provision_state.clone());
    assert!(
        matches!(
            state.as_deref(),
            Some("cleaning" | "clean wait" | "clean failed" | "available")
        ),
        "{state:?}"
    );
    let n = wait_node(&agent, &uuid, 60, |n| n["provision_state"] == "available").await;
    assert_eq!(n["instance_uuid"], Value::Null, "{n:#}");
    assert!(vif_ids(&agent, &uuid).await.is_empty());

    // Destroy again: the node no longer carries the instance.
    let r = d.destroy(&uuid, &inst).await.unwrap();
    assert_eq!(r.action, DestroyAction::NotAssociated);
    ramdisk.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_failure_is_reported_and_destroy_cleans_up() {
    let fleet = fleet(1, |_| {}).await;
    let root = boot_root();
    let agent = Agent::start(&conf(
        &root.0,
        "automated_clean = false\ndeploy_callback_timeout = 2\n",
    ))
    .await;
    let uuid = available_node(&agent, "p2", fleet.addrs()[0].port(), 1).await;
    // No ramdisk: the call-back never comes.
    let d = driver(&agent);
    let inst = instance();
    let err = d.spawn(&uuid, &request(&inst, &[])).await.unwrap_err();
    let DriverError::DeployFailed(msg) = &err else {
        panic!("{err:?}")
    };
    let (_, doc) = agent.get(&format!("/v1/nodes/{uuid}")).await;
    assert_eq!(doc["provision_state"], "deploy failed", "{doc:#}");
    let last_error = doc["last_error"].as_str().unwrap_or_default().to_string();
    assert!(!last_error.is_empty(), "{doc:#}");
    assert!(msg.contains(&last_error), "{msg} / {last_error}");

    // As Nova's compute manager does next: destroy unprovisions the failed
    // deploy; without automated cleaning the node is available again.
    let r = d.destroy(&uuid, &inst).await.unwrap();
    assert_eq!(r.action, DestroyAction::Unprovisioned);
    let n = wait_node(&agent, &uuid, 30, |n| n["provision_state"] == "available").await;
    assert_eq!(n["instance_uuid"], Value::Null, "{n:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_state_is_a_bad_request_and_spawn_undoes_itself() {
    let fleet = fleet(1, |_| {}).await;
    let root = boot_root();
    let agent = Agent::start(&conf(&root.0, "automated_clean = false\n")).await;
    let mut body = ipmi_node("p3", fleet.addrs()[0].port());
    body["driver_info"]["deploy_kernel"] = json!("deploy/vmlinuz");
    body["driver_info"]["deploy_ramdisk"] = json!("deploy/initrd.img");
    let uuid = enroll(&agent, body).await;
    let (s, p) = agent
        .post(
            "/v1/ports",
            &json!({"address": "52:54:00:12:35:01", "node_uuid": uuid}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let (s, v) = agent
        .put(
            &format!("/v1/nodes/{uuid}/states/provision"),
            &json!({"target": "manage"}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    wait_node(&agent, &uuid, 30, |n| n["provision_state"] == "manageable").await;

    let d = driver(&agent);
    let inst = instance();
    let err = d
        .spawn(&uuid, &request(&inst, &["port-x"]))
        .await
        .unwrap_err();
    // Validation passes and the VIF goes on; the agent refuses `active`
    // from `manageable` with 400, and spawn takes the VIF and the instance
    // info off again.
    assert!(
        matches!(&err, DriverError::BadRequest(m) if m.contains("manageable")),
        "{err:?}"
    );
    let (_, n) = agent.get(&format!("/v1/nodes/{uuid}")).await;
    assert_eq!(n["provision_state"], "manageable", "{n:#}");
    assert_eq!(n["instance_uuid"], Value::Null, "{n:#}");
    assert!(vif_ids(&agent, &uuid).await.is_empty());

    // Rebuild of a node that is not active: 400 as well.
    let err = d.rebuild(&uuid, None).await.unwrap_err();
    assert!(matches!(err, DriverError::BadRequest(_)), "{err:?}");
    // Destroy of an instance the node does not carry leaves it alone.
    let r = d.destroy(&uuid, &inst).await.unwrap();
    assert_eq!(r.action, DestroyAction::NotAssociated);
    let r = d.destroy("no-such-node", &inst).await.unwrap();
    assert_eq!(r.action, DestroyAction::NodeNotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_spawn_rebuild_destroy() {
    let fleet = fleet(1, |_| {}).await;
    let root = boot_root();
    let agent = Agent::start(&conf(&root.0, "automated_clean = false\n")).await;
    let ramdisk = fake_ramdisk(&agent.url, "p4");
    let uuid = available_node(&agent, "p4", fleet.addrs()[0].port(), 1).await;
    let inst = instance();
    let cd = root.file("configdrive.b64", CONFIGDRIVE);
    let driver_cmd = |args: &[&str]| {
        let mut c = ironrack();
        c.args(["driver", "--api", &agent.url, "--retry-interval", "0.1"])
            .args(["--max-retries", "300"])
            .args(args);
        c
    };

    let out = run(&mut driver_cmd(&[
        "spawn",
        "p4",
        "--instance-uuid",
        &inst,
        "--image-source",
        IMAGE,
        "--configdrive-file",
        cd.to_str().unwrap(),
        "--vif",
        "port-1",
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["provision_state"], "active", "{v}");
    assert_eq!(v["instance_uuid"], json!(inst));
    assert_eq!(v["uuid"], json!(uuid));

    let out = run(&mut driver_cmd(&["rebuild", "p4"])).await;
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["provision_state"], "active", "{v}");

    let out = run(&mut driver_cmd(&[
        "destroy",
        "p4",
        "--instance-uuid",
        &inst,
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["action"], "unprovisioned", "{v}");
    assert_eq!(v["vifs_unplugged"], json!(["port-1"]));

    // A bad instance uuid is a usage error (2), before any call.
    let out = run(&mut driver_cmd(&[
        "destroy",
        "p4",
        "--instance-uuid",
        "nope",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // A wrong-state rebuild fails (1) with the agent's reason.
    wait_node(&agent, &uuid, 30, |n| n["provision_state"] == "available").await;
    let out = run(&mut driver_cmd(&["rebuild", "p4"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("bad request"), "{}", text(&out));
    ramdisk.abort();
}
