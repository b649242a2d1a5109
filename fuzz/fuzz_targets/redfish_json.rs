//! Redfish documents as the client reads them (src/redfish/model.rs): the
//! same bytes as a ServiceRoot, a collection, a ComputerSystem (Boot,
//! Reset action, links, settings), ActionInfo, Manager, VirtualMedia, a
//! Task and an error body, plus the client's mapping of an HTTP error
//! answer to a typed error and its reading of a configured BMC URL.
//!
//! Documents are read as the client reads them (`model::from_body`).
//!
//! Properties: no panic; the models are lenient: any JSON object reads
//! as every document type (wrong-typed fields read as absent, never fail
//! the document); open enums keep what they read (`parse(as_str(x)) == x`);
//! the error mapping always names the status and stays short for large
//! bodies; a parsed base URL is an origin with no credentials.
#![no_main]

use ironrack::redfish::client::{allowed_boot_targets, default_boot_targets};
use ironrack::redfish::model::{
    ActionInfo, BootSource, Collection, ComputerSystem, ErrorResponse, Manager, PowerState,
    ResetType, ServiceRoot, Task, TaskState, VirtualMedia,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn doc<T: serde::de::DeserializeOwned>(data: &[u8], is_object: bool) -> Option<T> {
    let r = ironrack::redfish::model::from_body::<T>(data);
    if is_object {
        // Lenient models: a JSON object always reads.
        Some(r.expect("a JSON object failed to read as a lenient model"))
    } else {
        r.ok()
    }
}

fuzz_target!(|data: &[u8]| {
    let value: Option<Value> = serde_json::from_slice(data).ok();
    let is_object = matches!(value, Some(Value::Object(_)));

    if let Some(r) = doc::<ServiceRoot>(data, is_object) {
        let _ = (r.systems, r.managers, r.session_service, r.links);
    }
    if let Some(c) = doc::<Collection>(data, is_object) {
        assert!(c.member_paths().count() <= c.members.len());
    }
    if let Some(s) = doc::<ComputerSystem>(data, is_object) {
        let _ = s.reset_action();
        let _ = s.settings_object();
        let _ = s.manager_path();
        let targets = allowed_boot_targets(&s);
        assert!(!targets.is_empty());
        if s.boot
            .as_ref()
            .and_then(|b| b.target_allowable.as_ref())
            .is_none_or(|l| l.is_empty())
        {
            assert_eq!(targets, default_boot_targets());
        }
        if let Some(p) = &s.power_state {
            assert_eq!(&PowerState::parse(p.as_str()), p);
        }
        if let Some(list) = s.reset_action().and_then(|a| a.allowable_values.as_ref()) {
            for t in list {
                assert_eq!(&ResetType::parse(t.as_str()), t);
            }
        }
        for t in &targets {
            assert_eq!(&BootSource::parse(t.as_str()), t);
        }
    }
    if let Some(a) = doc::<ActionInfo>(data, is_object) {
        let _ = a.allowable("ResetType");
    }
    if let Some(m) = doc::<Manager>(data, is_object) {
        let _ = m.virtual_media;
    }
    if let Some(v) = doc::<VirtualMedia>(data, is_object) {
        let _ = (v.is_cd(), v.insert_target(), v.eject_target());
    }
    if let Some(t) = doc::<Task>(data, is_object) {
        if let Some(s) = &t.task_state {
            assert_eq!(&TaskState::parse(s.as_str()), s);
            if s.is_failure() {
                assert!(s.is_terminal(), "a failed task state that is not terminal");
            }
        }
    }
    if let Some(e) = doc::<ErrorResponse>(data, is_object) {
        let ids = e.message_ids();
        if let Some(code) = e.code() {
            assert!(ids.contains(&code.as_str()));
        }
        if let Some(t) = e.text() {
            assert!(!t.trim().is_empty());
        }
    }

    // The client's error mapping, for a few statuses.
    for status in [400u16, 401, 404, 405, 409, 500, 503] {
        let msg = ironrack::fuzzing::redfish_http_error(status, data).expect("valid status");
        assert!(msg.contains(&status.to_string()), "{msg}");
        if value.is_none() {
            // A non-JSON body is quoted as a short excerpt.
            assert!(msg.chars().count() < 400, "{} chars", msg.chars().count());
        }
    }

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(base) = ironrack::fuzzing::redfish_parse_base(text) {
            assert!(
                base.starts_with("http://") || base.starts_with("https://"),
                "{base}"
            );
            assert!(base.ends_with('/'), "{base}");
            let host_part = &base[base.find("://").unwrap() + 3..];
            assert!(!host_part.contains('@'), "credentials kept in {base}");
            assert!(!base.contains('?') && !base.contains('#'), "{base}");
        }
    }
});
