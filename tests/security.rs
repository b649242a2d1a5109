//! The files `ironrack serve` writes, read as an attacker with a copy of the
//! disk would: the database (and its WAL) holds no BMC secret in plain text,
//! in any encoding a dump might show; the database and the key file are
//! 0600; a key file others can read stops the agent; and the secrets still
//! work after a restart (sealed, not lost). The agent's own log is searched
//! too. The whole test run's outputs are searched by
//! scripts/check-test-secrets.py (see scripts/test.sh).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::agent::{enroll, wait_node, Agent};
use common::*;
use ironrack::sim::redfish::{RedfishFleet, RedfishFleetConfig};
use serde_json::json;

const IPMI_PW: &str = "db-grep-ipmi-Jq84";
const IPMI_PW_2: &str = "db-grep-rotated-Wm21";
const RF_PW: &str = "db-grep-redfish-Xp77";
const KG: &str = "db-grep-kg-Lu03";
const EXTRA: &str = "db-grep-extra-Tz55";

/// Every way a secret could show in a dump of the file.
fn encodings(s: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    let b = s.as_bytes();
    let utf16: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
    vec![
        ("plain".into(), b.to_vec()),
        ("hex".into(), hex(b).into_bytes()),
        ("HEX".into(), hex(b).to_uppercase().into_bytes()),
        (
            "base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(b)
                .trim_end_matches('=')
                .as_bytes()
                .to_vec(),
        ),
        ("utf-16".into(), utf16),
    ]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The database files of the agent in `dir`, with their bytes.
fn db_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("ironrack.db") && name != "ironrack.db.key" {
            out.push((name, std::fs::read(&p).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_holds_no_plaintext_secret_and_its_files_are_private() {
    // The BMC knows the password the node gets by PATCH after enrollment.
    let ipmi = fleet(1, |c| {
        c.bmc = ironrack::sim::BmcConfig::new(USER, IPMI_PW_2.as_bytes())
    })
    .await;
    let rf = RedfishFleet::start(RedfishFleetConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        1,
        USER,
        RF_PW,
    ))
    .await
    .unwrap();
    let mut agent = Agent::start("[conductor]\nsync_power_state_interval = 1\n").await;
    let dir = agent.scratch.0.clone();

    let a = enroll(
        &agent,
        json!({"name": "sec-ipmi", "driver": "ipmi", "driver_info": {
            "ipmi_address": "127.0.0.1", "ipmi_port": ipmi.bmcs[0].addr.port(),
            "ipmi_username": USER, "ipmi_password": "wrong-at-first",
            "vendor_secret": EXTRA}}),
    )
    .await;
    let b = enroll(
        &agent,
        json!({"name": "sec-rf", "driver": "redfish", "driver_info": {
            "redfish_address": rf.base_url(), "redfish_system_id": rf.system(0).path(),
            "redfish_username": USER, "redfish_password": RF_PW}}),
    )
    .await;
    let c = enroll(
        &agent,
        json!({"name": "sec-kg", "driver": "ipmi", "driver_info": {
            "ipmi_address": "127.0.0.1", "ipmi_port": 9, "ipmi_username": USER,
            "ipmi_password": IPMI_PW, "ipmi_kg": KG}}),
    )
    .await;
    // The password changed over the API: the new one is sealed too.
    let (status, body) = agent
        .patch(
            &format!("/v1/nodes/{a}"),
            &json!([{"op": "replace", "path": "/driver_info/ipmi_password", "value": IPMI_PW_2}]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["driver_info"]["ipmi_password"], "******");
    // Both BMCs answered with the sealed passwords: the sync records power.
    for n in [&a, &b] {
        wait_node(&agent, n, 60, |d| d["power_state"].is_string()).await;
    }
    let (status, body) = agent
        .put(
            &format!("/v1/nodes/{b}/states/power"),
            &json!({"target": "power on"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    wait_node(&agent, &b, 60, |d| d["power_state"] == "power on").await;

    // Look at the files while the agent runs (WAL not yet folded in) and
    // after it is gone.
    let secrets = [IPMI_PW, IPMI_PW_2, RF_PW, KG, EXTRA, "wrong-at-first"];
    let check = |when: &str| {
        let files = db_files(&dir);
        assert!(
            files.iter().any(|(n, _)| n == "ironrack.db"),
            "{when}: no database in {}",
            dir.display()
        );
        let mut all = Vec::new();
        for (name, bytes) in &files {
            assert_eq!(mode(&dir.join(name)), 0o600, "{when}: {name}");
            all.extend_from_slice(bytes);
        }
        // The inventory itself is there, readable: the search is not blind.
        assert!(contains(&all, b"sec-ipmi") && contains(&all, rf.base_url().as_bytes()));
        for s in secrets {
            for (how, needle) in encodings(s) {
                assert!(
                    !contains(&all, &needle),
                    "{when}: {s:?} ({how}) is in the database files"
                );
            }
        }
    };
    check("running");
    assert_eq!(mode(&dir.join("ironrack.db.key")), 0o600);
    let log = agent.log();
    for s in secrets {
        assert!(!log.contains(s), "{s:?} is in the agent's log");
    }
    agent.terminate().await;
    check("stopped");

    // A key file others can read: the agent refuses to start, and says why.
    let key = dir.join("ironrack.db.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let conf = std::fs::read_to_string(&agent.config).unwrap();
    match Agent::try_start(&conf).await {
        Ok(_) => panic!("the agent started with a key file others can read"),
        Err((_, log)) => assert!(log.contains("chmod 600"), "{log}"),
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Restarted on the same files: the secrets open and still work.
    agent.restart().await;
    let (status, body) = agent
        .put(
            &format!("/v1/nodes/{a}/states/power"),
            &json!({"target": "power on"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    wait_node(&agent, &a, 60, |d| {
        d["power_state"] == "power on" && d["target_power_state"].is_null()
    })
    .await;
    assert!(ipmi.bmcs[0].with(|b| b.machine.on));
    let (_, body) = agent.get(&format!("/v1/nodes/{c}")).await;
    assert_eq!(body["driver_info"]["ipmi_kg"], "******");
    assert_eq!(body["driver_info"]["ipmi_password"], "******");
    let (_, body) = agent.get(&format!("/v1/nodes/{a}")).await;
    assert_eq!(body["driver_info"]["vendor_secret"], "******");
    agent.terminate().await;
    check("after the restart");
}
