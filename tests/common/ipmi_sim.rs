//! OpenIPMI's `ipmi_sim` with the stateful `chassis_control` fixture
//! (scripts/start-ipmi-sim.sh): power and boot land in state files the tests
//! read as an independent witness, next to ipmitool.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::*;

pub struct IpmiSim {
    child: tokio::process::Child,
    pub port: u16,
    sol_port: Option<u16>,
    pub state: PathBuf,
    pub pwfile: PathBuf,
    _dir: Scratch,
}

impl IpmiSim {
    pub async fn start() -> IpmiSim {
        Self::start_inner(None).await
    }

    /// ipmi_sim with SOL instance 1 wired to `telnet:127.0.0.1:SOL_PORT`.
    /// ipmi_sim connects to that port when it starts (and retries only every
    /// 10 s), so the caller listens there first. It speaks telnet: it opens
    /// with IAC DO/WILL BINARY and IAC DONT/WONT ECHO, and parses IAC
    /// sequences in what the host sends.
    pub async fn start_with_sol(sol_port: u16) -> IpmiSim {
        Self::start_inner(Some(sol_port)).await
    }

    async fn start_inner(sol_port: Option<u16>) -> IpmiSim {
        require("ipmi_sim");
        let dir = Scratch::new("ipmi-sim");
        let pwfile = dir.file("pw", PASSWORD);
        let state = dir.0.join("state");
        // ipmi_sim's configuration (scripts/start-ipmi-sim.sh writes the
        // password into it) and its persisted state: the peer's, not ours.
        dir.mark_input("state/");
        let port = free_udp_port();
        let child = spawn(&state, port, sol_port, &pwfile).await;
        IpmiSim {
            child,
            port,
            sol_port,
            state,
            pwfile,
            _dir: dir,
        }
    }

    /// Stop ipmi_sim and start it again on the same port with the same
    /// state files, as a BMC reset would: sessions and SOL are gone, and
    /// with SOL it connects to its telnet host port again.
    pub async fn restart(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("ipmi_sim did not exit");
        self.child = spawn(&self.state, self.port, self.sol_port, &self.pwfile).await;
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.join(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// `ironrack ipmi` aimed at this ipmi_sim, with the password in `pwfile`.
    pub fn cli(&self, pwfile: &Path) -> tokio::process::Command {
        let mut c = ironrack();
        c.args([
            "ipmi",
            "-H",
            &format!("127.0.0.1:{}", self.port),
            "-U",
            USER,
            "-f",
        ])
        .arg(pwfile);
        c
    }

    pub async fn ironrack(&self, args: &[&str]) -> std::process::Output {
        run(self
            .cli(&self.pwfile)
            .args(["--profile", "ipmi-sim"])
            .args(args))
        .await
    }

    /// ipmitool's view, as an independent witness.
    pub async fn ipmitool(&self, args: &[&str]) -> String {
        let o = run(tokio::process::Command::new(require("ipmitool"))
            .args([
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-f",
            ])
            .arg(&self.pwfile)
            .args(["-C", "3"])
            .args(args))
        .await;
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    pub async fn wait_state(&self, name: &str, want: &str) {
        for _ in 0..100 {
            if self.read(name) == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{name} never became {want:?} (is {:?})", self.read(name));
    }
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Run scripts/start-ipmi-sim.sh and wait until ipmi_sim answers.
async fn spawn(
    state: &Path,
    port: u16,
    sol_port: Option<u16>,
    pwfile: &Path,
) -> tokio::process::Child {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let child = tokio::process::Command::new("bash")
        .arg(root.join("scripts/start-ipmi-sim.sh"))
        .arg(state)
        .arg(port.to_string())
        .args(sol_port.map(|p| p.to_string()))
        .env("IRONRACK_IPMI_SIM_PASSWORD_FILE", pwfile)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start ipmi_sim");
    let ready = run(tokio::process::Command::new("python3")
        .arg(root.join("scripts/ipmi-sim-ready.py"))
        .arg(port.to_string())
        .args(["--timeout", "30"]))
    .await;
    assert!(
        ready.status.success(),
        "ipmi_sim did not come up: {}",
        text(&ready)
    );
    child
}
