//! `sushy-emulator --fake` (sushy-tools, in `.venv`): a Redfish peer without
//! libvirt, with HTTP basic auth from a bcrypt htpasswd file, and plain
//! reqwest GETs ([`Plain`]) as the independent witness.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ironrack::bmc::redfish::RedfishBmc;
use ironrack::redfish::RedfishConfig;
use serde_json::Value;

use super::{Scratch, PASSWORD, USER};

pub struct FakeSystem {
    pub uuid: &'static str,
    pub name: &'static str,
    pub power: &'static str,
}

pub fn venv_bin(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    if !p.is_file() {
        panic!(
            "{} is missing: run scripts/install-peers.sh (tests never skip a missing peer)",
            p.display()
        );
    }
    p
}

/// A running sushy-emulator; killed on drop.
pub struct Sushy {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _scratch: Option<Scratch>,
}

impl Sushy {
    pub async fn start(systems: &[FakeSystem]) -> Sushy {
        let emulator = venv_bin("sushy-emulator");
        let python = venv_bin("python");
        let scratch = Scratch::new("sushy");

        // bcrypt htpasswd (low cost: the emulator checks it on every request).
        let hash = Command::new(&python)
            .args([
                "-c",
                "import bcrypt, sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(rounds=4)).decode())",
                PASSWORD,
            ])
            .output()
            .expect("run venv python");
        assert!(hash.status.success(), "bcrypt: {hash:?}");
        let htpasswd = scratch.file(
            "htpasswd",
            &format!("{USER}:{}\n", String::from_utf8_lossy(&hash.stdout).trim()),
        );
        let state = scratch.0.join("state");
        std::fs::create_dir_all(&state).unwrap();
        let systems_py: Vec<String> = systems
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{{'uuid': '{}', 'name': '{}', 'power_state': '{}', 'external_notifier': False, \
                     'nics': [{{'mac': '52:54:00:00:00:{:02x}', 'ip': '192.0.2.{}'}}]}}",
                    s.uuid,
                    s.name,
                    s.power,
                    i + 1,
                    i + 1
                )
            })
            .collect();

        // The port is picked by binding :0 and releasing it; retry on the
        // rare race with another process.
        for attempt in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = scratch.file(
                "sushy.conf",
                &format!(
                    "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n\
                     SUSHY_EMULATOR_LISTEN_PORT = {port}\n\
                     SUSHY_EMULATOR_STATE_DIR = '{}'\n\
                     SUSHY_EMULATOR_AUTH_FILE = '{}'\n\
                     SUSHY_EMULATOR_FAKE_SYSTEMS = [\n    {}\n]\n",
                    state.display(),
                    htpasswd.display(),
                    systems_py.join(",\n    ")
                ),
            );
            let log = scratch.0.join(format!("sushy-{attempt}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new(&emulator)
                .arg("--fake")
                .arg("--config")
                .arg(&config)
                .env_remove("http_proxy")
                .env_remove("HTTP_PROXY")
                .env_remove("https_proxy")
                .env_remove("HTTPS_PROXY")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("spawn sushy-emulator");
            let mut sushy = Sushy {
                child,
                port,
                log,
                _scratch: None,
            };
            if sushy.wait_ready().await {
                sushy._scratch = Some(scratch);
                return sushy;
            }
            eprintln!("sushy-emulator attempt {attempt} failed:\n{}", sushy.log());
        }
        panic!("sushy-emulator did not start");
    }

    /// Poll the service root until it answers; false if the process died.
    pub async fn wait_ready(&mut self) -> bool {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("sushy-emulator exited: {status}");
                return false;
            }
            if let Ok(r) = http.get(format!("{}/redfish/v1/", self.url())).send().await {
                if r.status().is_success() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("sushy-emulator not ready after 30 s:\n{}", self.log());
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Access-log lines containing `needle` (e.g. `"POST /redfish/..."`).
    pub fn requests(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    pub fn bmc(&self, system_id: Option<&str>) -> RedfishBmc {
        RedfishBmc::new(self.config(system_id)).unwrap()
    }

    pub fn config(&self, system_id: Option<&str>) -> RedfishConfig {
        let mut cfg = RedfishConfig::new(self.url(), USER, PASSWORD);
        cfg.system_id = system_id.map(str::to_owned);
        cfg.request_timeout = Duration::from_secs(10);
        cfg.operation_timeout = Duration::from_secs(60);
        cfg
    }

    pub fn plain(&self) -> Plain {
        Plain {
            http: reqwest::Client::new(),
            base: self.url(),
        }
    }
}

impl Drop for Sushy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Independent checks: plain GETs with basic auth, no ironrack code.
pub struct Plain {
    http: reqwest::Client,
    base: String,
}

impl Plain {
    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn system(&self, uuid: &str) -> Value {
        self.get(&format!("/redfish/v1/Systems/{uuid}")).await
    }

    pub async fn power(&self, uuid: &str) -> String {
        self.system(uuid).await["PowerState"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Poll until `PowerState == want` (the fake driver lands changes 1-11 s
    /// later); returns the distinct states seen on the way.
    pub async fn wait_power(&self, uuid: &str, want: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen: Vec<String> = Vec::new();
        loop {
            let p = self.power(uuid).await;
            if seen.last() != Some(&p) {
                seen.push(p.clone());
            }
            if p == want {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{uuid}: PowerState still {p:?}, want {want:?} after 30 s (seen {seen:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
