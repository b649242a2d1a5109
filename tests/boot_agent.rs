//! Boot services of `ironrack serve` as a process: per-node configs rendered
//! from the inventory and served over TFTP (fetched with curl's `tftp://`)
//! and HTTP boot (curl, with Range and HEAD), `boot_config` prepare / clean
//! up landing on a simulated IPMI BMC, the debugging view and the
//! `ironrack boot` CLI, and the path safety rules from outside.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use ironrack::ipmi::{BootDevice, BootFlags};
use ironrack::sim::Fleet;
use serde_json::{json, Value};

use common::agent::{enroll, faultstring, ipmi_node, Agent};
use common::{fleet, free_udp_port, ironrack, require, run, text, Scratch, PASSWORD};

const MAC: &str = "52:54:00:a1:b2:c3";
const MAC_DASHES: &str = "52-54-00-a1-b2-c3";
const UNKNOWN_MAC: &str = "52:54:00:ff:ff:01";

/// A deterministic, non-repeating-looking body of `n` bytes.
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

/// The boot root: loader, deploy kernel and ramdisk, a symlink out of it.
struct Root {
    dir: Scratch,
    kernel: Vec<u8>,
    ramdisk: Vec<u8>,
    loader: Vec<u8>,
}

fn boot_root() -> Root {
    let dir = Scratch::new("bootroot");
    std::fs::create_dir_all(dir.0.join("deploy")).unwrap();
    let root = Root {
        kernel: blob(300_001, 1),
        ramdisk: blob(123_457, 2),
        loader: blob(42_000, 3),
        dir,
    };
    std::fs::write(root.dir.0.join("deploy/vmlinuz"), &root.kernel).unwrap();
    std::fs::write(root.dir.0.join("deploy/initrd.img"), &root.ramdisk).unwrap();
    std::fs::write(root.dir.0.join("pxelinux.0"), &root.loader).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.dir.0.join("escape")).unwrap();
    root
}

impl Root {
    fn path(&self) -> &Path {
        &self.dir.0
    }
}

fn conf(root: &Path, tftp_port: Option<u16>, extra: &str) -> String {
    let mut c = format!(
        "[conductor]\nsync_power_state_interval = 0\npower_poll_interval = 0.2\nbmc_timeout = 2\n\
         [http_boot]\nlisten = \"127.0.0.1:0\"\nroot = \"{}\"\n",
        root.display()
    );
    if let Some(p) = tftp_port {
        c.push_str(&format!(
            "[tftp]\nlisten = \"127.0.0.1:{p}\"\nroot = \"{}\"\n",
            root.display()
        ));
    }
    c.push_str(extra);
    c
}

/// curl's answer: status, headers (lower-cased), body.
struct Got {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Got {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }
}

/// One HTTP request with curl (`extra` before the URL).
async fn curl_http(url: &str, extra: &[&str]) -> Got {
    let tmp = Scratch::new("curl");
    let body = tmp.0.join("body");
    let hdrs = tmp.0.join("headers");
    let out = run(tokio::process::Command::new(require("curl"))
        .args(["-s", "-S", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&hdrs)
        .args(["-w", "%{http_code}"])
        .args(extra)
        .arg(url))
    .await;
    assert!(out.status.success(), "curl {url}: {}", text(&out));
    Got {
        status: String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(),
        headers: std::fs::read_to_string(&hdrs).unwrap_or_default(),
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

async fn http_get(url: &str) -> Got {
    curl_http(url, &[]).await
}

/// `curl tftp://ADDR/path`: the file, or curl's failure.
async fn curl_tftp(addr: std::net::SocketAddr, path: &str) -> Result<Vec<u8>, Output> {
    let tmp = Scratch::new("tftp");
    let file = tmp.0.join("got");
    let out = run(tokio::process::Command::new(require("curl"))
        .args(["-s", "-S", "-o"])
        .arg(&file)
        .arg(format!("tftp://{addr}/{path}")))
    .await;
    if out.status.success() {
        Ok(std::fs::read(&file).unwrap())
    } else {
        Err(out)
    }
}

async fn tftp_text(addr: std::net::SocketAddr, path: &str) -> String {
    match curl_tftp(addr, path).await {
        Ok(b) => String::from_utf8(b).unwrap(),
        Err(o) => panic!("TFTP {path}: {}", text(&o)),
    }
}

/// Enroll an IPMI node on the simulator with deploy images and one port.
async fn boot_node(agent: &Agent, name: &str, bmc_port: u16, mac: &str) -> String {
    let mut body = ipmi_node(name, bmc_port);
    body["driver_info"]["deploy_kernel"] = json!("deploy/vmlinuz");
    body["driver_info"]["deploy_ramdisk"] = json!("/deploy/initrd.img");
    let uuid = enroll(agent, body).await;
    let (s, p) = agent
        .post("/v1/ports", &json!({"address": mac, "node_uuid": uuid}))
        .await;
    assert_eq!(s, 201, "{p}");
    uuid
}

async fn patch(agent: &Agent, node: &str, ops: Value) -> Value {
    let (s, n) = agent.patch(&format!("/v1/nodes/{node}"), &ops).await;
    assert_eq!(s, 200, "{n}");
    n
}

async fn boot_config(agent: &Agent, node: &str) -> Value {
    let (s, v) = agent.get(&format!("/v1/nodes/{node}/boot_config")).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// PUT boot_config, expect 202, and wait for the worker to let go of the
/// node; returns the node document.
async fn set_prepared(agent: &Agent, node: &str, prepared: bool) -> Value {
    let (s, v) = agent
        .put(
            &format!("/v1/nodes/{node}/boot_config"),
            &json!({ "prepared": prepared }),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    settle(agent, node).await
}

/// Wait until nobody holds the node's lock.
async fn settle(agent: &Agent, node: &str) -> Value {
    loop {
        let (s, n) = agent.get(&format!("/v1/nodes/{node}")).await;
        assert_eq!(s, 200, "{n}");
        if n["reservation"].is_null() {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn bmc_flags(fleet: &Fleet) -> Option<BootFlags> {
    fleet.bmcs[0].with(|b| BootFlags::parse(&b.machine.boot_flags))
}

/// The BMC's next boot is PXE, once.
fn assert_pxe_once(fleet: &Fleet) -> BootFlags {
    let f = bmc_flags(fleet).expect("the BMC holds no boot flags");
    assert!(
        f.valid && f.device == BootDevice::Pxe && !f.persistent,
        "{f:?}"
    );
    f
}

fn ipxe_default() -> &'static str {
    "#!ipxe\n\nsanboot --no-describe --drive 0x80 || exit\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_boot_serves_prepared_ipxe_scripts_and_the_root() {
    let root = boot_root();
    let fleet = fleet(1, |_| {}).await;
    let mut agent = Agent::start(&conf(root.path(), None, "")).await;
    let hb = agent.http_boot.clone().expect("no HTTP boot line");
    let uuid = boot_node(&agent, "hb-1", fleet.addrs()[0].port(), MAC).await;
    let script = format!("{hb}/ipxe/{MAC}.ipxe");

    // Not prepared: the debugging view renders, the servers do not serve it.
    let v = boot_config(&agent, &uuid).await;
    assert_eq!(v["prepared"], false, "{v}");
    assert_eq!(v["boot_mode"], "uefi");
    assert_eq!(v["node_uuid"], uuid.as_str());
    let g = http_get(&script).await;
    assert_eq!((g.status, g.text().as_str()), (200, ipxe_default()));
    let before = bmc_flags(&fleet);
    assert!(
        !before.is_some_and(|f| f.valid && f.device == BootDevice::Pxe),
        "{before:?}"
    );

    // Prepare: 202, the configs go live and the next boot is PXE, once.
    let n = set_prepared(&agent, &uuid, true).await;
    assert!(n["last_error"].is_null(), "{n}");
    assert_eq!(boot_config(&agent, &uuid).await["prepared"], true);
    assert_eq!(
        n["driver_internal_info"]["boot_prepared"], true,
        "the flag is persisted: {n}"
    );
    let f = assert_pxe_once(&fleet);
    assert!(f.uefi, "a uefi node boots in UEFI mode: {f:?}");

    let g = http_get(&script).await;
    assert_eq!(g.status, 200);
    let s = g.text();
    let args = format!(
        "nofb nomodeset vga=normal ipa-api-url={} ipa-node-uuid={uuid} BOOTIF=01-{MAC_DASHES}",
        agent.url
    );
    assert!(s.starts_with("#!ipxe\n"), "{s}");
    assert!(
        s.contains(&format!(
            "\nkernel {hb}/deploy/vmlinuz {args} initrd=deploy_ramdisk || goto retry\n"
        )),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "\ninitrd --name deploy_ramdisk {hb}/deploy/initrd.img || goto retry\n"
        )),
        "{s}"
    );
    // iPXE's ${mac} is the colon form; dashes are accepted too.
    let dashed = http_get(&format!("{hb}/ipxe/{MAC_DASHES}.ipxe")).await;
    assert_eq!(dashed.text(), s);
    // The API's view is what is served.
    let v = boot_config(&agent, &uuid).await;
    let configs = v["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 2, "{v}");
    assert_eq!(configs[0]["kind"], "grub");
    assert_eq!(
        configs[0]["path"],
        format!("grub/grub.cfg-01-{MAC_DASHES}").as_str()
    );
    assert_eq!(configs[1]["path"], format!("ipxe/{MAC}.ipxe").as_str());
    assert_eq!(configs[1]["mac"], MAC);
    assert_eq!(configs[1]["text"], s.as_str());

    // boot.ipxe chains to the per-MAC script over HTTP.
    let b = http_get(&format!("{hb}/boot.ipxe")).await;
    assert_eq!(b.status, 200);
    assert!(
        b.text()
            .contains(&format!("chain {hb}/ipxe/${{mac}}.ipxe || goto local\n")),
        "{}",
        b.text()
    );

    // An unknown MAC gets the built-in default.
    let u = http_get(&format!("{hb}/ipxe/{UNKNOWN_MAC}.ipxe")).await;
    assert_eq!((u.status, u.text().as_str()), (200, ipxe_default()));

    // Changing the node changes what is served, at once.
    patch(
        &agent,
        &uuid,
        json!([{"op": "add", "path": "/driver_info/kernel_append_params",
                "value": "ipa-debug=1 console=ttyS0,115200n8"}]),
    )
    .await;
    let s2 = http_get(&script).await.text();
    assert!(
        s2.contains("vga=normal ipa-debug=1 console=ttyS0,115200n8 ipa-api-url="),
        "{s2}"
    );
    // A value that would break the script's syntax is refused, and the
    // node's MAC is treated as unknown rather than served a broken script.
    patch(
        &agent,
        &uuid,
        json!([{"op": "replace", "path": "/driver_info/kernel_append_params",
                "value": "quiet\nshell"}]),
    )
    .await;
    let (st, e) = agent.get(&format!("/v1/nodes/{uuid}/boot_config")).await;
    assert_eq!(st, 400, "{e}");
    let why = faultstring(&e);
    assert!(
        why.contains("driver_info.kernel_append_params") && why.contains("control character"),
        "{why}"
    );
    assert_eq!(http_get(&script).await.text(), ipxe_default());
    patch(
        &agent,
        &uuid,
        json!([{"op": "remove", "path": "/driver_info/kernel_append_params"}]),
    )
    .await;
    assert_eq!(http_get(&script).await.text(), s);

    // bios: PXELINUX instead of GRUB; the iPXE script stays.
    patch(
        &agent,
        &uuid,
        json!([{"op": "add", "path": "/properties/capabilities",
                "value": "boot_mode:bios"}]),
    )
    .await;
    let v = boot_config(&agent, &uuid).await;
    assert_eq!(v["boot_mode"], "bios");
    assert_eq!(
        v["configs"][0]["path"],
        format!("pxelinux.cfg/01-{MAC_DASHES}").as_str()
    );
    assert_eq!(
        v["configs"][0]["text"],
        format!(
            "default deploy\n\nlabel deploy\nkernel /deploy/vmlinuz\n\
             append initrd=/deploy/initrd.img {args}\n"
        )
        .as_str()
    );
    assert_eq!(http_get(&script).await.text(), s);

    // The CLI's view.
    let out = run(ironrack().args(["boot", "--api", &agent.url, "render", "hb-1"])).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.starts_with(&format!(
            "node {uuid}: boot mode bios, prepared: yes\n\n\
             ==> pxelinux.cfg/01-{MAC_DASHES} <== (pxelinux, MAC {MAC})\n\
             default deploy\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("\n==> ipxe/{MAC}.ipxe <== (ipxe, MAC {MAC})\n{s}")),
        "{stdout}"
    );
    let out = run(ironrack().args(["boot", "--api", &agent.url, "render", &uuid, "--json"])).await;
    assert!(out.status.success(), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc, v);

    // Prepared survives a restart (the flag is in the store).
    agent.restart().await;
    let hb = agent.http_boot.clone().unwrap();
    let script = format!("{hb}/ipxe/{MAC}.ipxe");
    let after = http_get(&script).await.text();
    assert!(
        after.contains(&format!("kernel {hb}/deploy/vmlinuz ")),
        "{after}"
    );
    assert!(
        after.contains(&format!("ipa-api-url={} ", agent.url)),
        "{after}"
    );

    // Clean up with the CLI: no longer served.
    let out = run(ironrack().args(["boot", "--api", &agent.url, "clean-up", "hb-1"])).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("boot cleaned up"),
        "{}",
        text(&out)
    );
    assert_eq!(boot_config(&agent, &uuid).await["prepared"], false);
    assert_eq!(http_get(&script).await.text(), ipxe_default());
    let n = settle(&agent, &uuid).await;
    assert!(
        n["driver_internal_info"].get("boot_prepared").is_none(),
        "{n}"
    );
    // And back with the CLI.
    let out = run(ironrack().args(["boot", "--api", &agent.url, "prepare", "hb-1"])).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(http_get(&script).await.text().contains("kernel "));

    assert!(!agent.log().contains(PASSWORD), "password in the agent log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_boot_ranges_head_and_path_safety() {
    let root = boot_root();
    let agent = Agent::start(&conf(root.path(), None, "")).await;
    let hb = agent.http_boot.clone().unwrap();
    let kernel = format!("{hb}/deploy/vmlinuz");
    let len = root.kernel.len();

    let g = http_get(&kernel).await;
    assert_eq!(g.status, 200);
    assert!(g.body == root.kernel, "whole body differs");
    assert_eq!(g.header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(g.header("content-length"), Some(len.to_string()));

    let g = curl_http(&kernel, &["-r", "0-99"]).await;
    assert_eq!(g.status, 206);
    assert!(g.body == root.kernel[..100]);
    assert_eq!(g.header("content-range"), Some(format!("bytes 0-99/{len}")));
    assert_eq!(g.header("content-length").as_deref(), Some("100"));

    let g = curl_http(&kernel, &["-r", "100-"]).await;
    assert_eq!(g.status, 206);
    assert!(g.body == root.kernel[100..]);
    assert_eq!(
        g.header("content-range"),
        Some(format!("bytes 100-{}/{len}", len - 1))
    );

    let g = curl_http(&kernel, &["-r", "-500"]).await;
    assert_eq!(g.status, 206);
    assert!(g.body == root.kernel[len - 500..]);
    assert_eq!(
        g.header("content-range"),
        Some(format!("bytes {}-{}/{len}", len - 500, len - 1))
    );

    let g = curl_http(&kernel, &["-r", "250000-400000"]).await;
    assert_eq!(g.status, 206);
    assert!(g.body == root.kernel[250_000..]);

    let g = curl_http(&kernel, &["-r", &format!("{len}-")]).await;
    assert_eq!(g.status, 416);
    assert_eq!(g.header("content-range"), Some(format!("bytes */{len}")));

    // Several ranges: the whole body is a valid answer.
    let g = curl_http(&kernel, &["-r", "0-1,5-6"]).await;
    assert_eq!(g.status, 200);
    assert!(g.body == root.kernel);

    // HEAD: headers only.
    let g = curl_http(&kernel, &["-I"]).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.header("content-length"), Some(len.to_string()));
    assert_eq!(g.header("accept-ranges").as_deref(), Some("bytes"));
    assert!(g.body.is_empty() || g.body.starts_with(b"HTTP/"));

    // Rendered text also honours ranges.
    let g = curl_http(&format!("{hb}/boot.ipxe"), &["-r", "0-5"]).await;
    assert_eq!((g.status, g.text().as_str()), (206, "#!ipxe"));

    // Only GET and HEAD.
    let g = curl_http(&kernel, &["-X", "POST", "-d", "x"]).await;
    assert_eq!(g.status, 405);
    assert_eq!(g.header("allow").as_deref(), Some("GET, HEAD"));

    // Refusals: 403 for traversal and escaping symlinks, 404 for what is
    // not there; plain text; logged; the server keeps serving. Paths are
    // percent-decoded once (a double-encoded `..` is a literal name), and
    // one longer than 1024 bytes after decoding is refused even when it
    // would normalise to a file that exists.
    let long_dots = format!("/{}deploy/vmlinuz", "./".repeat(600));
    let long_enc = format!("/{}etc/passwd", "%2e%2e%2f".repeat(400));
    let long_ok = format!("/{}deploy/vmlinuz", "%2e%2f".repeat(100));
    for (path, want) in [
        (long_dots.as_str(), 403),
        (long_enc.as_str(), 403),
        ("/%252e%252e/%252e%252e/etc/passwd", 404),
        ("/deploy/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc/passwd", 403),
        ("/deploy%2f..%2f..%2fetc%2fpasswd", 403),
        ("/../../etc/passwd", 403),
        ("/deploy/../../etc/passwd", 403),
        ("/%2e%2e/%2e%2e/etc/passwd", 403),
        ("/..%2f..%2fetc%2fpasswd", 403),
        ("/%2E%2E%5C%2E%2E%5Cetc%5Cpasswd", 403),
        ("/deploy%00/vmlinuz", 403),
        ("/escape", 403),
        ("/etc/passwd", 404),
        ("/deploy", 404),
        ("/nope", 404),
        ("/%zz", 400),
    ] {
        let g = curl_http(&format!("{hb}{path}"), &["--path-as-is"]).await;
        assert_eq!(g.status, want, "{path}: {}", g.text());
        assert!(!g.text().contains("root:"), "{path} leaked /etc/passwd");
        assert!(
            g.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{path}: {}",
            g.headers
        );
    }
    // Encoded `./` segments are harmless: the file.
    let g = curl_http(&format!("{hb}{long_ok}"), &["--path-as-is"]).await;
    assert_eq!(g.status, 200, "{}", g.text());
    assert!(g.body == root.kernel);
    // A request line far beyond any path limit: refused, nothing served.
    let huge = format!("{hb}/{}", "a".repeat(70_000));
    let g = curl_http(&huge, &["--path-as-is"]).await;
    assert!(
        (400..500).contains(&g.status),
        "{}: {}",
        g.status,
        g.headers
    );
    assert!(g.body.is_empty() || g.text().len() < 200, "{}", g.text());
    let log = agent.log();
    assert!(log.contains("HTTP boot request refused"), "{log}");
    let g = http_get(&format!("{hb}/pxelinux.0")).await;
    assert_eq!(g.status, 200);
    assert!(g.body == root.loader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_is_validated_and_bmc_failures_roll_back() {
    let root = boot_root();
    let fleet = fleet(1, |c| c.bmc.power_delay = std::time::Duration::from_secs(3)).await;
    let agent = Agent::start(&conf(root.path(), None, "")).await;
    let port = fleet.addrs()[0].port();

    // No port: 400 at once.
    let mut body = ipmi_node("v-1", port);
    body["driver_info"]["deploy_kernel"] = json!("deploy/vmlinuz");
    body["driver_info"]["deploy_ramdisk"] = json!("deploy/initrd.img");
    let uuid = enroll(&agent, body).await;
    let put = |prepared: bool| {
        let agent = &agent;
        let uuid = uuid.clone();
        async move {
            agent
                .put(
                    &format!("/v1/nodes/{uuid}/boot_config"),
                    &json!({ "prepared": prepared }),
                )
                .await
        }
    };
    let (s, e) = put(true).await;
    assert_eq!(s, 400, "{e}");
    assert!(faultstring(&e).contains("no port"), "{e}");
    let (s, p) = agent
        .post("/v1/ports", &json!({"address": MAC, "node_uuid": uuid}))
        .await;
    assert_eq!(s, 201, "{p}");

    // Missing ramdisk, a kernel that is not in the root, https for GRUB.
    for (ops, says) in [
        (
            json!([{"op": "remove", "path": "/driver_info/deploy_ramdisk"}]),
            "driver_info.deploy_ramdisk is not set",
        ),
        (
            json!([{"op": "replace", "path": "/driver_info/deploy_kernel",
                    "value": "deploy/missing"}]),
            "not a file the boot servers can serve",
        ),
        (
            json!([{"op": "replace", "path": "/driver_info/deploy_kernel",
                    "value": "https://images.example/k"}]),
            "GRUB cannot fetch https",
        ),
        (
            json!([{"op": "replace", "path": "/driver_info/deploy_kernel",
                    "value": "../outside"}]),
            "climbs out of the boot root",
        ),
    ] {
        patch(&agent, &uuid, ops).await;
        let (s, e) = put(true).await;
        assert_eq!(s, 400, "{e}");
        assert!(faultstring(&e).contains(says), "{says}: {e}");
        patch(
            &agent,
            &uuid,
            json!([{"op": "add", "path": "/driver_info/deploy_kernel",
                    "value": "deploy/vmlinuz"},
                   {"op": "add", "path": "/driver_info/deploy_ramdisk",
                    "value": "deploy/initrd.img"}]),
        )
        .await;
    }
    let (s, e) = agent
        .put(
            &format!("/v1/nodes/{uuid}/boot_config"),
            &json!({"prepared": "maybe"}),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = agent
        .put(
            &format!("/v1/nodes/{uuid}/boot_config"),
            &json!({"bogus": 1}),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = agent
        .put(
            "/v1/nodes/no-such-node/boot_config",
            &json!({"prepared": true}),
        )
        .await;
    assert_eq!(s, 404, "{e}");
    let (s, e) = agent.get("/v1/nodes/no-such-node/boot_config").await;
    assert_eq!(s, 404, "{e}");

    // Locked by a power change in progress (the machine is off and takes
    // 3 s to come on): 409.
    assert!(!fleet.bmcs[0].with(|b| b.machine.on));
    let (s, e) = agent
        .put(
            &format!("/v1/nodes/{uuid}/states/power"),
            &json!({"target": "power on"}),
        )
        .await;
    assert_eq!(s, 202, "{e}");
    let (s, e) = put(true).await;
    assert_eq!(s, 409, "{e}");
    assert!(faultstring(&e).contains("locked"), "{e}");
    settle(&agent, &uuid).await;

    // A BMC that does not answer: accepted, then recorded in last_error,
    // and the configs are not left live.
    fleet.bmcs[0].faults.set_unresponsive(true);
    let n = set_prepared(&agent, &uuid, true).await;
    let err = n["last_error"].as_str().unwrap_or_default();
    assert!(err.starts_with("Failed to prepare the boot of node"), "{n}");
    assert_eq!(boot_config(&agent, &uuid).await["prepared"], false);
    // The CLI says so too.
    let out = run(ironrack().args(["boot", "--api", &agent.url, "prepare", &uuid])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Failed to prepare the boot"),
        "{}",
        text(&out)
    );
    fleet.bmcs[0].faults.set_unresponsive(false);
    let n = set_prepared(&agent, &uuid, true).await;
    assert!(n["last_error"].is_null(), "{n}");
    assert_eq!(boot_config(&agent, &uuid).await["prepared"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_macs_not_found_over_http() {
    let root = boot_root();
    let fleet = fleet(1, |_| {}).await;
    let agent = Agent::start(&conf(
        root.path(),
        None,
        "[boot]\nunknown_mac = \"not_found\"\n",
    ))
    .await;
    let hb = agent.http_boot.clone().unwrap();
    let uuid = boot_node(&agent, "nf-1", fleet.addrs()[0].port(), MAC).await;
    let script = format!("{hb}/ipxe/{MAC}.ipxe");
    assert_eq!(http_get(&script).await.status, 404);
    assert_eq!(
        http_get(&format!("{hb}/ipxe/{UNKNOWN_MAC}.ipxe"))
            .await
            .status,
        404
    );
    assert_eq!(
        http_get(&format!("{hb}/ipxe/default.ipxe")).await.status,
        404
    );
    set_prepared(&agent, &uuid, true).await;
    let g = http_get(&script).await;
    assert_eq!(g.status, 200);
    assert!(g.text().contains(&format!("ipa-node-uuid={uuid}")));
    assert_eq!(
        http_get(&format!("{hb}/ipxe/{UNKNOWN_MAC}.ipxe"))
            .await
            .status,
        404
    );
    // The root's own default is still served when it has one.
    std::fs::create_dir_all(root.path().join("ipxe")).unwrap();
    std::fs::write(root.path().join("ipxe/default.ipxe"), "#!ipxe\nexit\n").unwrap();
    let g = http_get(&format!("{hb}/ipxe/default.ipxe")).await;
    assert_eq!((g.status, g.text().as_str()), (200, "#!ipxe\nexit\n"));
    assert_eq!(
        http_get(&format!("{hb}/ipxe/{UNKNOWN_MAC}.ipxe"))
            .await
            .status,
        404
    );
    set_prepared(&agent, &uuid, false).await;
    assert_eq!(http_get(&script).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_serves_prepared_configs() {
    let root = boot_root();
    let fleet = fleet(1, |_| {}).await;
    let agent = Agent::start(&conf(root.path(), Some(free_udp_port()), "")).await;
    let tftp = agent.tftp.expect("no TFTP line");
    let uuid = boot_node(&agent, "tf-1", fleet.addrs()[0].port(), MAC).await;
    let grub = format!("grub/grub.cfg-01-{MAC_DASHES}");
    let pxelinux = format!("pxelinux.cfg/01-{MAC_DASHES}");
    let grub_default = "set default=local\nset timeout=0\n\nmenuentry \"local\" {\n    exit\n}\n";
    let pxe_default = "default local\n\nlabel local\nlocalboot 0\n";

    // Files from the root, byte for byte.
    assert!(curl_tftp(tftp, "pxelinux.0").await.unwrap() == root.loader);
    assert!(curl_tftp(tftp, "deploy/vmlinuz").await.unwrap() == root.kernel);

    // Not prepared: the built-in defaults.
    assert_eq!(tftp_text(tftp, &grub).await, grub_default);
    assert_eq!(tftp_text(tftp, &pxelinux).await, pxe_default);

    let n = set_prepared(&agent, &uuid, true).await;
    assert!(n["last_error"].is_null(), "{n}");
    assert_pxe_once(&fleet);

    let args = format!(
        "nofb nomodeset vga=normal ipa-api-url={} ipa-node-uuid={uuid} BOOTIF=01-{MAC_DASHES}",
        agent.url
    );
    let g = tftp_text(tftp, &grub).await;
    assert_eq!(
        g,
        format!(
            "set default=deploy\nset timeout=5\n\nmenuentry \"deploy\" {{\n    \
             linux /deploy/vmlinuz {args}\n    initrd /deploy/initrd.img\n}}\n"
        )
    );
    // As the API shows it.
    let v = boot_config(&agent, &uuid).await;
    assert_eq!(v["configs"][0]["text"], g.as_str());
    // A uefi node has no PXELINUX config: the default.
    assert_eq!(tftp_text(tftp, &pxelinux).await, pxe_default);

    // Changes show at once.
    patch(
        &agent,
        &uuid,
        json!([{"op": "add", "path": "/driver_info/kernel_append_params",
                "value": "ipa-debug=1"},
               {"op": "replace", "path": "/driver_info/deploy_kernel",
                "value": "http://images.example:8000/ipa.kernel"}]),
    )
    .await;
    let g = tftp_text(tftp, &grub).await;
    assert!(
        g.contains("linux (http,images.example:8000)/ipa.kernel nofb nomodeset vga=normal ipa-debug=1 ipa-api-url="),
        "{g}"
    );
    patch(
        &agent,
        &uuid,
        json!([{"op": "remove", "path": "/driver_info/kernel_append_params"},
               {"op": "replace", "path": "/driver_info/deploy_kernel",
                "value": "deploy/vmlinuz"},
               {"op": "add", "path": "/properties/capabilities",
                "value": "boot_mode:bios"}]),
    )
    .await;
    assert_eq!(
        tftp_text(tftp, &pxelinux).await,
        format!(
            "default deploy\n\nlabel deploy\nkernel /deploy/vmlinuz\n\
             append initrd=/deploy/initrd.img {args}\n"
        )
    );
    assert_eq!(tftp_text(tftp, &grub).await, grub_default);
    // The iPXE script over TFTP too.
    let s = tftp_text(tftp, &format!("ipxe/{MAC}.ipxe")).await;
    assert!(s.contains(&format!("ipa-node-uuid={uuid}")), "{s}");

    // A rendered config wins over a file of the same name in the root.
    std::fs::create_dir_all(root.path().join("pxelinux.cfg")).unwrap();
    std::fs::write(root.path().join(&pxelinux), "static\n").unwrap();
    assert!(tftp_text(tftp, &pxelinux)
        .await
        .contains("kernel /deploy/vmlinuz"));

    // Cleaned up: the root's file of that name, then the default again.
    set_prepared(&agent, &uuid, false).await;
    assert_eq!(tftp_text(tftp, &pxelinux).await, "static\n");
    std::fs::remove_file(root.path().join(&pxelinux)).unwrap();
    assert_eq!(tftp_text(tftp, &pxelinux).await, pxe_default);
    // Unknown MACs get the default, a root default file first.
    std::fs::write(root.path().join("pxelinux.cfg/default"), "site\n").unwrap();
    assert_eq!(
        tftp_text(tftp, "pxelinux.cfg/01-52-54-00-ff-ff-01").await,
        "site\n"
    );

    // Path safety over TFTP: refused, and the server keeps serving.
    for bad in ["../../etc/passwd", "escape"] {
        assert!(curl_tftp(tftp, bad).await.is_err(), "{bad} was served");
    }
    assert!(curl_tftp(tftp, "pxelinux.0").await.unwrap() == root.loader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_unknown_macs_not_found() {
    let root = boot_root();
    let fleet = fleet(1, |_| {}).await;
    let mut agent = Agent::start(&conf(
        root.path(),
        Some(free_udp_port()),
        "[boot]\nunknown_mac = \"not_found\"\n",
    ))
    .await;
    let tftp = agent.tftp.unwrap();
    let uuid = boot_node(&agent, "tn-1", fleet.addrs()[0].port(), MAC).await;
    let grub = format!("grub/grub.cfg-01-{MAC_DASHES}");
    let e = curl_tftp(tftp, &grub)
        .await
        .expect_err("served before prepare");
    // curl: CURLE_TFTP_NOTFOUND.
    assert_eq!(e.status.code(), Some(68), "{}", text(&e));
    set_prepared(&agent, &uuid, true).await;
    assert!(tftp_text(tftp, &grub)
        .await
        .contains("linux /deploy/vmlinuz"));
    let e = curl_tftp(tftp, "grub/grub.cfg-01-52-54-00-ff-ff-01")
        .await
        .expect_err("unknown MAC served");
    assert_eq!(e.status.code(), Some(68), "{}", text(&e));
    assert!(curl_tftp(tftp, "grub/grub.cfg").await.is_err());

    // SIGTERM stops the boot servers with the API.
    let status = agent.terminate().await;
    assert!(status.success(), "{status:?}\n{}", agent.log());
    // The TFTP port is free again.
    std::net::UdpSocket::bind(tftp).expect("the TFTP port is still held after the stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_boot_root_is_a_clear_error() {
    let scratch = Scratch::new("noroot");
    let missing: PathBuf = scratch.0.join("nope");
    let r = Agent::try_start(&format!(
        "[http_boot]\nlisten = \"127.0.0.1:0\"\nroot = \"{}\"\n",
        missing.display()
    ))
    .await;
    let Err((status, log)) = r else {
        panic!("the agent started without its boot root")
    };
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("[http_boot] root") && log.contains("not a directory"),
        "{log}"
    );
}
