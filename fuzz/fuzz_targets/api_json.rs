//! Request bodies of the Ironic-compatible API (src/api): the same JSON as
//! a `POST /v1/nodes` body, a `POST /v1/ports` body and a
//! `PATCH /v1/nodes/{id}` document (src/api/patch.rs: Ironic's patch rules,
//! RFC 6902 through json-patch, masked secrets) applied to a node with
//! secrets, at the oldest, a middle and the newest microversion.
//!
//! Properties: no panic; error messages are never empty and never carry a
//! secret the body sent (plain, JSON-escaped or Debug-escaped); after a
//! successful patch the node's secrets are masked in its API document, a
//! secret sent back as "******" keeps its stored value, and the node is
//! still a valid node (driver set, document renders).
#![no_main]

use ironrack::store::{is_secret_key, Node, MASK};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const VERSIONS: [u32; 3] = [1, 50, 109];

fn node() -> Node {
    let obj = |v: Value| match v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Node {
        id: 1,
        uuid: "8f8a7a3e-5c1d-4b53-9f3e-1c2d3e4f5a6b".into(),
        name: Some("node-1".into()),
        driver: "ipmi".into(),
        driver_info: obj(json!({
            "ipmi_address": "10.0.0.5",
            "ipmi_username": "admin",
            "ipmi_password": "stored-ipmi-secret",
            "ipmi_kg": "stored-kg-secret",
            "deploy_kernel": "deploy.kernel",
            "deploy_ramdisk": "deploy.ramdisk",
        })),
        properties: obj(json!({"capabilities": "boot_mode:uefi", "cpus": 8})),
        instance_info: obj(json!({"image_source": "http://images/ubuntu.qcow2"})),
        provision_state: "enroll".into(),
        power_state: Some("power off".into()),
        created_at: "2026-01-01T00:00:00.000000+00:00".into(),
        ..Node::default()
    }
}

/// The error text shows none of the secrets (at least 4 characters long and
/// not made of the mask's own characters, as the scrubber defines them).
fn no_secret(msg: &str, secrets: &[String]) {
    assert!(!msg.is_empty(), "empty error message");
    for s in secrets {
        if s.chars().count() < 4 || s.contains('*') {
            continue;
        }
        let json = serde_json::to_string(s).unwrap_or_default();
        let debug = format!("{s:?}");
        for form in [
            s.as_str(),
            &json[1..json.len() - 1],
            &debug[1..debug.len() - 1],
        ] {
            if form.chars().count() >= 4 {
                assert!(!msg.contains(form), "secret {form:?} in error: {msg}");
            }
        }
    }
}

fn check_masked(n: &Node) {
    let doc = ironrack::fuzzing::api_node_doc(n);
    assert_eq!(
        doc.get("uuid").and_then(Value::as_str),
        Some(n.uuid.as_str())
    );
    let shown = doc
        .get("driver_info")
        .and_then(Value::as_object)
        .expect("driver_info shown");
    for (k, v) in &n.driver_info {
        if is_secret_key(k) && !v.is_null() {
            assert_eq!(
                shown.get(k),
                Some(&json!(MASK)),
                "secret {k} shown in the node document"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for minor in VERSIONS {
        let (r, secrets) = ironrack::fuzzing::api_create_node(body.clone(), minor);
        if let Err(m) = r {
            no_secret(&m, &secrets);
        }
        if let Err(m) = ironrack::fuzzing::api_create_port(body.clone(), minor) {
            assert!(!m.is_empty());
        }
        let before = node();
        let mut n = before.clone();
        let (r, secrets) = ironrack::fuzzing::api_patch_node(&mut n, &body, minor);
        match r {
            Err(m) => no_secret(&m, &secrets),
            Ok(()) => {
                assert!(!n.driver.is_empty(), "patched node without a driver");
                check_masked(&n);
                for (k, v) in &n.driver_info {
                    if is_secret_key(k) && v.as_str() == Some(MASK) {
                        let old = before.driver_info.get(k);
                        assert!(
                            old.is_none_or(Value::is_null),
                            "the mask replaced the stored {k}"
                        );
                    }
                }
                // Patching again with the same document is still handled.
                let mut again = n.clone();
                let _ = ironrack::fuzzing::api_patch_node(&mut again, &body, minor);
            }
        }
    }
});
