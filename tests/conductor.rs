//! The conductor in process, against an in-memory store and the IPMI and
//! Redfish simulators: every effect is read back from the simulated machine.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ironrack::bmc::{BmcError, BootDevice, PowerAction};
use ironrack::conductor::{Conductor, ConductorError, PowerTarget, POWER_FAILURE};
use ironrack::config::ConductorConfig;
use ironrack::profiles::Profiles;
use ironrack::sim::redfish::{RedfishFleet, RedfishFleetConfig};
use ironrack::sim::{BmcConfig, Fleet, FleetConfig};
use ironrack::store::{NewNode, Node, Store};
use serde_json::{json, Map, Value};

const USER: &str = "admin";
const PASSWORD: &str = "ironrack-test-pw";
const HOST: &str = "conductor-test";

fn config() -> ConductorConfig {
    ConductorConfig {
        workers: 8,
        sync_power_state_interval: 0.0,
        sync_power_state_workers: 8,
        power_state_sync_max_retries: 2,
        power_state_change_timeout: 5.0,
        soft_power_off_timeout: 5.0,
        power_failure_recovery_interval: 0.0,
        force_power_state_during_sync: false,
        bmc_timeout: 1.0,
        power_poll_interval: 0.05,
        hw_profiles_dir: None,
        ..ConductorConfig::default()
    }
}

fn conductor_with(cfg: ConductorConfig, profiles: Profiles) -> Arc<Conductor> {
    Conductor::new(
        Store::open_in_memory().unwrap(),
        cfg,
        profiles,
        HOST.to_string(),
    )
}

fn conductor(cfg: ConductorConfig) -> Arc<Conductor> {
    conductor_with(cfg, Profiles::builtin().unwrap())
}

async fn ipmi_fleet(count: usize, power_delay: Duration) -> Fleet {
    let mut bmc = BmcConfig::new(USER, PASSWORD.as_bytes());
    bmc.power_delay = power_delay;
    Fleet::start(FleetConfig {
        first: "127.0.0.1:0".parse().unwrap(),
        count,
        bmc,
        loss: 0.0,
        latency: Duration::ZERO,
        jitter: Duration::ZERO,
        unresponsive: vec![],
    })
    .await
    .unwrap()
}

async fn redfish_fleet(tweak: impl FnOnce(&mut RedfishFleetConfig)) -> RedfishFleet {
    let mut cfg = RedfishFleetConfig::new("127.0.0.1:0".parse().unwrap(), 1, USER, PASSWORD);
    tweak(&mut cfg);
    RedfishFleet::start(cfg).await.unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn ipmi_info(addr: SocketAddr) -> Map<String, Value> {
    obj(json!({
        "ipmi_address": addr.ip().to_string(),
        "ipmi_port": addr.port(),
        "ipmi_username": USER,
        "ipmi_password": PASSWORD,
    }))
}

fn ipmi_node(c: &Conductor, name: &str, addr: SocketAddr) -> Node {
    c.create_node(NewNode {
        name: Some(name.to_string()),
        driver: "ipmi".into(),
        driver_info: ipmi_info(addr),
        ..Default::default()
    })
    .unwrap()
}

fn redfish_node(c: &Conductor, name: &str, fleet: &RedfishFleet) -> Node {
    c.create_node(NewNode {
        name: Some(name.to_string()),
        driver: "redfish".into(),
        driver_info: obj(json!({
            "redfish_address": fleet.base_url(),
            "redfish_system_id": fleet.system(0).path(),
            "redfish_username": USER,
            "redfish_password": PASSWORD,
        })),
        ..Default::default()
    })
    .unwrap()
}

/// Wait until the node has no target_power_state (the worker recorded its outcome).
async fn settled(c: &Conductor, uuid: &str) -> Node {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let n = c.store().get_node(uuid).unwrap();
        if n.target_power_state.is_none() && c.reservation(uuid).is_none() {
            return n;
        }
        assert!(Instant::now() < end, "power change never finished: {n:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Request a change, check the immediate answer, wait for the outcome.
async fn power(c: &Arc<Conductor>, uuid: &str, target: PowerTarget) -> Node {
    let accepted = c
        .change_node_power_state(uuid, target, None)
        .await
        .unwrap_or_else(|e| panic!("{} refused: {e}", target.ironic()));
    assert_eq!(
        accepted.target_power_state.as_deref(),
        Some(target.ironic())
    );
    assert_eq!(accepted.last_error, None);
    settled(c, uuid).await
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_power_changes_land_in_the_simulator() {
    let fleet = ipmi_fleet(1, Duration::from_millis(150)).await;
    let sim = &fleet.bmcs[0];
    let c = conductor(config());
    let node = ipmi_node(&c, "n0", sim.addr);
    assert_eq!(node.provision_state, "enroll");
    assert_eq!(node.power_state, None);

    let n = power(&c, "n0", PowerTarget::On).await;
    assert_eq!(n.power_state.as_deref(), Some("power on"), "{n:?}");
    assert_eq!(n.last_error, None);
    assert!(sim.stats().power_on);

    let n = power(&c, &node.uuid, PowerTarget::Off).await;
    assert_eq!(n.power_state.as_deref(), Some("power off"), "{n:?}");
    assert!(!sim.stats().power_on);

    // Reboot of a machine that is off powers it on.
    let boots = sim.stats().boots;
    let n = power(&c, &node.uuid, PowerTarget::Reboot).await;
    assert_eq!(n.power_state.as_deref(), Some("power on"), "{n:?}");
    assert!(sim.stats().power_on);
    assert_eq!(sim.stats().boots, boots + 1);

    // Reboot of a running machine: a new boot, ends on.
    let n = power(&c, &node.uuid, PowerTarget::Reboot).await;
    assert_eq!(n.power_state.as_deref(), Some("power on"), "{n:?}");
    assert!(sim.stats().power_on);
    assert_eq!(sim.stats().boots, boots + 2);

    let n = power(&c, &node.uuid, PowerTarget::SoftOff).await;
    assert_eq!(n.power_state.as_deref(), Some("power off"), "{n:?}");
    assert!(!sim.stats().power_on);

    // Soft reboot of an off machine powers it on; of a running one it
    // shuts down softly and comes back.
    let n = power(&c, &node.uuid, PowerTarget::SoftReboot).await;
    assert_eq!(n.power_state.as_deref(), Some("power on"), "{n:?}");
    let n = power(&c, &node.uuid, PowerTarget::SoftReboot).await;
    assert_eq!(n.power_state.as_deref(), Some("power on"), "{n:?}");
    assert!(sim.stats().power_on);
    assert_eq!(sim.stats().boots, boots + 4);
    assert_eq!(n.last_error, None);
    assert_eq!(c.reservation(&node.uuid), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_power_changes_land_in_the_simulator() {
    let fleet = redfish_fleet(|c| c.power_delay = Duration::from_millis(150)).await;
    let sys = fleet.system(0);
    let c = conductor(config());
    let node = redfish_node(&c, "rf0", &fleet);

    let n = power(&c, &node.uuid, PowerTarget::On).await;
    assert_eq!(n.power_state.as_deref(), Some("power on"), "{n:?}");
    assert!(sys.power_on());

    let resets = sys.resets();
    let n = power(&c, &node.uuid, PowerTarget::SoftReboot).await;
    assert_eq!(n.power_state.as_deref(), Some("power on"), "{n:?}");
    assert_eq!(
        sys.resets(),
        resets + 1,
        "GracefulRestart reached the system"
    );

    let n = power(&c, &node.uuid, PowerTarget::SoftOff).await;
    assert_eq!(n.power_state.as_deref(), Some("power off"), "{n:?}");
    assert!(!sys.power_on());

    // Reboot of an off machine powers it on (ForceRestart would be a 409).
    let n = power(&c, &node.uuid, PowerTarget::Reboot).await;
    assert_eq!(n.power_state.as_deref(), Some("power on"), "{n:?}");
    assert_eq!(n.last_error, None);
    assert!(sys.power_on());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_power_off_that_does_not_finish_is_an_error() {
    // The machine takes 3 s to go down; the request allows 0.4 s.
    let fleet = ipmi_fleet(1, Duration::from_secs(3)).await;
    let sim = &fleet.bmcs[0];
    sim.with(|b| b.set_power(true, Instant::now()));
    let c = conductor(config());
    let node = ipmi_node(&c, "slow", sim.addr);
    let accepted = c
        .change_node_power_state(
            &node.uuid,
            PowerTarget::SoftOff,
            Some(Duration::from_millis(400)),
        )
        .await
        .unwrap();
    assert_eq!(
        accepted.target_power_state.as_deref(),
        Some("soft power off")
    );
    let n = settled(&c, &node.uuid).await;
    assert_eq!(n.target_power_state, None);
    let err = n.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("Failed to change power state to 'power off' by 'soft power off'")
            && err.contains("did not reach 'power off' within 0.4 seconds"),
        "{err}"
    );
    // No fallback to a hard power off: the state is what the BMC last said.
    assert_eq!(n.power_state.as_deref(), Some("power on"), "{n:?}");

    // The next request starts clean.
    let accepted = c
        .change_node_power_state(&node.uuid, PowerTarget::On, None)
        .await
        .unwrap();
    assert_eq!(accepted.last_error, None);
    settled(&c, &node.uuid).await;

    // Zero timeouts are refused before anything happens.
    let e = c
        .change_node_power_state(&node.uuid, PowerTarget::Off, Some(Duration::ZERO))
        .await
        .unwrap_err();
    assert!(matches!(e, ConductorError::InvalidParameter(_)), "{e:?}");
    assert_eq!(e.status(), 400);
    let e = c
        .change_node_power_state("no-such-node", PowerTarget::Off, None)
        .await
        .unwrap_err();
    assert_eq!(e, ConductorError::NodeNotFound("no-such-node".into()));
    assert_eq!(e.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_while_the_first_runs_is_node_locked() {
    let fleet = ipmi_fleet(1, Duration::from_millis(1500)).await;
    let sim = &fleet.bmcs[0];
    let c = conductor(config());
    let node = ipmi_node(&c, "busy", sim.addr);

    c.change_node_power_state(&node.uuid, PowerTarget::On, None)
        .await
        .unwrap();
    assert_eq!(c.reservation(&node.uuid).as_deref(), Some(HOST));

    let e = c
        .change_node_power_state(&node.uuid, PowerTarget::Off, None)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ConductorError::NodeLocked {
            node: node.uuid.clone(),
            host: HOST.into()
        }
    );
    assert_eq!(e.status(), 409);
    // Everything that changes the node is refused alike...
    for e in [
        c.set_boot_device("busy", BootDevice::Pxe, false)
            .await
            .unwrap_err(),
        c.get_boot_device("busy").await.unwrap_err(),
        c.inject_nmi("busy").await.unwrap_err(),
        c.set_maintenance("busy", true, None).unwrap_err(),
        c.update_node("busy", |n| {
            n.description = Some("x".into());
            Ok(())
        })
        .unwrap_err(),
        c.delete_node("busy").await.unwrap_err(),
    ] {
        assert!(matches!(e, ConductorError::NodeLocked { .. }), "{e:?}");
    }
    // ... while reads do not wait.
    let n = c.store().get_node("busy").unwrap();
    assert_eq!(n.target_power_state.as_deref(), Some("power on"));
    let checks = c.validate("busy").await.unwrap();
    assert!(checks.iter().any(|i| i.interface == "power"));

    let n = settled(&c, &node.uuid).await;
    assert_eq!(n.power_state.as_deref(), Some("power on"));
    assert!(sim.stats().power_on);
    assert_eq!(c.reservation(&node.uuid), None);
    // Free again.
    c.set_maintenance("busy", true, Some("check".into()))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_pool_answers_no_free_worker() {
    let fleet = ipmi_fleet(2, Duration::from_millis(1000)).await;
    let c = conductor(ConductorConfig {
        workers: 1,
        ..config()
    });
    let a = ipmi_node(&c, "a", fleet.bmcs[0].addr);
    let b = ipmi_node(&c, "b", fleet.bmcs[1].addr);
    c.change_node_power_state(&a.uuid, PowerTarget::On, None)
        .await
        .unwrap();
    assert_eq!(c.free_workers(), 0);
    let e = c
        .change_node_power_state(&b.uuid, PowerTarget::On, None)
        .await
        .unwrap_err();
    assert_eq!(e, ConductorError::NoFreeWorker);
    assert_eq!(e.status(), 503);
    // The refused request left no lock and no target behind.
    assert_eq!(c.reservation(&b.uuid), None);
    let bn = c.store().get_node(&b.uuid).unwrap();
    assert_eq!(bn.target_power_state, None);
    assert!(!fleet.bmcs[1].stats().power_on);

    settled(&c, &a.uuid).await;
    assert_eq!(c.free_workers(), 1);
    let n = power(&c, &b.uuid, PowerTarget::On).await;
    assert_eq!(n.power_state.as_deref(), Some("power on"));
    assert!(fleet.bmcs[1].stats().power_on);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_actions_a_bmc_does_not_offer_are_refused() {
    let fleet = redfish_fleet(|c| c.no_graceful = true).await;
    let sys = fleet.system(0);
    let c = conductor(config());
    let node = redfish_node(&c, "hard-only", &fleet);

    let offered = c.supported_power_actions(&node.uuid).await.unwrap();
    assert!(offered.contains(&PowerAction::Reboot));
    assert!(!offered.contains(&PowerAction::SoftReboot));
    assert!(!offered.contains(&PowerAction::SoftOff));

    for target in [PowerTarget::SoftReboot, PowerTarget::SoftOff] {
        let e = c
            .change_node_power_state(&node.uuid, target, None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ConductorError::Unsupported(m) if m.contains(target.ironic())),
            "{e:?}"
        );
        assert_eq!(e.status(), 400);
    }
    let n = c.store().get_node(&node.uuid).unwrap();
    assert_eq!(n.target_power_state, None);
    assert_eq!(c.reservation(&node.uuid), None);
    assert_eq!(sys.resets(), 0);

    // Hard actions still work.
    let n = power(&c, &node.uuid, PowerTarget::Reboot).await;
    assert_eq!(n.power_state.as_deref(), Some("power on"), "{n:?}");
    assert!(sys.power_on());

    // IPMI: a profile that says the BMC has no soft power.
    let dir = std::env::temp_dir().join(format!("ironrack-cond-prof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("nosoft.toml"),
        "name = \"no-soft\"\n[ipmi]\nno_soft_power = true\n",
    )
    .unwrap();
    let profiles = Profiles::load(Some(&dir)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let ipmi = ipmi_fleet(1, Duration::ZERO).await;
    ipmi.bmcs[0].with(|b| b.set_power(true, Instant::now()));
    let c = conductor_with(config(), profiles);
    let mut info = ipmi_info(ipmi.bmcs[0].addr);
    info.insert("hw_profile".into(), json!("no-soft"));
    let n = c
        .create_node(NewNode {
            driver: "ipmi".into(),
            driver_info: info,
            ..Default::default()
        })
        .unwrap();
    let e = c
        .change_node_power_state(&n.uuid, PowerTarget::SoftOff, None)
        .await
        .unwrap_err();
    assert!(matches!(e, ConductorError::Unsupported(_)), "{e:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ipmi.bmcs[0].stats().power_on, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_records_a_change_made_behind_the_agents_back() {
    let fleet = ipmi_fleet(2, Duration::ZERO).await;
    let sim = &fleet.bmcs[0];
    let c = conductor(config());
    let node = ipmi_node(&c, "s0", sim.addr);
    let fresh = ipmi_node(&c, "s1", fleet.bmcs[1].addr);
    power(&c, &node.uuid, PowerTarget::On).await;

    // Someone presses the button.
    sim.with(|b| b.set_power(false, Instant::now()));
    let r = c.sync_power_states().await;
    assert_eq!(r.checked, 2, "{r:?}");
    assert_eq!(r.changed, 1, "{r:?}");
    assert_eq!(r.failed, 0, "{r:?}");
    let n = c.store().get_node(&node.uuid).unwrap();
    assert_eq!(n.power_state.as_deref(), Some("power off"));
    assert!(!n.maintenance);
    // A node never seen before just gets its state recorded.
    let f = c.store().get_node(&fresh.uuid).unwrap();
    assert_eq!(f.power_state.as_deref(), Some("power off"));

    // Nothing new: nothing written.
    let before = c.store().get_node(&node.uuid).unwrap().updated_at;
    let r = c.sync_power_states().await;
    assert_eq!((r.checked, r.changed), (2, 0), "{r:?}");
    assert_eq!(c.store().get_node(&node.uuid).unwrap().updated_at, before);

    // Operator maintenance takes a node out of the sweep.
    c.set_maintenance(&fresh.uuid, true, Some("rack work".into()))
        .unwrap();
    let r = c.sync_power_states().await;
    assert_eq!(r.checked, 1, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_never_locks_and_never_overwrites_a_newer_change() {
    let fleet = ipmi_fleet(1, Duration::ZERO).await;
    let sim = &fleet.bmcs[0];
    let c = conductor(config());
    let node = ipmi_node(&c, "race", sim.addr);
    power(&c, &node.uuid, PowerTarget::Off).await;

    // The machine comes on behind the agent's back, and answers slowly: the
    // sweep's query (which will see "on") is in flight for a while.
    sim.with(|b| b.set_power(true, Instant::now()));
    sim.faults
        .set_latency(Duration::from_millis(300), Duration::ZERO);
    let sweeper = {
        let c = c.clone();
        tokio::spawn(async move { c.sync_power_states().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The user is not refused because the sync is reading...
    assert_eq!(c.reservation(&node.uuid), None);
    c.change_node_power_state(&node.uuid, PowerTarget::Off, None)
        .await
        .unwrap();
    // ... and the sweep's stale "power on" is not recorded over the change.
    let r = sweeper.await.unwrap();
    assert_eq!(r.changed, 0, "{r:?}");
    let n = settled(&c, &node.uuid).await;
    assert_eq!(n.power_state.as_deref(), Some("power off"), "{n:?}");
    assert_eq!(n.last_error, None);
    assert!(!sim.stats().power_on);
    sim.faults.set_latency(Duration::ZERO, Duration::ZERO);
    let n = c.store().get_node(&node.uuid).unwrap();
    assert_eq!(n.power_state.as_deref(), Some("power off"), "{n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_bmc_goes_to_maintenance_and_recovers() {
    let fleet = ipmi_fleet(3, Duration::ZERO).await;
    let c = conductor(ConductorConfig {
        bmc_timeout: 0.5,
        ..config()
    });
    let dead = ipmi_node(&c, "dead", fleet.bmcs[0].addr);
    let parked = ipmi_node(&c, "parked", fleet.bmcs[1].addr);
    let fine = ipmi_node(&c, "fine", fleet.bmcs[2].addr);
    for n in [&dead, &parked, &fine] {
        power(&c, &n.uuid, PowerTarget::On).await;
    }
    c.set_maintenance(&parked.uuid, true, Some("operator: swapping a disk".into()))
        .unwrap();
    fleet.bmcs[0].faults.set_unresponsive(true);
    fleet.bmcs[1].faults.set_unresponsive(true);

    // Attempt 1 of 2: a failure, no maintenance yet; the dead BMC does not
    // hold up the live one.
    let r = c.sync_power_states().await;
    assert_eq!((r.checked, r.failed, r.to_maintenance), (2, 1, 0), "{r:?}");
    let n = c.store().get_node(&dead.uuid).unwrap();
    assert!(!n.maintenance && n.fault.is_none(), "{n:?}");
    fleet.bmcs[2].with(|b| b.set_power(false, Instant::now()));

    // Attempt 2: maintenance with Ironic's fault and wording.
    let r = c.sync_power_states().await;
    assert_eq!((r.failed, r.to_maintenance, r.changed), (1, 1, 1), "{r:?}");
    let n = c.store().get_node(&dead.uuid).unwrap();
    assert!(n.maintenance);
    assert_eq!(n.fault.as_deref(), Some(POWER_FAILURE));
    let reason = n.maintenance_reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "During sync_power_state, max retries exceeded for node {}",
            dead.uuid
        )),
        "{reason}"
    );
    assert!(
        reason.contains("Switching node to maintenance mode"),
        "{reason}"
    );
    assert_eq!(n.last_error.as_deref(), Some(reason.as_str()));
    let f = c.store().get_node(&fine.uuid).unwrap();
    assert!(!f.maintenance);
    assert_eq!(f.power_state.as_deref(), Some("power off"));

    // Out of the sweep now.
    let r = c.sync_power_states().await;
    assert_eq!((r.checked, r.failed), (1, 0), "{r:?}");

    // Still dead: nothing recovers.
    assert_eq!(c.recover_power_failures().await, 0);
    assert!(c.store().get_node(&dead.uuid).unwrap().maintenance);

    // Answers again: the fault is cleared; the operator's maintenance stays.
    fleet.bmcs[0].faults.set_unresponsive(false);
    fleet.bmcs[1].faults.set_unresponsive(false);
    assert_eq!(c.recover_power_failures().await, 1);
    let n = c.store().get_node(&dead.uuid).unwrap();
    assert!(!n.maintenance, "{n:?}");
    assert_eq!(n.fault, None);
    assert_eq!(n.maintenance_reason, None);
    assert_eq!(n.power_state.as_deref(), Some("power on"));
    let p = c.store().get_node(&parked.uuid).unwrap();
    assert!(p.maintenance);
    assert_eq!(p.fault, None);
    assert_eq!(
        p.maintenance_reason.as_deref(),
        Some("operator: swapping a disk")
    );

    // Back in the sweep, and healthy.
    let r = c.sync_power_states().await;
    assert_eq!((r.checked, r.failed), (2, 0), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_sync_makes_the_hardware_follow_the_database() {
    let fleet = ipmi_fleet(1, Duration::from_millis(100)).await;
    let sim = &fleet.bmcs[0];
    let c = conductor(ConductorConfig {
        force_power_state_during_sync: true,
        ..config()
    });
    let node = ipmi_node(&c, "forced", sim.addr);
    power(&c, &node.uuid, PowerTarget::On).await;

    sim.with(|b| b.set_power(false, Instant::now()));
    assert!(!sim.stats().power_on);
    let r = c.sync_power_states().await;
    assert_eq!((r.checked, r.changed, r.failed), (1, 0, 0), "{r:?}");
    assert!(sim.stats().power_on, "the sync powered the machine back on");
    let n = c.store().get_node(&node.uuid).unwrap();
    assert_eq!(n.power_state.as_deref(), Some("power on"));
    assert!(!n.maintenance);
    assert_eq!(c.reservation(&node.uuid), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_device_and_nmi_go_through_the_bmc() {
    let fleet = ipmi_fleet(1, Duration::ZERO).await;
    let sim = &fleet.bmcs[0];
    let c = conductor(config());
    let node = ipmi_node(&c, "boot", sim.addr);

    c.set_boot_device("boot", BootDevice::Pxe, true)
        .await
        .unwrap();
    let flags = sim
        .with(|b| ironrack::ipmi::BootFlags::parse(&b.machine.boot_flags))
        .unwrap();
    assert!(flags.valid && flags.persistent);
    assert_eq!(flags.device, ironrack::ipmi::BootDevice::Pxe);
    let got = c.get_boot_device(&node.uuid).await.unwrap();
    assert_eq!(got.device, Some(BootDevice::Pxe));
    assert!(got.persistent);

    c.set_boot_device("boot", BootDevice::Disk, false)
        .await
        .unwrap();
    let got = c.get_boot_device("boot").await.unwrap();
    assert_eq!(
        (got.device, got.persistent),
        (Some(BootDevice::Disk), false)
    );

    let devices = c.supported_boot_devices("boot").await.unwrap();
    assert!(devices.contains(&BootDevice::Pxe) && devices.contains(&BootDevice::Disk));

    c.inject_nmi("boot").await.unwrap();
    c.inject_nmi("boot").await.unwrap();
    assert_eq!(sim.stats().nmi_count, 2);

    // A device IPMI cannot select is a 400.
    let e = c
        .set_boot_device("boot", BootDevice::UefiHttp, false)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400, "{e:?}");

    // Redfish: the override lands on the system.
    let rf = redfish_fleet(|_| {}).await;
    let rn = redfish_node(&c, "rf-boot", &rf);
    c.set_boot_device(&rn.uuid, BootDevice::Cdrom, false)
        .await
        .unwrap();
    let (target, enabled, _mode) = rf.system(0).boot();
    assert_eq!((target.as_str(), enabled.as_str()), ("Cd", "Once"));
    c.inject_nmi(&rn.uuid).await.unwrap();
    assert_eq!(rf.system(0).nmi_count(), 1);

    // An unresponsive BMC costs bmc_timeout (the error names it) and is a
    // 500.
    sim.faults.set_unresponsive(true);
    let e = c.get_boot_device("boot").await.unwrap_err();
    assert!(
        matches!(e, ConductorError::Bmc(BmcError::Timeout(t)) if t == Duration::from_secs(1)),
        "{e:?}"
    );
    assert_eq!(e.status(), 500);
    assert_eq!(c.reservation(&node.uuid), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bmc_session_per_node_is_reused_and_rebuilt_on_change() {
    let fleet = ipmi_fleet(1, Duration::ZERO).await;
    let sim = &fleet.bmcs[0];
    let c = conductor(config());
    let node = ipmi_node(&c, "reuse", sim.addr);
    assert_eq!(c.open_sessions(), 0);

    power(&c, &node.uuid, PowerTarget::On).await;
    for _ in 0..5 {
        c.sync_power_states().await;
        c.get_boot_device("reuse").await.unwrap();
    }
    c.validate("reuse").await.unwrap();
    power(&c, &node.uuid, PowerTarget::Off).await;
    assert_eq!(sim.stats().sessions_opened, 1);
    assert_eq!(sim.stats().sessions_active, 1);
    assert_eq!(c.open_sessions(), 1);

    // An update that leaves driver_info alone keeps the client.
    c.update_node("reuse", |n| {
        n.extra.insert("rack".into(), json!("r1"));
        Ok(())
    })
    .unwrap();
    assert_eq!(c.open_sessions(), 1);

    // New driver_info: the old session is closed, a new one opened on use.
    c.update_node("reuse", |n| {
        n.driver_info
            .insert("ipmi_priv_level".into(), json!("ADMINISTRATOR"));
        Ok(())
    })
    .unwrap();
    assert_eq!(c.open_sessions(), 0);
    eventually("old session closed", || sim.stats().sessions_active == 0).await;
    c.get_boot_device("reuse").await.unwrap();
    assert_eq!(sim.stats().sessions_opened, 2);
    assert_eq!(c.open_sessions(), 1);

    // Delete closes it.
    c.delete_node("reuse").await.unwrap();
    assert_eq!(c.open_sessions(), 0);
    eventually("session closed on delete", || {
        sim.stats().sessions_active == 0
    })
    .await;
    assert!(matches!(
        c.store().get_node("reuse"),
        Err(ironrack::store::StoreError::NotFound { .. })
    ));

    // Shutdown closes the rest.
    let n2 = ipmi_node(&c, "reuse2", sim.addr);
    c.get_boot_device(&n2.uuid).await.unwrap();
    assert_eq!(sim.stats().sessions_active, 1);
    c.shutdown().await;
    assert_eq!(c.open_sessions(), 0);
    eventually("session closed on shutdown", || {
        sim.stats().sessions_active == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_creation_and_updates_are_validated() {
    let c = conductor(config());
    let bad = |driver: &str, info: Value| {
        c.create_node(NewNode {
            driver: driver.into(),
            driver_info: obj(info),
            ..Default::default()
        })
        .unwrap_err()
    };
    let e = bad("fake-hardware", json!({}));
    assert!(
        matches!(&e, ConductorError::InvalidParameter(m) if m.contains("fake-hardware")),
        "{e:?}"
    );
    assert_eq!(e.status(), 400);
    let e = bad("ipmi", json!({"ipmi_username": "admin"}));
    assert!(
        matches!(&e, ConductorError::InvalidParameter(m) if m.contains("missing driver_info") && m.contains("ipmi_address")),
        "{e:?}"
    );
    let e = bad("redfish", json!({}));
    assert!(e.to_string().contains("redfish_address"), "{e}");
    let e = bad(
        "ipmi",
        json!({"ipmi_address": "10.0.0.1", "hw_profile": "acme"}),
    );
    assert!(e.to_string().contains("acme"), "{e}");
    let e = bad(
        "ipmi",
        json!({"ipmi_address": "10.0.0.1", "ipmi_port": "http"}),
    );
    assert!(e.to_string().contains("ipmi_port"), "{e}");
    let e = bad(
        "ipmi",
        json!({"ipmi_address": "10.0.0.1", "ipmi_bridging": "dual"}),
    );
    assert!(e.to_string().contains("ipmi_bridging"), "{e}");

    let good = |name: &str| NewNode {
        name: Some(name.into()),
        driver: "ipmi".into(),
        driver_info: obj(json!({
            "ipmi_address": "bmc.example",
            "ipmi_port": "6230",
            "ipmi_password": "hunter2",
            "ipmi_cipher_suite": 17,
            "hw_profile": "dell-idrac"
        })),
        ..Default::default()
    };
    let n = c.create_node(good("ok")).unwrap();
    assert_eq!(n.provision_state, "enroll");
    let e = c.create_node(good("ok")).unwrap_err();
    assert!(matches!(e, ConductorError::Conflict(_)), "{e:?}");
    assert_eq!(e.status(), 409);
    // Secrets never show in errors or in the node's Debug.
    assert!(!format!("{n:?}").contains("hunter2"));

    // PATCH cannot touch power or provision state.
    for f in [
        (|n: &mut Node| n.power_state = Some("power on".into())) as fn(&mut Node),
        |n| n.target_power_state = Some("power off".into()),
        |n| n.provision_state = "active".into(),
    ] {
        let e = c
            .update_node("ok", |n| {
                f(n);
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(e, ConductorError::InvalidParameter(_)), "{e:?}");
    }
    // Invalid driver_info is refused and nothing is written.
    let e = c
        .update_node("ok", |n| {
            n.driver_info.insert("ipmi_priv_level".into(), json!("GOD"));
            n.description = Some("changed".into());
            Ok(())
        })
        .unwrap_err();
    assert!(e.to_string().contains("ipmi_priv_level"), "{e}");
    let e = c
        .update_node("ok", |n| {
            n.driver = "redfish".into();
            Ok(())
        })
        .unwrap_err();
    assert!(e.to_string().contains("redfish_address"), "{e}");
    // The closure's own error comes back as it is.
    let e = c
        .update_node("ok", |_| Err(ConductorError::Conflict("mine".into())))
        .unwrap_err();
    assert_eq!(e, ConductorError::Conflict("mine".into()));
    let now = c.store().get_node("ok").unwrap();
    assert_eq!(now.description, None);
    assert_eq!(now.driver, "ipmi");
    assert_eq!(now.driver_info, n.driver_info);

    let u = c
        .update_node("ok", |n| {
            n.description = Some("rack 4".into());
            n.driver_info.insert("ipmi_port".into(), json!(623));
            Ok(())
        })
        .unwrap();
    assert_eq!(u.description.as_deref(), Some("rack 4"));
    assert_eq!(u.driver_info["ipmi_port"], json!(623));

    let e = c.update_node("nope", |_| Ok(())).unwrap_err();
    assert_eq!(e, ConductorError::NodeNotFound("nope".into()));
    let e = c.delete_node("nope").await.unwrap_err();
    assert_eq!(e.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_on_and_off() {
    let c = conductor(config());
    let n = c
        .create_node(NewNode {
            driver: "ipmi".into(),
            driver_info: obj(json!({"ipmi_address": "10.1.1.1"})),
            ..Default::default()
        })
        .unwrap();
    let m = c
        .set_maintenance(&n.uuid, true, Some("bad fan".into()))
        .unwrap();
    assert!(m.maintenance);
    assert_eq!(m.maintenance_reason.as_deref(), Some("bad fan"));
    let m = c.set_maintenance(&n.uuid, false, None).unwrap();
    assert!(!m.maintenance);
    assert_eq!(m.maintenance_reason, None);
    assert_eq!(m.fault, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_every_interface() {
    let fleet = ipmi_fleet(1, Duration::ZERO).await;
    let c = conductor(ConductorConfig {
        bmc_timeout: 0.5,
        ..config()
    });
    let node = ipmi_node(&c, "v", fleet.bmcs[0].addr);
    let checks = c.validate("v").await.unwrap();
    let get = |checks: &[ironrack::conductor::InterfaceCheck], name: &str| {
        checks
            .iter()
            .find(|i| i.interface == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(get(&checks, "power").result, Some(true));
    assert_eq!(get(&checks, "management").result, Some(true));
    // No boot context in a bare conductor: nothing can be rendered, so
    // neither boot nor deploy validates, and the reason says why.
    for i in ["boot", "deploy"] {
        let ck = get(&checks, i);
        assert_eq!(ck.result, Some(false));
        let why = ck.reason.unwrap_or_default();
        assert!(why.contains("no boot context"), "{i}: {why}");
    }
    // An IPMI node has serial-over-LAN.
    assert_eq!(get(&checks, "console").result, Some(true));
    for i in [
        "bios", "inspect", "raid", "rescue", "storage", "network", "firmware",
    ] {
        let ck = get(&checks, i);
        assert_eq!(ck.result, None);
        assert_eq!(ck.reason.as_deref(), Some("not supported"));
    }

    fleet.bmcs[0].faults.set_unresponsive(true);
    let checks = c.validate(&node.uuid).await.unwrap();
    let p = get(&checks, "power");
    assert_eq!(p.result, Some(false));
    assert!(p.reason.unwrap_or_default().contains("did not answer"));
    assert_eq!(c.reservation(&node.uuid), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_loops_sync_and_stop() {
    let fleet = ipmi_fleet(1, Duration::ZERO).await;
    let sim = &fleet.bmcs[0];
    let c = conductor(ConductorConfig {
        sync_power_state_interval: 0.2,
        power_failure_recovery_interval: 0.2,
        ..config()
    });
    let node = ipmi_node(&c, "loop", sim.addr);
    c.start();
    sim.with(|b| b.set_power(true, Instant::now()));
    eventually("the loop records the state", || {
        c.store()
            .get_node(&node.uuid)
            .unwrap()
            .power_state
            .as_deref()
            == Some("power on")
    })
    .await;
    c.shutdown().await;
    sim.with(|b| b.set_power(false, Instant::now()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        c.store()
            .get_node(&node.uuid)
            .unwrap()
            .power_state
            .as_deref(),
        Some("power on"),
        "no sweep after shutdown"
    );
}

fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static H: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_recorded() {
    use ironrack::conductor::metrics as m;
    let handle = prometheus();
    let fleet = ipmi_fleet(1, Duration::ZERO).await;
    let sim = &fleet.bmcs[0];
    let c = conductor(config());
    let node = ipmi_node(&c, "metered", sim.addr);
    power(&c, &node.uuid, PowerTarget::On).await;
    sim.with(|b| b.set_power(false, Instant::now()));
    c.sync_power_states().await;
    sim.faults.set_unresponsive(true);
    c.sync_power_states().await;

    let text = handle.render();
    for needle in [
        format!(
            "{}{{driver=\"ipmi\",target=\"power on\",result=\"success\"}}",
            m::POWER_OPERATIONS_TOTAL
        ),
        format!("{}_count{{driver=\"ipmi\"}}", m::POWER_OPERATION_SECONDS),
        format!("{}_count", m::SYNC_SWEEP_SECONDS),
        format!("{}{{driver=\"ipmi\"}}", m::POWER_STATE_CHANGES_TOTAL),
        format!(
            "{}{{driver=\"ipmi\",kind=\"timeout\"}}",
            m::BMC_ERRORS_TOTAL
        ),
    ] {
        assert!(text.contains(&needle), "{needle} missing in:\n{text}");
    }
}

/// Not a timing assertion: prints how long sweeps of many live nodes take
/// (`cargo test --release --test conductor -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn sweep_of_many_live_nodes() {
    let count = 1000;
    let fleet = ipmi_fleet(count, Duration::ZERO).await;
    let c = conductor(ConductorConfig {
        sync_power_state_workers: 64,
        ..config()
    });
    for (i, b) in fleet.bmcs.iter().enumerate() {
        ipmi_node(&c, &format!("n{i}"), b.addr);
    }
    for round in ["cold", "warm", "warm"] {
        let r = c.sync_power_states().await;
        assert_eq!(r.checked, count, "{r:?}");
        assert_eq!(r.failed, 0, "{r:?}");
        println!("{round} sweep of {count}: {:?}", r.duration);
    }
    for b in fleet.bmcs.iter().step_by(2) {
        b.with(|b| b.set_power(true, Instant::now()));
    }
    let r = c.sync_power_states().await;
    assert_eq!(r.changed, count / 2, "{r:?}");
    println!("sweep recording {} changes: {:?}", r.changed, r.duration);
    assert_eq!(c.open_sessions(), count);
}
