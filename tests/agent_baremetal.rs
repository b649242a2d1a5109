//! The stock `baremetal` CLI (python-ironicclient, pinned in the venv)
//! against a real `ironrack serve`, with one node on each kind of BMC:
//! OpenIPMI's `ipmi_sim`, `sushy-emulator --fake`, and our simulator (the
//! only one with an NMI). Every effect is checked on the hardware side,
//! independently of the agent: ipmi_sim's state files and ipmitool, plain
//! Redfish GETs, and the simulator's machine state.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::ipmi_sim::IpmiSim;
use common::sushy::{venv_bin, FakeSystem, Sushy};
use common::*;
use ironrack::sim::Fleet;
use serde_json::Value;

/// Where each node's hardware truth is read.
enum Witness<'a> {
    IpmiSim(&'a IpmiSim),
    Sushy(&'a Sushy, &'static str),
    Sim(&'a Fleet),
}

impl Witness<'_> {
    async fn power_on(&self) -> bool {
        match self {
            Witness::IpmiSim(s) => {
                let seen = s.ipmitool(&["chassis", "power", "status"]).await;
                assert!(seen.contains("Chassis Power is"), "{seen}");
                assert_eq!(seen.contains("is on"), s.read("power") == "on");
                seen.contains("is on")
            }
            Witness::Sushy(s, uuid) => s.plain().power(uuid).await == "On",
            Witness::Sim(f) => f.bmcs[0].with(|b| b.machine.on),
        }
    }

    /// The boot override target as the hardware names it.
    async fn boot(&self) -> String {
        match self {
            Witness::IpmiSim(s) => s.read("boot"),
            Witness::Sushy(s, uuid) => s.plain().system(uuid).await["Boot"]
                ["BootSourceOverrideTarget"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            Witness::Sim(f) => {
                let flags = f.bmcs[0].with(|b| b.machine.boot_flags);
                format!("{:#04x}", (flags[1] >> 2) & 0x0f)
            }
        }
    }

    /// What `boot()` reads after `boot device set pxe`.
    fn pxe(&self) -> &'static str {
        match self {
            Witness::IpmiSim(_) => "pxe",
            Witness::Sushy(..) => "Pxe",
            Witness::Sim(_) => "0x01",
        }
    }
}

struct Cli<'a> {
    agent: &'a Agent,
    outputs: std::cell::RefCell<Vec<String>>,
}

impl Cli<'_> {
    async fn run(&self, args: &[&str]) -> Output {
        let o = run(tokio::process::Command::new(venv_bin("baremetal"))
            .args(["--os-endpoint", &self.agent.url, "--os-auth-type", "none"])
            .args(args))
        .await;
        self.outputs.borrow_mut().push(text(&o));
        o
    }

    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(o.status.success(), "baremetal {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-f", "json"]);
        let out = self.ok(&a).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// `node show` until target_power_state clears.
    async fn settle(&self, node: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let n = self.json(&["node", "show", node]).await;
            if n["target_power_state"].is_null() {
                return n;
            }
            assert!(Instant::now() < deadline, "never settled: {n:#}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn power(&self, node: &str, args: &[&str], want: &str) -> Value {
        let mut a = vec!["node"];
        a.extend(args);
        a.push(node);
        self.ok(&a).await;
        let n = self.settle(node).await;
        assert_eq!(n["power_state"], want, "after {args:?}: {n:#}");
        assert_eq!(n["last_error"], Value::Null, "after {args:?}: {n:#}");
        n
    }
}

/// The whole `baremetal` tour on one node; `nmi` says whether it has one.
async fn tour(agent: &Agent, name: &str, create: &[&str], hw: Witness<'_>, nmi: bool) {
    let cli = Cli {
        agent,
        outputs: Default::default(),
    };
    let mut args = vec!["node", "create", "--name", name];
    args.extend(create);
    let n = cli.json(&args).await;
    let uuid = n["uuid"].as_str().unwrap().to_string();
    assert_eq!(n["name"], name);
    assert_eq!(n["provision_state"], "enroll");
    let info = n["driver_info"].as_object().unwrap();
    let pw_key = info.keys().find(|k| k.ends_with("_password")).unwrap();
    assert_eq!(info[pw_key], "******", "{n:#}");

    let list = cli.json(&["node", "list"]).await;
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list:#}"));
    assert_eq!(row["uuid"], uuid.as_str());
    let shown = cli
        .json(&["node", "show", name, "--fields", "uuid", "power_state"])
        .await;
    let keys: Vec<&String> = shown.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["power_state", "uuid"], "{shown:#}");

    cli.power(name, &["power", "on"], "power on").await;
    assert!(hw.power_on().await, "the hardware is not on");
    cli.power(name, &["power", "off"], "power off").await;
    assert!(!hw.power_on().await, "the hardware is not off");
    cli.power(name, &["reboot"], "power on").await;
    assert!(hw.power_on().await, "a reboot ends powered on");
    cli.power(
        name,
        &["power", "off", "--soft", "--power-timeout", "60"],
        "power off",
    )
    .await;
    assert!(!hw.power_on().await, "soft power off did not land");

    cli.ok(&["node", "boot", "device", "set", name, "pxe"])
        .await;
    assert_eq!(hw.boot().await, hw.pxe());
    let bd = cli.json(&["node", "boot", "device", "show", name]).await;
    assert_eq!(bd["boot_device"], "pxe", "{bd:#}");
    let sup = cli
        .json(&["node", "boot", "device", "show", "--supported", name])
        .await;
    let sup = sup["supported_boot_devices"].to_string();
    assert!(sup.contains("pxe") && sup.contains("disk"), "{sup}");

    let o = cli.run(&["node", "inject", "nmi", name]).await;
    if nmi {
        assert!(o.status.success(), "{}", text(&o));
    } else {
        assert!(!o.status.success(), "NMI should be refused: {}", text(&o));
    }

    cli.ok(&["node", "maintenance", "set", name, "--reason", "rack move"])
        .await;
    let n = cli.json(&["node", "show", name]).await;
    assert_eq!(n["maintenance"], true);
    assert_eq!(n["maintenance_reason"], "rack move");
    cli.ok(&["node", "maintenance", "unset", name]).await;
    let n = cli.json(&["node", "show", name]).await;
    assert_eq!(n["maintenance"], false);
    assert_eq!(n["maintenance_reason"], Value::Null);

    let v = cli.json(&["node", "validate", name]).await;
    for iface in ["power", "management"] {
        let row = v
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["Interface"] == iface)
            .unwrap_or_else(|| panic!("no {iface} in {v:#}"));
        assert_eq!(row["Result"], true, "{row:#}");
    }

    cli.ok(&["node", "delete", name]).await;
    let list = cli.json(&["node", "list"]).await;
    assert!(!list.to_string().contains(&uuid), "{list:#}");
    let o = cli.run(&["node", "show", name]).await;
    assert!(!o.status.success());
    assert!(text(&o).contains("could not be found"), "{}", text(&o));

    // No password anywhere: not in what the CLI printed, not in the log.
    for out in cli.outputs.borrow().iter() {
        assert!(!out.contains(PASSWORD), "password in CLI output: {out}");
    }
    let log = agent.log();
    assert!(!log.is_empty());
    assert!(!log.contains(PASSWORD), "password in the agent's log");
}

const CONF: &str = "[conductor]\nsync_power_state_interval = 0\npower_poll_interval = 0.2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baremetal_cli_on_an_ipmi_sim_node() {
    let sim = IpmiSim::start().await;
    let agent = Agent::start(CONF).await;
    let port = format!("ipmi_port={}", sim.port);
    let user = format!("ipmi_username={USER}");
    let pw = format!("ipmi_password={PASSWORD}");
    tour(
        &agent,
        "ipmisim-1",
        &[
            "--driver",
            "ipmi",
            "--driver-info",
            "ipmi_address=127.0.0.1",
            "--driver-info",
            &port,
            "--driver-info",
            &user,
            "--driver-info",
            &pw,
            "--driver-info",
            "hw_profile=ipmi-sim",
        ],
        Witness::IpmiSim(&sim),
        false,
    )
    .await;
    assert_eq!(sim.read("shutdown_count"), "1", "the soft off was ACPI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baremetal_cli_on_a_sushy_node() {
    const UUID: &str = "2b6e6d2c-0000-4000-8000-0000000000d1";
    let sushy = Sushy::start(&[FakeSystem {
        uuid: UUID,
        name: "fake-1",
        power: "Off",
    }])
    .await;
    let agent = Agent::start(CONF).await;
    let addr = format!("redfish_address={}", sushy.url());
    let sys = format!("redfish_system_id=/redfish/v1/Systems/{UUID}");
    let user = format!("redfish_username={USER}");
    let pw = format!("redfish_password={PASSWORD}");
    tour(
        &agent,
        "sushy-1",
        &[
            "--driver",
            "redfish",
            "--driver-info",
            &addr,
            "--driver-info",
            &sys,
            "--driver-info",
            &user,
            "--driver-info",
            &pw,
        ],
        Witness::Sushy(&sushy, UUID),
        false,
    )
    .await;
    // on, off, reboot and soft off each went to the emulator as a Reset.
    assert!(
        sushy.requests("/Actions/ComputerSystem.Reset HTTP") >= 4,
        "{}",
        sushy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baremetal_cli_on_a_simulator_node_with_nmi() {
    let fleet = fleet(1, |c| c.bmc.power_delay = Duration::from_millis(300)).await;
    let agent = Agent::start(CONF).await;
    let port = format!("ipmi_port={}", fleet.addrs()[0].port());
    let user = format!("ipmi_username={USER}");
    let pw = format!("ipmi_password={PASSWORD}");
    tour(
        &agent,
        "sim-1",
        &[
            "--driver",
            "ipmi",
            "--driver-info",
            "ipmi_address=127.0.0.1",
            "--driver-info",
            &port,
            "--driver-info",
            &user,
            "--driver-info",
            &pw,
            "--driver-info",
            "ipmi_cipher_suite=17",
        ],
        Witness::Sim(&fleet),
        true,
    )
    .await;
    let m = fleet.bmcs[0].with(|b| b.machine.clone());
    assert_eq!(m.nmi_count, 1);
    assert_eq!(m.soft_offs, 1);
    // Every call went over one session.
    assert_eq!(fleet.bmcs[0].stats().sessions_opened, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_get_node_power_wait_and_fields() {
    let fleet = fleet(1, |c| c.bmc.power_delay = Duration::from_millis(300)).await;
    let agent = Agent::start(CONF).await;
    let (status, n) = agent
        .post(
            "/v1/nodes",
            &serde_json::json!({"name": "sdk-1", "driver": "ipmi", "driver_info": {
                "ipmi_address": "127.0.0.1", "ipmi_port": fleet.addrs()[0].port(),
                "ipmi_username": USER, "ipmi_password": PASSWORD}}),
        )
        .await;
    assert_eq!(status, 201, "{n}");
    let script = r#"
import json, sys, openstack
conn = openstack.connection.Connection(auth_type="none",
    baremetal_endpoint_override=sys.argv[1], baremetal_api_version="1")
node = conn.baremetal.get_node("sdk-1")
out = {"name": node.name, "uuid": node.id, "password": node.driver_info["ipmi_password"]}
conn.baremetal.set_node_power_state(node, "power on", wait=True, timeout=60)
out["after_on"] = conn.baremetal.get_node("sdk-1").power_state
conn.baremetal.set_node_power_state(node, "power off", wait=True, timeout=60)
out["after_off"] = conn.baremetal.get_node("sdk-1").power_state
out["fields"] = [dict(uuid=n.id, power_state=n.power_state, name=n.name)
                 for n in conn.baremetal.nodes(fields=["uuid", "power_state"])]
print(json.dumps(out))
"#;
    let o = run(tokio::process::Command::new(venv_bin("python")).args(["-c", script, &agent.url]))
        .await;
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "sdk-1");
    assert_eq!(v["password"], "******");
    assert_eq!(v["after_on"], "power on");
    assert_eq!(v["after_off"], "power off");
    assert!(!fleet.bmcs[0].with(|b| b.machine.on));
    let rows = v["fields"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["power_state"], "power off");
    assert_eq!(rows[0]["name"], Value::Null, "name was not asked for");
}
