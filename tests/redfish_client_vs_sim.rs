//! Our Redfish client (through the BMC trait) and CLI against our Redfish
//! simulator: what sushy-emulator's fake driver lacks (Nmi, sessions, ETags,
//! 503s, vendor enum values, unresponsive systems, TLS).

mod common;

use std::time::{Duration, Instant};

use common::*;
use ironrack::bmc::redfish::RedfishBmc;
use ironrack::bmc::{Bmc, BmcError, BootDevice, BootMode, BootSetting, PowerAction, PowerState};
use ironrack::redfish::RedfishConfig;
use ironrack::sim::redfish::{RedfishFleet, RedfishFleetConfig};

async fn sim(count: usize, tweak: impl FnOnce(&mut RedfishFleetConfig)) -> RedfishFleet {
    let mut cfg = RedfishFleetConfig::new("127.0.0.1:0".parse().unwrap(), count, USER, PASSWORD);
    cfg.power_delay = Duration::from_millis(200);
    tweak(&mut cfg);
    RedfishFleet::start(cfg).await.unwrap()
}

fn bmc(f: &RedfishFleet, system: &str, tweak: impl FnOnce(&mut RedfishConfig)) -> RedfishBmc {
    let mut cfg = RedfishConfig::new(f.base_url(), USER, PASSWORD);
    cfg.system_id = Some(system.to_string());
    cfg.request_timeout = Duration::from_secs(5);
    tweak(&mut cfg);
    RedfishBmc::new(cfg).unwrap()
}

async fn wait_power(b: &RedfishBmc, want: PowerState) {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if b.power_state().await.unwrap() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("power never became {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmi_power_and_boot_through_the_trait() {
    let f = sim(3, |_| {}).await;
    let b = bmc(&f, "sys-0002", |_| {});
    b.validate().await.unwrap();
    b.set_power(PowerAction::On).await.unwrap();
    wait_power(&b, PowerState::On).await;
    assert!(f.system(2).power_on() && !f.system(1).power_on());

    b.inject_nmi().await.unwrap();
    assert_eq!(f.system(2).nmi_count(), 1);

    b.set_boot_device(BootSetting {
        device: Some(BootDevice::Pxe),
        persistent: false,
        mode: Some(BootMode::Uefi),
    })
    .await
    .unwrap();
    assert_eq!(
        f.system(2).boot(),
        ("Pxe".to_string(), "Once".to_string(), "UEFI".to_string())
    );
    // A reboot consumes the one-time override.
    b.set_power(PowerAction::Reboot).await.unwrap();
    wait_power(&b, PowerState::On).await;
    assert_eq!(f.system(2).last_boot_target().as_deref(), Some("Pxe"));
    let s = b.boot_device().await.unwrap();
    assert_eq!(s.device, None, "Once became Disabled after the boot: {s:?}");

    b.set_power(PowerAction::SoftOff).await.unwrap();
    wait_power(&b, PowerState::Off).await;
    b.close().await;
    assert_eq!(f.active_sessions(), 0, "the session was deleted on close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmi_not_offered_is_refused_locally() {
    let f = sim(1, |c| c.allow_nmi = false).await;
    let b = bmc(&f, "sys-0000", |_| {});
    b.validate().await.unwrap();
    let before = f.system(0).requests();
    assert!(matches!(
        b.inject_nmi().await,
        Err(BmcError::Unsupported(_))
    ));
    assert!(
        f.system(0).requests() - before <= 1,
        "at most a GET, never the reset"
    );
    assert_eq!(f.system(0).nmi_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_reused_and_recreated_after_expiry() {
    let f = sim(1, |_| {}).await;
    let b = bmc(&f, "sys-0000", |_| {});
    for _ in 0..10 {
        b.power_state().await.unwrap();
    }
    assert_eq!(f.sessions_created(), 1, "one session carries every request");
    f.expire_sessions();
    assert_eq!(b.power_state().await.unwrap(), PowerState::Off);
    assert_eq!(f.sessions_created(), 2, "re-created after a 401");
    b.close().await;
    assert_eq!(f.active_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_auth_error() {
    let f = sim(1, |_| {}).await;
    let mut cfg = RedfishConfig::new(f.base_url(), USER, "nope");
    cfg.system_id = Some("sys-0000".into());
    let b = RedfishBmc::new(cfg).unwrap();
    assert!(matches!(
        b.power_state().await,
        Err(BmcError::AuthFailed(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_unavailable_is_retried() {
    let f = sim(1, |_| {}).await;
    let b = bmc(&f, "sys-0000", |_| {});
    b.validate().await.unwrap();
    // Two 503s in a row (each with Retry-After: 1): the client's bounded
    // retries see the request through, and the BMC saw three tries.
    let before = f.requests();
    f.fail_next_with_503(2);
    assert_eq!(b.power_state().await.unwrap(), PowerState::Off);
    assert_eq!(f.injected_503(), 2);
    assert_eq!(
        f.requests() - before,
        3,
        "two refused tries and one that worked"
    );
    // Three in a row use up the tries: a clear error naming the 503.
    f.fail_next_with_503(3);
    let e = b.power_state().await.unwrap_err();
    assert!(
        matches!(e, BmcError::Rejected { .. }) && e.to_string().contains("503"),
        "{e:?}"
    );
    assert_eq!(f.injected_503(), 5);
    // The next request is answered again.
    assert_eq!(b.power_state().await.unwrap(), PowerState::Off);
    // A service that only ever answers 503 is a clear error after the same
    // bounded tries, not a hang.
    f.set_error_503_rate(1.0);
    let before = f.requests();
    let e = b.power_state().await.unwrap_err();
    assert!(
        matches!(e, BmcError::Rejected { .. } | BmcError::Unreachable(_)),
        "{e:?}"
    );
    let tries = f.requests() - before;
    assert!((1..=3).contains(&tries), "{tries} tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_enum_values_and_oem_fields_do_not_break_documents() {
    let f = sim(1, |c| c.unknown_enums = true).await;
    let b = bmc(&f, "sys-0000", |_| {});
    b.validate().await.unwrap();
    assert_eq!(b.power_state().await.unwrap(), PowerState::Off);
    let supported = b.supported_boot_devices().await.unwrap();
    assert!(supported.contains(&BootDevice::Pxe) && supported.contains(&BootDevice::UefiHttp));
    b.set_power(PowerAction::On).await.unwrap();
    wait_power(&b, PowerState::On).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_system_costs_its_own_timeout_only() {
    let f = sim(2, |_| {}).await;
    f.system(1).set_unresponsive(true);
    let live = bmc(&f, "sys-0000", |_| {});
    // With a call to the silent system outstanding (its timeouts far longer
    // than the test), the live one is answered: it does not wait its turn.
    let stuck = bmc(&f, "sys-0001", |c| {
        c.request_timeout = Duration::from_secs(600);
        c.operation_timeout = Duration::from_secs(1200);
    });
    let stuck_call = stuck.power_state();
    tokio::pin!(stuck_call);
    tokio::select! {
        biased;
        r = &mut stuck_call => panic!("the silent system answered: {r:?}"),
        l = live.power_state() => assert_eq!(l.unwrap(), PowerState::Off),
    }
    // And the silent system's own call ends with its own timeout.
    let dead = bmc(&f, "sys-0001", |c| {
        c.request_timeout = Duration::from_millis(500);
        c.operation_timeout = Duration::from_secs(3);
    });
    let (d, l) = tokio::join!(dead.power_state(), live.power_state());
    assert!(
        matches!(d, Err(BmcError::Timeout(t))
            if t == Duration::from_millis(500) || t == Duration::from_secs(3)),
        "{d:?}"
    );
    assert_eq!(l.unwrap(), PowerState::Off);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_against_a_ca_bundle() {
    let f = sim(1, |c| c.tls = true).await;
    let dir = Scratch::new("rf-tls");
    let ca = dir.file("ca.pem", f.cert_pem().unwrap());
    // Not trusted: refused.
    let b = bmc(&f, "sys-0000", |_| {});
    assert!(
        b.power_state().await.is_err(),
        "an unknown certificate must be refused"
    );
    // Trusted through the bundle.
    let b = bmc(&f, "sys-0000", |c| c.ca_bundle = Some(ca.clone()));
    assert_eq!(b.power_state().await.unwrap(), PowerState::Off);
    // Or explicitly not verified, for this node only.
    let b = bmc(&f, "sys-0000", |c| c.verify_tls = false);
    assert_eq!(b.power_state().await.unwrap(), PowerState::Off);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_against_the_simulator() {
    let f = sim(4, |_| {}).await;
    let dir = Scratch::new("rf-cli");
    let pw = dir.file("pw", PASSWORD);
    let cli = |args: &[&str]| {
        let mut c = ironrack();
        c.args(["redfish", "--url", &f.base_url(), "-U", USER, "-f"])
            .arg(&pw)
            .args(args);
        c
    };
    let o = run(&mut cli(&["--system", "sys-0003", "power", "on"])).await;
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&mut cli(&["--system", "sys-0003", "power", "nmi"])).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(f.system(3).nmi_count(), 1);
    let o = run(&mut cli(&[
        "--system",
        "sys-0003",
        "bootdev",
        "set",
        "cdrom",
        "--persistent",
    ]))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(f.system(3).boot().0, "Cd");
    assert_eq!(f.system(3).boot().1, "Continuous");
    let o = run(&mut cli(&[
        "--system", "sys-0003", "--json", "bootdev", "get",
    ]))
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["boot_device"].as_str(), v["persistent"].as_bool()),
        (Some("cdrom"), Some(true))
    );
    let o = run(&mut cli(&[
        "--system",
        "sys-0003",
        "vmedia",
        "insert",
        "http://127.0.0.1:1/deploy.iso",
    ]))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        f.system(3).virtual_media(),
        (Some("http://127.0.0.1:1/deploy.iso".into()), true)
    );
    let o = run(&mut cli(&["--system", "sys-0003", "vmedia", "eject"])).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(!f.system(3).virtual_media().1);

    // Many systems at once, with one unresponsive: its own timeout, exit 1.
    f.system(1).set_unresponsive(true);
    let o = run(&mut cli(&[
        "--system",
        "sys-[0000-0003]",
        "--timeout",
        "1",
        "power",
        "status",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("sys-0003: on") && out.contains("sys-0000: off"),
        "{}",
        text(&o)
    );
    assert!(out.contains("4 hosts: 3 ok, 1 failed"), "{}", text(&o));
    // No password in anything the CLI printed.
    assert!(!String::from_utf8_lossy(&o.stderr).contains(PASSWORD));
    assert!(!out.contains(PASSWORD));
}
