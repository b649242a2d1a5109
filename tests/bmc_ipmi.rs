//! The IPMI implementation of the BMC trait against the simulator over UDP.

mod common;

use std::time::Duration;

use common::*;
use ironrack::bmc::ipmi::IpmiBmc;
use ironrack::bmc::{Bmc, BmcError, BootDevice, BootMode, BootSetting, PowerAction, PowerState};
use ironrack::ipmi::{BootFlags, SessionConfig};
use ironrack::profiles::Profiles;

async fn bmc(addr: std::net::SocketAddr, profile: &str) -> IpmiBmc {
    let quirks = Profiles::builtin()
        .unwrap()
        .get(profile)
        .unwrap()
        .ipmi
        .clone();
    let mut b = IpmiBmc::new(addr, SessionConfig::new(USER, PASSWORD.as_bytes()), quirks)
        .await
        .unwrap();
    b.poll_interval = Duration::from_millis(20);
    b.soft_timeout = Duration::from_secs(5);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_power_action_lands_in_the_simulator() {
    let fleet = fleet(1, |c| c.bmc.power_delay = Duration::from_millis(100)).await;
    let sim = &fleet.bmcs[0];
    let b = bmc(sim.addr, "generic").await;
    assert_eq!(b.driver(), "ipmi");
    b.validate().await.unwrap();

    let wait = |want: bool| async move {
        for _ in 0..200 {
            if sim.stats().power_on == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("power never became {want}");
    };
    // Reboot of a machine that is off powers it up.
    b.set_power(PowerAction::Reboot).await.unwrap();
    wait(true).await;
    assert_eq!(b.power_state().await.unwrap(), PowerState::On);
    let boots = sim.stats().boots;
    // Reboot of a running machine is a power cycle: a new boot.
    b.set_power(PowerAction::Reboot).await.unwrap();
    wait(true).await;
    for _ in 0..100 {
        if sim.stats().boots > boots {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sim.stats().boots > boots);
    // Soft reboot: soft off, wait for off, power on.
    let boots = sim.stats().boots;
    b.set_power(PowerAction::SoftReboot).await.unwrap();
    wait(true).await;
    assert!(sim.stats().boots > boots);
    b.set_power(PowerAction::SoftOff).await.unwrap();
    wait(false).await;
    b.set_power(PowerAction::On).await.unwrap();
    wait(true).await;
    b.set_power(PowerAction::Off).await.unwrap();
    wait(false).await;
    b.inject_nmi().await.unwrap();
    assert_eq!(sim.stats().nmi_count, 1);
    b.close().await;
    assert_eq!(sim.stats().sessions_active, 0);
    assert_eq!(sim.stats().sessions_opened, 1, "one session for all of it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_device_with_and_without_vendor_quirks() {
    let fleet = fleet(2, |_| {}).await;
    let generic = bmc(fleet.bmcs[0].addr, "generic").await;
    let uefi_disk = BootSetting {
        device: Some(BootDevice::Disk),
        persistent: true,
        mode: Some(BootMode::Uefi),
    };
    generic.set_boot_device(uefi_disk).await.unwrap();
    assert_eq!(generic.boot_device().await.unwrap(), uefi_disk);
    assert_eq!(fleet.bmcs[0].with(|b| b.machine.boot_flags[1]), 0x08);

    let smc = bmc(fleet.bmcs[1].addr, "supermicro").await;
    smc.set_boot_device(uefi_disk).await.unwrap();
    assert_eq!(
        fleet.bmcs[1].with(|b| b.machine.boot_flags[1]),
        0x24,
        "Supermicro's code"
    );
    let flags = fleet.bmcs[1].with(|b| BootFlags::parse(&b.machine.boot_flags).unwrap());
    assert!(flags.persistent && flags.uefi);

    let e = generic
        .set_boot_device(BootSetting {
            device: Some(BootDevice::UefiHttp),
            persistent: false,
            mode: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(e, BmcError::Unsupported(_)), "{e:?}");
    assert!(!generic
        .supported_boot_devices()
        .await
        .unwrap()
        .contains(&BootDevice::UefiHttp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_errors() {
    let fleet = fleet(2, |c| {
        c.bmc.nmi = false;
        c.unresponsive = vec![1];
    })
    .await;
    // The BMC refuses the NMI: its completion code comes back.
    let b = bmc(fleet.bmcs[0].addr, "generic").await;
    match b.inject_nmi().await {
        Err(BmcError::Rejected { code, .. }) => assert_eq!(code.as_deref(), Some("0xcc")),
        other => panic!("{other:?}"),
    }
    // The profile knows there is no NMI: refused before anything is sent.
    let sim_profile = bmc(fleet.bmcs[0].addr, "ipmi-sim").await;
    assert!(matches!(
        sim_profile.inject_nmi().await,
        Err(BmcError::Unsupported(_))
    ));

    // Wrong password: an auth error.
    let quirks = Profiles::builtin()
        .unwrap()
        .get("generic")
        .unwrap()
        .ipmi
        .clone();
    let bad = IpmiBmc::new(
        fleet.bmcs[0].addr,
        SessionConfig::new(USER, b"wrong"),
        quirks.clone(),
    )
    .await
    .unwrap();
    assert!(matches!(
        bad.power_state().await,
        Err(BmcError::AuthFailed(_))
    ));

    // Unresponsive: a timeout within the configured bound.
    let mut cfg = SessionConfig::new(USER, PASSWORD.as_bytes());
    cfg.command_timeout = Duration::from_millis(800);
    let dead = IpmiBmc::new(fleet.bmcs[1].addr, cfg, quirks).await.unwrap();
    assert!(matches!(
        dead.power_state().await,
        Err(BmcError::Timeout(_))
    ));
}
