//! The Redfish client and `RedfishBmc` against a real peer: `sushy-emulator
//! --fake` (sushy-tools, installed into `.venv` by scripts/install-peers.sh).
//!
//! Each test starts its own emulator on a free loopback port, with its own
//! state directory and HTTP basic auth (a bcrypt htpasswd file). Every effect
//! is checked independently with plain `reqwest` GETs, never through the
//! client under test. The emulator's access log (werkzeug, on stderr) serves
//! as the request counter for "nothing was sent" checks.
//!
//! Fake-driver facts these tests rely on (sushy-tools 2.2.0):
//! * power changes land 1-11 s after the request; `ForceRestart` /
//!   `GracefulRestart` go Off at once and On later;
//! * `ResetType@Redfish.AllowableValues` lists On, ForceOff, GracefulShutdown,
//!   GracefulRestart, ForceRestart, Nmi, ForceOn (no PowerCycle), and the fake
//!   driver answers 501 to `Nmi`;
//! * `BootSourceOverrideEnabled` is always reported as `Continuous` (the PATCH
//!   value is ignored), so a one-time override can only be checked by target;
//! * boot targets offered: Pxe, Cd, Hdd (+ UefiHttp in UEFI mode), no BiosSetup;
//! * there is no SessionService, so the client falls back to basic auth;
//! * virtual media insert downloads the image, so tests serve one locally.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::sushy::{FakeSystem, Sushy};
use common::{PASSWORD, USER};
use ironrack::bmc::redfish::RedfishBmc;
use ironrack::bmc::{Bmc, BmcError, BootDevice, BootMode, BootSetting, PowerAction, PowerState};
use ironrack::redfish::RedfishConfig;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE_A: &str = "1a5e6d2c-0000-4000-8000-00000000000a";
const NODE_B: &str = "1a5e6d2c-0000-4000-8000-00000000000b";
const NODE_ONLY: &str = "1a5e6d2c-0000-4000-8000-0000000000c1";
const RESET_POST: &str = "/Actions/ComputerSystem.Reset HTTP";

/// A one-file HTTP server for virtual media images; counts GETs served.
async fn image_server(body: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                let _ = sock.write_all(body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/ironrack-test.iso"), hits)
}

fn two_systems() -> [FakeSystem; 2] {
    [
        FakeSystem {
            uuid: NODE_A,
            name: "node-a",
            power: "Off",
        },
        FakeSystem {
            uuid: NODE_B,
            name: "node-b",
            power: "On",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_by_id_path_and_errors() {
    let sushy = Sushy::start(&two_systems()).await;

    // Two systems and none configured: a configuration error naming both.
    let err = sushy.bmc(None).validate().await.unwrap_err();
    match &err {
        BmcError::Config(m) => assert!(m.contains(NODE_A) && m.contains(NODE_B), "{m}"),
        other => panic!("want Config, got {other:?}"),
    }

    // By id (the member's last path segment / Id).
    let b = sushy.bmc(Some(NODE_B));
    b.validate().await.unwrap();
    assert_eq!(b.power_state().await.unwrap(), PowerState::On);
    assert_eq!(b.driver(), "redfish");
    assert_eq!(
        b.manufacturer().await.unwrap().as_deref(),
        Some("Sushy Emulator")
    );

    // By full path.
    let a = sushy.bmc(Some(&format!("/redfish/v1/Systems/{NODE_A}")));
    a.validate().await.unwrap();
    assert_eq!(a.power_state().await.unwrap(), PowerState::Off);

    // By the quirk's system_path.
    let mut cfg = sushy.config(None);
    cfg.quirks.system_path = Some(format!("/redfish/v1/Systems/{NODE_B}"));
    let q = RedfishBmc::new(cfg).unwrap();
    assert_eq!(q.power_state().await.unwrap(), PowerState::On);

    // Unknown id: the members are listed.
    let err = sushy
        .bmc(Some("no-such-node"))
        .validate()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BmcError::Config(m) if m.contains("no-such-node") && m.contains(NODE_A)),
        "{err:?}"
    );

    // Wrong password: typed auth failure (no SessionService on sushy, so this
    // is basic auth), and the password never shows in the error.
    let mut cfg = sushy.config(Some(NODE_A));
    cfg.password = "not-the-password".to_owned().into();
    let bad = RedfishBmc::new(cfg).unwrap();
    let err = bad.validate().await.unwrap_err();
    assert!(matches!(&err, BmcError::AuthFailed(_)), "{err:?}");
    assert!(!err.to_string().contains("not-the-password"));
    assert!(!format!("{bad:?}").contains("not-the-password"));

    // Nothing listens: unreachable, not a panic.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = RedfishConfig::new(format!("http://127.0.0.1:{dead_port}"), USER, PASSWORD);
    cfg.system_id = Some(NODE_A.into());
    let err = RedfishBmc::new(cfg).unwrap().validate().await.unwrap_err();
    assert!(matches!(&err, BmcError::Unreachable(_)), "{err:?}");

    for bmc in [b, a, q, bad] {
        bmc.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_actions_through_the_trait() {
    let sushy = Sushy::start(&two_systems()).await;
    let plain = sushy.plain();
    let bmc = sushy.bmc(Some(NODE_A));
    let resets = || sushy.requests(&format!("POST /redfish/v1/Systems/{NODE_A}{RESET_POST}"));

    assert_eq!(plain.power(NODE_A).await, "Off");
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);

    // on (ResetType On)
    bmc.set_power(PowerAction::On).await.unwrap();
    plain.wait_power(NODE_A, "On").await;
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::On);

    // on again: already on, nothing is sent
    let before = resets();
    bmc.set_power(PowerAction::On).await.unwrap();
    assert_eq!(resets(), before);

    // soft off (GracefulShutdown)
    bmc.set_power(PowerAction::SoftOff).await.unwrap();
    plain.wait_power(NODE_A, "Off").await;
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);

    // reboot (ForceRestart) from off: the node comes up
    bmc.set_power(PowerAction::Reboot).await.unwrap();
    plain.wait_power(NODE_A, "On").await;

    // off (ForceOff)
    bmc.set_power(PowerAction::Off).await.unwrap();
    plain.wait_power(NODE_A, "Off").await;
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);

    // soft reboot (GracefulRestart) from off: the node comes up
    bmc.set_power(PowerAction::SoftReboot).await.unwrap();
    plain.wait_power(NODE_A, "On").await;

    // reboot from on: goes through Off and back On
    let before = resets();
    bmc.set_power(PowerAction::Reboot).await.unwrap();
    let seen = plain.wait_power(NODE_A, "On").await;
    assert_eq!(resets(), before + 1);
    eprintln!("reboot from on, states seen: {seen:?}");

    // cycle: sushy offers no PowerCycle, so ForceOff, wait for Off, then On
    let before = resets();
    bmc.set_power(PowerAction::Cycle).await.unwrap();
    plain.wait_power(NODE_A, "On").await;
    assert_eq!(resets(), before + 2, "cycle = ForceOff + On");

    // The other system was never touched.
    assert_eq!(plain.power(NODE_B).await, "On");
    assert_eq!(
        sushy.requests(&format!("POST /redfish/v1/Systems/{NODE_B}")),
        0
    );
    bmc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_actions_are_refused_locally() {
    let sushy = Sushy::start(&two_systems()).await;
    let plain = sushy.plain();
    let resets = || sushy.requests(&format!("POST /redfish/v1/Systems/{NODE_B}{RESET_POST}"));
    let patches = || sushy.requests(&format!("PATCH /redfish/v1/Systems/{NODE_B}"));

    // A profile that substitutes ForceOff with PushPowerButton, which sushy
    // does not list: off and cycle are refused without a request.
    let mut cfg = sushy.config(Some(NODE_B));
    cfg.quirks
        .reset_substitutions
        .insert("ForceOff".into(), "PushPowerButton".into());
    let bmc = RedfishBmc::new(cfg).unwrap();
    bmc.validate().await.unwrap();

    for action in [PowerAction::Off, PowerAction::Cycle] {
        let err = bmc.set_power(action).await.unwrap_err();
        assert!(
            matches!(&err, BmcError::Unsupported(m) if m.contains("PushPowerButton")),
            "{action:?}: {err:?}"
        );
    }
    assert_eq!(resets(), 0, "no reset reached the emulator");

    // BIOS setup is not among sushy's boot targets: refused, nothing sent.
    let err = bmc
        .set_boot_device(BootSetting {
            device: Some(BootDevice::Bios),
            persistent: false,
            mode: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BmcError::Unsupported(m) if m.contains("BiosSetup")),
        "{err:?}"
    );
    let err = bmc
        .set_boot_device(BootSetting {
            device: Some(BootDevice::Safe),
            persistent: false,
            mode: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(&err, BmcError::Unsupported(_)), "{err:?}");
    assert_eq!(patches(), 0, "no PATCH reached the emulator");

    // Nmi *is* listed, so it is sent; the fake driver answers 501, which
    // comes back as Unsupported from the BMC.
    let err = bmc.inject_nmi().await.unwrap_err();
    assert!(
        matches!(&err, BmcError::Unsupported(m) if m.contains("501")),
        "{err:?}"
    );
    assert_eq!(resets(), 1, "exactly one reset (the Nmi) was sent");

    // The node stayed on throughout.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(plain.power(NODE_B).await, "On");
    bmc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_device_set_and_get() {
    let sushy = Sushy::start(&two_systems()).await;
    let plain = sushy.plain();
    let bmc = sushy.bmc(Some(NODE_A));
    let boot = |v: &Value| v["Boot"].clone();

    let mut supported = bmc.supported_boot_devices().await.unwrap();
    supported.sort_by_key(|d| d.name());
    assert_eq!(
        supported,
        vec![
            BootDevice::Cdrom,
            BootDevice::Disk,
            BootDevice::Pxe,
            BootDevice::UefiHttp
        ]
    );

    // PXE, once. (The fake driver reports Continuous whatever is sent, so
    // only the target can be checked on the peer.)
    bmc.set_boot_device(BootSetting {
        device: Some(BootDevice::Pxe),
        persistent: false,
        mode: None,
    })
    .await
    .unwrap();
    let b = boot(&plain.system(NODE_A).await);
    assert_eq!(b["BootSourceOverrideTarget"], "Pxe");
    assert_eq!(
        bmc.boot_device().await.unwrap().device,
        Some(BootDevice::Pxe)
    );

    // CD-ROM, continuous, UEFI.
    bmc.set_boot_device(BootSetting {
        device: Some(BootDevice::Cdrom),
        persistent: true,
        mode: Some(BootMode::Uefi),
    })
    .await
    .unwrap();
    let b = boot(&plain.system(NODE_A).await);
    assert_eq!(b["BootSourceOverrideTarget"], "Cd");
    assert_eq!(b["BootSourceOverrideEnabled"], "Continuous");
    assert_eq!(b["BootSourceOverrideMode"], "UEFI");
    assert_eq!(
        bmc.boot_device().await.unwrap(),
        BootSetting {
            device: Some(BootDevice::Cdrom),
            persistent: true,
            mode: Some(BootMode::Uefi)
        }
    );

    // Disk, continuous, legacy BIOS mode: UefiHttp is no longer offered.
    bmc.set_boot_device(BootSetting {
        device: Some(BootDevice::Disk),
        persistent: true,
        mode: Some(BootMode::Bios),
    })
    .await
    .unwrap();
    let b = boot(&plain.system(NODE_A).await);
    assert_eq!(b["BootSourceOverrideTarget"], "Hdd");
    assert_eq!(b["BootSourceOverrideMode"], "Legacy");
    assert_eq!(
        bmc.boot_device().await.unwrap(),
        BootSetting {
            device: Some(BootDevice::Disk),
            persistent: true,
            mode: Some(BootMode::Bios)
        }
    );
    assert!(!bmc
        .supported_boot_devices()
        .await
        .unwrap()
        .contains(&BootDevice::UefiHttp));

    // Back to UEFI, PXE once, with the full-object quirk (target, enabled and
    // the current mode in one PATCH).
    let mut cfg = sushy.config(Some(NODE_A));
    cfg.quirks.boot_patch_full_object = true;
    let full = RedfishBmc::new(cfg).unwrap();
    full.set_boot_device(BootSetting {
        device: Some(BootDevice::Pxe),
        persistent: false,
        mode: Some(BootMode::Uefi),
    })
    .await
    .unwrap();
    let b = boot(&plain.system(NODE_A).await);
    assert_eq!(b["BootSourceOverrideTarget"], "Pxe");
    assert_eq!(b["BootSourceOverrideMode"], "UEFI");

    // sushy accepts Continuous, so no re-assertion is needed.
    assert!(!bmc.needs_reassert() && !full.needs_reassert());
    // The other system kept its default.
    assert_eq!(
        boot(&plain.system(NODE_B).await)["BootSourceOverrideTarget"],
        "Hdd"
    );
    bmc.close().await;
    full.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_media_insert_and_eject_single_system() {
    // One system and no system_id: the "only member" rule picks it.
    let sushy = Sushy::start(&[FakeSystem {
        uuid: NODE_ONLY,
        name: "only",
        power: "Off",
    }])
    .await;
    let plain = sushy.plain();
    let bmc = sushy.bmc(None);
    bmc.validate().await.unwrap();
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);

    let (url, hits) = image_server(b"not really an ISO, but sushy only downloads it\n").await;

    let status = bmc.virtual_media().await.unwrap();
    // Found through the manager's VirtualMedia link (sushy points it at the
    // system's collection) and picked for its CD/DVD media types.
    assert_eq!(
        status.path,
        format!("/redfish/v1/Systems/{NODE_ONLY}/VirtualMedia/Cd")
    );
    assert!(!status.inserted);
    assert_eq!(status.image, None);

    bmc.insert_virtual_media(&url).await.unwrap();
    assert!(hits.load(Ordering::SeqCst) >= 1, "sushy fetched the image");
    let vm = plain.get(&status.path).await;
    assert_eq!(vm["Image"], url.as_str());
    assert_eq!(vm["Inserted"], true);
    assert_eq!(vm["WriteProtected"], true);
    let now = bmc.virtual_media().await.unwrap();
    assert!(now.inserted);
    assert_eq!(now.image.as_deref(), Some(url.as_str()));

    // Inserting the same image again is a no-op.
    let inserts = || sushy.requests("VirtualMedia.InsertMedia HTTP");
    let ejects = || sushy.requests("VirtualMedia.EjectMedia HTTP");
    let before = inserts();
    bmc.insert_virtual_media(&url).await.unwrap();
    assert_eq!(inserts(), before);

    // Another image: the old one is ejected first.
    let url2 = url.replace(".iso", "-2.iso");
    let (ins, ej) = (inserts(), ejects());
    bmc.insert_virtual_media(&url2).await.unwrap();
    assert_eq!((inserts(), ejects()), (ins + 1, ej + 1));
    assert_eq!(plain.get(&status.path).await["Image"], url2.as_str());

    bmc.eject_virtual_media().await.unwrap();
    let vm = plain.get(&status.path).await;
    assert_eq!(vm["Inserted"], false);
    assert_eq!(vm["Image"], "");
    assert!(!bmc.virtual_media().await.unwrap().inserted);
    // Ejecting an empty drive sends nothing.
    let before = ejects();
    bmc.eject_virtual_media().await.unwrap();
    assert_eq!(ejects(), before);

    // An image the emulator cannot fetch: its Redfish error body comes back
    // as a typed rejection (after the bounded 5xx retries).
    let err = bmc
        .insert_virtual_media("http://127.0.0.1:1/missing.iso")
        .await
        .unwrap_err();
    match &err {
        BmcError::Rejected { code, message } => {
            assert_eq!(code.as_deref(), Some("Base.1.0.GeneralError"));
            assert!(message.contains("Failed fetching image"), "{message}");
        }
        other => panic!("want Rejected, got {other:?}"),
    }
    assert_eq!(plain.get(&status.path).await["Inserted"], false);
    bmc.close().await;
}
