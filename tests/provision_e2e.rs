//! Deploy and tear down end to end, with no hardware: the stock `baremetal`
//! CLI (and openstacksdk) drive `ironrack serve`, whose conductor powers
//! simulated machines through their BMCs; each machine really network-boots
//! from the agent (per-MAC config over TFTP, kernel and ramdisk over TFTP or,
//! for iPXE, HTTP) and heartbeats to the `ipa-api-url` in its kernel
//! arguments. The simulator's counters show the downloads happened.

mod common;

use std::path::Path;
use std::time::Duration;

use ironrack::sim::{Fleet, Loader};
use serde_json::{json, Value};

use common::agent::{enroll, ipmi_node, wait_node, Agent};
use common::sushy::venv_bin;
use common::{fleet, free_udp_port, run, text, Scratch};

const KERNEL: usize = 300_000;
const RAMDISK: usize = 1_500_000;

fn boot_root() -> Scratch {
    let dir = Scratch::new("e2eroot");
    std::fs::create_dir_all(dir.0.join("deploy")).unwrap();
    std::fs::write(dir.0.join("deploy/vmlinuz"), vec![1u8; KERNEL]).unwrap();
    std::fs::write(dir.0.join("deploy/initrd.img"), vec![2u8; RAMDISK]).unwrap();
    dir
}

/// The agent with TFTP and HTTP boot on `root`; returns it with its TFTP address.
async fn agent(root: &Path, extra: &str) -> Agent {
    let conf = format!(
        "[conductor]\nsync_power_state_interval = 0\npower_poll_interval = 0.1\nbmc_timeout = 2\n\
         check_provision_state_interval = 0.3\n{extra}\n\
         [tftp]\nlisten = \"127.0.0.1:{}\"\nroot = \"{}\"\n\
         [http_boot]\nlisten = \"127.0.0.1:0\"\nroot = \"{}\"\n",
        free_udp_port(),
        root.display(),
        root.display()
    );
    Agent::start(&conf).await
}

async fn machines(count: usize, agent: &Agent) -> Fleet {
    let f = fleet(count, |c| c.bmc.power_delay = Duration::from_millis(100)).await;
    f.set_boot_server(agent.tftp);
    f.update_netboot(|n| n.heartbeat_interval = Duration::from_millis(300));
    f
}

async fn bm(agent: &Agent, args: &[&str]) -> String {
    let o = run(agent.baremetal().args(args)).await;
    assert!(o.status.success(), "baremetal {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Poll with `baremetal node show` until the provision state is `want`
/// (and no worker holds the node); panics on a failure state.
async fn bm_wait(agent: &Agent, node: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let out = bm(
            agent,
            &[
                "node",
                "show",
                node,
                "-f",
                "json",
                "-c",
                "provision_state",
                "-c",
                "reservation",
                "-c",
                "last_error",
            ],
        )
        .await;
        let v: Value = serde_json::from_str(&out).unwrap();
        if v["provision_state"] == want && v["reservation"].is_null() {
            return;
        }
        let state = v["provision_state"].as_str().unwrap_or_default();
        assert!(
            !state.ends_with("failed") || want.ends_with("failed"),
            "{node} failed while waiting for {want}: {v}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "{node} not {want} in 90 s: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Enroll a machine's node with deploy images and its port, through the CLI.
async fn enroll_cli(agent: &Agent, fleet: &Fleet, i: usize, name: &str, boot_mode: &str) -> String {
    let port = fleet.bmcs[i].addr.port().to_string();
    let uuid = bm(
        agent,
        &[
            "node",
            "create",
            "--driver",
            "ipmi",
            "--name",
            name,
            "--driver-info",
            "ipmi_address=127.0.0.1",
            "--driver-info",
            &format!("ipmi_port={port}"),
            "--driver-info",
            &format!("ipmi_username={}", common::USER),
            "--driver-info",
            &format!("ipmi_password={}", common::PASSWORD),
            "--driver-info",
            "deploy_kernel=deploy/vmlinuz",
            "--driver-info",
            "deploy_ramdisk=deploy/initrd.img",
            "--property",
            &format!("capabilities=boot_mode:{boot_mode}"),
            "-f",
            "value",
            "-c",
            "uuid",
        ],
    )
    .await;
    bm(
        agent,
        &["port", "create", &fleet.bmcs[i].mac(), "--node", &uuid],
    )
    .await;
    uuid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_cli_deploys_and_undeploys_machines_that_really_boot() {
    let root = boot_root();
    let agent = agent(&root.0, "").await;
    let fleet = machines(2, &agent).await;
    // Machine 1 runs iPXE: its config over TFTP, the images over HTTP.
    fleet.bmcs[1].update_netboot(|n| n.loader = Loader::Ipxe);

    let pxe = enroll_cli(&agent, &fleet, 0, "pxe-0", "bios").await;
    let ipxe = enroll_cli(&agent, &fleet, 1, "ipxe-1", "uefi").await;
    for node in [&pxe, &ipxe] {
        bm(&agent, &["node", "manage", node]).await;
        bm_wait(&agent, node, "manageable").await;
        // provide cleans: the machine boots the ramdisk and heartbeats.
        bm(&agent, &["node", "provide", node]).await;
    }
    for node in [&pxe, &ipxe] {
        bm_wait(&agent, node, "available").await;
    }
    let after_clean: Vec<_> = fleet.bmcs.iter().map(|b| b.netboot_stats()).collect();
    for s in &after_clean {
        assert_eq!(s.netboots, 1, "{s:?}");
        assert!(s.heartbeats_accepted >= 1, "{s:?}");
    }

    for (node, name, instance) in [
        (&pxe, "pxe", "9f0a3b4e-1d2c-4b5a-8e7f-0123456789ab"),
        (&ipxe, "ipxe", "9f0a3b4e-1d2c-4b5a-8e7f-0123456789ac"),
    ] {
        bm(
            &agent,
            &[
                "node",
                "set",
                node,
                "--instance-info",
                &format!("image_source=http://images.example/{name}.qcow2"),
                "--instance-uuid",
                instance,
            ],
        )
        .await;
        bm(&agent, &["node", "deploy", node]).await;
    }
    for node in [&pxe, &ipxe] {
        bm_wait(&agent, node, "active").await;
    }
    let deployed: Vec<_> = fleet.bmcs.iter().map(|b| b.netboot_stats()).collect();
    // Per netboot: the kernel and the ramdisk, each complete.
    let pxe_s = &deployed[0];
    assert_eq!(pxe_s.netboots, 2, "{pxe_s:?}");
    assert_eq!(pxe_s.tftp_files, 4, "{pxe_s:?}");
    assert!(
        pxe_s.tftp_bytes >= 2 * (KERNEL + RAMDISK) as u64,
        "{pxe_s:?}"
    );
    assert_eq!(pxe_s.http_files, 0, "{pxe_s:?}");
    let ipxe_s = &deployed[1];
    assert_eq!(ipxe_s.netboots, 2, "{ipxe_s:?}");
    assert_eq!(ipxe_s.http_files, 4, "{ipxe_s:?}");
    assert_eq!(
        ipxe_s.http_bytes,
        2 * (KERNEL + RAMDISK) as u64,
        "{ipxe_s:?}"
    );
    for (i, s) in deployed.iter().enumerate() {
        assert_eq!(s.download_failures, 0, "{s:?}");
        assert!(s.heartbeats_accepted >= 2, "{s:?}");
        // Active means booted from the disk: the reboot after the heartbeat.
        assert!(s.disk_boots > after_clean[i].disk_boots, "{s:?}");
        assert!(fleet.bmcs[i].stats().power_on);
    }
    // The agent's own metrics count what its TFTP server sent.
    let metrics = agent.text("/metrics").await;
    let sent: f64 = metrics
        .lines()
        .find(|l| l.starts_with("ironrack_tftp_bytes_sent_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no TFTP byte counter in /metrics:\n{metrics}"));
    assert!(sent >= (2 * (KERNEL + RAMDISK)) as f64, "{sent}");

    for node in [&pxe, &ipxe] {
        bm(&agent, &["node", "undeploy", node]).await;
    }
    for node in [&pxe, &ipxe] {
        bm_wait(&agent, node, "available").await;
        let (_, n) = agent.get(&format!("/v1/nodes/{node}")).await;
        assert!(n["instance_uuid"].is_null(), "{n}");
        assert_eq!(n["instance_info"], json!({}));
        assert_eq!(n["power_state"], "power off");
    }
    for b in &fleet.bmcs {
        let s = b.netboot_stats();
        assert_eq!(s.netboots, 3, "deploy, then cleaning again: {s:?}");
        assert!(!b.stats().power_on);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_that_fail_to_boot_fail_the_deploy() {
    let root = boot_root();
    let agent = agent(
        &root.0,
        "automated_clean = false\ndeploy_callback_timeout = 3",
    )
    .await;
    let fleet = machines(2, &agent).await;
    fleet.bmcs[0].update_netboot(|n| n.no_heartbeat = true);
    fleet.bmcs[1].update_netboot(|n| n.fail_download = true);
    let mut nodes = Vec::new();
    for i in 0..2 {
        let mut body = ipmi_node(&format!("f{i}"), fleet.bmcs[i].addr.port());
        body["driver_info"]["deploy_kernel"] = json!("deploy/vmlinuz");
        body["driver_info"]["deploy_ramdisk"] = json!("deploy/initrd.img");
        body["instance_info"] = json!({"image_source": "http://images.example/x.qcow2"});
        let uuid = enroll(&agent, body).await;
        let (s, v) = agent
            .post(
                "/v1/ports",
                &json!({"address": fleet.bmcs[i].mac(), "node_uuid": uuid}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        bm(&agent, &["node", "manage", &uuid]).await;
        bm_wait(&agent, &uuid, "manageable").await;
        bm(&agent, &["node", "provide", &uuid]).await;
        bm_wait(&agent, &uuid, "available").await;
        bm(&agent, &["node", "deploy", &uuid]).await;
        nodes.push(uuid);
    }
    for node in &nodes {
        let n = wait_node(&agent, node, 60, |n| {
            n["provision_state"] == "deploy failed"
        })
        .await;
        let err = n["last_error"].as_str().unwrap_or_default();
        assert!(
            err.contains("Timeout reached while waiting for callback"),
            "{n}"
        );
    }
    let quiet = fleet.bmcs[0].netboot_stats();
    assert_eq!(quiet.tftp_files, 2, "it downloaded everything: {quiet:?}");
    assert_eq!(quiet.heartbeats_sent, 0, "{quiet:?}");
    let broken = fleet.bmcs[1].netboot_stats();
    assert!(broken.download_failures >= 1, "{broken:?}");
    assert_eq!(broken.heartbeats_sent, 0, "{broken:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_waits_for_the_provision_state() {
    let root = boot_root();
    let agent = agent(&root.0, "automated_clean = false").await;
    let fleet = machines(1, &agent).await;
    let mut body = ipmi_node("sdk-0", fleet.bmcs[0].addr.port());
    body["driver_info"]["deploy_kernel"] = json!("deploy/vmlinuz");
    body["driver_info"]["deploy_ramdisk"] = json!("deploy/initrd.img");
    let uuid = enroll(&agent, body).await;
    let (s, v) = agent
        .post(
            "/v1/ports",
            &json!({"address": fleet.bmcs[0].mac(), "node_uuid": uuid}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let script = r#"
import json, sys, openstack
conn = openstack.connection.Connection(auth_type="none",
    baremetal_endpoint_override=sys.argv[1], baremetal_api_version="1")
bm = conn.baremetal
out = {}
bm.set_node_provision_state("sdk-0", "manage", wait=True, timeout=60)
bm.set_node_provision_state("sdk-0", "provide", wait=True, timeout=60)
bm.update_node("sdk-0", instance_info={"image_source": "http://images.example/sdk.qcow2"})
bm.set_node_provision_state("sdk-0", "active")
done = bm.wait_for_nodes_provision_state(["sdk-0"], "active", timeout=90)
out["active"] = [n.provision_state for n in done]
bm.set_node_provision_state("sdk-0", "deleted")
done = bm.wait_for_nodes_provision_state(["sdk-0"], "available", timeout=90)
out["available"] = [n.provision_state for n in done]
print(json.dumps(out))
"#;
    let o = run(tokio::process::Command::new(venv_bin("python")).args(["-c", script, &agent.url]))
        .await;
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["active"], json!(["active"]));
    assert_eq!(v["available"], json!(["available"]));
    let s = fleet.bmcs[0].netboot_stats();
    assert_eq!(s.netboots, 1, "{s:?}");
    assert!(s.heartbeats_accepted >= 1, "{s:?}");
}
