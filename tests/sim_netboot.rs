//! Simulated machines that really network-boot: `ironrack sim` BMCs driven
//! with ipmitool (`chassis bootdev pxe`, `chassis power on`) fetch their
//! per-MAC config from a real TFTP server of this crate, download the kernel
//! and ramdisk over TFTP or HTTP, and heartbeat to an HTTP server in the test
//! that records what arrives. Disk boots, a missing config, the
//! `fail_download` and `no_heartbeat` faults, refused heartbeats, a new boot
//! replacing the old one, the CLI flags and stats file, and the whole path
//! through `ironrack serve`'s own TFTP server and rendered configs.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use ironrack::boot::render::{render_node, BootMode, ConfigKind, RenderContext};
use ironrack::boot::tftp::server::{ServerConfig, TftpServer};
use ironrack::boot::RootDir;
use ironrack::sim::{Fleet, FleetConfig, Loader, NetbootStats, SimBmc};
use ironrack::store::{Node, Port};

use common::agent::{enroll, ipmi_node, Agent};
use common::{fleet, free_udp_port, ipmitool, ironrack, run, text, Scratch, PASSWORD};

const UUID: &str = "6f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
/// A node the heartbeat server refuses, as Ironic does one it does not know.
const REFUSED_UUID: &str = "00000000-0000-4000-8000-00000000dead";

const KERNEL_LEN: usize = 300_001;
const RAMDISK_LEN: usize = 1_234_567;

/// A deterministic body of `n` bytes.
fn blob(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

/// A boot root with a deploy kernel and ramdisk.
fn boot_root() -> Scratch {
    let dir = Scratch::new("simboot");
    for d in ["deploy", "pxelinux.cfg", "grub", "ipxe"] {
        std::fs::create_dir_all(dir.0.join(d)).unwrap();
    }
    std::fs::write(dir.0.join("deploy/vmlinuz"), blob(KERNEL_LEN, 1)).unwrap();
    std::fs::write(dir.0.join("deploy/initrd.img"), blob(RAMDISK_LEN, 2)).unwrap();
    dir
}

fn write(root: &Path, rel: &str, body: &str) -> usize {
    std::fs::write(root.join(rel), body).unwrap();
    body.len()
}

/// Kernel arguments as the agent renders them.
fn args(api: &str, uuid: &str, mac: &str) -> String {
    format!(
        "nofb nomodeset ipa-api-url={api} ipa-node-uuid={uuid} BOOTIF=01-{}",
        mac.replace(':', "-")
    )
}

/// The agent's renderer, for a node with the deploy images under the root.
fn rendered(
    mode: BootMode,
    api: &str,
    http_url: Option<&str>,
    mac: &str,
) -> Vec<(ConfigKind, String, String)> {
    let ctx = RenderContext {
        api_url: api.into(),
        http_url: http_url.map(str::to_string),
        default_boot_mode: mode,
        kernel_append_params: "nofb nomodeset".into(),
    };
    let node = Node {
        uuid: UUID.into(),
        driver: "ipmi".into(),
        driver_info: serde_json::from_value(
            json!({"deploy_kernel": "deploy/vmlinuz", "deploy_ramdisk": "/deploy/initrd.img"}),
        )
        .unwrap(),
        ..Node::default()
    };
    let port = Port {
        id: 1,
        uuid: "p".into(),
        address: mac.into(),
        node_uuid: UUID.into(),
        pxe_enabled: true,
        extra: Default::default(),
        local_link_connection: Default::default(),
        physical_network: None,
        created_at: String::new(),
        updated_at: None,
    };
    render_node(&node, &[port], &ctx)
        .unwrap()
        .into_iter()
        .map(|r| (r.kind, r.path, r.text))
        .collect()
}

// ------------------------------------------------------------ servers

/// The crate's TFTP server on an ephemeral loopback port; stops on drop.
struct Tftp {
    addr: SocketAddr,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn tftp(root: &Path) -> Tftp {
    let server = TftpServer::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default())
        .await
        .unwrap();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(server.run(Arc::new(RootDir::new(root).unwrap()), rx));
    Tftp { addr, _stop: tx }
}

#[derive(Clone, Debug)]
struct Beat {
    path: String,
    node: String,
    version: Option<String>,
    content_type: Option<String>,
    body: Value,
    at: Instant,
}

/// A deploy ramdisk's view of the conductor: heartbeats recorded (202, or
/// 400 for [`REFUSED_UUID`]), and the boot root served over HTTP by the
/// crate's HTTP boot server.
#[derive(Clone, Default)]
struct Beats(Arc<Mutex<Vec<Beat>>>);

impl Beats {
    fn all(&self) -> Vec<Beat> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

async fn heartbeat(
    State(beats): State<Beats>,
    UrlPath(node): UrlPath<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    beats.0.lock().unwrap().push(Beat {
        path: format!("/v1/heartbeat/{node}"),
        node: node.clone(),
        version: h("x-openstack-ironic-api-version"),
        content_type: h("content-type"),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        at: Instant::now(),
    });
    if node == REFUSED_UUID {
        let msg = json!({"faultstring": format!("Node {node} could not be found."), "faultcode": "Client"});
        (
            StatusCode::NOT_FOUND,
            Json(json!({"error_message": msg.to_string()})),
        )
    } else {
        (StatusCode::ACCEPTED, Json(Value::Null))
    }
}

/// Returns `http://127.0.0.1:PORT` and the heartbeats it records.
async fn http_server(root: &Path) -> (String, Beats) {
    let beats = Beats::default();
    let app = Router::new()
        .route("/v1/heartbeat/{node}", post(heartbeat))
        .with_state(beats.clone())
        .merge(ironrack::boot::http::router(Arc::new(
            RootDir::new(root).unwrap(),
        )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), beats)
}

// ------------------------------------------------------------ helpers

async fn sim_fleet(count: usize, boot_server: SocketAddr) -> Fleet {
    sim_fleet_with(count, boot_server, |_| {}).await
}

/// BMC i has MAC 52:54:00:10:00:0i and netboots from `boot_server`,
/// heartbeating every 200 ms.
async fn sim_fleet_with(
    count: usize,
    boot_server: SocketAddr,
    tweak: impl FnOnce(&mut FleetConfig),
) -> Fleet {
    fleet(count, |c| {
        c.bmc.mac = Some("52:54:00:10:00:00".parse().unwrap());
        c.bmc.netboot.boot_server = Some(boot_server);
        c.bmc.netboot.heartbeat_interval = Duration::from_millis(200);
        c.bmc.netboot.heartbeat_timeout = Duration::from_secs(5);
        tweak(c);
    })
    .await
}

/// ipmitool against BMC `bmc`; must succeed.
async fn ipmi(bmc: &SimBmc, pw: &Path, args: &[&str]) {
    let o = run(&mut ipmitool(bmc.addr.port(), 17, pw, args)).await;
    assert!(o.status.success(), "ipmitool {args:?}: {}", text(&o));
}

async fn wait_for(
    bmc: &SimBmc,
    what: &str,
    secs: u64,
    done: impl Fn(&NetbootStats) -> bool,
) -> NetbootStats {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = bmc.netboot_stats();
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {secs} s: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_beats(beats: &Beats, n: usize) -> Vec<Beat> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while beats.count() < n {
        assert!(
            Instant::now() < deadline,
            "{} heartbeat(s) of {n}",
            beats.count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    beats.all()
}

fn pwfile(s: &Scratch) -> std::path::PathBuf {
    s.file("pw", PASSWORD)
}

fn check_beat(b: &Beat, uuid: &str, bmc: &SimBmc) {
    assert_eq!(b.path, format!("/v1/heartbeat/{uuid}"));
    assert_eq!(b.node, uuid);
    assert_eq!(b.version.as_deref(), Some("1.36"));
    assert!(
        b.content_type
            .as_deref()
            .unwrap_or("")
            .starts_with("application/json"),
        "{b:?}"
    );
    assert_eq!(
        b.body["callback_url"],
        format!("http://127.0.0.1:{}", bmc.addr.port()),
        "{b:?}"
    );
    assert_eq!(
        b.body["agent_version"],
        format!("ironrack-sim {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(b.body.as_object().unwrap().len(), 2, "{b:?}");
}

// ------------------------------------------------------------ tests

/// BIOS PXE, once: the agent's PXELINUX config over TFTP, kernel and ramdisk
/// over TFTP with the right sizes, heartbeats at the interval until power
/// off; the next power on boots the disk (the override was used up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pxelinux_boot_downloads_and_heartbeats() {
    let root = boot_root();
    let (api, beats) = http_server(&root.0).await;
    let tftp = tftp(&root.0).await;
    let fleet = sim_fleet(2, tftp.addr).await;
    let bmc = &fleet.bmcs[1];
    assert_eq!(fleet.macs(), ["52:54:00:10:00:00", "52:54:00:10:00:01"]);
    assert_eq!(bmc.stats().mac.as_deref(), Some("52:54:00:10:00:01"));
    let r = rendered(BootMode::Bios, &api, None, &bmc.mac());
    assert_eq!(r[0].1, "pxelinux.cfg/01-52-54-00-10-00-01");
    let cfg_len = write(&root.0, &r[0].1, &r[0].2);
    let pw = pwfile(&root);

    ipmi(bmc, &pw, &["chassis", "bootdev", "pxe"]).await;
    ipmi(bmc, &pw, &["chassis", "power", "on"]).await;
    let beats_now = wait_beats(&beats, 3).await;
    for b in &beats_now {
        check_beat(b, UUID, bmc);
    }
    // The first at once, then every 200 ms.
    let gap = beats_now[2].at - beats_now[1].at;
    assert!(
        gap >= Duration::from_millis(150) && gap < Duration::from_secs(2),
        "{gap:?}"
    );
    let s = bmc.netboot_stats();
    assert_eq!(s.netboots, 1);
    assert_eq!(s.configs_fetched, 1);
    assert_eq!(s.tftp_files, 2, "{s:#?}");
    assert_eq!(s.tftp_bytes, (cfg_len + KERNEL_LEN + RAMDISK_LEN) as u64);
    assert_eq!((s.http_files, s.http_bytes), (0, 0));
    assert_eq!(s.download_failures, 0);
    assert_eq!(s.state, "heartbeating");
    assert_eq!(
        s.last_config.as_deref(),
        Some("pxelinux.cfg/01-52-54-00-10-00-01")
    );
    assert_eq!(s.node_uuid.as_deref(), Some(UUID));
    assert_eq!(s.api_url.as_deref(), Some(api.as_str()));
    assert!(
        s.heartbeats_accepted >= 3 && s.heartbeats_refused == 0,
        "{s:#?}"
    );
    assert_eq!(s.last_heartbeat_status, Some(202));
    assert_eq!(s.last_error, None);
    // The other machine did nothing.
    assert_eq!(fleet.bmcs[0].netboot_stats().netboots, 0);
    // Also in BmcStats (what the stats file holds).
    assert_eq!(bmc.stats().netboot.configs_fetched, 1);

    // Power off: the heartbeats stop.
    ipmi(bmc, &pw, &["chassis", "power", "off"]).await;
    let s = wait_for(bmc, "state off", 10, |s| s.state == "off").await;
    let n = beats.count();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(beats.count() <= n + 1, "heartbeats after power off");
    assert_eq!(bmc.netboot_stats().heartbeats_sent, s.heartbeats_sent);

    // Power on again: the one-time PXE was used up, the disk boots.
    let n = beats.count();
    ipmi(bmc, &pw, &["chassis", "power", "on"]).await;
    let s = wait_for(bmc, "disk boot", 10, |s| s.disk_boots == 1).await;
    assert_eq!(s.state, "disk");
    assert_eq!((s.netboots, s.configs_fetched, s.tftp_files), (1, 1, 2));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(beats.count(), n);
    assert_eq!(fleet.netboot_totals().tftp_files, 2);
}

/// UEFI PXE: the GRUB config; the kernel over TFTP and the ramdisk over HTTP
/// (`(http,host:port)/path`), sizes checked against Content-Length. The
/// power-on takes 300 ms to land, and the boot follows with nobody asking
/// the BMC anything. The
/// power-on takes 300 ms to land, and the boot follows with nobody asking
/// the BMC anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grub_boot_mixes_tftp_and_http() {
    let root = boot_root();
    let (api, beats) = http_server(&root.0).await;
    let tftp = tftp(&root.0).await;
    let fleet = sim_fleet_with(1, tftp.addr, |c| {
        c.bmc.power_delay = Duration::from_millis(300)
    })
    .await;
    let bmc = &fleet.bmcs[0];
    let mac = bmc.mac();
    let host = api.trim_start_matches("http://");
    let cfg = format!(
        "set default=deploy\nset timeout=5\n\nmenuentry \"deploy\" {{\n    \
         linux /deploy/vmlinuz {}\n    initrd (http,{host})/deploy/initrd.img\n}}\n",
        args(&api, UUID, &mac)
    );
    let cfg_len = write(&root.0, "grub/grub.cfg-01-52-54-00-10-00-00", &cfg);
    // A PXELINUX config too: the UEFI flag must pick GRUB.
    write(&root.0, "pxelinux.cfg/01-52-54-00-10-00-00", "garbage\n");
    let pw = pwfile(&root);
    ipmi(bmc, &pw, &["chassis", "bootdev", "pxe", "options=efiboot"]).await;
    let asked = Instant::now();
    ipmi(bmc, &pw, &["chassis", "power", "on"]).await;
    // ipmitool is gone; the transition lands on the BMC's own timer.
    wait_for(bmc, "netboot", 10, |s| s.netboots == 1).await;
    assert!(asked.elapsed() >= Duration::from_millis(300));
    let b = wait_beats(&beats, 1).await;
    check_beat(&b[0], UUID, bmc);
    let s = bmc.netboot_stats();
    assert_eq!(
        s.last_config.as_deref(),
        Some("grub/grub.cfg-01-52-54-00-10-00-00")
    );
    assert_eq!(
        (s.tftp_files, s.tftp_bytes),
        (1, (cfg_len + KERNEL_LEN) as u64)
    );
    assert_eq!((s.http_files, s.http_bytes), (1, RAMDISK_LEN as u64));
}

/// iPXE: the script over TFTP, then kernel and ramdisk over HTTP from the
/// URLs the agent's renderer puts in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipxe_downloads_over_http() {
    let root = boot_root();
    let (api, beats) = http_server(&root.0).await;
    let tftp = tftp(&root.0).await;
    let fleet = sim_fleet(1, tftp.addr).await;
    let bmc = &fleet.bmcs[0];
    bmc.update_netboot(|n| n.loader = Loader::Ipxe);
    let r = rendered(BootMode::Uefi, &api, Some(&api), &bmc.mac());
    assert_eq!(r[1].1, "ipxe/52:54:00:10:00:00.ipxe");
    let script_len = write(&root.0, &r[1].1, &r[1].2);
    let pw = pwfile(&root);
    ipmi(bmc, &pw, &["chassis", "bootdev", "pxe", "options=efiboot"]).await;
    ipmi(bmc, &pw, &["chassis", "power", "on"]).await;
    let b = wait_beats(&beats, 2).await;
    check_beat(&b[0], UUID, bmc);
    let s = bmc.netboot_stats();
    assert_eq!(
        s.last_config.as_deref(),
        Some("ipxe/52:54:00:10:00:00.ipxe")
    );
    assert_eq!((s.tftp_files, s.tftp_bytes), (0, script_len as u64));
    assert_eq!(
        (s.http_files, s.http_bytes),
        (2, (KERNEL_LEN + RAMDISK_LEN) as u64)
    );
}

/// Boot device disk: nothing is fetched, no heartbeat. PXE without a config
/// for the MAC: TFTP file not found, the machine boots the disk and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_boot_and_missing_config() {
    let root = boot_root();
    let (api, beats) = http_server(&root.0).await;
    let tftp = tftp(&root.0).await;
    let fleet = sim_fleet(2, tftp.addr).await;
    let pw = pwfile(&root);
    // Configs exist for both: only the boot device decides.
    for b in &fleet.bmcs {
        let r = rendered(BootMode::Bios, &api, None, &b.mac());
        write(&root.0, &r[0].1, &r[0].2);
    }
    let disk = &fleet.bmcs[0];
    ipmi(disk, &pw, &["chassis", "bootdev", "disk"]).await;
    ipmi(disk, &pw, &["chassis", "power", "on"]).await;
    let s = wait_for(disk, "disk boot", 10, |s| s.disk_boots == 1).await;
    assert_eq!(s.state, "disk");
    // No boot override at all: the disk too (a power cycle is a boot).
    ipmi(disk, &pw, &["chassis", "power", "cycle"]).await;
    wait_for(disk, "second disk boot", 10, |s| s.disk_boots == 2).await;

    let missing = &fleet.bmcs[1];
    std::fs::remove_file(root.0.join("pxelinux.cfg/01-52-54-00-10-00-01")).unwrap();
    ipmi(missing, &pw, &["chassis", "bootdev", "pxe"]).await;
    ipmi(missing, &pw, &["chassis", "power", "on"]).await;
    let s = wait_for(missing, "fallback", 10, |s| s.disk_fallbacks == 1).await;
    assert_eq!(s.state, "disk");
    assert_eq!(
        (s.netboots, s.configs_fetched, s.download_failures),
        (1, 0, 0)
    );
    let e = s.last_error.unwrap();
    assert!(
        e.contains("pxelinux.cfg/01-52-54-00-10-00-01: file not found"),
        "{e}"
    );

    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = disk.netboot_stats();
    assert_eq!(
        (s.netboots, s.configs_fetched, s.tftp_bytes, s.http_bytes),
        (0, 0, 0, 0)
    );
    assert_eq!(beats.count(), 0);
}

/// The faults: `fail_download` asks for a kernel that is not there and never
/// heartbeats; `no_heartbeat` downloads everything and stays silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_and_heartbeat_faults() {
    let root = boot_root();
    let (api, beats) = http_server(&root.0).await;
    let tftp = tftp(&root.0).await;
    let fleet = sim_fleet(2, tftp.addr).await;
    let pw = pwfile(&root);
    let mut cfg_len = 0;
    for b in &fleet.bmcs {
        let r = rendered(BootMode::Bios, &api, None, &b.mac());
        cfg_len = write(&root.0, &r[0].1, &r[0].2);
    }
    let (failing, silent) = (&fleet.bmcs[0], &fleet.bmcs[1]);
    failing.update_netboot(|n| n.fail_download = true);
    silent.update_netboot(|n| n.no_heartbeat = true);
    for b in &fleet.bmcs {
        ipmi(b, &pw, &["chassis", "bootdev", "pxe"]).await;
        ipmi(b, &pw, &["chassis", "power", "on"]).await;
    }
    let s = wait_for(failing, "download failure", 20, |s| {
        s.download_failures == 1
    })
    .await;
    assert_eq!(s.state, "failed");
    assert_eq!((s.configs_fetched, s.tftp_files), (1, 0));
    let e = s.last_error.unwrap();
    assert!(
        e.contains("/deploy/vmlinuz.ironrack-sim-missing") && e.contains("server error 1"),
        "{e}"
    );
    let s = wait_for(silent, "downloads", 20, |s| s.state == "booted").await;
    assert_eq!(s.tftp_files, 2);
    assert_eq!(s.tftp_bytes, (cfg_len + KERNEL_LEN + RAMDISK_LEN) as u64);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(silent.netboot_stats().state, "booted");
    assert_eq!(beats.count(), 0, "{:?}", beats.all());
    assert_eq!(silent.netboot_stats().heartbeats_sent, 0);
    assert_eq!(failing.netboot_stats().heartbeats_sent, 0);
}

/// Refused heartbeats (an unknown node) are counted, and the machine keeps
/// heartbeating; an API nobody listens on gives connection errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_unanswered_heartbeats() {
    let root = boot_root();
    let (api, beats) = http_server(&root.0).await;
    let tftp = tftp(&root.0).await;
    let fleet = sim_fleet(2, tftp.addr).await;
    let pw = pwfile(&root);
    let (refused, lonely) = (&fleet.bmcs[0], &fleet.bmcs[1]);
    write(
        &root.0,
        "pxelinux.cfg/01-52-54-00-10-00-00",
        &format!(
            "default deploy\nlabel deploy\nkernel /deploy/vmlinuz\nappend initrd=/deploy/initrd.img {}\n",
            args(&api, REFUSED_UUID, &refused.mac())
        ),
    );
    let nobody = format!("http://127.0.0.1:{}", free_udp_port());
    write(
        &root.0,
        "pxelinux.cfg/01-52-54-00-10-00-01",
        &format!(
            "default deploy\nlabel deploy\nkernel /deploy/vmlinuz\nappend initrd=/deploy/initrd.img {}\n",
            args(&nobody, UUID, &lonely.mac())
        ),
    );
    for b in &fleet.bmcs {
        ipmi(b, &pw, &["chassis", "bootdev", "pxe"]).await;
        ipmi(b, &pw, &["chassis", "power", "on"]).await;
    }
    let s = wait_for(refused, "refusals", 20, |s| s.heartbeats_refused >= 3).await;
    assert_eq!(s.heartbeats_accepted, 0);
    assert_eq!(s.last_heartbeat_status, Some(404));
    assert_eq!(s.state, "heartbeating");
    let e = s.last_error.unwrap();
    assert!(
        e.contains("HTTP 404") && e.contains("could not be found"),
        "{e}"
    );
    assert!(beats.all().iter().all(|b| b.node == REFUSED_UUID));
    let s = wait_for(lonely, "errors", 20, |s| s.heartbeat_errors >= 2).await;
    assert_eq!((s.heartbeats_accepted, s.heartbeats_refused), (0, 0));
    assert!(s.last_error.unwrap().contains(&nobody));
}

/// Persistent PXE: a reset is a new boot that replaces the running one
/// (one heartbeat loop at a time), and the override stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_boot_replaces_the_old_one() {
    let root = boot_root();
    let (api, beats) = http_server(&root.0).await;
    let tftp = tftp(&root.0).await;
    let fleet = sim_fleet(1, tftp.addr).await;
    let bmc = &fleet.bmcs[0];
    let r = rendered(BootMode::Bios, &api, None, &bmc.mac());
    write(&root.0, &r[0].1, &r[0].2);
    let pw = pwfile(&root);
    ipmi(
        bmc,
        &pw,
        &["chassis", "bootdev", "pxe", "options=persistent"],
    )
    .await;
    ipmi(bmc, &pw, &["chassis", "power", "on"]).await;
    wait_beats(&beats, 2).await;
    ipmi(bmc, &pw, &["chassis", "power", "reset"]).await;
    wait_for(bmc, "second netboot", 10, |s| s.netboots == 2).await;
    let s = wait_for(bmc, "downloads", 20, |s| s.tftp_files == 4).await;
    assert_eq!(s.configs_fetched, 2);
    // One loop: over 2 s at 200 ms, about 10 heartbeats, not 20.
    let before = beats.count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = beats.count() - before;
    assert!((3..=14).contains(&during), "{during} heartbeats in 2 s");
    // A power cycle boots PXE again (persistent).
    ipmi(bmc, &pw, &["chassis", "power", "cycle"]).await;
    wait_for(bmc, "third netboot", 10, |s| s.netboots == 3).await;
}

/// The CLI: `ironrack tftp serve` and `ironrack sim` as processes, with
/// `--mac-base`, `--boot-server`, `--heartbeat-interval`, the fault lists
/// and the stats file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_flags_and_stats_file() {
    let root = boot_root();
    let (api, beats) = http_server(&root.0).await;
    let tftp_port = free_udp_port();
    let mut tftpd = ironrack()
        .args([
            "tftp",
            "serve",
            "--listen",
            &format!("127.0.0.1:{tftp_port}"),
            "--root",
        ])
        .arg(&root.0)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let macs = [
        "02:00:00:00:0a:fe",
        "02:00:00:00:0a:ff",
        "02:00:00:00:0b:00",
    ];
    for (i, mac) in macs.iter().enumerate() {
        let uuid = format!("00000000-0000-4000-8000-00000000000{i}");
        write(
            &root.0,
            &format!("pxelinux.cfg/01-{}", mac.replace(':', "-")),
            &format!(
                "default deploy\nlabel deploy\nkernel /deploy/vmlinuz\nappend initrd=/deploy/initrd.img {}\n",
                args(&api, &uuid, mac)
            ),
        );
    }
    let pw = pwfile(&root);
    let stats = root.0.join("stats.json");
    let first = free_udp_port();
    let mut sim = ironrack()
        .args([
            "sim",
            "--ipmi",
            &format!("127.0.0.1:{first}"),
            "--count",
            "3",
        ])
        .arg("--password-file")
        .arg(&pw)
        .args(["--mac-base", "02-00-00-00-0A-FE"])
        .args(["--boot-server", &format!("127.0.0.1:{tftp_port}")])
        .args(["--heartbeat-interval", "0.25", "--tftp-windowsize", "4"])
        .args(["--fail-download", "1", "--no-heartbeat", "2"])
        .arg("--stats-file")
        .arg(&stats)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait for the simulator to answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = run(&mut ipmitool(
            first,
            17,
            &pw,
            &["chassis", "power", "status"],
        ))
        .await;
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "sim not answering: {}", text(&o));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..3u16 {
        let o = run(&mut ipmitool(
            first + i,
            17,
            &pw,
            &["chassis", "bootdev", "pxe"],
        ))
        .await;
        assert!(o.status.success(), "{}", text(&o));
        let o = run(&mut ipmitool(
            first + i,
            17,
            &pw,
            &["chassis", "power", "on"],
        ))
        .await;
        assert!(o.status.success(), "{}", text(&o));
    }
    let b = wait_beats(&beats, 2).await;
    assert_eq!(b[0].node, "00000000-0000-4000-8000-000000000000");
    assert_eq!(
        b[0].body["callback_url"],
        format!("http://127.0.0.1:{first}")
    );
    // The stats file (written every second) shows all three machines.
    let deadline = Instant::now() + Duration::from_secs(20);
    let doc = loop {
        let doc: Value = std::fs::read(&stats)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let n = |i: usize| doc["ipmi"][i]["stats"]["netboot"].clone();
        if n(0)["heartbeats_accepted"].as_u64() >= Some(1)
            && n(1)["download_failures"] == 1
            && n(2)["tftp_files"] == 2
        {
            break doc;
        }
        assert!(Instant::now() < deadline, "stats file: {doc:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (i, mac) in macs.iter().enumerate() {
        assert_eq!(doc["ipmi"][i]["mac"], *mac);
        assert_eq!(doc["ipmi"][i]["stats"]["mac"], *mac);
    }
    let n0 = &doc["ipmi"][0]["stats"]["netboot"];
    assert_eq!(n0["tftp_files"], 2);
    assert_eq!(n0["state"], "heartbeating");
    let n1 = &doc["ipmi"][1]["stats"]["netboot"];
    assert_eq!(n1["heartbeats_sent"], 0);
    assert!(
        n1["last_error"].as_str().unwrap().contains("fail_download"),
        "{n1}"
    );
    let n2 = &doc["ipmi"][2]["stats"]["netboot"];
    assert_eq!(n2["state"], "booted");
    assert_eq!(n2["heartbeats_sent"], 0);
    assert_eq!(doc["netboot_totals"]["tftp_files"], 4);
    assert!(beats
        .all()
        .iter()
        .all(|b| b.node == "00000000-0000-4000-8000-000000000000"));
    // Bad flags are refused with a reason.
    let o = run(ironrack()
        .args([
            "sim",
            "--count",
            "2",
            "--no-heartbeat",
            "2",
            "--password-file",
        ])
        .arg(&pw))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--no-heartbeat 2"), "{}", text(&o));
    let o = run(ironrack()
        .args([
            "sim",
            "--mac-base",
            "ff:ff:ff:ff:ff:ff",
            "--count",
            "2",
            "--password-file",
        ])
        .arg(&pw))
    .await;
    assert!(text(&o).contains("past ff:ff:ff:ff:ff:ff"), "{}", text(&o));
    let _ = sim.kill().await;
    let _ = tftpd.kill().await;
}

/// Through the agent: `ironrack serve` renders the node's PXELINUX config
/// and serves it and the images from its own TFTP server; `boot_config`
/// prepare sets PXE on the simulated BMC, a power on through the API boots
/// the machine, and it heartbeats to the agent's API (however the agent
/// answers: that is the conductor's business).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netboot_from_the_agent() {
    let root = boot_root();
    let tftp_port = free_udp_port();
    let conf = format!(
        "[conductor]\nsync_power_state_interval = 0\npower_poll_interval = 0.2\nbmc_timeout = 2\n\
         [tftp]\nlisten = \"127.0.0.1:{tftp_port}\"\nroot = \"{}\"\n\
         [boot]\ndefault_boot_mode = \"bios\"\nunknown_mac = \"not_found\"\n",
        root.0.display()
    );
    let agent = Agent::start(&conf).await;
    let tftp = agent.tftp.expect("the agent's TFTP address");
    let fleet = sim_fleet(1, tftp).await;
    let bmc = &fleet.bmcs[0];
    let mut body = ipmi_node("simboot-1", bmc.addr.port());
    body["driver_info"]["deploy_kernel"] = json!("deploy/vmlinuz");
    body["driver_info"]["deploy_ramdisk"] = json!("/deploy/initrd.img");
    let uuid = enroll(&agent, body).await;
    let (s, p) = agent
        .post(
            "/v1/ports",
            &json!({"address": bmc.mac(), "node_uuid": uuid}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let (s, v) = agent
        .put(
            &format!("/v1/nodes/{uuid}/boot_config"),
            &json!({"prepared": true}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    // The worker sets PXE once on the BMC.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bmc.with(|b| {
        ironrack::ipmi::BootFlags::parse(&b.machine.boot_flags)
            .is_some_and(|f| f.valid && f.device == ironrack::ipmi::BootDevice::Pxe)
    }) {
        assert!(
            Instant::now() < deadline,
            "no PXE on the BMC:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, v) = agent
        .put(
            &format!("/v1/nodes/{uuid}/states/power"),
            &json!({"target": "power on"}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let st = wait_for(bmc, "heartbeats to the agent", 30, |s| {
        s.heartbeats_accepted + s.heartbeats_refused >= 1
    })
    .await;
    assert_eq!(st.configs_fetched, 1, "{st:#?}");
    assert_eq!(st.tftp_files, 2, "{st:#?}");
    assert_eq!(st.node_uuid.as_deref(), Some(uuid.as_str()));
    assert_eq!(st.api_url.as_deref(), Some(agent.url.as_str()));
    assert_eq!(st.heartbeat_errors, 0, "{st:#?}");
    let cfg_len = st.tftp_bytes - (KERNEL_LEN + RAMDISK_LEN) as u64;
    assert!(cfg_len > 100 && cfg_len < 2000, "{st:#?}");
    let want = format!("pxelinux.cfg/01-{}", bmc.mac().replace(':', "-"));
    assert_eq!(st.last_config.as_deref(), Some(want.as_str()));
}

/// Redfish systems netboot too: `BootSourceOverrideTarget` `Pxe` (Once,
/// Legacy mode: PXELINUX) and a `ComputerSystem.Reset` `On` make system 1
/// fetch its config, download and heartbeat; system 0, booted without an
/// override, boots the disk. The boot lands on the fleet's own watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_systems_netboot() {
    use ironrack::sim::redfish::{RedfishFleet, RedfishFleetConfig};
    let root = boot_root();
    let (api, beats) = http_server(&root.0).await;
    let tftp = tftp(&root.0).await;
    let mut cfg = RedfishFleetConfig::new("127.0.0.1:0".parse().unwrap(), 2, "admin", "rf-pw");
    cfg.power_delay = Duration::from_millis(300);
    cfg.netboot.boot_server = Some(tftp.addr);
    cfg.netboot.heartbeat_interval = Duration::from_millis(200);
    let rf = RedfishFleet::start(cfg).await.unwrap();
    assert_eq!(rf.mac(0).as_deref(), Some("52:54:00:80:00:00"));
    let mac = rf.mac(1).unwrap();
    assert_eq!(mac, "52:54:00:80:00:01");
    let cfgs = rendered(BootMode::Bios, &api, None, &mac);
    let cfg_len = write(&root.0, &cfgs[0].1, &cfgs[0].2);
    let http = reqwest::Client::new();
    let sys = |i: usize| format!("{}/redfish/v1/Systems/sys-000{i}", rf.base_url());
    let r = http
        .patch(sys(1))
        .basic_auth("admin", Some("rf-pw"))
        .json(&json!({"Boot": {
            "BootSourceOverrideTarget": "Pxe",
            "BootSourceOverrideEnabled": "Once",
            "BootSourceOverrideMode": "Legacy"
        }}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    for i in [0, 1] {
        let r = http
            .post(format!("{}/Actions/ComputerSystem.Reset", sys(i)))
            .basic_auth("admin", Some("rf-pw"))
            .json(&json!({"ResetType": "On"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }
    let b = wait_beats(&beats, 2).await;
    assert_eq!(b[0].path, format!("/v1/heartbeat/{UUID}"));
    assert_eq!(b[0].version.as_deref(), Some("1.36"));
    assert_eq!(
        b[0].body["callback_url"],
        format!("http://127.0.0.1:{}", rf.addr().port())
    );
    let host = rf.netboot(1).unwrap();
    let s = host.stats();
    assert_eq!(s.last_config.as_deref(), Some(cfgs[0].1.as_str()));
    assert_eq!(
        (s.tftp_files, s.tftp_bytes),
        (2, (cfg_len + KERNEL_LEN + RAMDISK_LEN) as u64)
    );
    let s0 = rf.netboot(0).unwrap().stats();
    assert_eq!((s0.disk_boots, s0.netboots), (1, 0));
    // Power off through Redfish: the heartbeats stop.
    let r = http
        .post(format!("{}/Actions/ComputerSystem.Reset", sys(1)))
        .basic_auth("admin", Some("rf-pw"))
        .json(&json!({"ResetType": "ForceOff"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.stats().state != "off" {
        assert!(Instant::now() < deadline, "{:#?}", host.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n = beats.count();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(beats.count() <= n + 1);
}
