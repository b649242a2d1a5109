//! `ironrack sim` proven by real clients: ipmitool (-C 3 and -C 17) and FreeIPMI's
//! ipmipower. Then our own async client and CLI against the simulator over UDP.

mod common;

use std::time::Duration;

use common::*;
use ironrack::ipmi::{
    BootDevice, BootFlags, ChassisControl, IpmiClient, IpmiError, PowerState, SessionConfig,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_drives_the_simulator_with_suites_3_and_17() {
    let dir = Scratch::new("ipmitool");
    let pw = dir.file("pw", PASSWORD);
    let fleet = fleet(2, |_| {}).await;
    for (i, suite) in [3u8, 17].into_iter().enumerate() {
        let bmc = &fleet.bmcs[i];
        let port = bmc.addr.port();
        let o = run(&mut ipmitool(
            port,
            suite,
            &pw,
            &["chassis", "power", "status"],
        ))
        .await;
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Chassis Power is off"),
            "{}",
            text(&o)
        );

        let o = run(&mut ipmitool(port, suite, &pw, &["chassis", "power", "on"])).await;
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            bmc.stats().power_on,
            "suite {suite}: power on landed in the simulator"
        );
        let o = run(&mut ipmitool(
            port,
            suite,
            &pw,
            &["chassis", "power", "status"],
        ))
        .await;
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Chassis Power is on"),
            "{}",
            text(&o)
        );

        let o = run(&mut ipmitool(
            port,
            suite,
            &pw,
            &["chassis", "power", "diag"],
        ))
        .await;
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(bmc.stats().nmi_count, 1);

        let o = run(&mut ipmitool(
            port,
            suite,
            &pw,
            &["chassis", "power", "reset"],
        ))
        .await;
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(bmc.stats().resets, 1);

        let o = run(&mut ipmitool(
            port,
            suite,
            &pw,
            &["chassis", "bootdev", "pxe", "options=persistent,efiboot"],
        ))
        .await;
        assert!(o.status.success(), "{}", text(&o));
        let flags = bmc.with(|b| BootFlags::parse(&b.machine.boot_flags).unwrap());
        assert_eq!(flags, BootFlags::new(BootDevice::Pxe, true, true));
        let o = run(&mut ipmitool(
            port,
            suite,
            &pw,
            &["chassis", "bootparam", "get", "5"],
        ))
        .await;
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("Force PXE") && out.contains("all future boots"),
            "{}",
            text(&o)
        );

        let o = run(&mut ipmitool(
            port,
            suite,
            &pw,
            &["chassis", "power", "soft"],
        ))
        .await;
        assert!(o.status.success(), "{}", text(&o));
        assert!(!bmc.stats().power_on);

        let o = run(&mut ipmitool(port, suite, &pw, &["mc", "info"])).await;
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("IPMI Version              : 2.0"),
            "{}",
            text(&o)
        );
    }
    // Every ipmitool call closed its session.
    for b in &fleet.bmcs {
        assert_eq!(b.stats().sessions_active, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_with_a_wrong_password_is_refused() {
    let dir = Scratch::new("ipmitool-bad");
    let pw = dir.file("pw", "not-the-password");
    let fleet = fleet(1, |_| {}).await;
    let o = run(&mut ipmitool(
        fleet.bmcs[0].addr.port(),
        17,
        &pw,
        &["chassis", "power", "status"],
    ))
    .await;
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Unable to establish IPMI v2"),
        "{}",
        text(&o)
    );
    let s = fleet.bmcs[0].stats();
    assert_eq!((s.sessions_opened, s.sessions_active), (0, 0), "{s:?}");
}

fn ipmipower(
    conf: &std::path::Path,
    hosts: &str,
    suite: u8,
    action: &str,
) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(require("ipmipower"));
    c.arg("--config-file").arg(conf).args([
        "-D",
        "LAN_2_0",
        "-h",
        hosts,
        "-I",
        &suite.to_string(),
        action,
    ]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmipower_drives_a_simulated_fleet() {
    let dir = Scratch::new("ipmipower");
    let conf = dir.file(
        "freeipmi.conf",
        &format!("username {USER}\npassword {PASSWORD}\n"),
    );
    let fleet = fleet(4, |_| {}).await;
    for suite in [3u8, 17] {
        let hosts: Vec<String> = fleet
            .bmcs
            .iter()
            .map(|b| format!("127.0.0.1:{}", b.addr.port()))
            .collect();
        let hosts = hosts.join(",");
        let o = run(&mut ipmipower(&conf, &hosts, suite, "--on")).await;
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            fleet.bmcs.iter().all(|b| b.stats().power_on),
            "{}",
            text(&o)
        );
        let o = run(&mut ipmipower(&conf, &hosts, suite, "--stat")).await;
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(out.matches(": on").count(), 4, "{}", text(&o));
        let o = run(&mut ipmipower(&conf, &hosts, suite, "--off")).await;
        assert!(o.status.success(), "{}", text(&o));
        assert!(fleet.bmcs.iter().all(|b| !b.stats().power_on));
    }
}

fn cfg(suite: Option<u8>) -> SessionConfig {
    let mut c = SessionConfig::new(USER, PASSWORD.as_bytes());
    c.cipher_suite = suite;
    c.command_timeout = Duration::from_secs(10);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_carries_many_commands_and_closes_on_shutdown() {
    let fleet = fleet(1, |_| {}).await;
    let bmc = &fleet.bmcs[0];
    let c = IpmiClient::new(bmc.addr, cfg(None)).await.unwrap();
    for _ in 0..25 {
        assert_eq!(c.power_state().await.unwrap(), PowerState::Off);
    }
    c.chassis_control(ChassisControl::PowerUp).await.unwrap();
    assert_eq!(c.power_state().await.unwrap(), PowerState::On);
    assert_eq!(c.info().suite, Some(17), "auto-selection prefers 17");
    let s = bmc.stats();
    assert_eq!(s.sessions_opened, 1);
    assert_eq!(s.sessions_active, 1);
    assert!(s.commands >= 27);
    c.close().await;
    assert_eq!(bmc.stats().sessions_active, 0, "Close Session was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_closes_the_session() {
    let fleet = fleet(1, |_| {}).await;
    let bmc = &fleet.bmcs[0];
    {
        let c = IpmiClient::new(bmc.addr, cfg(Some(3))).await.unwrap();
        c.power_state().await.unwrap();
        assert_eq!(bmc.stats().sessions_active, 1);
    }
    for _ in 0..100 {
        if bmc.stats().sessions_active == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("session still open after the client was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_and_reopen_over_udp() {
    let fleet = fleet(1, |c| c.bmc.session_timeout = Duration::from_millis(1500)).await;
    let bmc = &fleet.bmcs[0];
    let mut k = cfg(Some(17));
    k.keepalive = Some(Duration::from_millis(400));
    let c = IpmiClient::new(bmc.addr, k).await.unwrap();
    c.power_state().await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.power_state().await.unwrap();
    assert_eq!(bmc.stats().sessions_opened, 1, "keepalive held the session");
    assert!(c.info().stats.keepalives >= 3);

    // The BMC forgets every session (a BMC reset): the client re-opens by itself.
    bmc.with(|b| b.drop_sessions());
    assert_eq!(c.power_state().await.unwrap(), PowerState::Off);
    assert_eq!(bmc.stats().sessions_opened, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_packet_loss_completes() {
    let fleet = fleet(1, |c| c.loss = 0.2).await;
    let bmc = &fleet.bmcs[0];
    let mut k = cfg(None);
    k.retransmit_initial = Duration::from_millis(50);
    k.retransmit_max = Duration::from_millis(400);
    k.command_timeout = Duration::from_secs(30);
    let c = IpmiClient::new(bmc.addr, k).await.unwrap();
    for i in 0..40 {
        if i % 10 == 0 {
            c.chassis_control(if i % 20 == 0 {
                ChassisControl::PowerUp
            } else {
                ChassisControl::PowerDown
            })
            .await
            .unwrap();
        }
        let want = if (i / 10) % 2 == 0 {
            PowerState::On
        } else {
            PowerState::Off
        };
        assert_eq!(c.power_state().await.unwrap(), want, "command {i}");
    }
    assert!(c.info().stats.retransmits > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_unreachable_and_long_credentials_are_clear_errors() {
    let fleet = fleet(1, |_| {}).await;
    let mut bad = SessionConfig::new(USER, b"wrong-password");
    bad.command_timeout = Duration::from_secs(5);
    let c = IpmiClient::new(fleet.bmcs[0].addr, bad).await.unwrap();
    // An auth error, not the command timeout.
    assert!(matches!(
        c.power_state().await,
        Err(IpmiError::AuthFailed(_))
    ));

    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let mut k = cfg(None);
    k.command_timeout = Duration::from_millis(1500);
    let c = IpmiClient::new(dead, k).await.unwrap();
    // Bounded by the configured timeout, which the error names.
    let r = c.power_state().await;
    assert!(
        matches!(r, Err(IpmiError::Timeout(t)) if t == Duration::from_millis(1500)),
        "{r:?}"
    );

    let long = SessionConfig::new(USER, &[b'x'; 21]);
    assert!(matches!(
        IpmiClient::new(fleet.bmcs[0].addr, long).await,
        Err(IpmiError::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_fleet_mode_lines_summary_json_and_exit_status() {
    let dir = Scratch::new("cli");
    let pw = dir.file("pw", PASSWORD);
    let fleet = fleet(5, |c| c.unresponsive = vec![3]).await;
    let hosts = dir.file(
        "hosts",
        &fleet
            .bmcs
            .iter()
            .map(|b| format!("127.0.0.1:{}\n", b.addr.port()))
            .collect::<String>(),
    );
    let o = run(ironrack()
        .args(["ipmi", "--hosts-file"])
        .arg(&hosts)
        .args(["-U", USER, "-f"])
        .arg(&pw)
        .args(["--timeout", "2", "power", "on"]))
    .await;
    assert_eq!(o.status.code(), Some(1), "one BMC is dead: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("5 hosts: 4 ok, 1 failed"), "{}", text(&o));
    let dead = fleet.bmcs[3].addr.port();
    assert!(
        out.contains(&format!("127.0.0.1:{dead}: error: BMC did not answer")),
        "{}",
        text(&o)
    );
    for (i, b) in fleet.bmcs.iter().enumerate() {
        assert_eq!(b.stats().power_on, i != 3);
    }

    // JSON for one host, with the password from the environment.
    let o = run(ironrack()
        .env("IPMI_PASSWORD", PASSWORD)
        .args([
            "ipmi",
            "-H",
            &format!("127.0.0.1:{}", fleet.bmcs[0].addr.port()),
        ])
        .args(["-U", USER, "-E", "--json", "power", "status"]))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"power_state": "power on"}));

    // A password is never taken from argv.
    let o =
        run(ironrack().args(["ipmi", "-H", "127.0.0.1", "-P", PASSWORD, "power", "status"])).await;
    assert!(!o.status.success());
    assert!(!String::from_utf8_lossy(&o.stdout).contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_drive_boot_timeout_and_uefi_disk_quirks() {
    let dir = Scratch::new("profiles");
    let pw = dir.file("pw", PASSWORD);
    let pdir = dir.0.join("profiles");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::write(
        pdir.join("vendor.toml"),
        "name = \"vendor-x\"\n[ipmi]\ndisable_boot_timeout = true\nuefi_disk_device_byte = 0x24\n",
    )
    .unwrap();
    let fleet = fleet(2, |_| {}).await;
    let cli = |port: u16, profile: &str, args: &[&str]| {
        let mut c = ironrack();
        c.args(["ipmi", "-H", &format!("127.0.0.1:{port}"), "-U", USER, "-f"])
            .arg(&pw)
            .arg("--profiles-dir")
            .arg(&pdir)
            .args(["--profile", profile])
            .args(args);
        c
    };
    let (a, b) = (&fleet.bmcs[0], &fleet.bmcs[1]);
    let o = run(&mut cli(
        a.addr.port(),
        "vendor-x",
        &["bootdev", "set", "disk", "--uefi"],
    ))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        a.with(|m| m.machine.boot_param3),
        0x08,
        "parameter 3 written"
    );
    assert_eq!(
        a.with(|m| m.machine.boot_flags[1]),
        0x24,
        "vendor UEFI disk code"
    );

    let o = run(&mut cli(
        b.addr.port(),
        "generic",
        &["bootdev", "set", "disk", "--uefi"],
    ))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        b.with(|m| m.machine.boot_param3),
        0x00,
        "generic leaves parameter 3 alone"
    );
    assert_eq!(
        b.with(|m| m.machine.boot_flags[1]),
        0x08,
        "standard disk selector"
    );

    // A profile file that does not parse names the file and line.
    std::fs::write(
        pdir.join("broken.toml"),
        "name = \"b\"\n[ipmi]\ncipher_suite = \"x\"\n",
    )
    .unwrap();
    let o = run(&mut cli(a.addr.port(), "generic", &["power", "status"])).await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("broken.toml: line 3"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_is_matched_from_the_manufacturer_id() {
    let dir = Scratch::new("autoprofile");
    let pw = dir.file("pw", PASSWORD);
    // A "Supermicro" (IANA 10876) and an unknown vendor.
    let smc = fleet(1, |c| c.bmc.manufacturer_id = 10876).await;
    let other = fleet(1, |c| c.bmc.manufacturer_id = 4242).await;
    for (f, want) in [(&smc, 0x24u8), (&other, 0x08)] {
        let o = run(ironrack()
            .args([
                "ipmi",
                "-H",
                &format!("127.0.0.1:{}", f.bmcs[0].addr.port()),
                "-U",
                USER,
                "-f",
            ])
            .arg(&pw)
            .args(["bootdev", "set", "disk", "--uefi"]))
        .await;
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(f.bmcs[0].with(|b| b.machine.boot_flags[1]), want);
    }
}
