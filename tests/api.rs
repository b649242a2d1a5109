//! The Ironic-compatible API of a real `ironrack serve` process, driven with
//! plain HTTP (reqwest), the stock `baremetal` CLI (python-ironicclient)
//! and openstacksdk, plus one power change against the in-process IPMI
//! simulator. No test reads the agent's internals: what it answers, what its
//! log says and what the simulated BMC did are the witnesses.

mod common;

use std::process::Output;

use common::agent::{faultstring, ipmi_node, Agent};
use common::sushy::venv_bin;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// The agent's default for tests: no background sync, fast power polling.
const CONF: &str =
    "[conductor]\nsync_power_state_interval = 0\npower_poll_interval = 0.05\nbmc_timeout = 1\n";

/// No response body and no log line may carry the BMC password.
fn assert_no_password(agent: &Agent, seen: &[&Value]) {
    for v in seen {
        assert!(
            !v.to_string().contains(PASSWORD),
            "password in a response: {v}"
        );
    }
    let log = agent.log();
    assert!(!log.is_empty());
    assert!(!log.contains(PASSWORD), "password in the agent's log");
}

async fn bm(agent: &Agent, args: &[&str]) -> Output {
    run(agent.baremetal().args(args)).await
}

async fn bm_ok(agent: &Agent, args: &[&str]) -> String {
    let o = bm(agent, args).await;
    assert!(o.status.success(), "baremetal {args:?}: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        !out.contains(PASSWORD),
        "password in `baremetal {args:?}`: {out}"
    );
    out
}

async fn bm_json(agent: &Agent, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-f", "json"]);
    let out = bm_ok(agent, &a).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// A CLI call that must fail; its stderr.
async fn bm_err(agent: &Agent, args: &[&str]) -> String {
    let o = bm(agent, args).await;
    assert!(
        !o.status.success(),
        "baremetal {args:?} succeeded: {}",
        text(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!err.contains(PASSWORD));
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_documents_and_negotiation() {
    let agent = Agent::start(CONF).await;
    // The root: Ironic's versions document, at the default (minimum) version.
    let plain = reqwest::Client::new();
    let r = plain.get(format!("{}/", agent.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["x-openstack-ironic-api-minimum-version"], "1.1");
    assert_eq!(h["x-openstack-ironic-api-maximum-version"], "1.109");
    assert_eq!(h["x-openstack-ironic-api-version"], "1.1");
    assert_eq!(h["openstack-api-version"], "baremetal 1.1");
    let root: Value = r.json().await.unwrap();
    assert_eq!(root["default_version"]["id"], "v1");
    assert_eq!(root["default_version"]["min_version"], "1.1");
    assert_eq!(root["default_version"]["version"], "1.109");
    assert_eq!(root["default_version"]["status"], "CURRENT");
    assert_eq!(
        root["versions"][0]["links"][0]["href"],
        format!("{}/v1/", agent.url)
    );

    let (s, hs, v1) = agent.request_full(Method::GET, "/v1", None, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(
        hs["x-openstack-ironic-api-version"], "1.109",
        "latest is the maximum"
    );
    assert_eq!(v1["id"], "v1");
    assert_eq!(
        v1["media_types"]["type"],
        "application/vnd.openstack.ironic.v1+json"
    );
    assert_eq!(v1["version"]["version"], "1.109");
    for res in ["nodes", "ports", "drivers"] {
        assert_eq!(
            v1[res][0]["href"],
            format!("{}/v1/{res}/", agent.url),
            "{v1:#}"
        );
    }

    // Both request headers are honoured.
    let (_, hs, _) = agent
        .request_full(
            Method::GET,
            "/v1/nodes",
            None,
            &[("X-OpenStack-Ironic-API-Version", "1.42")],
        )
        .await;
    assert_eq!(hs["x-openstack-ironic-api-version"], "1.42");
    let (_, hs, _) = agent
        .request_full(
            Method::GET,
            "/v1/nodes",
            None,
            &[("OpenStack-API-Version", "baremetal 1.27")],
        )
        .await;
    assert_eq!(hs["x-openstack-ironic-api-version"], "1.27");
    assert_eq!(hs["openstack-api-version"], "baremetal 1.27");

    // Too high, too low, nonsense: 406 with the range in headers and body.
    for bad in ["1.110", "1.0", "2.1", "one.two"] {
        let (s, hs, body) = agent
            .request_full(
                Method::GET,
                "/v1/nodes",
                None,
                &[("X-OpenStack-Ironic-API-Version", bad)],
            )
            .await;
        assert_eq!(s, 406, "{bad}: {body}");
        assert_eq!(hs["x-openstack-ironic-api-minimum-version"], "1.1");
        assert_eq!(hs["x-openstack-ironic-api-maximum-version"], "1.109");
        let f = faultstring(&body);
        assert!(
            f.contains("1.1") || f.contains("Invalid value"),
            "{bad}: {f}"
        );
    }

    // Version-gated behaviour: fields need 1.8, names 1.5, NMI 1.29.
    let (s, body) = agent
        .post(
            "/v1/nodes",
            &json!({"name": "v-1", "driver": "ipmi",
        "driver_info": {"ipmi_address": "127.0.0.1"}}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let (s, _, body) = agent
        .request_full(
            Method::GET,
            "/v1/nodes?fields=uuid",
            None,
            &[("X-OpenStack-Ironic-API-Version", "1.7")],
        )
        .await;
    assert_eq!(s, 406, "{body}");
    let (s, _, body) = agent
        .request_full(
            Method::GET,
            "/v1/nodes",
            None,
            &[("X-OpenStack-Ironic-API-Version", "1.1")],
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        body["nodes"][0].get("name").is_none(),
        "no names before 1.5: {body}"
    );
    let (s, _, body) = agent
        .request_full(
            Method::PUT,
            "/v1/nodes/v-1/management/inject_nmi",
            Some(&json!({})),
            &[("X-OpenStack-Ironic-API-Version", "1.28")],
        )
        .await;
    assert_eq!(s, 404, "{body}");
    let (s, _, body) = agent
        .request_full(
            Method::PUT,
            "/v1/nodes/v-1/states/power",
            Some(&json!({"target": "soft power off"})),
            &[("X-OpenStack-Ironic-API-Version", "1.26")],
        )
        .await;
    assert_eq!(s, 406, "{body}");
    let (s, _, body) = agent
        .request_full(
            Method::GET,
            "/v1/nodes?detail=True",
            None,
            &[("X-OpenStack-Ironic-API-Version", "1.42")],
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(faultstring(&body).contains("detail"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_over_http() {
    let agent = Agent::start(CONF).await;
    let mut seen = Vec::new();

    // Create: 201, Location, the password masked.
    let (s, hs, n1) = agent
        .request_full(Method::POST, "/v1/nodes", Some(&ipmi_node("n1", 9)), &[])
        .await;
    assert_eq!(s, 201, "{n1}");
    let u1 = n1["uuid"].as_str().unwrap().to_string();
    assert_eq!(hs["location"], format!("{}/v1/nodes/{u1}", agent.url));
    assert_eq!(n1["driver_info"]["ipmi_password"], "******");
    assert_eq!(n1["driver_info"]["ipmi_username"], USER);
    assert_eq!(n1["provision_state"], "enroll");
    assert_eq!(n1["power_interface"], "ipmitool");
    assert_eq!(n1["reservation"], Value::Null);
    assert_eq!(
        n1["links"][0]["href"],
        format!("{}/v1/nodes/{u1}", agent.url)
    );
    assert_eq!(
        n1["ports"][0]["href"],
        format!("{}/v1/nodes/{u1}/ports", agent.url)
    );
    assert_eq!(
        n1["states"][0]["href"],
        format!("{}/v1/nodes/{u1}/states", agent.url)
    );
    seen.push(n1.clone());

    // Bad creations.
    let (s, body) = agent.post("/v1/nodes", &ipmi_node("n1", 9)).await;
    assert_eq!(s, 409, "duplicate name: {body}");
    seen.push(body);
    let mut bogus = ipmi_node("n2", 9);
    bogus["bogus"] = json!(1);
    let (s, body) = agent.post("/v1/nodes", &bogus).await;
    assert_eq!(s, 400, "{body}");
    assert!(faultstring(&body).contains("bogus"));
    seen.push(body);
    let (s, body) = agent
        .post("/v1/nodes", &json!({"name": "n2", "driver": "ipmi"}))
        .await;
    assert_eq!(s, 400, "no driver_info: {body}");
    let (s, body) = agent
        .post(
            "/v1/nodes",
            &json!({"name": "n2", "driver": "snmp", "driver_info": {}}),
        )
        .await;
    assert_eq!(s, 400, "unknown driver: {body}");
    let (s, body) = agent
        .post("/v1/nodes", &json!({"driver": "ipmi", "name": "bad name"}))
        .await;
    assert_eq!(s, 400, "{body}");

    // More nodes for lists.
    let mut uuids = vec![u1.clone()];
    for i in 2..=4 {
        let mut b = ipmi_node(&format!("n{i}"), 9);
        if i == 4 {
            b["maintenance"] = json!(true);
            b["driver"] = json!("redfish");
            b["driver_info"] = json!({"redfish_address": "http://127.0.0.1:9",
                                      "redfish_password": PASSWORD});
        }
        let (s, body) = agent.post("/v1/nodes", &b).await;
        assert_eq!(s, 201, "{body}");
        uuids.push(body["uuid"].as_str().unwrap().to_string());
        seen.push(body);
    }

    // The plain list: Ironic's default fields plus links.
    let (s, list) = agent.get("/v1/nodes").await;
    assert_eq!(s, 200);
    let nodes = list["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    let mut keys: Vec<&str> = nodes[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "instance_uuid",
            "links",
            "maintenance",
            "name",
            "power_state",
            "provision_state",
            "uuid"
        ]
    );
    assert!(list.get("next").is_none());
    // Detail (path and query) give full nodes, masked.
    let (_, detail) = agent.get("/v1/nodes/detail").await;
    assert_eq!(
        detail["nodes"][3]["driver_info"]["redfish_password"],
        "******"
    );
    assert_eq!(detail["nodes"][3]["management_interface"], "redfish");
    let (_, detail_q) = agent.get("/v1/nodes?detail=True").await;
    assert_eq!(detail_q["nodes"].as_array().unwrap().len(), 4);
    assert!(detail_q["nodes"][0].get("driver_info").is_some());
    seen.push(detail.clone());
    seen.push(detail_q);
    // fields.
    let (_, f) = agent.get("/v1/nodes?fields=uuid,driver").await;
    let mut keys: Vec<&str> = f["nodes"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["driver", "links", "uuid"]);
    let (s, body) = agent.get("/v1/nodes?fields=uuid,nope").await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = agent.get("/v1/nodes?fields=uuid&detail=True").await;
    assert_eq!(s, 400);
    // Filters.
    let names = |v: &Value| -> Vec<String> {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&agent.get("/v1/nodes?maintenance=true").await.1),
        ["n4"]
    );
    assert_eq!(
        names(&agent.get("/v1/nodes?driver=redfish").await.1),
        ["n4"]
    );
    assert_eq!(
        names(&agent.get("/v1/nodes?driver=ipmi&maintenance=false").await.1),
        ["n1", "n2", "n3"]
    );
    assert_eq!(
        names(&agent.get("/v1/nodes?provision_state=enroll").await.1).len(),
        4
    );
    assert_eq!(
        names(&agent.get("/v1/nodes?associated=true").await.1).len(),
        0
    );
    assert_eq!(
        names(&agent.get("/v1/nodes?fault=power%20failure").await.1).len(),
        0
    );
    assert_eq!(
        names(&agent.get("/v1/nodes?sort_key=name&sort_dir=desc").await.1),
        ["n4", "n3", "n2", "n1"]
    );
    let (s, body) = agent.get("/v1/nodes?sort_key=driver_info").await;
    assert_eq!(s, 400, "{body}");
    // A trailing slash is ignored (the CLI lists with `/v1/nodes/?...`).
    assert_eq!(
        names(&agent.get("/v1/nodes/?maintenance=True").await.1),
        ["n4"]
    );
    let (s, body) = agent.get("/v1/nodes?maintenance=perhaps").await;
    assert_eq!(s, 400, "{body}");
    let (s, body) = agent.get("/v1/nodes?chassis=x").await;
    assert_eq!(s, 400, "unknown filters are refused: {body}");

    // Pagination: limit, then follow `next` as the clients do.
    let (_, page) = agent.get("/v1/nodes?limit=3&sort_key=name").await;
    assert_eq!(names(&page), ["n1", "n2", "n3"]);
    let next = page["next"]
        .as_str()
        .expect("a next link on a full page")
        .to_string();
    assert!(
        next.starts_with(&format!("{}/v1/nodes?", agent.url)),
        "{next}"
    );
    assert!(
        next.contains("limit=3") && next.contains(&format!("marker={}", uuids[2])),
        "{next}"
    );
    let rel = next.trim_start_matches(&agent.url).to_string();
    let (_, page2) = agent.get(&rel).await;
    assert_eq!(names(&page2), ["n4"]);
    assert!(page2.get("next").is_none());
    let (s, body) = agent.get("/v1/nodes?limit=0").await;
    assert_eq!(s, 400, "{body}");

    // Show by uuid and by name, with fields.
    let (s, by_name) = agent.get("/v1/nodes/n2").await;
    assert_eq!(s, 200);
    assert_eq!(by_name["uuid"], uuids[1].as_str());
    let (_, f) = agent
        .get(&format!("/v1/nodes/{}?fields=name,power_state", uuids[1]))
        .await;
    assert_eq!(f["name"], "n2");
    assert!(f.get("driver").is_none());

    // PATCH: set and unset like the CLI, read-only fields refused, the
    // masked password sent back keeps the stored one.
    let (s, p) = agent
        .patch(
            "/v1/nodes/n1",
            &json!([
                {"op": "add", "path": "/properties/cpus", "value": 8},
                {"op": "add", "path": "/extra/rack", "value": "r1"},
                {"op": "add", "path": "/driver_info/ipmi_password", "value": "******"},
                {"op": "replace", "path": "/description", "value": "first"},
            ]),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["properties"]["cpus"], 8);
    assert_eq!(p["extra"]["rack"], "r1");
    assert_eq!(p["description"], "first");
    assert_eq!(p["driver_info"]["ipmi_password"], "******");
    let (s, p) = agent
        .patch(
            "/v1/nodes/n1",
            &json!([{"op": "remove", "path": "/extra/rack"}]),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(p["extra"], json!({}));
    for (path, want) in [
        ("/uuid", 400),
        ("/power_state", 400),
        ("/provision_state", 400),
        ("/created_at", 400),
        ("/reservation", 400),
        ("/console_enabled", 400),
        ("/owner", 400),
    ] {
        let (s, body) = agent
            .patch(
                "/v1/nodes/n1",
                &json!([{"op": "replace", "path": path, "value": "x"}]),
            )
            .await;
        assert_eq!(s, want, "{path}: {body}");
        assert!(!faultstring(&body).is_empty());
    }
    let (s, body) = agent
        .patch(
            "/v1/nodes/n1",
            &json!([{"op": "replace", "path": "/name", "value": "n2"}]),
        )
        .await;
    assert_eq!(s, 409, "rename onto another node's name: {body}");
    let (s, body) = agent
        .patch(
            "/v1/nodes/n1",
            &json!({"op": "replace", "path": "/name", "value": "x"}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    let (s, body) = agent
        .patch(
            "/v1/nodes/n1",
            &json!([{"op": "remove", "path": "/extra/missing"}]),
        )
        .await;
    assert_eq!(s, 400, "{body}");

    // States.
    let (s, st) = agent.get("/v1/nodes/n1/states").await;
    assert_eq!(s, 200);
    for k in [
        "power_state",
        "target_power_state",
        "provision_state",
        "last_error",
        "console_enabled",
    ] {
        assert!(st.get(k).is_some(), "{k}: {st}");
    }

    // Maintenance on and off: 202, no body.
    let (s, body) = agent
        .put("/v1/nodes/n2/maintenance", &json!({"reason": "disk swap"}))
        .await;
    assert_eq!((s, &body), (202, &Value::Null));
    let (_, n) = agent.get("/v1/nodes/n2").await;
    assert_eq!(n["maintenance"], true);
    assert_eq!(n["maintenance_reason"], "disk swap");
    let (s, _) = agent.delete("/v1/nodes/n2/maintenance").await;
    assert_eq!(s, 202);
    let (_, n) = agent.get("/v1/nodes/n2").await;
    assert_eq!(n["maintenance"], false);
    assert_eq!(n["maintenance_reason"], Value::Null);

    // Power: a bad target is 400 (Ironic's InvalidStateRequested).
    let (s, body) = agent
        .put("/v1/nodes/n2/states/power", &json!({"target": "sideways"}))
        .await;
    assert_eq!(s, 400, "{body}");
    let (s, body) = agent
        .put(
            "/v1/nodes/n2/states/power",
            &json!({"target": "power on", "timeout": 0}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    let (s, body) = agent
        .put("/v1/nodes/n2/states/power", &json!({"timeout": 5}))
        .await;
    assert_eq!(s, 400, "{body}");

    // Boot device: a name Ironic does not know.
    let (s, body) = agent
        .put(
            "/v1/nodes/n2/management/boot_device",
            &json!({"boot_device": "floppy"}),
        )
        .await;
    assert_eq!(s, 400, "{body}");

    // Drivers.
    let (_, d) = agent.get("/v1/drivers").await;
    let dn: Vec<&str> = d["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(dn, ["ipmi", "redfish"]);
    assert_eq!(d["drivers"][0]["hosts"].as_array().unwrap().len(), 1);
    assert_eq!(d["drivers"][0]["type"], "dynamic");
    let (_, d) = agent.get("/v1/drivers/redfish").await;
    assert_eq!(d["default_power_interface"], "redfish");
    let (_, props) = agent.get("/v1/drivers/ipmi/properties").await;
    assert!(
        props["ipmi_address"].as_str().unwrap().contains("Required"),
        "{props}"
    );
    let (s, _) = agent.get("/v1/drivers/snmp").await;
    assert_eq!(s, 404);

    // Delete: 204, then 404 in Ironic's shape.
    let (s, body) = agent.delete("/v1/nodes/n3").await;
    assert_eq!((s, body), (204, Value::Null));
    let (s, body) = agent.get("/v1/nodes/n3").await;
    assert_eq!(s, 404);
    assert_eq!(faultstring(&body), "Node n3 could not be found.");

    assert_no_password(&agent, &seen.iter().collect::<Vec<_>>());
    assert!(
        agent.log().contains("GET /v1/nodes/detail 200"),
        "access log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_over_http() {
    let agent = Agent::start(CONF).await;
    let (_, n) = agent.post("/v1/nodes", &ipmi_node("pn", 9)).await;
    let node = n["uuid"].as_str().unwrap().to_string();
    let (s, hs, p) = agent
        .request_full(
            Method::POST,
            "/v1/ports",
            Some(&json!({"node_uuid": node, "address": "52:54:00:AB:CD:01", "extra": {"slot": 1}})),
            &[],
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let pu = p["uuid"].as_str().unwrap().to_string();
    assert_eq!(p["address"], "52:54:00:ab:cd:01");
    assert_eq!(p["node_uuid"], node.as_str());
    assert_eq!(p["pxe_enabled"], true);
    assert_eq!(hs["location"], format!("{}/v1/ports/{pu}", agent.url));

    let (s, body) = agent
        .post(
            "/v1/ports",
            &json!({"node_uuid": node, "address": "52:54:00:ab:cd:zz"}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(faultstring(&body).contains("MAC"), "{body}");
    let (s, body) = agent
        .post(
            "/v1/ports",
            &json!({"node_uuid": node, "address": "52-54-00-ab-cd-01"}),
        )
        .await;
    assert_eq!(s, 409, "{body}");
    let (s, body) = agent
        .post("/v1/ports", &json!({"node_uuid": "1be26c0b-03f2-4d2e-ae87-c02d7f33c123", "address": "52:54:00:ab:cd:02"}))
        .await;
    assert!(s == 404 || s == 400, "{s} {body}");
    let (s, body) = agent.post("/v1/ports", &json!({"node_uuid": node})).await;
    assert_eq!(s, 400, "{body}");
    let (s, body) = agent
        .post(
            "/v1/ports",
            &json!({"node_ident": "pn", "address": "52:54:00:ab:cd:03"}),
        )
        .await;
    assert_eq!(s, 201, "node_ident (1.94): {body}");

    let (_, l) = agent.get("/v1/ports").await;
    assert_eq!(l["ports"].as_array().unwrap().len(), 2);
    let mut keys: Vec<&str> = l["ports"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["address", "links", "uuid"]);
    let (_, l) = agent.get("/v1/ports/detail").await;
    assert_eq!(l["ports"][0]["extra"]["slot"], 1);
    let (_, l) = agent.get("/v1/ports?address=52:54:00:ab:cd:01").await;
    assert_eq!(l["ports"].as_array().unwrap().len(), 1);
    let (_, l) = agent.get("/v1/ports?node=pn&limit=1").await;
    assert_eq!(l["ports"].as_array().unwrap().len(), 1);
    assert!(l["next"].as_str().unwrap().contains("node=pn"));
    let (_, l) = agent.get(&format!("/v1/nodes/{node}/ports")).await;
    assert_eq!(l["ports"].as_array().unwrap().len(), 2);
    let (_, l) = agent.get("/v1/nodes/pn/ports/detail").await;
    assert_eq!(l["ports"][0]["node_uuid"], node.as_str());
    let (s, _) = agent.get("/v1/nodes/nobody/ports").await;
    assert_eq!(s, 404);
    let (_, one) = agent.get(&format!("/v1/ports/{pu}?fields=address")).await;
    assert_eq!(one["address"], "52:54:00:ab:cd:01");
    assert!(one.get("extra").is_none());

    let (s, _) = agent.delete(&format!("/v1/ports/{pu}")).await;
    assert_eq!(s, 204);
    let (s, body) = agent.get(&format!("/v1/ports/{pu}")).await;
    assert_eq!(s, 404, "{body}");
    faultstring(&body);
}

type ErrorCase = (
    Method,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    u16,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_ironics_shape() {
    let agent = Agent::start(CONF).await;
    // (method, path, body, content type, status)
    let cases: Vec<ErrorCase> = vec![
        (Method::GET, "/v1/nothing", None, None, 404),
        (Method::GET, "/v1/nodes/x/y/z", None, None, 404),
        (Method::DELETE, "/v1/nodes", None, None, 405),
        (
            Method::POST,
            "/v1/nodes",
            Some("{not json"),
            Some("application/json"),
            400,
        ),
        (
            Method::POST,
            "/v1/nodes",
            Some("{}"),
            Some("text/plain"),
            415,
        ),
        (
            Method::POST,
            "/v1/nodes",
            Some("[1,2]"),
            Some("application/json"),
            400,
        ),
        (
            Method::PATCH,
            "/v1/nodes/ghost",
            Some("[]"),
            Some("application/json"),
            404,
        ),
        (Method::GET, "/v1/nodes/bad%20name", None, None, 400),
        (Method::GET, "/v1/ports/not-a-uuid", None, None, 404),
    ];
    for (m, path, body, ct, want) in cases {
        let mut rb = agent
            .http
            .request(m.clone(), format!("{}{path}", agent.url));
        if let Some(b) = body {
            rb = rb.body(b.to_string());
        }
        if let Some(ct) = ct {
            rb = rb.header("Content-Type", ct);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{m} {path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/json",
            "{m} {path}"
        );
        assert_eq!(
            r.headers()["x-openstack-ironic-api-maximum-version"],
            "1.109"
        );
        let v: Value = r.json().await.unwrap();
        let inner: Value = serde_json::from_str(v["error_message"].as_str().unwrap()).unwrap();
        assert_eq!(inner["faultcode"], "Client", "{m} {path}: {inner}");
        assert_eq!(inner["debuginfo"], Value::Null);
        assert!(
            !inner["faultstring"].as_str().unwrap().is_empty(),
            "{m} {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_on_through_the_api_against_the_simulator() {
    let fleet = fleet(1, |c| {
        c.bmc.power_delay = std::time::Duration::from_millis(200)
    })
    .await;
    let port = fleet.addrs()[0].port();
    let agent = Agent::start(CONF).await;
    let (s, n) = agent.post("/v1/nodes", &ipmi_node("sim-1", port)).await;
    assert_eq!(s, 201, "{n}");
    // The password sent back masked must not replace the real one: the
    // power change below only works with the stored password.
    let mut info = n["driver_info"].clone();
    info["ipmi_username"] = json!(USER);
    let (s, body) = agent
        .patch(
            "/v1/nodes/sim-1",
            &json!([{"op": "replace", "path": "/driver_info", "value": info}]),
        )
        .await;
    assert_eq!(s, 200, "{body}");

    let (s, hs, body) = agent
        .request_full(
            Method::PUT,
            "/v1/nodes/sim-1/states/power",
            Some(&json!({"target": "power on"})),
            &[],
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body, Value::Null);
    assert_eq!(
        hs["location"],
        format!("{}/v1/nodes/sim-1/states", agent.url)
    );
    let n = loop {
        let (_, n) = agent.get("/v1/nodes/sim-1").await;
        if n["target_power_state"].is_null() {
            break n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(n["power_state"], "power on", "{n:#}");
    assert_eq!(n["last_error"], Value::Null, "{n:#}");
    assert!(
        fleet.bmcs[0].with(|b| b.machine.on),
        "the simulated machine is on"
    );

    // Management and validation against the same BMC.
    let (s, _) = agent
        .put(
            "/v1/nodes/sim-1/management/boot_device",
            &json!({"boot_device": "pxe", "persistent": false}),
        )
        .await;
    assert_eq!(s, 204);
    let (s, b) = agent.get("/v1/nodes/sim-1/management/boot_device").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["boot_device"], "pxe");
    let (_, sup) = agent
        .get("/v1/nodes/sim-1/management/boot_device/supported")
        .await;
    assert!(
        sup["supported_boot_devices"]
            .as_array()
            .unwrap()
            .contains(&json!("pxe")),
        "{sup}"
    );
    let (s, v) = agent.get("/v1/nodes/sim-1/validate").await;
    assert_eq!(s, 200);
    assert_eq!(v["power"]["result"], true, "{v:#}");
    assert!(v["power"].get("reason").is_some());

    // Metrics: the node gauge and the sessions gauge.
    let m = agent.text("/metrics").await;
    assert!(m.contains("ironrack_nodes{"), "{m}");
    assert!(m.contains("power_state=\"power on\""), "{m}");
    assert!(m.contains("ironrack_bmc_sessions_open 1"), "{m}");
    // The power change: counted by driver, target and result, and timed.
    assert!(
        m.lines()
            .any(|l| l.starts_with("ironrack_power_operations_total{")
                && l.contains("driver=\"ipmi\"")
                && l.contains("result=\"success\"")
                && l.ends_with(" 1")),
        "{m}"
    );
    assert!(
        m.contains("ironrack_power_operation_seconds_bucket{driver=\"ipmi\""),
        "{m}"
    );

    assert_no_password(&agent, &[&n, &v]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baremetal_cli_tour() {
    let agent = Agent::start(CONF).await;
    let pw = format!("ipmi_password={PASSWORD}");
    let created = bm_json(
        &agent,
        &[
            "node",
            "create",
            "--driver",
            "ipmi",
            "--name",
            "cli-1",
            "--driver-info",
            "ipmi_address=127.0.0.1",
            "--driver-info",
            "ipmi_port=9",
            "--driver-info",
            "ipmi_username=admin",
            "--driver-info",
            &pw,
            "--property",
            "cpus=4",
        ],
    )
    .await;
    assert_eq!(created["name"], "cli-1");
    assert_eq!(created["driver_info"]["ipmi_password"], "******");
    let uuid = created["uuid"].as_str().unwrap().to_string();

    let list = bm_json(&agent, &["node", "list"]).await;
    assert_eq!(list[0]["uuid"], uuid.as_str(), "{list:#}");
    assert_eq!(list[0]["provision_state"], "enroll");
    let long = bm_json(&agent, &["node", "list", "--long"]).await;
    assert_eq!(long[0]["driver"], "ipmi", "{long:#}");
    let shown = bm_json(
        &agent,
        &[
            "node",
            "show",
            "cli-1",
            "--fields",
            "uuid",
            "name",
            "power_state",
        ],
    )
    .await;
    assert_eq!(
        shown,
        json!({"uuid": uuid, "name": "cli-1", "power_state": null})
    );

    bm_ok(
        &agent,
        &[
            "node",
            "set",
            "cli-1",
            "--extra",
            "rack=r7",
            "--property",
            "memory_mb=4096",
            "--description",
            "from the CLI",
        ],
    )
    .await;
    let n = bm_json(&agent, &["node", "show", "cli-1"]).await;
    assert_eq!(n["extra"]["rack"], "r7");
    assert_eq!(n["properties"]["memory_mb"], 4096);
    assert_eq!(n["description"], "from the CLI");
    bm_ok(
        &agent,
        &["node", "unset", "cli-1", "--extra", "rack", "--description"],
    )
    .await;
    let n = bm_json(&agent, &["node", "show", "cli-1"]).await;
    assert_eq!(n["extra"], json!({}));
    assert_eq!(n["description"], Value::Null);
    let err = bm_err(&agent, &["node", "set", "cli-1", "--owner", "someone"]).await;
    assert!(err.contains("owner"), "{err}");

    bm_ok(
        &agent,
        &["node", "maintenance", "set", "cli-1", "--reason", "cabling"],
    )
    .await;
    let n = bm_json(
        &agent,
        &[
            "node",
            "show",
            "cli-1",
            "--fields",
            "maintenance",
            "maintenance_reason",
        ],
    )
    .await;
    assert_eq!(
        n,
        json!({"maintenance": true, "maintenance_reason": "cabling"})
    );
    let m = bm_json(&agent, &["node", "list", "--maintenance"]).await;
    assert_eq!(m.as_array().unwrap().len(), 1);
    bm_ok(&agent, &["node", "maintenance", "unset", "cli-1"]).await;
    let n = bm_json(
        &agent,
        &["node", "show", "cli-1", "--fields", "maintenance"],
    )
    .await;
    assert_eq!(n["maintenance"], false);

    // Ports.
    let p = bm_json(
        &agent,
        &["port", "create", "52:54:00:12:34:56", "--node", &uuid],
    )
    .await;
    assert_eq!(p["address"], "52:54:00:12:34:56");
    let err = bm_err(
        &agent,
        &["port", "create", "52:54:00:12:34:zz", "--node", &uuid],
    )
    .await;
    assert!(err.contains("HTTP 400"), "{err}");
    let err = bm_err(
        &agent,
        &["port", "create", "52:54:00:12:34:56", "--node", &uuid],
    )
    .await;
    assert!(err.contains("HTTP 409"), "{err}");
    let ports = bm_json(&agent, &["port", "list", "--node", "cli-1"]).await;
    assert_eq!(ports[0]["address"], "52:54:00:12:34:56", "{ports:#}");
    let by_mac = bm_json(&agent, &["port", "show", "--address", "52:54:00:12:34:56"]).await;
    assert_eq!(by_mac["node_uuid"], uuid.as_str());
    bm_ok(&agent, &["port", "delete", p["uuid"].as_str().unwrap()]).await;
    assert_eq!(bm_json(&agent, &["port", "list"]).await, json!([]));

    let props = bm_json(&agent, &["driver", "property", "list", "redfish"]).await;
    assert!(props.to_string().contains("redfish_address"), "{props:#}");
    let drivers = bm_json(&agent, &["driver", "list"]).await;
    assert_eq!(drivers.as_array().unwrap().len(), 2, "{drivers:#}");

    // Errors come back readable.
    let err = bm_err(&agent, &["node", "show", "ghost"]).await;
    assert!(err.contains("Node ghost could not be found"), "{err}");

    bm_ok(&agent, &["node", "delete", "cli-1"]).await;
    assert_eq!(bm_json(&agent, &["node", "list"]).await, json!([]));
    assert_no_password(&agent, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_smoke() {
    let agent = Agent::start(CONF).await;
    for i in 0..3 {
        let (s, body) = agent
            .post("/v1/nodes", &ipmi_node(&format!("sdk-{i}"), 9))
            .await;
        assert_eq!(s, 201, "{body}");
    }
    let script = r#"
import json, sys, openstack
conn = openstack.connection.Connection(auth_type="none", baremetal_endpoint_override=sys.argv[1])
node = conn.baremetal.get_node("sdk-1")
out = {"name": node.name, "password": node.driver_info["ipmi_password"],
       "maintenance": node.is_maintenance}
out["fields"] = [dict(uuid=n.id, name=n.name, power_state=n.power_state)
                 for n in conn.baremetal.nodes(fields=["uuid", "name"])]
out["paged"] = [n.name for n in conn.baremetal.nodes(details=True, limit=2)]
node = conn.baremetal.update_node("sdk-2", extra={"k": "v"})
out["extra"] = node.extra
conn.baremetal.set_node_maintenance("sdk-2", reason="sdk says so")
out["reason"] = conn.baremetal.get_node("sdk-2").maintenance_reason
port = conn.baremetal.create_port(node_uuid=node.id, address="52:54:00:00:00:42")
out["ports"] = [p.address for p in conn.baremetal.ports(details=True)]
print(json.dumps(out))
"#;
    let o = run(tokio::process::Command::new(venv_bin("python")).args(["-c", script, &agent.url]))
        .await;
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "sdk-1");
    assert_eq!(v["password"], "******");
    assert_eq!(v["maintenance"], false);
    let rows = v["fields"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["name"], "sdk-0");
    assert_eq!(rows[0]["power_state"], Value::Null);
    assert_eq!(
        v["paged"],
        json!(["sdk-0", "sdk-1", "sdk-2"]),
        "pages followed via next"
    );
    assert_eq!(v["extra"], json!({"k": "v"}));
    assert_eq!(v["reason"], "sdk says so");
    assert_eq!(v["ports"], json!(["52:54:00:00:00:42"]));
    assert_no_password(&agent, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_basic_authentication() {
    let htpasswd = require("htpasswd");
    let o =
        run(tokio::process::Command::new(htpasswd).args(["-nbB", "operator", "op-secret-1"])).await;
    assert!(o.status.success(), "{}", text(&o));
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let scratch = Scratch::new("htpasswd");
    let file = scratch.file("htpasswd", &format!("# operators\n{line}\n"));
    let conf = format!(
        "[api]\nauth = \"http_basic\"\nhtpasswd = \"{}\"\n{CONF}",
        file.display()
    );
    let mut agent = Agent::start(&conf).await;

    // The version documents are public, as in Ironic.
    let (s, _) = agent.get("/").await;
    assert_eq!(s, 200);
    let (s, _) = agent.get("/v1").await;
    assert_eq!(s, 200);
    // Everything else needs the right credentials.
    for path in ["/v1/nodes", "/metrics", "/v1/drivers"] {
        let (s, hs, body) = agent.request_full(Method::GET, path, None, &[]).await;
        assert_eq!(s, 401, "{path}: {body}");
        assert!(hs["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm="));
        assert!(!faultstring(&body).is_empty());
    }
    agent.set_basic(Some(("operator", "nope")));
    let (s, body) = agent.get("/v1/nodes").await;
    assert_eq!(s, 401, "{body}");
    agent.set_basic(Some(("mallory", "op-secret-1")));
    assert_eq!(agent.get("/v1/nodes").await.0, 401);
    agent.set_basic(Some(("operator", "op-secret-1")));
    for _ in 0..3 {
        let (s, body) = agent.get("/v1/nodes").await;
        assert_eq!(s, 200, "{body}");
    }
    assert!(agent
        .text("/metrics")
        .await
        .contains("ironrack_bmc_sessions_open"));
    let (s, body) = agent.post("/v1/nodes", &ipmi_node("auth-1", 9)).await;
    assert_eq!(s, 201, "{body}");

    // The stock CLI with http_basic.
    let base = |user: &str, pw: &str| {
        let mut c = tokio::process::Command::new(venv_bin("baremetal"));
        c.args([
            "--os-endpoint",
            &agent.url,
            "--os-auth-type",
            "http_basic",
            "--os-username",
            user,
            "--os-password",
            pw,
        ]);
        c
    };
    let o = run(base("operator", "op-secret-1").args(["node", "list", "-f", "json"])).await;
    assert!(o.status.success(), "{}", text(&o));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["name"], "auth-1");
    let o = run(base("operator", "wrong").args(["node", "list"])).await;
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("401"), "{}", text(&o));

    let log = agent.log();
    assert!(
        !log.contains("op-secret-1"),
        "the API password is in the log"
    );
    assert!(
        !log.contains("Authorization") && !log.contains("authorization"),
        "a header in the log"
    );
    assert_no_password(&agent, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noauth_off_loopback_refuses_to_start() {
    let r = Agent::try_start("[api]\nlisten = \"0.0.0.0:0\"\n").await;
    let Err((status, log)) = r else {
        panic!("the agent started with noauth on 0.0.0.0");
    };
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("refusing to start"), "{log}");
    assert!(log.contains("0.0.0.0:0") && log.contains("noauth"), "{log}");
    assert!(!log.contains("API listening"), "{log}");

    // http_basic without a usable htpasswd file is refused too.
    let r =
        Agent::try_start("[api]\nauth = \"http_basic\"\nhtpasswd = \"/nonexistent/htpasswd\"\n")
            .await;
    let Err((status, log)) = r else {
        panic!("started without an htpasswd file");
    };
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("/nonexistent/htpasswd"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_listen_addresses_max_limit_and_a_clean_stop() {
    let mut agent = Agent::start(&format!(
        "[api]\nlisten = [\"127.0.0.1:0\", \"127.0.0.2:0\"]\nmax_limit = 1\n\
         public_url = \"http://ironrack.example:6385/\"\n{CONF}"
    ))
    .await;
    assert_eq!(agent.addrs.len(), 2);
    let (s, body) = agent.post("/v1/nodes", &ipmi_node("two", 9)).await;
    assert_eq!(s, 201, "{body}");
    // Links use the public URL.
    assert_eq!(
        body["links"][0]["href"],
        format!(
            "http://ironrack.example:6385/v1/nodes/{}",
            body["uuid"].as_str().unwrap()
        )
    );
    // The second address serves the same inventory.
    let other = reqwest::Client::new()
        .get(format!("http://{}/v1/nodes/two", agent.addrs[1]))
        .header("X-OpenStack-Ironic-API-Version", "latest")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    // max_limit caps every page, asked for or not, and `next` goes on.
    let (s, body) = agent.post("/v1/nodes", &ipmi_node("three", 9)).await;
    assert_eq!(s, 201, "{body}");
    for q in ["", "?limit=5"] {
        let (_, page) = agent.get(&format!("/v1/nodes{q}")).await;
        assert_eq!(page["nodes"].as_array().unwrap().len(), 1, "{page}");
        assert_eq!(page["nodes"][0]["name"], "two");
        let next = page["next"].as_str().unwrap();
        assert!(
            next.starts_with("http://ironrack.example:6385/v1/nodes?"),
            "{next}"
        );
        assert!(next.contains("limit=1"), "{next}");
    }
    let status = agent.terminate().await;
    assert!(status.success(), "{status:?}\n{}", agent.log());
    assert!(agent.log().contains("stopped"), "{}", agent.log());
}
