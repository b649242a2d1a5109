//! Consoles through `ironrack serve` as a process: the stock `baremetal`
//! CLI's `node console enable | show | disable`; OpenIPMI's ipmi_sim, whose
//! serial port is a telnet connection to a listener of this test, bridged to
//! two TCP viewers at once (one writer, one read-only); the host side dropped
//! and restored with the console log keeping both halves; our simulator's
//! SOL through 10 % loss; a console following its node to another BMC when
//! driver_info changes; a pty pair as a node's `serial_device`; and a
//! Redfish node without a serial line refused. Every byte is checked at the
//! other end: the TCP viewers, the host, the log files.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::agent::{enroll, faultstring, ipmi_node, Agent};
use common::ipmi_sim::IpmiSim;
use common::sushy::venv_bin;
use common::telnet::TelnetHost;
use common::*;
use ironrack::sim::redfish::{RedfishFleet, RedfishFleetConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Generous bound for anything we wait on.
const DEADLINE: Duration = Duration::from_secs(30);

/// The notices the bridge sends viewers.
const WRITER: &[u8] = b"[ironrack console] you have write access";
const READ_ONLY: &[u8] = b"[ironrack console] read-only: another viewer has write access";
const NOT_FORWARDED: &[u8] = b"[ironrack console] read-only: input not forwarded";
const TAKEN: &[u8] = b"write access taken by another viewer; you are read-only now";

/// The agent's config: no power sync (nothing but the console talks to the
/// BMCs), consoles on loopback in `ports`, logs under `logs`.
fn conf(ports: &str, logs: &Path) -> String {
    format!(
        "[conductor]\nsync_power_state_interval = 0\n\
         [console]\nhost = \"127.0.0.1\"\nport_range = \"{ports}\"\nlog_dir = \"{}\"\n",
        logs.display()
    )
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
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

/// A TCP viewer of a console: everything it is sent is collected.
struct Viewer {
    write: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Mutex<Vec<u8>>>,
    closed: Arc<Mutex<bool>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Viewer {
    async fn connect(port: u16) -> Viewer {
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut read, write) = s.into_split();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(false));
        let (s2, c2) = (seen.clone(), closed.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => s2.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
            *c2.lock().unwrap() = true;
        });
        Viewer {
            write,
            seen,
            closed,
            reader,
        }
    }

    fn seen(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }

    fn shows(&self, needle: &[u8]) -> bool {
        contains(&self.seen.lock().unwrap(), needle)
    }

    async fn wait_for(&self, needle: &[u8]) {
        self.wait_for_within(needle, DEADLINE).await
    }

    async fn wait_for_within(&self, needle: &[u8], within: Duration) {
        let end = Instant::now() + within;
        while !self.shows(needle) {
            assert!(
                Instant::now() < end,
                "the viewer never got {:?} in {within:?}; it got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&self.seen())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until the bridge closes the connection.
    async fn wait_closed(&self) {
        let end = Instant::now() + DEADLINE;
        while !*self.closed.lock().unwrap() {
            assert!(Instant::now() < end, "the console never closed the viewer");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// `PUT .../states/console`: 202.
async fn set_console(agent: &Agent, node: &str, enabled: bool) {
    let (status, body) = agent
        .put(
            &format!("/v1/nodes/{node}/states/console"),
            &json!({ "enabled": enabled }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

/// The console's TCP port once `GET .../states/console` shows it enabled,
/// checking the console_info Nova parses on the way.
async fn console_port(agent: &Agent, node: &str) -> u16 {
    let end = Instant::now() + DEADLINE;
    loop {
        let (status, body) = agent.get(&format!("/v1/nodes/{node}/states/console")).await;
        assert_eq!(status, 200, "{body}");
        if body["console_enabled"] == true && body["console_info"].is_object() {
            return port_of(&body["console_info"]);
        }
        let (_, n) = agent.get(&format!("/v1/nodes/{node}")).await;
        assert!(
            n["last_error"].is_null(),
            "enabling the console failed: {n:#}"
        );
        assert!(Instant::now() < end, "the console never came up: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `{"type": "socat", "url": "tcp://127.0.0.1:PORT"}` -> PORT.
fn port_of(info: &Value) -> u16 {
    assert_eq!(info["type"], "socat", "{info}");
    let url = info["url"].as_str().unwrap_or_else(|| panic!("{info}"));
    let port = url
        .strip_prefix("tcp://127.0.0.1:")
        .unwrap_or_else(|| panic!("console url {url:?}"));
    port.parse()
        .unwrap_or_else(|_| panic!("console url {url:?}"))
}

/// Every console log file of the node, oldest first, concatenated.
fn console_log(logs: &Path, uuid: &str) -> Vec<u8> {
    let dir = logs.join(uuid);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("console-") && n.ends_with(".log"))
        })
        .collect();
    assert!(!files.is_empty(), "no console log in {}", dir.display());
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect()
}

/// The host prints `line` until the viewer shows it (SOL may come up a
/// moment after the console is enabled, and ipmi_sim drops host output
/// while SOL is inactive).
async fn print_until_seen(host: &mut TelnetHost, viewer: &Viewer, line: &[u8], within: Duration) {
    let end = Instant::now() + within;
    loop {
        host.print(line).await;
        for _ in 0..25 {
            if viewer.shows(line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            Instant::now() < end,
            "host output {:?} never reached the viewer; it got {:?}",
            String::from_utf8_lossy(line),
            String::from_utf8_lossy(&viewer.seen())
        );
    }
}

fn ipmi_sim_node(name: &str, port: u16) -> Value {
    let mut n = ipmi_node(name, port);
    n["driver_info"]["hw_profile"] = json!("ipmi-sim");
    n
}

/// `baremetal ... -f json`, which must succeed.
async fn baremetal_json(agent: &Agent, args: &[&str]) -> Value {
    let o = run(agent.baremetal().args(args).args(["-f", "json"])).await;
    assert!(o.status.success(), "baremetal {args:?}: {}", text(&o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("baremetal {args:?}: {e}: {}", text(&o)))
}

async fn baremetal_ok(agent: &Agent, args: &[&str]) -> String {
    let o = run(agent.baremetal().args(args)).await;
    assert!(o.status.success(), "baremetal {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baremetal_cli_enables_shows_and_disables_a_console() {
    venv_bin("baremetal");
    let fleet = fleet(1, |c| c.bmc.sol.echo = true).await;
    let sim = &fleet.bmcs[0];
    let logs = Scratch::new("console-logs");
    let agent = Agent::start(&conf("21100-21149", &logs.0)).await;
    let uuid = enroll(&agent, ipmi_node("con-cli", sim.addr.port())).await;

    let shown = baremetal_json(&agent, &["node", "console", "show", "con-cli"]).await;
    assert_eq!(shown["console_enabled"], false, "{shown}");
    assert!(shown["console_info"].is_null(), "{shown}");

    baremetal_ok(&agent, &["node", "console", "enable", "con-cli"]).await;
    let end = Instant::now() + DEADLINE;
    let shown = loop {
        let s = baremetal_json(&agent, &["node", "console", "show", "con-cli"]).await;
        if s["console_enabled"] == true && s["console_info"].is_object() {
            break s;
        }
        assert!(Instant::now() < end, "never enabled: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let port = port_of(&shown["console_info"]);
    assert!((21100..=21149).contains(&port), "{shown}");
    let node = baremetal_json(&agent, &["node", "show", "con-cli"]).await;
    assert_eq!(node["console_enabled"], true, "{node}");

    // The URL is a working console: keystrokes reach the simulated host,
    // whose shell echoes them back to the viewer.
    let mut viewer = Viewer::connect(port).await;
    viewer.wait_for(WRITER).await;
    let end = Instant::now() + DEADLINE;
    while !sim.sol_active() {
        assert!(Instant::now() < end, "the agent never activated SOL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    viewer.send(b"uname -a\r").await;
    viewer.wait_for(b"uname -a\r").await;

    baremetal_ok(&agent, &["node", "console", "disable", "con-cli"]).await;
    let end = Instant::now() + DEADLINE;
    let shown = loop {
        let s = baremetal_json(&agent, &["node", "console", "show", "con-cli"]).await;
        if s["console_enabled"] == false {
            break s;
        }
        assert!(Instant::now() < end, "never disabled: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(shown["console_info"].is_null(), "{shown}");
    // The viewer is told and let go, the port is closed, and SOL is
    // deactivated on the BMC.
    viewer.wait_for(b"console disabled").await;
    viewer.wait_closed().await;
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "the console port still accepts connections"
    );
    let end = Instant::now() + DEADLINE;
    while sim.sol_active() {
        assert!(Instant::now() < end, "SOL still active after disable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, n) = agent.get(&format!("/v1/nodes/{uuid}")).await;
    assert_eq!(n["console_enabled"], false, "{n}");
    assert!(n["last_error"].is_null(), "{n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_sim_console_fans_out_to_viewers_and_takes_input_from_the_writer_only() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = IpmiSim::start_with_sol(listener.local_addr().unwrap().port()).await;
    let mut host = TelnetHost::accept(&listener).await;
    let logs = Scratch::new("console-logs");
    let agent = Agent::start(&conf("21150-21199", &logs.0)).await;
    let uuid = enroll(&agent, ipmi_sim_node("con-ipmisim", sim.port)).await;
    set_console(&agent, "con-ipmisim", true).await;
    let port = console_port(&agent, "con-ipmisim").await;

    // The first viewer gets write access; the second is read-only.
    let mut writer = Viewer::connect(port).await;
    writer.wait_for(WRITER).await;
    let mut reader = Viewer::connect(port).await;
    reader.wait_for(READ_ONLY).await;
    assert!(!reader.shows(WRITER));

    print_until_seen(&mut host, &writer, b"ironrack-sim login: ", DEADLINE).await;
    // Both viewers see all host output, several SOL packets of it.
    reader.wait_for(b"ironrack-sim login: ").await;
    let big = pattern(3000, 1);
    host.print(&big).await;
    writer.wait_for(&big).await;
    reader.wait_for(&big).await;

    // The read-only viewer's keystrokes are not forwarded (it is told so);
    // the writer's reach the host.
    reader.send(b"reboot-from-the-reader\r").await;
    reader.wait_for(NOT_FORWARDED).await;
    writer.send(b"root\r").await;
    host.wait_typed(b"root\r").await;

    // Ctrl-E c f: the second viewer takes write access; now its keystrokes
    // reach the host and the first viewer's do not.
    reader.send(b"\x05cf").await;
    reader.wait_for(WRITER).await;
    writer.wait_for(TAKEN).await;
    writer.send(b"from-the-old-writer\r").await;
    writer.wait_for(NOT_FORWARDED).await;
    reader.send(b"whoami\r").await;
    host.wait_typed(b"root\rwhoami\r").await;
    host.print(b"root\r\n").await;
    writer.wait_for(b"root\r\n").await;
    reader.wait_for(b"root\r\n").await;

    // Nothing else ever reached the host.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let typed = host.typed();
    assert_eq!(
        typed,
        b"root\rwhoami\r",
        "the host read {:?}",
        String::from_utf8_lossy(&typed)
    );
    // Everything the host printed is in the log.
    let log = console_log(&logs.0, &uuid);
    assert!(contains(&log, b"ironrack-sim login: ") && contains(&log, &big));
}

/// Type `keys` on the viewer until the host has read them (keystrokes typed
/// while the line is down go nowhere, by design).
async fn type_until_read(viewer: &mut Viewer, host: &TelnetHost, keys: &[u8]) {
    let end = Instant::now() + DEADLINE;
    loop {
        viewer.send(keys).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if contains(&host.typed(), keys) {
            return;
        }
        assert!(
            Instant::now() < end,
            "keystrokes never reached the host: {:?}",
            String::from_utf8_lossy(&host.typed())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_recovers_when_the_host_side_drops_and_the_log_keeps_both_halves() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut sim = IpmiSim::start_with_sol(listener.local_addr().unwrap().port()).await;
    let mut host = TelnetHost::accept(&listener).await;
    let logs = Scratch::new("console-logs");
    let agent = Agent::start(&conf("21200-21249", &logs.0)).await;
    let uuid = enroll(&agent, ipmi_sim_node("con-drop", sim.port)).await;
    set_console(&agent, "con-drop", true).await;
    let port = console_port(&agent, "con-drop").await;
    let mut viewer = Viewer::connect(port).await;
    viewer.wait_for(WRITER).await;

    print_until_seen(&mut host, &viewer, b"before the drop\r\n", DEADLINE).await;
    viewer.send(b"typed before\r").await;
    host.wait_typed(b"typed before\r").await;

    // The host side goes away (the host's end of the serial line) and comes
    // back: ipmi_sim connects again on its own, within 10 s. The same
    // viewer, still connected, gets the host's output again, and its
    // keystrokes reach the new connection.
    drop(host);
    let mut host = TelnetHost::accept_within(&listener, Duration::from_secs(60)).await;
    print_until_seen(&mut host, &viewer, b"after the restore\r\n", DEADLINE).await;
    type_until_read(&mut viewer, &host, b"typed after\r").await;

    // Then the BMC itself resets: its sessions and SOL are gone. The agent
    // notices (no answer on the session), tells the viewers, and activates
    // SOL again on a new session once the BMC is back.
    drop(host);
    sim.restart().await;
    let mut host = TelnetHost::accept_within(&listener, Duration::from_secs(60)).await;
    print_until_seen(
        &mut host,
        &viewer,
        b"after the BMC reset\r\n",
        Duration::from_secs(120),
    )
    .await;
    type_until_read(&mut viewer, &host, b"typed after the reset\r").await;
    let seen = viewer.seen();
    assert!(
        contains(&seen, b"[ironrack console] serial-over-LAN lost")
            && contains(&seen, b"[ironrack console] serial-over-LAN re-activated"),
        "the viewer was told: {:?}",
        String::from_utf8_lossy(&seen)
    );

    // The log has every part, in order, with the notices between.
    let log = console_log(&logs.0, &uuid);
    let at = |needle: &[u8]| {
        log.windows(needle.len())
            .position(|w| w == needle)
            .unwrap_or_else(|| {
                panic!(
                    "the console log lacks {:?}: {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&log)
                )
            })
    };
    assert!(at(b"before the drop\r\n") < at(b"after the restore\r\n"));
    assert!(at(b"after the restore\r\n") < at(b"serial-over-LAN re-activated"));
    assert!(at(b"serial-over-LAN re-activated") < at(b"after the BMC reset\r\n"));
    // A viewer joining now is shown the recent output first: all of it.
    let late = Viewer::connect(port).await;
    late.wait_for(b"after the BMC reset\r\n").await;
    let replay = late.seen();
    for part in [&b"before the drop\r\n"[..], b"after the restore\r\n"] {
        assert!(
            contains(&replay, part),
            "{:?}",
            String::from_utf8_lossy(&replay)
        );
    }
    let (_, n) = agent.get(&format!("/v1/nodes/{uuid}")).await;
    assert_eq!(n["console_enabled"], true, "{n}");
    assert!(n["last_error"].is_null(), "no operator needed: {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_sol_through_ten_percent_loss_reaches_the_viewer_complete_and_in_order() {
    let fleet = fleet(1, |c| {
        c.bmc.sol.retransmit = Duration::from_millis(100);
        c.bmc.sol.retries = 20;
    })
    .await;
    let sim = &fleet.bmcs[0];
    let logs = Scratch::new("console-logs");
    let agent = Agent::start(&conf("21250-21299", &logs.0)).await;
    let uuid = enroll(&agent, ipmi_node("con-loss", sim.addr.port())).await;
    set_console(&agent, "con-loss", true).await;
    let port = console_port(&agent, "con-loss").await;
    let mut viewer = Viewer::connect(port).await;
    viewer.wait_for(WRITER).await;
    let end = Instant::now() + DEADLINE;
    while !sim.sol_active() {
        assert!(Instant::now() < end, "the agent never activated SOL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = viewer.seen().len();

    sim.faults.set_loss(0.10);
    let output = pattern(16 * 1024, 2);
    let keys = pattern(1024, 3);
    assert_eq!(sim.host_write(&output), output.len());
    viewer.send(&keys).await;
    let end = Instant::now() + Duration::from_secs(120);
    while viewer.seen().len() < start + output.len() {
        assert!(
            Instant::now() < end,
            "the viewer got {} of {} bytes",
            viewer.seen().len() - start,
            output.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let typed = sim_host_reads(sim, end, |t| t.len() >= keys.len()).await;
    let stats = sim.sol_stats().expect("SOL still active");
    sim.faults.set_loss(0.0);

    // Exactly the host's bytes, once each and in order, with no notice of a
    // lost link in between; and the keystrokes likewise.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = viewer.seen()[start..].to_vec();
    assert!(
        got == output,
        "host output arrived changed, duplicated or out of order ({} bytes, {:?}...)",
        got.len(),
        String::from_utf8_lossy(&got[..got.len().min(200)])
    );
    assert!(typed == keys, "keystrokes arrived changed or out of order");
    // The loss was real: the BMC resent.
    assert!(stats.retransmits > 0, "{stats:?}");
    assert_eq!(sim.host().discarded, 0);
    assert!(contains(&console_log(&logs.0, &uuid), &output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_follows_its_node_to_another_bmc_when_driver_info_changes() {
    let fleet = fleet(2, |_| {}).await;
    let (old, new) = (&fleet.bmcs[0], &fleet.bmcs[1]);
    let logs = Scratch::new("console-logs");
    let agent = Agent::start(&conf("21400-21449", &logs.0)).await;
    enroll(&agent, ipmi_node("con-move", old.addr.port())).await;
    set_console(&agent, "con-move", true).await;
    let port = console_port(&agent, "con-move").await;
    let viewer = Viewer::connect(port).await;
    viewer.wait_for(WRITER).await;
    let end = Instant::now() + DEADLINE;
    while !old.sol_active() {
        assert!(Instant::now() < end, "the agent never activated SOL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    old.host_write(b"the old BMC's host\r\n");
    viewer.wait_for(b"the old BMC's host\r\n").await;

    // The machine's BMC is now another one: the console moves with it, on
    // the same port, and lets go of the old BMC's SOL.
    let (status, body) = agent
        .patch(
            "/v1/nodes/con-move",
            &json!([{"op": "replace", "path": "/driver_info/ipmi_port", "value": new.addr.port()}]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    viewer.wait_closed().await;
    let end = Instant::now() + DEADLINE;
    while !new.sol_active() || old.sol_active() {
        let (_, n) = agent.get("/v1/nodes/con-move").await;
        assert!(n["last_error"].is_null(), "{n:#}");
        assert!(
            Instant::now() < end,
            "SOL active on the new BMC: {}, on the old: {}",
            new.sol_active(),
            old.sol_active()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(console_port(&agent, "con-move").await, port);
    let mut viewer = Viewer::connect(port).await;
    viewer.wait_for(WRITER).await;
    new.host_write(b"the new BMC's host\r\n");
    viewer.wait_for(b"the new BMC's host\r\n").await;
    viewer.send(b"typed after the move\r").await;
    sim_host_reads(new, Instant::now() + DEADLINE, |t| {
        contains(t, b"typed after the move\r")
    })
    .await;
    assert!(old.host_read().is_empty(), "keys went to the old BMC");

    // A change that is not to the line leaves the console as it is.
    let (status, body) = agent
        .patch(
            "/v1/nodes/con-move",
            &json!([{"op": "add", "path": "/extra/rack", "value": "r7"}]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    new.host_write(b"still the same viewer\r\n");
    viewer.wait_for(b"still the same viewer\r\n").await;
    assert!(!*viewer.closed.lock().unwrap());
    set_console(&agent, "con-move", false).await;
    viewer.wait_closed().await;
}

/// What a simulated BMC's host reads on its serial port until `done`.
async fn sim_host_reads(
    sim: &ironrack::sim::SimBmc,
    end: Instant,
    done: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let mut typed = Vec::new();
    while !done(&typed) {
        typed.extend(sim.host_read());
        assert!(
            Instant::now() < end,
            "the host read {} bytes: {:?}",
            typed.len(),
            String::from_utf8_lossy(&typed[..typed.len().min(200)])
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    typed
}

/// A pty pair: the master end plays the host; the slave's path is the
/// node's `serial_device` (the agent opens it; this process lets go of it).
fn pty() -> (tokio_serial::SerialStream, String) {
    use tokio_serial::SerialPort;
    let (master, slave) = tokio_serial::SerialStream::pair().unwrap();
    let device = slave.name().expect("the pty slave has a path");
    drop(slave);
    (master, device)
}

/// One simulated Redfish system, to hang a serial line on.
async fn one_redfish() -> RedfishFleet {
    RedfishFleet::start(RedfishFleetConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        1,
        USER,
        PASSWORD,
    ))
    .await
    .unwrap()
}

/// What the host (the pty master) reads until `want` has arrived.
async fn host_reads(master: &mut tokio_serial::SerialStream, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let end = Instant::now() + DEADLINE;
    while !contains(&got, want) {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, master.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!(
                "the host never read the keystrokes ({other:?}); got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pty_as_serial_device_is_a_console_both_ways() {
    let (mut master, device) = pty();
    let rf = one_redfish().await;
    let logs = Scratch::new("console-logs");
    let agent = Agent::start(&conf("21300-21349", &logs.0)).await;
    let uuid = enroll(
        &agent,
        json!({"name": "con-pty", "driver": "redfish", "driver_info": {
            "redfish_address": rf.base_url(), "redfish_system_id": rf.system(0).path(),
            "redfish_username": USER, "redfish_password": PASSWORD,
            "serial_device": device, "serial_baud": 115200}}),
    )
    .await;
    set_console(&agent, "con-pty", true).await;
    let port = console_port(&agent, "con-pty").await;
    let mut viewer = Viewer::connect(port).await;
    viewer.wait_for(WRITER).await;

    // The agent opens the line a moment after the console is enabled; what
    // the master writes before that is not kept, so repeat it until seen.
    let end = Instant::now() + DEADLINE;
    while !viewer.shows(b"pty host says hi\r\n") {
        master.write_all(b"pty host says hi\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            Instant::now() < end,
            "the master's output never reached the viewer: {:?}",
            String::from_utf8_lossy(&viewer.seen())
        );
    }
    let big = pattern(4000, 6);
    master.write_all(&big).await.unwrap();
    viewer.wait_for(&big).await;

    viewer.send(b"typed on the viewer\r").await;
    let got = host_reads(&mut master, b"typed on the viewer\r").await;
    assert_eq!(got, b"typed on the viewer\r", "only the keystrokes");
    assert!(contains(&console_log(&logs.0, &uuid), &big));

    set_console(&agent, "con-pty", false).await;
    viewer.wait_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_node_without_a_serial_line_has_no_console() {
    let rf = RedfishFleet::start(RedfishFleetConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        1,
        USER,
        PASSWORD,
    ))
    .await
    .unwrap();
    let logs = Scratch::new("console-logs");
    let agent = Agent::start(&conf("21350-21399", &logs.0)).await;
    enroll(
        &agent,
        json!({"name": "con-rf", "driver": "redfish", "driver_info": {
            "redfish_address": rf.base_url(), "redfish_system_id": rf.system(0).path(),
            "redfish_username": USER, "redfish_password": PASSWORD}}),
    )
    .await;
    let (status, body) = agent
        .put("/v1/nodes/con-rf/states/console", &json!({"enabled": true}))
        .await;
    assert_eq!(status, 400, "{body}");
    let msg = faultstring(&body);
    assert!(
        msg.contains("console not supported"),
        "a clear message: {msg}"
    );
    let (status, body) = agent.get("/v1/nodes/con-rf/states/console").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"console_enabled": false, "console_info": null})
    );
    // Nothing was left behind: the node is not locked and records no error.
    let (_, n) = agent.get("/v1/nodes/con-rf").await;
    assert!(
        n["reservation"].is_null() && n["last_error"].is_null(),
        "{n}"
    );
    assert!(!logs.0.join(n["uuid"].as_str().unwrap()).exists());
}

/// Console port access controls: a console listens on `[console] host` only;
/// with `token_file` a viewer sees nothing and types nothing until it sends
/// the token; a wrong token is refused (and logged, the token never);
/// connections that owe the token are bounded by `max_viewers`; a token file
/// others can read is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_ports_admit_only_token_holders_on_the_configured_address() {
    use std::os::unix::fs::PermissionsExt;
    const TOKEN: &str = "console-token-Zq7vK2";
    let (mut master, device) = pty();
    let rf = one_redfish().await;
    let logs = Scratch::new("console-logs");
    let secrets = Scratch::new("console-token");
    let token_file = secrets.file("token", &format!("{TOKEN}\n"));
    let config = format!(
        "{}token_file = \"{}\"\nmax_viewers = 4\n",
        conf("21350-21399", &logs.0),
        token_file.display()
    );

    // A token file the group or others can read: the agent does not start.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    match Agent::try_start(&config).await {
        Ok(_) => panic!("the agent started with a world-readable token file"),
        Err((_, log)) => assert!(log.contains("chmod 600"), "{log}"),
    }
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let agent = Agent::start(&config).await;
    enroll(
        &agent,
        json!({"name": "con-acl", "driver": "redfish", "driver_info": {
            "redfish_address": rf.base_url(), "redfish_system_id": rf.system(0).path(),
            "redfish_username": USER, "redfish_password": PASSWORD,
            "serial_device": device, "serial_baud": 115200}}),
    )
    .await;
    set_console(&agent, "con-acl", true).await;
    let port = console_port(&agent, "con-acl").await;

    // Only on the configured address: 127.0.0.2 reaches this host too, but
    // nothing listens there.
    let other = TcpStream::connect(("127.0.0.2", port)).await;
    assert!(other.is_err(), "the console answered on 127.0.0.2");

    // A wrong token: refused, closed, logged.
    let mut intruder = Viewer::connect(port).await;
    intruder.wait_for(b"token: ").await;
    intruder.send(b"guess\r\n").await;
    intruder.wait_for(b"access denied").await;
    intruder.wait_closed().await;

    // Connections that owe the token hold the pending-login slots
    // (max_viewers = 4); one more is turned away at once.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let v = Viewer::connect(port).await;
        v.wait_for(b"token: ").await;
        idle.push(v);
    }
    let turned_away = Viewer::connect(port).await;
    turned_away.wait_for(b"too many pending logins").await;
    turned_away.wait_closed().await;
    // They send nothing and type nothing; once they hang up, the slots free
    // up (after the refusal delay) and the token holder gets in.
    for v in &mut idle {
        v.send(b"ls /\r").await;
    }
    idle.clear();
    let end = Instant::now() + DEADLINE;
    let mut holder = loop {
        let mut v = Viewer::connect(port).await;
        let prompt = Instant::now() + Duration::from_secs(5);
        while !v.shows(b"token: ") && !*v.closed.lock().unwrap() && Instant::now() < prompt {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if v.shows(b"token: ") {
            v.send(format!("{TOKEN}\r\n").as_bytes()).await;
        }
        let admitted = Instant::now() + Duration::from_secs(5);
        while !v.shows(WRITER) && !*v.closed.lock().unwrap() && Instant::now() < admitted {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if v.shows(WRITER) {
            break v;
        }
        assert!(
            Instant::now() < end,
            "the token holder never got in: {:?}",
            String::from_utf8_lossy(&v.seen())
        );
    };

    // A second viewer without the token sees none of the host's output.
    let mut snooper = Viewer::connect(port).await;
    snooper.wait_for(b"token: ").await;
    let end = Instant::now() + DEADLINE;
    while !holder.shows(b"host secret output\r\n") {
        master.write_all(b"host secret output\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            Instant::now() < end,
            "the host's output never reached the holder"
        );
    }
    assert!(!snooper.shows(b"host secret output"));
    assert!(!intruder.shows(b"host secret output"));
    snooper.send(b"rm -rf /\r\n").await;
    snooper.wait_for(b"access denied").await;

    // The host reads exactly what the holder typed: nothing from the others.
    holder.send(b"typed by the holder\r").await;
    let got = host_reads(&mut master, b"typed by the holder\r").await;
    assert_eq!(got, b"typed by the holder\r", "only the holder's keys");

    let log = agent.log();
    assert!(
        log.contains("console viewer refused: bad or missing token"),
        "{log}"
    );
    assert!(
        log.contains("console viewer refused: too many pending logins"),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "the token is in the agent's log");
    set_console(&agent, "con-acl", false).await;
    holder.wait_closed().await;
}
