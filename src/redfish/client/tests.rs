//! Transport behaviour sushy-emulator cannot show (sessions, 401 re-login,
//! 5xx/409 retries, task monitors, ETags, settings objects, Continuous
//! refused), exercised against a tiny scripted HTTP/1.1 responder on
//! loopback. The end-to-end behaviour is proven against sushy-emulator in
//! tests/redfish_sushy.rs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::redfish::RedfishConfig;

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct Resp {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    hang: bool,
}

fn resp(status: u16, body: Value) -> Resp {
    Resp {
        status,
        headers: vec![],
        body: if body.is_null() {
            vec![]
        } else {
            serde_json::to_vec(&body).unwrap()
        },
        hang: false,
    }
}

fn raw(status: u16, body: &[u8]) -> Resp {
    Resp {
        status,
        headers: vec![],
        body: body.to_vec(),
        hang: false,
    }
}

impl Resp {
    fn header(mut self, k: &'static str, v: &str) -> Resp {
        self.headers.push((k, v.to_owned()));
        self
    }
}

type Handler = dyn Fn(&Recorded, usize) -> Resp + Send + Sync;

struct Fake {
    url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Fake {
    fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }
    fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }
    fn last(&self, method: &str, path: &str) -> Recorded {
        self.requests()
            .into_iter()
            .rev()
            .find(|r| r.method == method && r.path == path)
            .unwrap()
    }
}

/// Serve `handler` on loopback: one request per connection. The handler gets
/// the request and how many earlier requests had the same method and path.
async fn serve(handler: Arc<Handler>) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let handler = handler.clone();
            let log = log2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap_or_default().split(' ');
                let method = first.next().unwrap_or_default().to_owned();
                let path = first.next().unwrap_or_default().to_owned();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = buf[head_end..].to_vec();
                while body.len() < len {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body.extend_from_slice(&chunk[..n]),
                    }
                }
                let req = Recorded {
                    method,
                    path,
                    headers,
                    body,
                };
                let nth = {
                    let mut log = log.lock().unwrap();
                    let nth = log
                        .iter()
                        .filter(|r| r.method == req.method && r.path == req.path)
                        .count();
                    log.push(req.clone());
                    nth
                };
                let r = handler(&req, nth);
                if r.hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                let mut out = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    r.status,
                    r.body.len()
                );
                if !r.body.is_empty() {
                    out.push_str("Content-Type: application/json\r\n");
                }
                for (k, v) in &r.headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.write_all(&r.body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Fake { url, log }
}

const SYS: &str = "/redfish/v1/Systems/1";
const RESET: &str = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";

fn root(sessions: bool) -> Value {
    if sessions {
        json!({"Systems": {"@odata.id": "/redfish/v1/Systems"},
               "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
               "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}}})
    } else {
        json!({"Systems": {"@odata.id": "/redfish/v1/Systems"}})
    }
}

fn system() -> Value {
    json!({
        "@odata.id": SYS, "Id": "1", "PowerState": "On",
        "Boot": {"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "None",
                 "BootSourceOverrideMode": "UEFI"},
        "Actions": {"#ComputerSystem.Reset": {"target": RESET,
            "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "FancyOEMReset"]}},
        "Links": {"ManagedBy": [{"@odata.id": "/redfish/v1/Managers/1"}]}
    })
}

/// The common resources; `None` for anything else.
fn common(req: &Recorded, sessions: bool, sys: &Value) -> Option<Resp> {
    Some(match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/redfish/v1/") => resp(200, root(sessions)),
        ("GET", "/redfish/v1/Systems") => resp(200, json!({"Members": [{"@odata.id": SYS}]})),
        ("GET", SYS) => resp(200, sys.clone()),
        _ => return None,
    })
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        transient_tries: 3,
        transient_base: Duration::from_millis(10),
        busy_tries: 4,
        busy_base: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        poll: Duration::from_millis(10),
    }
}

fn client(fake: &Fake, tweak: impl FnOnce(&mut RedfishConfig)) -> RedfishClient {
    let mut cfg = RedfishConfig::new(&fake.url, "admin", "pw-secret");
    cfg.request_timeout = Duration::from_secs(5);
    cfg.operation_timeout = Duration::from_secs(20);
    tweak(&mut cfg);
    RedfishClient::new(cfg).unwrap().with_retry_policy(fast())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_login_relogin_on_401_and_delete_on_close() {
    let fake = serve(Arc::new(|req: &Recorded, nth: usize| {
        if let Some(r) = common_authed(req) {
            return r;
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/redfish/v1/SessionService/Sessions") => {
                let body = req.json();
                assert_eq!(body["UserName"], "admin");
                assert_eq!(body["Password"], "pw-secret");
                assert!(req.header("authorization").is_none());
                resp(
                    201,
                    json!({"@odata.id": format!("/redfish/v1/SessionService/Sessions/{nth}")}),
                )
                .header("X-Auth-Token", &format!("token-{nth}"))
                .header(
                    "Location",
                    &format!("/redfish/v1/SessionService/Sessions/{nth}"),
                )
            }
            ("DELETE", _) => resp(204, Value::Null),
            _ => resp(
                404,
                json!({"error": {"code": "Base.1.0.ResourceMissingAtURI", "message": "no"}}),
            ),
        }
    }))
    .await;
    // The system answers token-0 once, then says it expired (401).
    fn common_authed(req: &Recorded) -> Option<Resp> {
        if req.path == SYS {
            return Some(match req.header("x-auth-token") {
                Some("token-0") if SYS_HITS.fetch_add(1, Ordering::SeqCst) < 2 => {
                    resp(200, system())
                }
                Some("token-1") => resp(200, system()),
                _ => resp(
                    401,
                    json!({"error": {"code": "Base.1.0.NoValidSession", "message": "expired"}}),
                ),
            });
        }
        common(req, true, &Value::Null)
    }
    static SYS_HITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    let c = client(&fake, |_| {});
    let (sys, _) = c.system().await.unwrap();
    assert_eq!(sys.power_state, Some(PowerState::On));
    assert_eq!(fake.count("POST", "/redfish/v1/SessionService/Sessions"), 1);

    // token-0 now gets 401: one new login, the request is retried once.
    let (sys, _) = c.system().await.unwrap();
    assert_eq!(sys.id.as_deref(), Some("1"));
    assert_eq!(fake.count("POST", "/redfish/v1/SessionService/Sessions"), 2);
    assert_eq!(
        fake.last("GET", SYS).header("x-auth-token"),
        Some("token-1")
    );
    assert!(fake
        .requests()
        .iter()
        .all(|r| r.header("authorization").is_none()));

    c.close().await;
    let del = fake.last("DELETE", "/redfish/v1/SessionService/Sessions/1");
    assert_eq!(del.header("x-auth-token"), Some("token-1"));
    // The old session is not deleted (it had expired) and close is idempotent.
    c.close().await;
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_when_sessions_fail_and_401_is_auth_failed() {
    let fake = serve(Arc::new(|req: &Recorded, _| {
        if req.path == SYS && req.header("authorization") != Some("Basic YWRtaW46cHctc2VjcmV0") {
            return resp(401, json!({"error": {"code": "Base.1.0.GeneralError", "message": "Incorrect username or password"}}));
        }
        if let Some(r) = common(req, true, &system()) {
            return r;
        }
        // Advertised but broken SessionService.
        resp(405, Value::Null)
    }))
    .await;
    let c = client(&fake, |_| {});
    c.system().await.unwrap();
    assert_eq!(fake.count("POST", "/redfish/v1/SessionService/Sessions"), 1);
    let get = fake.last("GET", SYS);
    assert!(get.header("x-auth-token").is_none());
    c.system().await.unwrap();
    assert_eq!(
        fake.count("POST", "/redfish/v1/SessionService/Sessions"),
        1,
        "basic auth is sticky"
    );

    let bad = client(&fake, |c| c.password = String::from("wrong").into());
    let err = bad.system().await.unwrap_err();
    match &err {
        BmcError::AuthFailed(m) => {
            assert!(m.contains("401") && m.contains("Incorrect username"), "{m}");
            assert!(!m.contains("wrong"));
        }
        other => panic!("{other:?}"),
    }
    bad.close().await; // basic auth: nothing to delete
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_typed() {
    let fake = serve(Arc::new(|req: &Recorded, nth| {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", SYS) if nth < 2 => raw(503, b"<html>busy</html>"),
            ("GET", "/redfish/v1/Managers/1") => resp(
                500,
                json!({"error": {"code": "Base.1.0.InternalError", "message": "boom",
                    "@Message.ExtendedInfo": [{"MessageId": "Vendor.1.0.Crash", "Message": "It broke."}]}}),
            ),
            ("GET", "/redfish/v1/Bad") => raw(200, b"{\"PowerState\": "),
            ("GET", "/redfish/v1/Gone") => resp(404, Value::Null),
            _ => common(req, false, &system()).unwrap_or_else(|| resp(404, Value::Null)),
        }
    }))
    .await;
    let c = client(&fake, |_| {});
    // Two 503s, then success (during discovery), then the system() GET.
    c.system().await.unwrap();
    assert_eq!(fake.count("GET", SYS), 3 + 1);

    // Always 500: three tries, then Rejected with the MessageId and message.
    let err = c
        .get::<Manager>("/redfish/v1/Managers/1")
        .await
        .unwrap_err();
    assert_eq!(fake.count("GET", "/redfish/v1/Managers/1"), 3);
    match &err {
        BmcError::Rejected { code, message } => {
            assert_eq!(code.as_deref(), Some("Vendor.1.0.Crash"));
            assert!(
                message.contains("It broke.") && message.contains("500"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }

    let err = c
        .get::<ComputerSystem>("/redfish/v1/Bad")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BmcError::Protocol(m) if m.contains("malformed JSON")),
        "{err:?}"
    );

    let err = c
        .get::<ComputerSystem>("/redfish/v1/Gone")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BmcError::Rejected { code: Some(c), .. } if c == "404"),
        "{err:?}"
    );
    assert_eq!(
        fake.count("GET", "/redfish/v1/Gone"),
        1,
        "4xx is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_busy_ids_are_retried() {
    let fake = serve(Arc::new(|req: &Recorded, nth| {
        if req.method == "POST" && req.path == RESET {
            let t = req.json()["ResetType"].as_str().unwrap_or_default().to_owned();
            return match (t.as_str(), nth) {
                ("ForceOff", 0) => resp(409, json!({"error": {"message": "reset in progress"}})),
                ("ForceOff", 1) => resp(400, json!({"error": {"code": "Base.1.4.GeneralError",
                    "@Message.ExtendedInfo": [{"MessageId": "iLO.2.14.UnableToModifyDuringSystemPOST",
                        "Message": "POST in progress"}]}})),
                ("ForceOff", _) => resp(204, Value::Null),
                _ => resp(409, json!({"error": {"message": "always busy"}})),
            };
        }
        common(req, false, &system()).unwrap_or_else(|| resp(404, Value::Null))
    }))
    .await;

    let c = client(&fake, |c| {
        c.quirks.retryable_error_ids = vec!["UnableToModifyDuringSystemPOST".into()]
    });
    let (sys, _) = c.system().await.unwrap();
    let info = c.reset_info(&sys).await.unwrap();
    assert_eq!(info.target, RESET);
    assert!(info.allows(&ResetType::Other("FancyOEMReset".into())));
    assert!(!info.allows(&ResetType::Nmi));
    c.reset(&info, &ResetType::ForceOff).await.unwrap();
    assert_eq!(fake.count("POST", RESET), 3);

    // Bounded: busy_tries attempts, then a typed rejection.
    let err = c.reset(&info, &ResetType::On).await.unwrap_err();
    assert!(
        matches!(&err, BmcError::Rejected { code: Some(code), message } if code == "409" && message.contains("always busy")),
        "{err:?}"
    );
    assert_eq!(fake.count("POST", RESET), 3 + 4);

    // Without the quirk, the iLO id is not retried.
    let fake2 = serve(Arc::new(|req: &Recorded, _| {
        if req.method == "POST" {
            return resp(
                400,
                json!({"error": {"@Message.ExtendedInfo": [
                {"MessageId": "iLO.2.14.UnableToModifyDuringSystemPOST"}]}}),
            );
        }
        common(req, false, &system()).unwrap_or_else(|| resp(404, Value::Null))
    }))
    .await;
    let c2 = client(&fake2, |_| {});
    let (sys, _) = c2.system().await.unwrap();
    let info = c2.reset_info(&sys).await.unwrap();
    let err = c2.reset(&info, &ResetType::ForceOff).await.unwrap_err();
    assert!(
        matches!(&err, BmcError::Rejected { code: Some(code), .. } if code == "iLO.2.14.UnableToModifyDuringSystemPOST"),
        "{err:?}"
    );
    assert_eq!(fake2.count("POST", RESET), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_monitors_are_followed() {
    let fake = serve(Arc::new(|req: &Recorded, nth| {
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", RESET) => {
                let t = req.json()["ResetType"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                resp(202, Value::Null).header("Location", &format!("/redfish/v1/TaskMonitors/{t}"))
            }
            ("GET", "/redfish/v1/TaskMonitors/On") if nth < 2 => {
                resp(202, json!({"TaskState": "Running"}))
            }
            ("GET", "/redfish/v1/TaskMonitors/On") => resp(200, json!({"TaskState": "Completed"})),
            ("GET", "/redfish/v1/TaskMonitors/ForceOff") => resp(
                200,
                json!({"TaskState": "Exception", "Messages": [
                    {"MessageId": "Vendor.1.0.PowerFault", "Message": "PSU fault"}]}),
            ),
            _ => common(req, false, &system()).unwrap_or_else(|| resp(404, Value::Null)),
        }
    }))
    .await;
    let c = client(&fake, |_| {});
    let (sys, _) = c.system().await.unwrap();
    let info = c.reset_info(&sys).await.unwrap();
    c.reset(&info, &ResetType::On).await.unwrap();
    assert_eq!(fake.count("GET", "/redfish/v1/TaskMonitors/On"), 3);

    let err = c.reset(&info, &ResetType::ForceOff).await.unwrap_err();
    assert!(
        matches!(&err, BmcError::Rejected { code: Some(code), message }
            if code == "Vendor.1.0.PowerFault" && message.contains("PSU fault")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_unreachable_are_typed() {
    let fake = serve(Arc::new(|req: &Recorded, _| {
        if req.path == SYS || req.path == RESET {
            return Resp {
                hang: true,
                ..resp(200, Value::Null)
            };
        }
        common(req, false, &system()).unwrap_or_else(|| resp(404, Value::Null))
    }))
    .await;
    let c = client(&fake, |c| c.request_timeout = Duration::from_millis(300));
    let err = c.system().await.unwrap_err();
    assert_eq!(err, BmcError::Timeout(Duration::from_millis(300)));
    assert_eq!(fake.count("GET", SYS), 3, "timeouts are retried (bounded)");

    // A POST that timed out is not sent again (the BMC may still act on it).
    let info = ResetInfo {
        target: RESET.into(),
        allowed: None,
    };
    let err = c.reset(&info, &ResetType::ForceRestart).await.unwrap_err();
    assert_eq!(err, BmcError::Timeout(Duration::from_millis(300)));
    assert_eq!(fake.count("POST", RESET), 1);

    // The overall bound wins over retries.
    let c = client(&fake, |c| {
        c.request_timeout = Duration::from_secs(5);
        c.operation_timeout = Duration::from_millis(400);
    });
    let err = c.system().await.unwrap_err();
    assert_eq!(err, BmcError::Timeout(Duration::from_millis(400)));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = RedfishClient::new(RedfishConfig::new(
        format!("http://127.0.0.1:{port}"),
        "a",
        "b",
    ))
    .unwrap()
    .with_retry_policy(fast());
    assert!(matches!(
        c.system().await.unwrap_err(),
        BmcError::Unreachable(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_patch_uses_settings_etag_and_falls_back_to_once() {
    let settings = "/redfish/v1/Systems/1/Settings";
    let fake = serve(Arc::new(move |req: &Recorded, _| {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", p) if p == settings => {
                resp(200, json!({"Boot": {}})).header("ETag", "W/\"settings-1\"")
            }
            ("PATCH", p) if p == settings => {
                if req.json()["Boot"]["BootSourceOverrideEnabled"] == "Continuous" {
                    resp(400, json!({"error": {"@Message.ExtendedInfo": [
                        {"MessageId": "Base.1.8.PropertyValueNotInList", "Message": "Continuous not supported"}]}}))
                } else {
                    resp(204, Value::Null)
                }
            }
            _ => {
                let mut sys = system();
                sys["@Redfish.Settings"] = json!({"SettingsObject": {"@odata.id": settings}});
                sys["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"] =
                    json!(["Pxe", "Hdd", "Cd", "UefiHttp", "SomethingNew"]);
                common(req, false, &sys).unwrap_or_else(|| resp(404, Value::Null))
            }
        }
    }))
    .await;
    let c = client(&fake, |c| c.quirks.boot_patch_full_object = true);
    c.set_boot_override(Some(BootSource::Pxe), true, None)
        .await
        .unwrap();
    assert!(c.needs_reassert());
    let patches: Vec<Recorded> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2);
    assert!(patches.iter().all(|p| p.path == settings));
    assert!(patches
        .iter()
        .all(|p| p.header("if-match") == Some("W/\"settings-1\"")));
    assert!(patches
        .iter()
        .all(|p| p.header("content-type") == Some("application/json")));
    assert_eq!(
        patches[1].json(),
        json!({"Boot": {"BootSourceOverrideTarget": "Pxe",
            "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI"}})
    );

    // Once the flag is set, persistent requests go straight to Once.
    c.set_boot_override(Some(BootSource::Cd), true, None)
        .await
        .unwrap();
    assert_eq!(fake.count("PATCH", settings), 3);

    // Not offered: refused locally.
    let err = c
        .set_boot_override(Some(BootSource::BiosSetup), false, None)
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::Unsupported(_)));
    assert_eq!(fake.count("PATCH", settings), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_action_info_and_virtual_media_patch_fallback() {
    let vm = "/redfish/v1/Managers/1/VirtualMedia/CD1";
    let fake = serve(Arc::new(move |req: &Recorded, _| {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/redfish/v1/Managers/1") => resp(
                200,
                json!({"VirtualMedia": {"@odata.id": "/redfish/v1/Managers/1/VirtualMedia"}}),
            ),
            ("GET", "/redfish/v1/Managers/1/VirtualMedia") => resp(
                200,
                json!({"Members": [{"@odata.id": "/redfish/v1/Managers/1/VirtualMedia/Floppy1"},
                                   {"@odata.id": vm}]}),
            ),
            ("GET", "/redfish/v1/Managers/1/VirtualMedia/Floppy1") => {
                resp(200, json!({"MediaTypes": ["Floppy", "USBStick"]}))
            }
            ("GET", p) if p == vm => resp(
                200,
                json!({"MediaTypes": ["CD", "DVD"], "Image": null, "Inserted": false,
                    "@odata.etag": "\"vm-7\""}),
            ),
            ("PATCH", p) if p == vm => resp(204, Value::Null),
            ("GET", "/redfish/v1/Systems/1/ResetActionInfo") => resp(
                200,
                json!({"Parameters": [{"Name": "ResetType", "AllowableValues": ["On", "GracefulShutdown"]}]}),
            ),
            _ => {
                let mut sys = system();
                sys["Actions"]["#ComputerSystem.Reset"] = json!({
                    "target": RESET, "@Redfish.ActionInfo": "/redfish/v1/Systems/1/ResetActionInfo"});
                common(req, false, &sys).unwrap_or_else(|| resp(404, Value::Null))
            }
        }
    }))
    .await;
    let c = client(&fake, |_| {});
    let (sys, _) = c.system().await.unwrap();
    let info = c.reset_info(&sys).await.unwrap();
    assert!(info.allows(&ResetType::GracefulShutdown));
    assert!(!info.allows(&ResetType::ForceOff));

    let status = c.virtual_media_status().await.unwrap();
    assert_eq!(status.path, vm);
    assert!(!status.inserted && status.image.is_none());

    c.insert_virtual_media("http://192.0.2.1/boot.iso")
        .await
        .unwrap();
    let patch = fake.last("PATCH", vm);
    assert_eq!(
        patch.json(),
        json!({"Image": "http://192.0.2.1/boot.iso", "Inserted": true})
    );
    assert_eq!(patch.header("if-match"), Some("\"vm-7\""));

    let err = c.insert_virtual_media("").await.unwrap_err();
    assert!(matches!(err, BmcError::Config(_)));
}

#[test]
fn base_urls() {
    assert_eq!(
        parse_base("10.0.0.5").unwrap().as_str(),
        "https://10.0.0.5/"
    );
    assert_eq!(
        parse_base("http://u:p@127.0.0.1:8000/redfish/v1?x#y")
            .unwrap()
            .as_str(),
        "http://127.0.0.1:8000/"
    );
    assert!(matches!(parse_base(""), Err(BmcError::Config(_))));
    assert!(matches!(parse_base("ftp://x"), Err(BmcError::Config(_))));
    assert!(matches!(parse_base("http://"), Err(BmcError::Config(_))));
}

#[test]
fn foreign_origins_are_pinned_to_the_bmc() {
    let c = RedfishClient::new(RedfishConfig::new("https://10.0.0.5", "a", "b")).unwrap();
    assert_eq!(
        c.url("https://evil.example:9/redfish/v1/TaskMonitors/1?x=1")
            .unwrap()
            .as_str(),
        "https://10.0.0.5/redfish/v1/TaskMonitors/1?x=1"
    );
    assert_eq!(
        c.to_path("https://10.0.0.5/redfish/v1/SessionService/Sessions/9")
            .as_deref(),
        Some("/redfish/v1/SessionService/Sessions/9")
    );
}

#[test]
fn error_mapping() {
    let body = br#"{"error": {"code": "Base.1.8.GeneralError", "message": "A general error has occurred.",
        "@Message.ExtendedInfo": [{"MessageId": "IDRAC.2.8.SYS029", "Message": "Reset in progress."}]}}"#;
    let e = http_error(&Method::POST, "/x", StatusCode::CONFLICT, body);
    assert_eq!(
        e,
        BmcError::Rejected {
            code: Some("IDRAC.2.8.SYS029".into()),
            message: "POST /x: HTTP 409 Conflict: Reset in progress.".into()
        }
    );
    let e = http_error(&Method::GET, "/x", StatusCode::FORBIDDEN, b"");
    assert!(matches!(e, BmcError::AuthFailed(_)));
    let e = http_error(&Method::POST, "/x", StatusCode::NOT_IMPLEMENTED, b"nope");
    assert!(matches!(e, BmcError::Unsupported(m) if m.contains("nope")));
    let e = http_error(&Method::GET, "/x", StatusCode::BAD_GATEWAY, &[0xff; 500]);
    assert!(matches!(e, BmcError::Rejected { code: Some(c), .. } if c == "502"));
}

#[test]
fn ca_bundle_is_checked_at_construction() {
    let dir = std::env::temp_dir().join(format!(
        "ironrack-rf-ca-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let with_bundle = |path: std::path::PathBuf| {
        let mut cfg = RedfishConfig::new("https://10.0.0.5", "a", "b");
        cfg.ca_bundle = Some(path);
        RedfishClient::new(cfg)
    };

    let missing = with_bundle(dir.join("missing.pem")).unwrap_err();
    assert!(
        matches!(&missing, BmcError::Config(m) if m.contains("cannot read")),
        "{missing:?}"
    );

    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = with_bundle(empty).unwrap_err();
    assert!(
        matches!(&err, BmcError::Config(m) if m.contains("no certificate")),
        "{err:?}"
    );

    let good = dir.join("ca.pem");
    let ck = rcgen::generate_simple_self_signed(vec!["bmc.example".to_owned()]).unwrap();
    std::fs::write(&good, ck.cert.pem()).unwrap();
    with_bundle(good).unwrap();

    let mut cfg = RedfishConfig::new("https://10.0.0.5", "a", "b");
    cfg.verify_tls = false;
    RedfishClient::new(cfg).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
