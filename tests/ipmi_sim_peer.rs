//! Our IPMI client and CLI against OpenIPMI's `ipmi_sim`, whose power and boot go
//! through the stateful `chassis_control` fixture. Every effect is checked
//! independently: in the fixture's state files and through ipmitool.

mod common;

use std::time::Duration;

use common::ipmi_sim::IpmiSim;
use common::*;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_commands_against_ipmi_sim() {
    let sim = IpmiSim::start().await;
    assert_eq!(sim.read("power"), "off");

    let o = sim.ironrack(&["power", "status"]).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o), "off");

    let o = sim.ironrack(&["power", "on"]).await;
    assert!(o.status.success(), "{}", text(&o));
    sim.wait_state("power", "on").await;
    assert!(sim
        .ipmitool(&["chassis", "power", "status"])
        .await
        .contains("Chassis Power is on"));

    let o = sim.ironrack(&["--json", "power", "status"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"power_state": "power on"}));

    let o = sim.ironrack(&["power", "reset"]).await;
    assert!(o.status.success(), "{}", text(&o));
    sim.wait_state("reset_count", "1").await;

    let o = sim.ironrack(&["power", "soft"]).await;
    assert!(o.status.success(), "{}", text(&o));
    sim.wait_state("shutdown_count", "1").await;

    let o = sim.ironrack(&["power", "off"]).await;
    assert!(o.status.success(), "{}", text(&o));
    sim.wait_state("power", "off").await;
    assert!(sim
        .ipmitool(&["chassis", "power", "status"])
        .await
        .contains("Chassis Power is off"));

    // Power cycle from on: ipmi_sim turns it off, then on again a second later.
    sim.ironrack(&["power", "on"]).await;
    sim.wait_state("power", "on").await;
    let log_before = sim.read("chassis.log").lines().count();
    let o = sim.ironrack(&["power", "cycle"]).await;
    assert!(o.status.success(), "{}", text(&o));
    for _ in 0..50 {
        let log = sim.read("chassis.log");
        let new: Vec<&str> = log.lines().skip(log_before).collect();
        if new.iter().any(|l| l.contains("set power 0")) && sim.read("power") == "on" {
            return nmi_is_rejected_with_its_code(&sim).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "power cycle did not go off and on: {}",
        sim.read("chassis.log")
    );
}

async fn nmi_is_rejected_with_its_code(sim: &IpmiSim) {
    // The ipmi-sim profile knows there is no NMI and refuses locally.
    let o = sim.ironrack(&["power", "nmi"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has no NMI"),
        "{}",
        text(&o)
    );
    // Without the profile the request reaches ipmi_sim, and the CLI names its
    // completion code.
    let o = run(sim
        .cli(&sim.pwfile)
        .args(["-C", "3", "-W", "opensesspriv", "power", "nmi"]))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("BMC rejected Chassis Control: invalid data field in request (0xcc)"),
        "{}",
        text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_device_against_ipmi_sim() {
    let sim = IpmiSim::start().await;
    let o = sim
        .ironrack(&["bootdev", "set", "pxe", "--persistent", "--uefi"])
        .await;
    assert!(o.status.success(), "{}", text(&o));
    sim.wait_state("boot", "pxe").await;
    // ipmi_sim keeps only the device selector (through chassis_control); it
    // drops the valid, persistent and EFI bits, as ipmitool shows too. Those bits
    // are checked against our simulator instead (tests/sim_with_peers.rs).
    let witness = sim.ipmitool(&["chassis", "bootparam", "get", "5"]).await;
    assert!(witness.contains("Force PXE"), "{witness}");

    let o = sim.ironrack(&["--json", "bootdev", "get"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["boot_device"], "pxe");
    let log = sim.read("chassis.log");
    assert!(log.contains("set boot pxe"), "{log}");

    let o = sim.ironrack(&["bootdev", "set", "disk"]).await;
    assert!(o.status.success(), "{}", text(&o));
    sim.wait_state("boot", "default").await;
    let o = sim.ironrack(&["--json", "bootdev", "get"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["boot_device"], "disk");

    for dev in ["cdrom", "bios"] {
        let o = sim.ironrack(&["bootdev", "set", dev]).await;
        assert!(o.status.success(), "{}", text(&o));
        sim.wait_state("boot", dev).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_selection_and_errors_against_ipmi_sim() {
    let sim = IpmiSim::start().await;
    // Discovery without the profile's pinned suite: ipmi_sim offers no 17, so 3.
    let o = run(sim
        .cli(&sim.pwfile)
        .args(["-W", "opensesspriv", "power", "status"]))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o), "off");

    // Forcing 17 is a clear "no common cipher suite".
    let o = sim.ironrack(&["-C", "17", "power", "status"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no common cipher suite"),
        "{}",
        text(&o)
    );

    // A wrong password is an authentication error, not a timeout.
    let dir = Scratch::new("badpw");
    let bad = dir.file("pw", "not-the-password");
    let o = run(sim
        .cli(&bad)
        .args(["--profile", "ipmi-sim", "power", "status"]))
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("authentication failed"),
        "{}",
        text(&o)
    );

    // The session limit is not leaked: many calls in a row all work.
    for _ in 0..12 {
        let o = sim.ironrack(&["power", "status"]).await;
        assert!(o.status.success(), "{}", text(&o));
    }
}
