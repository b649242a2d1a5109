//! The fault campaign (issue 8): 1000 simulated IPMI BMCs and 100 simulated
//! Redfish systems, all enrolled over the API in a running agent (`ironrack
//! serve`, a real process), under faults, with the power sync loop running
//! while 500 power changes go over the API at once; then the same with a
//! `kill -9` of the agent in the middle of the load.
//!
//! Faults: 20 % packet loss each way and 50 ± 30 ms latency on every IPMI
//! BMC, 50 ± 30 ms latency and 2 % 503s on the Redfish service; 10 BMCs
//! (8 IPMI, 2 Redfish) stop answering once the load has started; 5 refuse
//! the credentials (4 IPMI BMCs whose password was changed, 1 Redfish node
//! enrolled with a wrong one); 1 IPMI BMC answers everything with garbage.
//!
//! What must hold (the simulators are the witnesses; a poller lists every
//! node once a second all along):
//! - every power change lands (target cleared, power state the end state,
//!   the simulated machine agrees) or ends with the target cleared and
//!   `last_error` set;
//! - the 16 faulty nodes go to maintenance with fault "power failure"; no
//!   other node is ever seen in maintenance or with a fault;
//! - no power change outlives `power_state_change_timeout` (plus one BMC
//!   timeout and the poll granularity), and every lock is released;
//! - no simulated BMC ever held more sessions than its limit;
//! - across `kill -9` and a restart: every node is still there with the same
//!   driver_info, targets in flight are cleared with a `last_error` saying
//!   so, the sealed passwords still work and the power sync resumes.
//!
//! Bounded waits only: no wall-clock performance limit.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::{fleet, PASSWORD, USER};
use ironrack::sim::redfish::{RedfishFleet, RedfishFleetConfig};
use ironrack::sim::Fleet;
use serde_json::{json, Value};
use tokio::sync::watch;

const IPMI: usize = 1000;
const REDFISH: usize = 100;
const CHANGES: usize = 500;
/// Sessions each simulated BMC allows (its default).
const MAX_SESSIONS: usize = 8;

const SYNC_INTERVAL: f64 = 3.0;
/// Per BMC request. Under 20 % loss each way a session set-up needs about 6
/// round trips with retransmissions: within 5 s, 6.5 % of fresh set-ups
/// fail (and a healthy node can fail 3 sweeps in a row); within 10 s, under
/// 1 % (measured with the sans-IO session against the simulated BMC).
const BMC_TIMEOUT: f64 = 10.0;
const CHANGE_TIMEOUT: f64 = 20.0;
const MAX_RETRIES: u32 = 3;
const POWER_DELAY: Duration = Duration::from_millis(1000);

/// IPMI BMCs that stop answering once the load has started.
const DEAD_IPMI: [usize; 8] = [101, 202, 303, 404, 505, 606, 707, 808];
/// Redfish systems that stop answering once the load has started.
const DEAD_REDFISH: [usize; 2] = [11, 61];
/// IPMI BMCs whose password was changed behind the agent's back.
const REJECT_IPMI: [usize; 4] = [150, 350, 650, 950];
/// Redfish nodes enrolled with a wrong password.
const REJECT_REDFISH: [usize; 1] = [33];
/// The IPMI BMC with broken firmware.
const GARBAGE_IPMI: [usize; 1] = [500];

const WRONG_PASSWORD: &str = "not-the-password";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Machine {
    Ipmi(usize),
    Redfish(usize),
}

impl Machine {
    fn name(self) -> String {
        match self {
            Machine::Ipmi(i) => format!("ipmi-{i:04}"),
            Machine::Redfish(i) => format!("rf-{i:03}"),
        }
    }
    fn faulty(self) -> bool {
        match self {
            Machine::Ipmi(i) => {
                DEAD_IPMI.contains(&i) || REJECT_IPMI.contains(&i) || GARBAGE_IPMI.contains(&i)
            }
            Machine::Redfish(i) => DEAD_REDFISH.contains(&i) || REJECT_REDFISH.contains(&i),
        }
    }
}

fn all_machines() -> Vec<Machine> {
    (0..IPMI)
        .map(Machine::Ipmi)
        .chain((0..REDFISH).map(Machine::Redfish))
        .collect()
}

/// What the poller keeps of a node.
#[derive(Clone, Debug, Default)]
struct View {
    power_state: Option<String>,
    target: Option<String>,
    last_error: Option<String>,
    maintenance: bool,
    maintenance_reason: Option<String>,
    fault: Option<String>,
    reserved: bool,
}

impl View {
    fn of(n: &Value) -> View {
        let s = |k: &str| n[k].as_str().map(str::to_string);
        View {
            power_state: s("power_state"),
            target: s("target_power_state"),
            last_error: s("last_error"),
            maintenance: n["maintenance"].as_bool().unwrap_or(false),
            maintenance_reason: s("maintenance_reason"),
            fault: s("fault"),
            reserved: !n["reservation"].is_null(),
        }
    }
}

/// The API as a client sees it: the agent's URL may change on restart, and
/// the load waits while the gate is shut.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    url: Arc<RwLock<String>>,
    gate: watch::Receiver<bool>,
}

impl Api {
    fn new(url: &str, gate: watch::Receiver<bool>) -> Api {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "X-OpenStack-Ironic-API-Version",
            reqwest::header::HeaderValue::from_static("latest"),
        );
        Api {
            http: reqwest::Client::builder()
                .default_headers(h)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            url: Arc::new(RwLock::new(url.to_string())),
            gate,
        }
    }

    fn set_url(&self, url: &str) {
        *self.url.write().unwrap() = url.to_string();
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let url = format!("{}{path}", self.url.read().unwrap());
        let mut rb = self.http.request(method, url);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Ok((status, v))
    }

    /// Every node (paged), with `fields`.
    async fn list(&self, fields: &str) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut path = format!("/v1/nodes?fields={fields}&limit=1000");
            if let Some(m) = &marker {
                path.push_str(&format!("&marker={m}"));
            }
            let (status, doc) = self
                .call(reqwest::Method::GET, &path, None)
                .await
                .map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("GET {path}: {status}: {doc}"));
            }
            let page = doc["nodes"].as_array().cloned().unwrap_or_default();
            let n = page.len();
            marker = page
                .last()
                .and_then(|v| v["uuid"].as_str())
                .map(str::to_string);
            out.extend(page);
            if n < 1000 {
                return Ok(out);
            }
        }
    }
}

const VIEW_FIELDS: &str = "uuid,name,power_state,target_power_state,last_error,maintenance,\
                           maintenance_reason,fault,reservation";
const FULL_FIELDS: &str = "uuid,name,driver,driver_info,maintenance,fault";

/// What the poller saw, shared with the load.
#[derive(Default)]
struct Seen {
    /// Latest view of every node, by uuid.
    latest: HashMap<String, View>,
    /// When each node's latest accepted change was answered 202.
    accepted: HashMap<String, Instant>,
    /// When the poller first saw the target of that change cleared (the end
    /// of the listing that showed it; the listing started after the 202).
    cleared: HashMap<String, Instant>,
    /// Nodes ever seen in maintenance or with a fault.
    ever_maintenance: HashSet<String>,
    polls: u64,
}

/// List every node once a second for the rest of the test.
fn poller(api: Api, seen: Arc<Mutex<Seen>>) {
    tokio::spawn(async move {
        loop {
            let started = Instant::now();
            if let Ok(nodes) = api.list(VIEW_FIELDS).await {
                let ended = Instant::now();
                let mut s = seen.lock().unwrap();
                s.polls += 1;
                for n in &nodes {
                    let Some(uuid) = n["uuid"].as_str() else {
                        continue;
                    };
                    let v = View::of(n);
                    if v.maintenance || v.fault.is_some() {
                        s.ever_maintenance.insert(uuid.to_string());
                    }
                    if v.target.is_none() {
                        if let Some(at) = s.accepted.get(uuid).copied() {
                            if at < started && !s.cleared.contains_key(uuid) {
                                s.cleared.insert(uuid.to_string(), ended);
                            }
                        }
                    }
                    s.latest.insert(uuid.to_string(), v);
                }
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    });
}

/// Send one power change as a client would: retry 409 and 503 (and a
/// vanished agent) with a random backoff until 202. Records the acceptance.
async fn change(
    api: Api,
    uuid: String,
    target: &'static str,
    seen: Arc<Mutex<Seen>>,
    attempted: Arc<Mutex<HashSet<String>>>,
) {
    let path = format!("/v1/nodes/{uuid}/states/power");
    let body = json!({ "target": target });
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut gate = api.gate.clone();
    loop {
        gate.wait_for(|open| *open).await.unwrap();
        attempted.lock().unwrap().insert(uuid.clone());
        match api.call(reqwest::Method::PUT, &path, Some(&body)).await {
            Ok((202, _)) => {
                let mut s = seen.lock().unwrap();
                s.accepted.insert(uuid.clone(), Instant::now());
                s.cleared.remove(&uuid);
                return;
            }
            Ok((409 | 503, _)) | Err(_) => {}
            Ok((status, body)) => panic!("PUT {path} {target}: {status}: {body}"),
        }
        assert!(
            Instant::now() < deadline,
            "{uuid}: power change '{target}' never accepted"
        );
        let ms = 100 + rand::random::<u64>() % 700;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn end_state(target: &str) -> &'static str {
    match target {
        "power off" | "soft power off" => "power off",
        _ => "power on",
    }
}

struct Campaign {
    ipmi: Fleet,
    redfish: RedfishFleet,
    agent: Agent,
    api: Api,
    gate: watch::Sender<bool>,
    seen: Arc<Mutex<Seen>>,
    /// Machine by node uuid, and back.
    machine: HashMap<String, Machine>,
    uuid: BTreeMap<Machine, String>,
}

impl Campaign {
    fn machine_on(&self, m: Machine) -> bool {
        match m {
            Machine::Ipmi(i) => self.ipmi.bmcs[i].with(|b| b.machine.on),
            Machine::Redfish(i) => self.redfish.system(i).power_on(),
        }
    }

    fn healthy(&self) -> impl Iterator<Item = (&Machine, &String)> {
        self.uuid.iter().filter(|(m, _)| !m.faulty())
    }

    /// Wait (bounded) until `pred` holds for the latest views; the views.
    async fn wait_views(
        &self,
        what: &str,
        secs: u64,
        pred: impl Fn(&HashMap<String, View>) -> bool,
    ) -> HashMap<String, View> {
        let end = Instant::now() + Duration::from_secs(secs);
        let polls = self.seen.lock().unwrap().polls;
        loop {
            {
                let s = self.seen.lock().unwrap();
                // A listing newer than the call.
                if s.polls > polls && pred(&s.latest) {
                    return s.latest.clone();
                }
            }
            if Instant::now() > end {
                let s = self.seen.lock().unwrap();
                let bad: Vec<String> = s
                    .latest
                    .iter()
                    .filter(|(_, v)| v.target.is_some() || v.reserved)
                    .take(10)
                    .map(|(u, v)| format!("{} {v:?}", self.machine[u].name()))
                    .collect();
                panic!(
                    "{what}: not reached in {secs} s\n{}\nagent log tail:\n{}",
                    bad.join("\n"),
                    tail(&self.agent.log(), 60)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Wait (bounded) until the poller saw every change of `plan` finished
    /// after its 202; the latest views.
    async fn wait_settled(
        &self,
        what: &str,
        plan: &[(Machine, &'static str)],
    ) -> HashMap<String, View> {
        let uuids: Vec<String> = plan.iter().map(|(m, _)| self.uuid[m].clone()).collect();
        let bound = CHANGE_TIMEOUT + BMC_TIMEOUT + 60.0;
        let end = Instant::now() + Duration::from_secs_f64(bound);
        loop {
            {
                let s = self.seen.lock().unwrap();
                let missing: Vec<&String> = uuids
                    .iter()
                    .filter(|u| !s.cleared.contains_key(*u))
                    .collect();
                if missing.is_empty() {
                    return s.latest.clone();
                }
                if Instant::now() > end {
                    let show: Vec<String> = missing
                        .iter()
                        .take(10)
                        .map(|u| format!("{} {:?}", self.machine[*u].name(), s.latest.get(*u)))
                        .collect();
                    panic!(
                        "{what}: {} changes not seen finished after {bound} s:\n{}\n\
                         agent log tail:\n{}",
                        missing.len(),
                        show.join("\n"),
                        tail(&self.agent.log(), 60)
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Launch one wave of power changes (one per node in `plan`).
    fn launch(
        &self,
        plan: &[(Machine, &'static str)],
        attempted: &Arc<Mutex<HashSet<String>>>,
    ) -> tokio::task::JoinSet<()> {
        let mut set = tokio::task::JoinSet::new();
        for (m, target) in plan {
            set.spawn(change(
                self.api.clone(),
                self.uuid[m].clone(),
                target,
                self.seen.clone(),
                attempted.clone(),
            ));
        }
        set
    }

    /// Every change in `plan` answered 202 is finished: the target cleared
    /// within the bound, and it landed or says why not. Returns (landed, failed).
    fn check_outcomes(
        &self,
        plan: &[(Machine, &'static str)],
        views: &HashMap<String, View>,
    ) -> (usize, usize) {
        let s = self.seen.lock().unwrap();
        let bound = Duration::from_secs_f64(CHANGE_TIMEOUT + BMC_TIMEOUT + 3.0);
        let mut landed = 0;
        let mut failed = 0;
        let mut slowest = Duration::ZERO;
        for (m, target) in plan {
            let uuid = &self.uuid[m];
            let Some(accepted) = s.accepted.get(uuid) else {
                panic!("{}: the change was never accepted", m.name());
            };
            let cleared = s
                .cleared
                .get(uuid)
                .unwrap_or_else(|| panic!("{}: target never seen cleared", m.name()));
            let took = cleared.saturating_duration_since(*accepted);
            slowest = slowest.max(took);
            assert!(
                took <= bound,
                "{}: the change to '{target}' took {took:?}, beyond its bound {bound:?}",
                m.name()
            );
            let v = &views[uuid];
            assert_eq!(v.target, None, "{}: {v:?}", m.name());
            match &v.last_error {
                None => {
                    let want = end_state(target);
                    assert_eq!(
                        v.power_state.as_deref(),
                        Some(want),
                        "{}: no last_error, so the change to '{target}' must have landed: {v:?}",
                        m.name()
                    );
                    assert_eq!(
                        self.machine_on(*m),
                        want == "power on",
                        "{}: the agent says '{want}', the simulated machine disagrees",
                        m.name()
                    );
                    landed += 1;
                }
                Some(e) => {
                    assert!(!e.trim().is_empty(), "{}: empty last_error", m.name());
                    if !m.faulty() {
                        eprintln!("{} (healthy) '{target}' failed: {e}", m.name());
                    }
                    failed += 1;
                }
            }
        }
        eprintln!(
            "outcomes: {landed} landed, {failed} failed with last_error; slowest {slowest:?} \
             (bound {bound:?})"
        );
        (landed, failed)
    }

    /// The 16 faulty nodes reach maintenance with a fault; no other node was
    /// ever seen in maintenance or with a fault.
    async fn check_maintenance(&self) {
        let faulty: Vec<(Machine, String)> = self
            .uuid
            .iter()
            .filter(|(m, _)| m.faulty())
            .map(|(m, u)| (*m, u.clone()))
            .collect();
        assert_eq!(faulty.len(), 16);
        let views = self
            .wait_views("faulty nodes in maintenance", 180, |l| {
                faulty.iter().all(|(_, u)| {
                    l.get(u).is_some_and(|v| {
                        v.maintenance && v.fault.as_deref() == Some("power failure")
                    })
                })
            })
            .await;
        for (m, u) in &faulty {
            let why = views[u].maintenance_reason.clone().unwrap_or_default();
            assert!(why.contains("max retries exceeded"), "{}: {why}", m.name());
            eprintln!("{}: {why}", m.name());
        }
        let s = self.seen.lock().unwrap();
        let wrongly: Vec<String> = self
            .healthy()
            .filter(|(_, u)| s.ever_maintenance.contains(*u))
            .map(|(m, u)| format!("{} {:?}", m.name(), s.latest.get(u)))
            .collect();
        assert!(
            wrongly.is_empty(),
            "healthy nodes went to maintenance or got a fault:\n{}",
            wrongly.join("\n")
        );
        for (_, u) in self.healthy() {
            let v = &views[u];
            assert!(!v.maintenance && v.fault.is_none(), "{v:?}");
        }
    }

    /// No simulated BMC held more sessions than its limit.
    fn check_sessions(&self) {
        let mut peaks: BTreeMap<usize, usize> = BTreeMap::new();
        let mut refused = 0;
        let mut opened = 0;
        for (i, b) in self.ipmi.bmcs.iter().enumerate() {
            let s = b.stats();
            assert!(
                s.sessions_peak <= MAX_SESSIONS,
                "BMC {i} held {} sessions at once (limit {MAX_SESSIONS})",
                s.sessions_peak
            );
            *peaks.entry(s.sessions_peak).or_default() += 1;
            if s.sessions_peak > MAX_SESSIONS * 3 / 4 {
                eprintln!(
                    "BMC {i} peaked at {} sessions ({} opened, {} active, {} pending now)",
                    s.sessions_peak, s.sessions_opened, s.sessions_active, s.handshakes_pending
                );
            }
            refused += s.sessions_refused;
            opened += s.sessions_opened;
        }
        assert!(self.ipmi.bmcs[GARBAGE_IPMI[0]].stats().garbage_sent > 0);
        eprintln!(
            "sessions: peak per BMC (peak: BMCs) {peaks:?}; {opened} opened, {refused} refused; \
             Redfish sessions created {}",
            self.redfish.sessions_created()
        );
    }

    /// Every lock released (no reservation, no target) and the agent alive.
    async fn check_drained(&self) {
        self.wait_views("all locks released", 60, |l| {
            l.len() == IPMI + REDFISH && l.values().all(|v| !v.reserved && v.target.is_none())
        })
        .await;
        let log = self.agent.log();
        assert!(!log.contains("panicked"), "{}", tail(&log, 80));
    }
}

impl Drop for Campaign {
    fn drop(&mut self) {
        // FAULT_CAMPAIGN_LOG=path keeps the agent's log (its scratch
        // directory goes with the agent).
        if let Ok(p) = std::env::var("FAULT_CAMPAIGN_LOG") {
            let _ = std::fs::copy(&self.agent.log_path, p);
        }
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn plan(wave: u8) -> Vec<(Machine, &'static str)> {
    // Every faulty node, then every other healthy node, up to CHANGES.
    let mut nodes: Vec<Machine> = all_machines().into_iter().filter(|m| m.faulty()).collect();
    nodes.extend(all_machines().into_iter().filter(|m| {
        !m.faulty()
            && match m {
                Machine::Ipmi(i) => i % 2 == 0,
                Machine::Redfish(i) => i % 2 == 1,
            }
    }));
    nodes.truncate(CHANGES);
    assert_eq!(nodes.len(), CHANGES);
    nodes
        .into_iter()
        .enumerate()
        .map(|(k, m)| {
            let target = match (wave, k % 5) {
                (1, 0..=2) => "power on",
                (1, 3) => "rebooting",
                (1, _) => "power off",
                (_, 0..=2) => "power off",
                (_, 3) => "power on",
                (_, _) => "rebooting",
            };
            (m, target)
        })
        .collect()
}

fn agent_config() -> String {
    format!(
        "[conductor]\n\
         workers = 100\n\
         sync_power_state_interval = {SYNC_INTERVAL}\n\
         sync_power_state_workers = 256\n\
         power_state_sync_max_retries = {MAX_RETRIES}\n\
         power_state_change_timeout = {CHANGE_TIMEOUT}\n\
         power_failure_recovery_interval = 10\n\
         bmc_timeout = {BMC_TIMEOUT}\n\
         power_poll_interval = 0.5\n"
    )
}

async fn setup() -> Campaign {
    let t0 = Instant::now();
    let ipmi = fleet(IPMI, |c| {
        c.bmc.power_delay = POWER_DELAY;
        c.bmc.max_sessions = MAX_SESSIONS;
        c.loss = 0.2;
        c.latency = Duration::from_millis(50);
        c.jitter = Duration::from_millis(30);
    })
    .await;
    for i in REJECT_IPMI {
        ipmi.bmcs[i].set_password(b"rotated-elsewhere");
    }
    for i in GARBAGE_IPMI {
        ipmi.bmcs[i].faults.set_garbage(true);
    }
    let mut rcfg = RedfishFleetConfig::new("127.0.0.1:0".parse().unwrap(), REDFISH, USER, PASSWORD);
    rcfg.power_delay = POWER_DELAY;
    rcfg.latency = Duration::from_millis(50);
    rcfg.jitter = Duration::from_millis(30);
    rcfg.error_503_rate = 0.02;
    let redfish = RedfishFleet::start(rcfg).await.unwrap();

    let agent = Agent::start(&agent_config()).await;
    let (gate, gate_rx) = watch::channel(true);
    let api = Api::new(&agent.url, gate_rx);

    // Enroll everything over the API, 16 at a time.
    let mut bodies = Vec::new();
    for m in all_machines() {
        let body = match m {
            Machine::Ipmi(i) => json!({
                "name": m.name(),
                "driver": "ipmi",
                "driver_info": {
                    "ipmi_address": "127.0.0.1",
                    "ipmi_port": ipmi.bmcs[i].addr.port(),
                    "ipmi_username": USER,
                    "ipmi_password": PASSWORD,
                },
            }),
            Machine::Redfish(i) => json!({
                "name": m.name(),
                "driver": "redfish",
                "driver_info": {
                    "redfish_address": redfish.base_url(),
                    "redfish_system_id": redfish.system(i).path(),
                    "redfish_username": USER,
                    "redfish_password":
                        if REJECT_REDFISH.contains(&i) { WRONG_PASSWORD } else { PASSWORD },
                },
            }),
        };
        bodies.push((m, body));
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    for (m, body) in bodies {
        let (api, sem) = (api.clone(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let (status, n) = api
                .call(reqwest::Method::POST, "/v1/nodes", Some(&body))
                .await
                .unwrap();
            assert_eq!(status, 201, "{n}");
            (m, n["uuid"].as_str().unwrap().to_string())
        });
    }
    let mut machine = HashMap::new();
    let mut uuid = BTreeMap::new();
    while let Some(r) = set.join_next().await {
        let (m, u) = r.unwrap();
        machine.insert(u.clone(), m);
        uuid.insert(m, u);
    }
    assert_eq!(uuid.len(), IPMI + REDFISH);
    eprintln!("enrolled {} nodes in {:?}", uuid.len(), t0.elapsed());

    let seen = Arc::new(Mutex::new(Seen::default()));
    let c = Campaign {
        ipmi,
        redfish,
        agent,
        api,
        gate,
        seen,
        machine,
        uuid,
    };
    // The first sweeps record a power state for every healthy node.
    let healthy: Vec<String> = c.healthy().map(|(_, u)| u.clone()).collect();
    poller(c.api.clone(), c.seen.clone());
    c.wait_views("initial power states recorded", 120, |l| {
        healthy
            .iter()
            .all(|u| l.get(u).is_some_and(|v| v.power_state.is_some()))
    })
    .await;
    eprintln!("initial sync done at {:?}", t0.elapsed());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_campaign_1000_ipmi_100_redfish_with_kill_9() {
    let t0 = Instant::now();
    let mut c = setup().await;

    // ---------------------------------------------------------------- wave 1
    let wave1 = plan(1);
    let attempted = Arc::new(Mutex::new(HashSet::new()));
    let mut load = c.launch(&wave1, &attempted);
    // Mid-run, 10 BMCs stop answering.
    let end = Instant::now() + Duration::from_secs(120);
    while c.seen.lock().unwrap().accepted.len() < 50 {
        assert!(Instant::now() < end, "the load does not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in DEAD_IPMI {
        c.ipmi.bmcs[i].faults.set_unresponsive(true);
    }
    for i in DEAD_REDFISH {
        c.redfish.system(i).set_unresponsive(true);
    }
    eprintln!("10 BMCs went silent at {:?}", t0.elapsed());
    while let Some(r) = load.join_next().await {
        r.unwrap();
    }
    eprintln!("wave 1: {CHANGES} changes accepted at {:?}", t0.elapsed());
    let views = c.wait_settled("wave 1", &wave1).await;
    let (landed, _) = c.check_outcomes(&wave1, &views);
    assert!(landed >= CHANGES / 2, "too few changes landed: {landed}");
    c.check_maintenance().await;
    c.check_drained().await;
    c.check_sessions();
    eprintln!("wave 1 checked at {:?}", t0.elapsed());

    // ------------------------------------------------- wave 2, with kill -9
    let before: HashMap<String, Value> = c
        .api
        .list(FULL_FIELDS)
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n["uuid"].as_str().unwrap().to_string(), n))
        .collect();
    assert_eq!(before.len(), IPMI + REDFISH);
    let wave2 = plan(2);
    let attempted = Arc::new(Mutex::new(HashSet::new()));
    {
        let mut s = c.seen.lock().unwrap();
        s.accepted.clear();
        s.cleared.clear();
    }
    let mut load = c.launch(&wave2, &attempted);
    let end = Instant::now() + Duration::from_secs(120);
    while c.seen.lock().unwrap().accepted.len() < CHANGES * 2 / 5 {
        assert!(Instant::now() < end, "wave 2 does not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.gate.send_replace(false);
    c.agent.kill9();
    let killed_at = Instant::now();
    let stale_lines_before = c
        .agent
        .log()
        .matches("cleared a target power state left by an earlier run")
        .count();
    let accepted_before_kill: HashSet<String> =
        c.seen.lock().unwrap().accepted.keys().cloned().collect();
    eprintln!(
        "kill -9 at {:?} with {} of {CHANGES} wave-2 changes accepted",
        t0.elapsed(),
        accepted_before_kill.len()
    );
    // Some time dead, then the same config and database.
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.agent.restart().await;
    c.api.set_url(&c.agent.url);
    eprintln!("restarted {:?} after the kill", killed_at.elapsed());

    // Nothing lost: every node, with its driver_info; faults kept.
    let after = c.api.list(FULL_FIELDS).await.unwrap();
    assert_eq!(after.len(), IPMI + REDFISH);
    for n in &after {
        let u = n["uuid"].as_str().unwrap();
        let b = before
            .get(u)
            .unwrap_or_else(|| panic!("node {u} appeared from nowhere"));
        for k in ["name", "driver", "driver_info", "maintenance", "fault"] {
            assert_eq!(
                n[k],
                b[k],
                "{}: {k} changed across kill -9",
                c.machine[u].name()
            );
        }
    }
    // Stale targets cleared, saying why.
    let views = c.api.list(VIEW_FIELDS).await.unwrap();
    let attempted_now = attempted.lock().unwrap().clone();
    let mut stale = HashSet::new();
    for n in &views {
        let u = n["uuid"].as_str().unwrap().to_string();
        let v = View::of(n);
        assert_eq!(
            v.target,
            None,
            "{}: stale target after restart",
            c.machine[&u].name()
        );
        if v.last_error
            .as_deref()
            .is_some_and(|e| e.contains("The agent stopped while the power state change"))
        {
            assert!(
                attempted_now.contains(&u),
                "{}: a stale target on a node nobody asked to change",
                c.machine[&u].name()
            );
            stale.insert(u);
        }
    }
    let stale_lines = c
        .agent
        .log()
        .matches("cleared a target power state left by an earlier run")
        .count()
        - stale_lines_before;
    eprintln!(
        "after restart: {} stale targets cleared ({} logged)",
        stale.len(),
        stale_lines
    );
    assert!(!stale.is_empty(), "no change was in flight at the kill");
    assert_eq!(stale.len(), stale_lines);

    // The load goes on against the restarted agent; changes whose 202 came
    // before the kill count as done (landed, failed, or cleared as stale).
    c.gate.send_replace(true);
    while let Some(r) = load.join_next().await {
        r.unwrap();
    }
    eprintln!("wave 2: all accepted at {:?}", t0.elapsed());
    let views = c.wait_settled("wave 2", &wave2).await;
    // Changes accepted before the kill and cleared as stale are failures
    // with their reason; the rest must land or fail as in wave 1.
    let (landed, _) = c.check_outcomes(&wave2, &views);
    assert!(
        landed >= CHANGES / 2,
        "too few wave-2 changes landed: {landed}"
    );

    // The sync resumed: changes made behind the agent's back are recorded.
    let flip: Vec<Machine> = vec![
        Machine::Ipmi(1),
        Machine::Ipmi(3),
        Machine::Ipmi(999),
        Machine::Redfish(0),
        Machine::Redfish(98),
    ];
    for m in &flip {
        let on = c.machine_on(*m);
        match *m {
            Machine::Ipmi(i) => c.ipmi.bmcs[i].with(|b| b.set_power(!on, Instant::now())),
            Machine::Redfish(i) => c.redfish.system(i).set_power(!on),
        }
    }
    let want: Vec<(String, &'static str)> = flip
        .iter()
        .map(|m| {
            let state = if c.machine_on(*m) {
                "power on"
            } else {
                "power off"
            };
            (c.uuid[m].clone(), state)
        })
        .collect();
    c.wait_views("sync records changes after restart", 90, |l| {
        want.iter()
            .all(|(u, s)| l.get(u).and_then(|v| v.power_state.as_deref()) == Some(*s))
    })
    .await;

    c.check_maintenance().await;
    c.check_drained().await;
    c.check_sessions();
    eprintln!("campaign done in {:?}", t0.elapsed());
}
