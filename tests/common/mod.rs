//! Helpers shared by the integration tests that run real peers.
#![allow(dead_code)]

pub mod agent;
pub mod ipmi_sim;
pub mod sushy;
pub mod telnet;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use ironrack::sim::{BmcConfig, Fleet, FleetConfig};

pub const USER: &str = "admin";
pub const PASSWORD: &str = "ironrack-test-pw";

/// Fail loudly when a peer is missing: CI installs them with scripts/install-peers.sh,
/// and a test that silently skips proves nothing.
pub fn require(bin: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{bin} is not installed: run scripts/install-peers.sh (tests never skip a missing peer)"
    );
}

/// A scratch directory removed on drop.
///
/// With `IRONRACK_TEST_OUTPUT=DIR` (scripts/test.sh sets it) scratch
/// directories are made under DIR and kept, so that every file a test run
/// produced (agent logs and databases, simulator and peer logs) can be
/// searched for the test passwords afterwards (scripts/check-test-secrets.sh).
/// Files a test writes itself with [`Scratch::file`] are its inputs (password
/// files, configs) and are listed in `.inputs`, which that search skips.
pub struct Scratch(pub PathBuf);

/// Where scratch directories are kept, when they are.
fn kept_output() -> Option<PathBuf> {
    std::env::var_os("IRONRACK_TEST_OUTPUT")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let base = kept_output().unwrap_or_else(std::env::temp_dir);
        let p = base.join(format!(
            "ironrack-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    /// Write an input file (see the type's doc).
    pub fn file(&self, name: &str, body: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, body).unwrap();
        self.mark_input(name);
        p
    }
    /// Declare `rel` an input the test made (`dir/` for a whole directory,
    /// such as a peer's own configuration and state).
    pub fn mark_input(&self, rel: &str) {
        if kept_output().is_some() {
            use std::io::Write;
            let mut inputs = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.0.join(".inputs"))
                .unwrap();
            writeln!(inputs, "{rel}").unwrap();
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if kept_output().is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fleet of simulated BMCs on ephemeral loopback ports.
pub async fn fleet(count: usize, tweak: impl FnOnce(&mut FleetConfig)) -> Fleet {
    let mut cfg = FleetConfig {
        first: "127.0.0.1:0".parse().unwrap(),
        count,
        bmc: BmcConfig::new(USER, PASSWORD.as_bytes()),
        loss: 0.0,
        latency: Duration::ZERO,
        jitter: Duration::ZERO,
        unresponsive: vec![],
    };
    tweak(&mut cfg);
    Fleet::start(cfg).await.unwrap()
}

/// Run a command to completion with a generous bound, off the async threads.
pub async fn run(cmd: &mut tokio::process::Command) -> Output {
    cmd.kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(120), cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => panic!("cannot run {cmd:?}: {e}"),
        Err(_) => panic!("{cmd:?} hung for 120 s"),
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The ironrack binary built for these tests.
pub fn ironrack() -> tokio::process::Command {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ironrack"))
}

/// A free UDP port on loopback (bound then released).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// ipmitool (lanplus) aimed at a loopback BMC port, password from `pwfile`.
pub fn ipmitool(
    port: u16,
    suite: u8,
    pwfile: &std::path::Path,
    args: &[&str],
) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(require("ipmitool"));
    c.args([
        "-I",
        "lanplus",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        USER,
        "-f",
    ])
    .arg(pwfile)
    .args(["-C", &suite.to_string(), "-N", "1", "-R", "3"])
    .args(args);
    c
}
