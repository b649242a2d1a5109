//! Serial-over-LAN against real peers: our client against OpenIPMI's ipmi_sim
//! (whose serial port is a telnet connection to a TCP listener of this test)
//! and against our simulator, and ipmitool's `sol activate` against our
//! simulator. Every byte is checked at the other end.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ipmi_sim::IpmiSim;
use common::telnet::TelnetHost;
use common::*;
use ironrack::ipmi::sol::{SolEvent, SolLost};
use ironrack::ipmi::{IpmiClient, IpmiError, SessionConfig, SolConsole, SolOptions};
use ironrack::profiles::Profiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout};

/// A session configuration for `profile` (ipmi-sim: suite 3 and opensesspriv).
fn session(profile: &str) -> SessionConfig {
    let mut cfg = SessionConfig::new(USER, PASSWORD.as_bytes());
    Profiles::builtin()
        .unwrap()
        .get(profile)
        .unwrap()
        .ipmi
        .apply(&mut cfg);
    cfg
}

/// Read host output from the console until `want` bytes arrived; other events
/// are returned alongside.
async fn collect(console: &mut SolConsole, want: usize) -> (Vec<u8>, Vec<SolEvent>) {
    let mut got = Vec::new();
    let mut other = Vec::new();
    let deadline = Duration::from_secs(120);
    let r = tokio::time::timeout(deadline, async {
        while got.len() < want {
            match console.recv().await {
                Some(SolEvent::Data(d)) => got.extend_from_slice(&d),
                Some(e @ SolEvent::Lost(_)) => panic!("SOL lost while reading: {e:?}"),
                Some(e) => other.push(e),
                None => panic!("SOL ended after {} of {want} bytes", got.len()),
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "only {} of {want} bytes in {deadline:?}",
        got.len()
    );
    (got, other)
}

async fn host_reads(sim: &ironrack::sim::SimBmc, want: &[u8]) {
    let mut got = Vec::new();
    for _ in 0..1200 {
        got.extend(sim.host_read());
        if got.len() >= want.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        got.len(),
        want.len(),
        "the simulated host read {} of {} bytes",
        got.len(),
        want.len()
    );
    assert!(got == want, "keystrokes arrived out of order or changed");
}

fn pattern(len: usize, salt: u32) -> Vec<u8> {
    // Printable lines, each numbered, so a mix-up shows.
    let mut v = Vec::with_capacity(len + 64);
    let mut i = 0u32;
    while v.len() < len {
        v.extend_from_slice(format!("{salt}:{i:05} the quick brown fox\r\n").as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sol_with_ipmi_sim_reaches_its_telnet_host() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sol_port = listener.local_addr().unwrap().port();
    let sim = IpmiSim::start_with_sol(sol_port).await;
    // ipmi_sim connects at start-up, before any activation.
    let mut host = TelnetHost::accept(&listener).await;

    let addr = format!("127.0.0.1:{}", sim.port).parse().unwrap();
    let client = IpmiClient::new(addr, session("ipmi-sim")).await.unwrap();
    let mut console = client.sol_activate(SolOptions::default()).await.unwrap();
    let a = console.activation();
    // ipmi_sim: a 32-byte inbound buffer, 16 KiB outbound, its own port.
    assert_eq!(
        (a.inbound_size, a.outbound_size, a.port),
        (32, 16384, sim.port)
    );

    // Host output reaches the console.
    host.print(b"ironrack-sim login: ").await;
    let (got, _) = collect(&mut console, 20).await;
    assert_eq!(got, b"ironrack-sim login: ");

    // Keystrokes reach the host, in packets of at most 28 characters.
    console.send(b"root\r").await.unwrap();
    console.flush().await.unwrap();
    host.wait_typed(b"root\r").await;
    let line = b"echo 'more than one 28-character SOL packet, in order'\r";
    console.send(line).await.unwrap();
    console.flush().await.unwrap();
    let mut want = b"root\r".to_vec();
    want.extend_from_slice(line);
    host.wait_typed(&want).await;

    // More host output than one packet (ipmi_sim sends at most 255 at once).
    let big = pattern(3000, 1);
    host.print(&big).await;
    let (got, _) = collect(&mut console, big.len()).await;
    assert!(got == big, "host output changed on the way");

    // The session is shared: power commands work while SOL is active.
    client.power_state().await.unwrap();

    // A break reaches the host as telnet BREAK. (ipmi_sim queues it for the
    // host but only writes to its socket again when characters follow.)
    console.send_break().await.unwrap();
    console.send(b"\r").await.unwrap();
    console.flush().await.unwrap();
    want.push(b'\r');
    host.wait_typed(&want).await;
    for _ in 0..100 {
        if *host.breaks.lock().unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(*host.breaks.lock().unwrap(), 1);

    let stats = client.info().sol.expect("SOL stats while active");
    assert!(stats.bytes_received >= 3020 && stats.bytes_sent as usize == want.len());

    console.deactivate().await.unwrap();
    // Deactivated: a second deactivation finds nothing active.
    assert!(!client.sol_deactivate(1).await.unwrap());
    // And a new activation works (no stale instance left behind).
    let console = client
        .sol_activate(SolOptions {
            force: false,
            ..SolOptions::default()
        })
        .await
        .unwrap();
    console.deactivate().await.unwrap();
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sol_follows_the_payload_port_the_bmc_names() {
    // The session goes through a UDP relay (scripts/udp-capture.py), so
    // ipmi_sim's Activate Payload names a port other than the one we talk to:
    // its own. ipmitool gives up there; we send SOL to that port.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sol_port = listener.local_addr().unwrap().port();
    let sim = IpmiSim::start_with_sol(sol_port).await;
    let mut host = TelnetHost::accept(&listener).await;
    let dir = Scratch::new("sol-relay");
    let capture = dir.0.join("relay.txt");
    let relay_port = free_udp_port();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut relay = tokio::process::Command::new("python3")
        .arg(root.join("scripts/udp-capture.py"))
        .arg(relay_port.to_string())
        .arg(sim.port.to_string())
        .arg(&capture)
        .args(["--idle", "120"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the UDP relay");
    let mut stderr = relay.stderr.take().unwrap();
    let mut ready = [0u8; 6];
    stderr.read_exact(&mut ready).await.unwrap();
    assert_eq!(&ready, b"READY ");

    let o = run(ipmitool(relay_port, 3, &sim.pwfile, &["sol", "activate"])
        .stdin(std::process::Stdio::null()))
    .await;
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("different port"),
        "ipmitool's view: {}",
        text(&o)
    );
    // ipmitool's activation stays behind: force takes it over.
    let addr = format!("127.0.0.1:{relay_port}").parse().unwrap();
    let client = IpmiClient::new(addr, session("ipmi-sim")).await.unwrap();
    let mut console = client.sol_activate(SolOptions::default()).await.unwrap();
    assert_eq!(console.activation().port, sim.port);
    host.print(b"via the relay\r\n").await;
    assert_eq!(collect(&mut console, 15).await.0, b"via the relay\r\n");
    console.send(b"direct\r").await.unwrap();
    console.flush().await.unwrap();
    host.wait_typed(b"direct\r").await;
    client.power_state().await.unwrap();
    console.deactivate().await.unwrap();
    client.close().await;

    // Our SOL packets went to ipmi_sim's port, not through the relay; its
    // answers (to the address that activated SOL) did come through it.
    // Byte 5 of an RMCP+ packet is the payload type: 0xc1 = encrypted,
    // authenticated SOL.
    let _ = relay.start_kill();
    let log = std::fs::read_to_string(&capture).unwrap();
    let sol = |dir: &str| {
        log.lines()
            .filter(|l| l.starts_with(dir) && l.get(4..16) == Some("0600ff0706c1"))
            .count()
    };
    assert!(sol("S>C") > 0, "{log}");
    assert_eq!(sol("C>S"), 0, "{log}");
}

/// An interactive console (`ipmitool sol activate`, `ironrack ipmi ... sol
/// activate`) in the background, its stdin kept open.
struct Background {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Background {
    fn start(mut cmd: tokio::process::Command) -> Background {
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the console program");
        let stdin = child.stdin.take().unwrap();
        let mut stdout: ChildStdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Background { child, stdin, out }
    }

    fn stdout(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }

    async fn wait_stdout(&self, want: &[u8]) {
        for _ in 0..1200 {
            if self.stdout().windows(want.len()).any(|w| w == want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "never printed {:?}; printed {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&self.stdout())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_ipmitool_sol_is_taken_over_only_with_force() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sol_port = listener.local_addr().unwrap().port();
    let sim = IpmiSim::start_with_sol(sol_port).await;
    let mut host = TelnetHost::accept(&listener).await;

    let mut cmd = tokio::process::Command::new(require("ipmitool"));
    cmd.args(["-I", "lanplus", "-H", "127.0.0.1", "-p"])
        .arg(sim.port.to_string())
        .args(["-U", USER, "-f"])
        .arg(&sim.pwfile)
        .args(["-C", "3", "sol", "activate"]);
    let stale = Background::start(cmd);
    // ipmitool's stdout is a pipe, so its banner waits in stdio's buffer
    // until SOL data makes it flush; and ipmi_sim drops host output while SOL
    // is inactive. So the host prints until ipmitool shows it.
    let mut active = false;
    for _ in 0..120 {
        host.print(b"before\r\n").await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        if String::from_utf8_lossy(&stale.stdout()).contains("before\r\n") {
            active = true;
            break;
        }
    }
    assert!(active, "ipmitool never got SOL: {:?}", stale.stdout());
    assert!(String::from_utf8_lossy(&stale.stdout()).contains("[SOL Session operational"));

    let addr = format!("127.0.0.1:{}", sim.port).parse().unwrap();
    let client = IpmiClient::new(addr, session("ipmi-sim")).await.unwrap();
    let err = client
        .sol_activate(SolOptions {
            force: false,
            ..SolOptions::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, IpmiError::Completion { code: 0x80, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("already active"),
        "a clear error: {err}"
    );

    let mut console = client.sol_activate(SolOptions::default()).await.unwrap();
    host.print(b"after takeover\r\n").await;
    let (got, _) = collect(&mut console, 16).await;
    assert_eq!(got, b"after takeover\r\n");
    console.send(b"mine\r").await.unwrap();
    console.flush().await.unwrap();
    host.wait_typed(b"mine\r").await;
    assert!(
        !String::from_utf8_lossy(&stale.stdout()).contains("after takeover"),
        "the stale console no longer gets host output"
    );
    console.deactivate().await.unwrap();
    client.close().await;
    drop(stale);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sol_through_ten_percent_loss_is_complete_and_in_order() {
    let fleet = fleet(1, |c| {
        c.bmc.sol.retransmit = Duration::from_millis(100);
        c.bmc.sol.retries = 20;
    })
    .await;
    let sim = &fleet.bmcs[0];
    let mut cfg = session("ironrack-sim");
    cfg.retransmit_initial = Duration::from_millis(100);
    cfg.max_attempts = 10;
    cfg.command_timeout = Duration::from_secs(30);
    let client = IpmiClient::new(sim.addr, cfg).await.unwrap();
    sim.faults.set_loss(0.10);
    let mut console = client
        .sol_activate(SolOptions {
            retransmit: Duration::from_millis(100),
            retries: 20,
            ..SolOptions::default()
        })
        .await
        .unwrap();
    assert!(sim.sol_active());

    let output = pattern(20 * 1024, 2);
    let keys = pattern(2 * 1024, 3);
    assert_eq!(sim.host_write(&output), output.len());
    console.send(&keys).await.unwrap();
    let (got, _) = collect(&mut console, output.len()).await;
    assert!(got == output, "host output arrived changed or out of order");
    host_reads(sim, &keys).await;
    console.flush().await.unwrap();

    // The loss was real: both ends resent, and duplicates were not delivered twice.
    let ours = client.info().sol.unwrap();
    let theirs = sim.sol_stats().unwrap();
    assert!(
        ours.retransmits + theirs.retransmits > 0,
        "{ours:?} {theirs:?}"
    );
    assert_eq!(ours.bytes_received as usize, output.len());
    assert_eq!(theirs.bytes_received as usize, keys.len());
    assert_eq!(sim.host().discarded, 0);

    sim.faults.set_loss(0.0);
    console.deactivate().await.unwrap();
    assert!(!sim.sol_active());
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_sol_activate_against_the_simulator() {
    let fleet = fleet(1, |_| {}).await;
    let sim = &fleet.bmcs[0];
    let dir = Scratch::new("sol-ipmitool");
    let pw = dir.file("pw", PASSWORD);
    for suite in [17u8, 3] {
        let tool = Background::start(ipmitool(sim.addr.port(), suite, &pw, &["sol", "activate"]));
        // (ipmitool's banner sits in its stdio buffer until SOL data flushes it.)
        for _ in 0..600 {
            if sim.sol_active() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(sim.sol_active(), "ipmitool never activated SOL");

        let banner = format!("Debian GNU/Linux 12 sim-{suite} ttyS0\r\n\r\nlogin: ");
        assert_eq!(sim.host_write(banner.as_bytes()), banner.len());
        tool.wait_stdout(banner.as_bytes()).await;
        assert!(tool.stdout().starts_with(b"[SOL Session operational"));

        let mut tool = tool;
        tool.stdin.write_all(b"root\r").await.unwrap();
        host_reads(sim, b"root\r").await;
        let typed = pattern(600, 4);
        tool.stdin.write_all(&typed).await.unwrap();
        host_reads(sim, &typed).await;

        // Several SOL packets of host output.
        let big = pattern(8000, suite as u32);
        assert_eq!(sim.host_write(&big), big.len());
        tool.wait_stdout(&big).await;

        // ipmitool's escape: "~." after a newline deactivates and exits.
        tool.stdin.write_all(b"\r~.").await.unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), tool.child.wait())
            .await
            .expect("ipmitool did not exit on ~.")
            .unwrap();
        assert!(status.success(), "ipmitool exited with {status:?}");
        let _ = sim.host_read(); // the "\r" before the escape
        for _ in 0..100 {
            if !sim.sol_active() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!sim.sol_active(), "ipmitool deactivated SOL on exit");
    }
}

/// Wait until the console ACKed all host output.
async fn wait_acked(sim: &ironrack::sim::SimBmc) {
    for _ in 0..200 {
        if sim.sol_pending() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the console never ACKed the host output");
}

async fn expect_lost(console: &mut SolConsole, within: Duration) -> (SolLost, Duration) {
    let started = Instant::now();
    let ev = tokio::time::timeout(within + Duration::from_secs(10), async {
        loop {
            match console.recv().await {
                Some(SolEvent::Lost(l)) => return l,
                Some(SolEvent::Data(_)) => {}
                other => panic!("expected SOL lost, got {other:?}"),
            }
        }
    })
    .await
    .expect("SOL loss never reported");
    (ev, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresponsive_bmc_mid_sol_is_reported_lost() {
    let fleet = fleet(1, |_| {}).await;
    let sim = &fleet.bmcs[0];
    let client = IpmiClient::new(sim.addr, session("ironrack-sim"))
        .await
        .unwrap();
    let opts = SolOptions {
        retransmit: Duration::from_millis(200),
        retries: 4,
        keepalive: Some(Duration::from_secs(1)),
        ..SolOptions::default()
    };
    let mut console = client.sol_activate(opts.clone()).await.unwrap();
    sim.host_write(b"up\r\n");
    assert_eq!(collect(&mut console, 4).await.0, b"up\r\n");
    wait_acked(sim).await;

    // The BMC stops answering while we type: the keystrokes go unACKed.
    sim.faults.set_unresponsive(true);
    console.send(b"are you there?\r").await.unwrap();
    let bound = opts.retransmit * (opts.retries + 1);
    let (lost, took) = expect_lost(&mut console, bound).await;
    assert_eq!(lost.unsent, b"are you there?\r", "{lost:?}");
    assert!(
        took <= bound + Duration::from_secs(2),
        "reported after {took:?}"
    );
    assert!(console.recv().await.is_none(), "nothing after Lost");
    assert!(console.send(b"x").await.is_err());

    // The BMC comes back: activating again (forced) resumes the console.
    sim.faults.set_unresponsive(false);
    let mut console = client.sol_activate(opts.clone()).await.unwrap();
    sim.host_write(b"back\r\n");
    assert_eq!(collect(&mut console, 6).await.0, b"back\r\n");
    wait_acked(sim).await;

    // Silent both ways: the session keepalive notices, and SOL is reported lost.
    sim.faults.set_unresponsive(true);
    let (lost, _) = expect_lost(&mut console, Duration::from_secs(10)).await;
    assert!(lost.reason.contains("session"), "{lost:?}");
    assert!(lost.unsent.is_empty());
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sol_and_power_commands_share_the_session() {
    let fleet = fleet(1, |c| c.bmc.sol.echo = true).await;
    let sim = &fleet.bmcs[0];
    let client = IpmiClient::new(sim.addr, session("ironrack-sim"))
        .await
        .unwrap();
    let mut console = client.sol_activate(SolOptions::default()).await.unwrap();
    let opened = client.info().stats.sessions_opened;
    // The echoing host answers keystrokes while power commands go on.
    for i in 0..20u8 {
        let key = [b'a' + i];
        console.send(&key).await.unwrap();
        client.power_state().await.unwrap();
        assert_eq!(collect(&mut console, 1).await.0, key);
    }
    assert_eq!(client.info().stats.sessions_opened, opened, "one session");
    // A second console on another session is refused while ours is active,
    // without force.
    let other = IpmiClient::new(sim.addr, session("ironrack-sim"))
        .await
        .unwrap();
    let err = other
        .sol_activate(SolOptions {
            force: false,
            ..SolOptions::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, IpmiError::Completion { code: 0x80, .. }));
    // With force it takes over, and our console is told SOL was deactivated.
    let _taken = other.sol_activate(SolOptions::default()).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), console.recv()).await {
        Ok(Some(SolEvent::Deactivated)) => {}
        other => panic!("expected Deactivated, got {other:?}"),
    }
    assert!(console.recv().await.is_none());
    other.close().await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_sol_activate_bridges_stdin_and_stdout() {
    let fleet = fleet(1, |_| {}).await;
    let sim = &fleet.bmcs[0];
    let dir = Scratch::new("sol-cli");
    let pw = dir.file("pw", PASSWORD);
    let host = format!("127.0.0.1:{}", sim.addr.port());
    let cli = |args: &[&str]| {
        let mut c = ironrack();
        c.args(["ipmi", "-H", &host, "-U", USER, "-f"])
            .arg(&pw)
            .args(args);
        c
    };
    let o = run(&mut cli(&["sol", "info"])).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("inactive"));

    let mut tool = Background::start(cli(&["sol", "activate"]));
    for _ in 0..600 {
        if sim.sol_active() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sim.sol_active(), "the CLI never activated SOL");
    let o = run(&mut cli(&["--json", "sol", "info"])).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["active_instances"],
        serde_json::json!([1]),
        "{}",
        text(&o)
    );

    let banner = pattern(3000, 5);
    sim.host_write(&banner);
    tool.wait_stdout(&banner).await;
    tool.stdin.write_all(b"root\r").await.unwrap();
    host_reads(sim, b"root\r").await;
    // "~~" sends one "~"; "~B" a break; "~." ends it (after a newline).
    tool.stdin.write_all(b"~~x\r~B").await.unwrap();
    host_reads(sim, b"~x\r").await;
    for _ in 0..100 {
        if sim.host().breaks == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.host().breaks, 1);
    tool.stdin.write_all(b"\r~.").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), tool.child.wait())
        .await
        .expect("the CLI did not exit on ~.")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!sim.sol_active(), "deactivated on exit");

    // Taking over a console someone else holds, and deactivating it.
    let other = IpmiClient::new(sim.addr, session("ironrack-sim"))
        .await
        .unwrap();
    let _held = other.sol_activate(SolOptions::default()).await.unwrap();
    let o = run(cli(&["sol", "activate", "--no-force"]).stdin(std::process::Stdio::null())).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already active"),
        "{}",
        text(&o)
    );
    let o = run(&mut cli(&["sol", "deactivate"])).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "deactivated");
    assert!(!sim.sol_active());
    other.close().await;
}
