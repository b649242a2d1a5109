//! The Redfish simulator over real HTTP on loopback: reqwest, and curl where a
//! second, independent client is worth it.

use std::time::{Duration, Instant};

use ironrack::sim::redfish::{RedfishFleet, RedfishFleetConfig};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

const USER: &str = "admin";
const PASSWORD: &str = "rf-test-pw";

fn config(count: usize) -> RedfishFleetConfig {
    RedfishFleetConfig::new("127.0.0.1:0".parse().unwrap(), count, USER, PASSWORD)
}

async fn fleet(cfg: RedfishFleetConfig) -> RedfishFleet {
    RedfishFleet::start(cfg).await.unwrap()
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

struct Rf {
    base: String,
    http: Client,
}

impl Rf {
    fn new(f: &RedfishFleet) -> Rf {
        Rf {
            base: f.base_url(),
            http: client(),
        }
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(USER, Some(PASSWORD))
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.req(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    async fn send(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self.req(method, path).json(&body).send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, v)
    }

    async fn reset(&self, sys: &str, t: &str) -> (StatusCode, Value) {
        let path = format!("/redfish/v1/Systems/{sys}/Actions/ComputerSystem.Reset");
        self.send(Method::POST, &path, json!({ "ResetType": t }))
            .await
    }

    async fn power(&self, sys: &str) -> String {
        let doc = self.get(&format!("/redfish/v1/Systems/{sys}")).await;
        doc["PowerState"].as_str().unwrap().to_owned()
    }

    /// Poll until `PowerState` is `want`; the time it took.
    async fn wait_power(&self, sys: &str, want: &str, start: Instant) -> Duration {
        let deadline = start + Duration::from_secs(10);
        loop {
            if self.power(sys).await == want {
                return start.elapsed();
            }
            assert!(Instant::now() < deadline, "{sys} never reached {want}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn message_id(v: &Value) -> &str {
    v["error"]["@Message.ExtendedInfo"][0]["MessageId"]
        .as_str()
        .unwrap_or("")
}

async fn curl(args: &[&str]) -> (u16, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .await
        .expect("curl is installed");
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_documents() {
    let f = fleet(config(3)).await;
    let rf = Rf::new(&f);

    // The service root needs no credentials (DSP0266); it links everything.
    let root: Value = rf
        .http
        .get(format!("{}/redfish/v1/", rf.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["@odata.id"], "/redfish/v1/");
    assert!(root["RedfishVersion"].is_string());
    assert_eq!(root["Systems"]["@odata.id"], "/redfish/v1/Systems");
    assert_eq!(root["Managers"]["@odata.id"], "/redfish/v1/Managers");
    assert_eq!(
        root["SessionService"]["@odata.id"],
        "/redfish/v1/SessionService"
    );
    assert_eq!(
        root["Links"]["Sessions"]["@odata.id"],
        "/redfish/v1/SessionService/Sessions"
    );

    let systems = rf.get("/redfish/v1/Systems").await;
    assert_eq!(systems["Members@odata.count"], 3);
    let members: Vec<&str> = systems["Members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["@odata.id"].as_str().unwrap())
        .collect();
    assert_eq!(
        members,
        [
            "/redfish/v1/Systems/sys-0000",
            "/redfish/v1/Systems/sys-0001",
            "/redfish/v1/Systems/sys-0002"
        ]
    );
    for (i, m) in members.iter().enumerate() {
        let r = rf.req(Method::GET, m).send().await.unwrap();
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        let doc: Value = r.json().await.unwrap();
        assert_eq!(doc["@odata.id"], *m);
        assert_eq!(doc["@odata.type"], "#ComputerSystem.v1_10_0.ComputerSystem");
        assert_eq!(doc["Id"], format!("sys-{i:04}"));
        assert_eq!(doc["@odata.etag"], etag.as_str());
        assert_eq!(doc["PowerState"], "Off");
        assert_eq!(doc["Manufacturer"], "ironrack");
        assert_eq!(doc["Model"], "sim");
        assert_eq!(doc["UUID"].as_str().unwrap().len(), 36);
        assert_eq!(
            doc["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"],
            json!(["None", "Pxe", "Hdd", "Cd", "BiosSetup", "UefiHttp"])
        );
        assert_eq!(
            doc["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"],
            json!([
                "On",
                "ForceOff",
                "GracefulShutdown",
                "GracefulRestart",
                "ForceRestart",
                "PowerCycle",
                "Nmi"
            ])
        );
        assert_eq!(
            doc["Actions"]["#ComputerSystem.Reset"]["target"],
            format!("{m}/Actions/ComputerSystem.Reset")
        );
        let mgr = doc["Links"]["ManagedBy"][0]["@odata.id"].as_str().unwrap();
        assert_eq!(mgr, format!("/redfish/v1/Managers/bmc-{i:04}"));
        let mdoc = rf.get(mgr).await;
        assert_eq!(mdoc["ManagerType"], "BMC");
        let vm = mdoc["VirtualMedia"]["@odata.id"].as_str().unwrap();
        let vms = rf.get(vm).await;
        let cd = vms["Members"][0]["@odata.id"].as_str().unwrap();
        let cdoc = rf.get(cd).await;
        assert_eq!(cdoc["Id"], "Cd");
        assert_eq!(cdoc["MediaTypes"], json!(["CD", "DVD"]));
        assert_eq!(cdoc["Inserted"], false);
    }
    let managers = rf.get("/redfish/v1/Managers").await;
    assert_eq!(managers["Members@odata.count"], 3);
    let svc = rf.get("/redfish/v1/SessionService").await;
    assert_eq!(svc["ServiceEnabled"], true);
    assert_eq!(
        svc["Sessions"]["@odata.id"],
        "/redfish/v1/SessionService/Sessions"
    );

    // Unknown paths: 404 with a Redfish error body.
    for p in [
        "/redfish/v1/Systems/sys-0003",
        "/redfish/v1/Systems/sys-3",
        "/redfish/v1/Chassis",
        "/index.html",
    ] {
        let r = rf.req(Method::GET, p).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{p}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(message_id(&v), "Base.1.8.ResourceMissingAtURI");
    }
    assert!(f.system(1).requests() >= 2);
    assert!(f.requests() > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_basic_sessions_and_expiry() {
    let mut cfg = config(2);
    cfg.session_timeout = Duration::from_millis(1500);
    let f = fleet(cfg).await;
    let rf = Rf::new(&f);
    let sys = format!("{}/redfish/v1/Systems/sys-0000", rf.base);

    // Nothing, wrong basic, bogus token: 401 with a Redfish body.
    let r = rf.http.get(&sys).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(message_id(&v), "Base.1.8.NoValidSession");
    let r = rf
        .http
        .get(&sys)
        .basic_auth(USER, Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = rf
        .http
        .get(&sys)
        .header("X-Auth-Token", "bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        rf.req(Method::GET, "/redfish/v1/Systems/sys-0000")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Wrong credentials on login: 401, no session.
    let sessions = format!("{}/redfish/v1/SessionService/Sessions", rf.base);
    let r = rf
        .http
        .post(&sessions)
        .json(&json!({"UserName": USER, "Password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(f.sessions_created(), 0);

    let login = || async {
        let r = rf
            .http
            .post(&sessions)
            .json(&json!({"UserName": USER, "Password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let token = r.headers()["x-auth-token"].to_str().unwrap().to_owned();
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["@odata.id"], location.as_str());
        assert_eq!(v["UserName"], USER);
        (token, location)
    };
    let (token, location) = login().await;
    assert!(location.starts_with("/redfish/v1/SessionService/Sessions/"));
    assert_eq!(f.system(0).sessions_created(), 1);
    assert_eq!(f.system(1).active_sessions(), 1);
    let with_token = |url: &str| rf.http.get(url).header("X-Auth-Token", &token);
    assert_eq!(
        with_token(&sys).send().await.unwrap().status(),
        StatusCode::OK
    );
    let list: Value = with_token(&sessions)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["Members"][0]["@odata.id"], location.as_str());

    // DELETE the session: the token dies.
    let r = rf
        .http
        .delete(format!("{}{location}", rf.base))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        with_token(&sys).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(f.active_sessions(), 0);

    // Idle expiry: use keeps a session alive, silence kills it.
    let (token, _) = login().await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = rf
            .http
            .get(&sys)
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = rf
        .http
        .get(&sys)
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Dropping all sessions behind the client's back.
    let (token, _) = login().await;
    f.system(1).expire_sessions();
    let r = rf
        .http
        .get(&sys)
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(f.sessions_created(), 3);

    // curl, as a second client: basic auth and a session login.
    let url = format!("{}/redfish/v1/Systems/sys-0001", rf.base);
    let (code, body) = curl(&["-u", &format!("{USER}:{PASSWORD}"), &url]).await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Id"], "sys-0001");
    let (code, _) = curl(&[&url]).await;
    assert_eq!(code, 401);
    let (code, _) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!(r#"{{"UserName":"{USER}","Password":"{PASSWORD}"}}"#),
        &sessions,
    ])
    .await;
    assert_eq!(code, 201);
    assert_eq!(f.sessions_created(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_lands_after_the_power_delay() {
    let delay = Duration::from_millis(300);
    let mut cfg = config(3);
    cfg.power_delay = delay;
    let f = fleet(cfg).await;
    let rf = Rf::new(&f);
    let s = f.system(2);

    let start = Instant::now();
    let (status, body) = rf.reset("sys-0002", "On").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    if start.elapsed() < delay / 2 {
        assert!(!s.power_on(), "power landed before the delay");
        assert_eq!(s.pending_power(), Some(true));
    }
    let took = rf.wait_power("sys-0002", "On", start).await;
    assert!(took >= delay, "{took:?}");
    assert!(s.power_on());
    assert_eq!(s.boots(), 1);
    // The others did not move.
    assert!(!f.system(0).power_on() && !f.system(1).power_on());

    let start = Instant::now();
    let (status, _) = rf.reset("sys-0002", "GracefulShutdown").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let took = rf.wait_power("sys-0002", "Off", start).await;
    assert!(took >= delay, "{took:?}");

    // GracefulShutdown of a machine that is off does nothing.
    let (status, _) = rf.reset("sys-0002", "GracefulShutdown").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(s.pending_power(), None);

    // Someone presses the button; ForceOff still works after the delay.
    s.set_power(true);
    assert_eq!(rf.power("sys-0002").await, "On");
    let start = Instant::now();
    let (status, _) = rf.reset("sys-0002", "ForceOff").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let took = rf.wait_power("sys-0002", "Off", start).await;
    assert!(took >= delay, "{took:?}");

    // A restart needs power.
    let (status, body) = rf.reset("sys-0002", "ForceRestart").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmi_and_disallowed_reset_types() {
    let f = fleet(config(2)).await;
    let rf = Rf::new(&f);
    for _ in 0..2 {
        let (status, _) = rf.reset("sys-0001", "Nmi").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    // And once with curl.
    let url = format!(
        "{}/redfish/v1/Systems/sys-0001/Actions/ComputerSystem.Reset",
        rf.base
    );
    let (code, _) = curl(&[
        "-u",
        &format!("{USER}:{PASSWORD}"),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"ResetType":"Nmi"}"#,
        &url,
    ])
    .await;
    assert_eq!(code, 204);
    assert_eq!(f.system(1).nmi_count(), 3);
    assert_eq!(f.system(0).nmi_count(), 0);

    for bad in ["Explode", "PushPowerButton", "on"] {
        let (status, body) = rf.reset("sys-0001", bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(message_id(&body), "Base.1.8.ActionParameterValueNotInList");
        assert_eq!(
            body["error"]["@Message.ExtendedInfo"][0]["MessageArgs"][0],
            bad
        );
    }

    // Without allow_nmi, Nmi is neither offered nor accepted.
    let mut cfg = config(1);
    cfg.allow_nmi = false;
    let g = fleet(cfg).await;
    let rg = Rf::new(&g);
    let doc = rg.get("/redfish/v1/Systems/sys-0000").await;
    let allowed = doc["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!allowed.contains(&json!("Nmi")));
    let (status, body) = rg.reset("sys-0000", "Nmi").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message_id(&body), "Base.1.8.ActionParameterValueNotInList");
    assert_eq!(g.system(0).nmi_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_override_patch_if_match_and_once() {
    let mut cfg = config(2);
    cfg.power_delay = Duration::from_millis(200);
    let f = fleet(cfg).await;
    let rf = Rf::new(&f);
    let path = "/redfish/v1/Systems/sys-0000";
    let s = f.system(0);

    let etag = |r: &reqwest::Response| r.headers()["etag"].to_str().unwrap().to_owned();
    let r = rf.req(Method::GET, path).send().await.unwrap();
    let tag0 = etag(&r);

    // Once + UEFI, with the current ETag.
    let body = json!({"Boot": {
        "BootSourceOverrideTarget": "Pxe",
        "BootSourceOverrideEnabled": "Once",
        "BootSourceOverrideMode": "UEFI"
    }});
    let r = rf
        .req(Method::PATCH, path)
        .header("If-Match", &tag0)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tag1 = etag(&r);
    assert_ne!(tag0, tag1);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["Boot"]["BootSourceOverrideTarget"], "Pxe");
    assert_eq!(doc["@odata.etag"], tag1.as_str());
    assert_eq!(s.boot(), ("Pxe".into(), "Once".into(), "UEFI".into()));

    // The stale tag: 412, nothing changes.
    let r = rf
        .req(Method::PATCH, path)
        .header("If-Match", &tag0)
        .json(&json!({"Boot": {"BootSourceOverrideTarget": "Hdd"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(message_id(&v), "Base.1.8.PreconditionFailed");
    assert_eq!(s.boot().0, "Pxe");

    // Invalid values: 400.
    for bad in [
        json!({"Boot": {"BootSourceOverrideTarget": "Floppy"}}),
        json!({"Boot": {"BootSourceOverrideEnabled": "Sometimes"}}),
        json!({"Boot": {"BootSourceOverrideMode": "BIOS"}}),
        json!({"Boot": {"BootSourceOverrideTarget": "SDCard"}}),
    ] {
        let (status, v) = rf.send(Method::PATCH, path, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(message_id(&v), "Base.1.8.PropertyValueNotInList");
    }

    // Powering on consumes the one-time override.
    let start = Instant::now();
    rf.reset("sys-0000", "On").await;
    rf.wait_power("sys-0000", "On", start).await;
    let doc = rf.get(path).await;
    assert_eq!(doc["Boot"]["BootSourceOverrideEnabled"], "Disabled");
    assert_eq!(s.last_boot_target().as_deref(), Some("Pxe"));

    // Continuous + Legacy survives a power cycle.
    let (status, _) = rf
        .send(
            Method::PATCH,
            path,
            json!({"Boot": {"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideMode": "Legacy"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let boots = s.boots();
    let start = Instant::now();
    let (status, _) = rf.reset("sys-0000", "PowerCycle").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    rf.wait_power("sys-0000", "On", start).await;
    assert_eq!(s.boots(), boots + 1);
    assert_eq!(
        s.boot(),
        ("Cd".into(), "Continuous".into(), "Legacy".into())
    );
    assert_eq!(s.last_boot_target().as_deref(), Some("Cd"));
    // The other system kept its defaults.
    assert_eq!(
        f.system(1).boot(),
        ("None".into(), "Disabled".into(), "UEFI".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_media_insert_and_eject() {
    let f = fleet(config(2)).await;
    let rf = Rf::new(&f);
    let cd = "/redfish/v1/Managers/bmc-0001/VirtualMedia/Cd";
    let doc = rf.get(cd).await;
    let insert = doc["Actions"]["#VirtualMedia.InsertMedia"]["target"]
        .as_str()
        .unwrap()
        .to_owned();
    let eject = doc["Actions"]["#VirtualMedia.EjectMedia"]["target"]
        .as_str()
        .unwrap()
        .to_owned();
    let image = "http://192.0.2.10/images/deploy.iso";
    let (status, body) = rf
        .send(
            Method::POST,
            &insert,
            json!({"Image": image, "Inserted": true, "WriteProtected": true}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let doc = rf.get(cd).await;
    assert_eq!(doc["Image"], image);
    assert_eq!(doc["Inserted"], true);
    assert_eq!(doc["ImageName"], "deploy.iso");
    assert_eq!(f.system(1).virtual_media(), (Some(image.to_owned()), true));
    assert_eq!(f.system(0).virtual_media(), (None, false));

    // A second image needs an eject first.
    let (status, body) = rf
        .send(
            Method::POST,
            &insert,
            json!({"Image": "http://192.0.2.10/other.iso"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(message_id(&body), "Base.1.8.ResourceInUse");
    let (status, body) = rf
        .send(Method::POST, &insert, json!({"Image": "deploy.iso"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message_id(&body),
        "Base.1.8.ActionParameterValueFormatError"
    );

    let (status, _) = rf.send(Method::POST, &eject, json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let doc = rf.get(cd).await;
    assert_eq!(doc["Inserted"], false);
    assert_eq!(doc["Image"], Value::Null);
    // Ejecting an empty drive is fine; so is an empty body.
    let r = rf.req(Method::POST, &eject).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.system(1).virtual_media(), (None, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_503_and_latency() {
    let mut cfg = config(2);
    cfg.error_503_rate = 1.0;
    let f = fleet(cfg).await;
    let rf = Rf::new(&f);
    for path in [
        "/redfish/v1/",
        "/redfish/v1/Systems/sys-0000",
        "/redfish/v1/SessionService/Sessions",
    ] {
        let r = rf.req(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(r.headers()["retry-after"], "1");
        let v: Value = r.json().await.unwrap();
        assert_eq!(message_id(&v), "Base.1.8.ServiceTemporarilyUnavailable");
    }
    assert_eq!(f.injected_503(), 3);

    f.set_error_503_rate(0.0);
    rf.get("/redfish/v1/Systems/sys-0000").await;

    // A partial rate gives some of each.
    f.set_error_503_rate(0.5);
    let mut fails = 0;
    for _ in 0..60 {
        let r = rf
            .req(Method::GET, "/redfish/v1/Systems")
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            fails += 1;
        } else {
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
    assert!((5..=55).contains(&fails), "{fails} of 60");
    f.set_error_503_rate(0.0);

    f.set_latency(Duration::from_millis(250));
    let start = Instant::now();
    rf.get("/redfish/v1/Systems/sys-0001").await;
    assert!(start.elapsed() >= Duration::from_millis(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresponsive_system_times_out_the_client() {
    let f = fleet(config(3)).await;
    let rf = Rf::new(&f);
    f.system(1).set_unresponsive(true);
    let quick = Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = quick
        .get(format!("{}/redfish/v1/Systems/sys-0001", rf.base))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(900));
    // Its manager hangs as well; the rest of the fleet answers.
    let err = quick
        .get(format!(
            "{}/redfish/v1/Managers/bmc-0001/VirtualMedia/Cd",
            rf.base
        ))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    rf.get("/redfish/v1/Systems/sys-0000").await;
    rf.get("/redfish/v1/Systems").await;
    assert_eq!(f.system(1).requests(), 2);

    f.system(1).set_unresponsive(false);
    rf.get("/redfish/v1/Systems/sys-0001").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies_are_400s() {
    let f = fleet(config(1)).await;
    let rf = Rf::new(&f);
    let targets = [
        (Method::PATCH, "/redfish/v1/Systems/sys-0000"),
        (
            Method::POST,
            "/redfish/v1/Systems/sys-0000/Actions/ComputerSystem.Reset",
        ),
        (Method::POST, "/redfish/v1/SessionService/Sessions"),
        (
            Method::POST,
            "/redfish/v1/Managers/bmc-0000/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
        ),
        (
            Method::PATCH,
            "/redfish/v1/Managers/bmc-0000/VirtualMedia/Cd",
        ),
    ];
    let deep = "[".repeat(100_000);
    let bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"not json".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"[1,2,3]".to_vec(),
        b"\"Boot\"".to_vec(),
        deep.into_bytes(),
        b"{\"Boot\": {\"BootSourceOverrideTarget\": [\"Pxe\"]}}".to_vec(),
        b"{\"ResetType\": {\"$ne\": 1}}".to_vec(),
    ];
    for (method, path) in &targets {
        for body in &bodies {
            let r = rf
                .req(method.clone(), path)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{method} {path}");
            let v: Value = r.json().await.unwrap();
            assert!(v["error"]["code"].is_string(), "{v}");
        }
    }
    // Too big a body.
    let r = rf
        .req(Method::PATCH, "/redfish/v1/Systems/sys-0000")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A method nobody serves: 405 with Allow.
    let r = rf
        .req(Method::PUT, "/redfish/v1/Systems/sys-0000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, HEAD, PATCH");
    // Still alive and unchanged.
    let doc = rf.get("/redfish/v1/Systems/sys-0000").await;
    assert_eq!(doc["Boot"]["BootSourceOverrideTarget"], "None");
    assert_eq!(doc["PowerState"], "Off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_enums_add_vendor_values() {
    let mut cfg = config(1);
    cfg.unknown_enums = true;
    cfg.manufacturer = "Contoso".into();
    cfg.model = "RackBlade 9".into();
    let f = fleet(cfg).await;
    let rf = Rf::new(&f);
    let doc = rf.get("/redfish/v1/Systems/sys-0000").await;
    assert_eq!(doc["PowerState"], "Off");
    assert_eq!(doc["Status"]["Health"], "OK");
    assert_eq!(doc["Manufacturer"], "Contoso");
    assert_eq!(doc["Model"], "RackBlade 9");
    assert!(doc["Oem"].is_object());
    let targets = doc["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"]
        .as_array()
        .unwrap();
    assert!(targets.contains(&json!("SDCard")) && targets.contains(&json!("UefiTarget")));
    let resets = doc["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"]
        .as_array()
        .unwrap();
    assert!(resets.contains(&json!("PushPowerButton")));
    let (status, _) = rf.reset("sys-0000", "PushPowerButton").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    rf.wait_power("sys-0000", "On", Instant::now()).await;
    let (status, _) = rf
        .send(
            Method::PATCH,
            "/redfish/v1/Systems/sys-0000",
            json!({"Boot": {"BootSourceOverrideTarget": "UefiTarget"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(rf.get("/redfish/v1/").await["Oem"].is_object());
    assert!(rf.get("/redfish/v1/Managers/bmc-0000").await["Oem"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_systems() {
    let f = fleet(config(1000)).await;
    let rf = Rf::new(&f);
    let doc = rf.get("/redfish/v1/Systems/sys-0999").await;
    assert_eq!(doc["Id"], "sys-0999");
    assert_eq!(
        doc["Links"]["ManagedBy"][0]["@odata.id"],
        "/redfish/v1/Managers/bmc-0999"
    );
    let systems = rf.get("/redfish/v1/Systems").await;
    assert_eq!(systems["Members@odata.count"], 1000);
    assert_eq!(systems["Members"].as_array().unwrap().len(), 1000);
    let r = rf
        .req(Method::GET, "/redfish/v1/Systems/sys-1000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (status, _) = rf.reset("sys-0999", "On").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(f.system(999).power_on());
    assert!(!f.system(998).power_on());
}

/// HTTPS with the certificate the simulator generates, trusted by reqwest and curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_self_signed_certificate() {
    let mut cfg = config(2);
    cfg.tls = true;
    let f = fleet(cfg).await;
    check_tls(&f).await;
}

async fn check_tls(f: &RedfishFleet) {
    assert!(f.base_url().starts_with("https://"));
    let pem = f.cert_pem().unwrap();
    let cert = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();
    let http = Client::builder()
        .add_root_certificate(cert)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = http
        .get(format!(
            "https://localhost:{}/redfish/v1/Systems/sys-0000",
            f.addr().port()
        ))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Id"], "sys-0000");
    // And curl, pinned to the same certificate, by IP address.
    let dir = std::env::temp_dir().join(format!("rfsim-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let (code, body) = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        "-u",
        &format!("{USER}:{PASSWORD}"),
        &format!("{}/redfish/v1/Systems/sys-0000", f.base_url()),
    ])
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 200, "{body}");
}
