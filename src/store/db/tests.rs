use super::*;
use serde_json::json;

fn info(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn ipmi_node(name: &str) -> NewNode {
    NewNode {
        name: Some(name.into()),
        driver: "ipmi".into(),
        driver_info: info(json!({
            "ipmi_address": "127.0.0.1",
            "ipmi_username": "admin",
            "ipmi_password": "s3cret-pw-xyzzy",
            "ipmi_kg": "kg-secret-plugh",
        })),
        ..Default::default()
    }
}

struct TempDir(PathBuf);
impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("ironrack-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn create_get_by_uuid_and_name() {
    let s = Store::open_in_memory().unwrap();
    assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as u32);
    let n = s.create_node(ipmi_node("n1")).unwrap();
    assert_eq!(n.provision_state, "enroll");
    assert_eq!(n.power_state, None);
    assert_eq!(n.driver_info["ipmi_password"], "s3cret-pw-xyzzy");
    assert_eq!(s.get_node(&n.uuid).unwrap(), n);
    assert_eq!(s.get_node(&n.uuid.to_uppercase()).unwrap().uuid, n.uuid);
    assert_eq!(s.get_node("n1").unwrap().uuid, n.uuid);
    assert!(matches!(
        s.get_node("nope"),
        Err(StoreError::NotFound { kind: "Node", .. })
    ));
}

#[test]
fn duplicates_and_bad_identities() {
    let s = Store::open_in_memory().unwrap();
    let n = s.create_node(ipmi_node("n1")).unwrap();
    let e = s.create_node(ipmi_node("n1")).unwrap_err();
    assert_eq!(
        e,
        StoreError::Duplicate("A node with name n1 already exists.".into())
    );
    let mut again = ipmi_node("n2");
    again.uuid = Some(n.uuid.clone());
    assert!(matches!(s.create_node(again), Err(StoreError::Duplicate(m)) if m.contains(&n.uuid)));
    let mut bad = ipmi_node("n3");
    bad.uuid = Some("not-a-uuid".into());
    assert!(matches!(s.create_node(bad), Err(StoreError::Invalid(_))));
    let uuidish = ipmi_node(&uuid::Uuid::new_v4().to_string());
    assert!(matches!(
        s.create_node(uuidish),
        Err(StoreError::Invalid(_))
    ));
    // Renaming onto an existing name is a conflict too, and changes nothing.
    let other = s.create_node(ipmi_node("n4")).unwrap();
    let e = s
        .update_node(&other.uuid, |n| {
            n.name = Some("n1".into());
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::Duplicate(_)));
    assert_eq!(s.get_node(&other.uuid).unwrap().name.as_deref(), Some("n4"));
}

#[test]
fn secrets_are_sealed_on_disk_and_need_the_key() {
    let dir = TempDir::new();
    let db = dir.0.join("ironrack.db");
    let key = dir.0.join("ironrack.db.key");
    let uuid = {
        let s = Store::open(&db, &key).unwrap();
        let n = s.create_node(ipmi_node("n1")).unwrap();
        // Drop the store: all connections close and the WAL is checkpointed.
        n.uuid
    };
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&dir.0).unwrap() {
        let p = entry.unwrap().path();
        if p != key {
            bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    let hay = String::from_utf8_lossy(&bytes);
    assert!(hay.contains("127.0.0.1"), "the DB holds the node");
    assert!(
        !hay.contains("s3cret-pw-xyzzy"),
        "password in plaintext on disk"
    );
    assert!(!hay.contains("kg-secret-plugh"), "Kg in plaintext on disk");

    #[cfg(unix)]
    for f in ["ironrack.db", "ironrack.db-wal", "ironrack.db-shm"] {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(dir.0.join(f)) {
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
        }
    }
    let s = Store::open(&db, &key).unwrap();
    assert_eq!(
        s.get_node(&uuid).unwrap().driver_info["ipmi_password"],
        "s3cret-pw-xyzzy"
    );
    s.create_node(ipmi_node("n2")).unwrap();
    s.checkpoint().unwrap();
    let wal = std::fs::metadata(dir.0.join("ironrack.db-wal")).map(|m| m.len());
    assert!(matches!(wal, Ok(0) | Err(_)), "WAL not folded in: {wal:?}");
    drop(s);
    // Another key cannot open the secrets: a clear error, not garbage.
    let other_key = dir.0.join("other.key");
    let s = Store::open(&db, &other_key).unwrap();
    let e = s.get_node(&uuid).unwrap_err();
    assert!(
        matches!(e, StoreError::Crypto(ref m) if m.contains("wrong key")),
        "{e}"
    );
}

#[test]
fn non_string_secrets_round_trip() {
    let s = Store::open_in_memory().unwrap();
    let mut n = ipmi_node("n1");
    n.driver_info
        .insert("redfish_password".into(), json!(12345));
    n.driver_info.insert("other_token".into(), Value::Null);
    let n = s.create_node(n).unwrap();
    assert_eq!(n.driver_info["redfish_password"], json!(12345));
    assert_eq!(n.driver_info["other_token"], Value::Null);
}

#[test]
fn update_bumps_updated_at_and_keeps_identity() {
    let s = Store::open_in_memory().unwrap();
    let n = s.create_node(ipmi_node("n1")).unwrap();
    assert_eq!(n.updated_at, None);
    let same = s.update_node(&n.uuid, |_| Ok(())).unwrap();
    assert_eq!(same.updated_at, None, "no change, no write");
    let u = s
        .update_node("n1", |x| {
            x.power_state = Some("power on".into());
            x.uuid = "hijack".into();
            x.id = 999;
            Ok(())
        })
        .unwrap();
    assert_eq!(u.uuid, n.uuid);
    assert_eq!(u.id, n.id);
    assert!(u.updated_at.is_some());
    assert_eq!(
        s.get_node(&n.uuid).unwrap().power_state.as_deref(),
        Some("power on")
    );
    // A failing closure writes nothing.
    let e = s.update_node(&n.uuid, |x| {
        x.power_state = Some("power off".into());
        Err(StoreError::Invalid("no".into()))
    });
    assert!(e.is_err());
    assert_eq!(
        s.get_node(&n.uuid).unwrap().power_state.as_deref(),
        Some("power on")
    );
}

#[test]
fn batch_updates_skip_failures_and_vanished_nodes() {
    let s = Store::open_in_memory().unwrap();
    let a = s.create_node(ipmi_node("a")).unwrap();
    let b = s.create_node(ipmi_node("b")).unwrap();
    let c = s.create_node(ipmi_node("c")).unwrap();
    let changes: Vec<(String, NodeChange)> = vec![
        (
            a.uuid.clone(),
            Box::new(|n: &mut Node| {
                n.power_state = Some("power on".into());
                Ok(())
            }),
        ),
        (
            b.uuid.clone(),
            Box::new(|n: &mut Node| {
                n.name = Some("c".into()); // conflicts with c
                Ok(())
            }),
        ),
        (
            uuid::Uuid::new_v4().to_string(),
            Box::new(|n: &mut Node| {
                n.power_state = Some("power on".into());
                Ok(())
            }),
        ),
        (
            c.uuid.clone(),
            Box::new(|n: &mut Node| {
                n.power_state = Some("power off".into());
                Ok(())
            }),
        ),
    ];
    let done = s.update_nodes(changes).unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(
        s.get_node("a").unwrap().power_state.as_deref(),
        Some("power on")
    );
    assert_eq!(s.get_node(&b.uuid).unwrap().name.as_deref(), Some("b"));
    assert_eq!(
        s.get_node("c").unwrap().power_state.as_deref(),
        Some("power off")
    );
}

#[test]
fn list_filters_sorts_and_pages() {
    let s = Store::open_in_memory().unwrap();
    let mut uuids = Vec::new();
    for i in 0..25 {
        let mut n = ipmi_node(&format!("node-{i:02}"));
        if i % 5 == 0 {
            n.maintenance = true;
        }
        if i % 2 == 0 {
            n.driver = "redfish".into();
        }
        uuids.push(s.create_node(n).unwrap().uuid);
    }
    let all = s.list_nodes(&NodeQuery::default()).unwrap();
    assert_eq!(
        all.iter().map(|n| n.uuid.clone()).collect::<Vec<_>>(),
        uuids
    );
    let maint = s
        .list_nodes(&NodeQuery {
            maintenance: Some(true),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(maint.len(), 5);
    let rf = s
        .list_nodes(&NodeQuery {
            driver: Some("redfish".into()),
            maintenance: Some(false),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rf.len(), 10);
    // Paging by marker in descending name order visits every node once.
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = s
            .list_nodes(&NodeQuery {
                limit: 7,
                marker: marker.clone(),
                sort_key: SortKey::Name,
                sort_desc: true,
                ..Default::default()
            })
            .unwrap();
        if page.is_empty() {
            break;
        }
        marker = page.last().map(|n| n.uuid.clone());
        seen.extend(page.into_iter().map(|n| n.name.unwrap()));
    }
    let mut want: Vec<String> = (0..25).map(|i| format!("node-{i:02}")).collect();
    want.reverse();
    assert_eq!(seen, want);
    // Paging on a column with equal values (driver) still visits each once.
    let mut count = 0;
    let mut marker = None;
    loop {
        let page = s
            .list_nodes(&NodeQuery {
                limit: 4,
                marker: marker.clone(),
                sort_key: SortKey::Driver,
                ..Default::default()
            })
            .unwrap();
        if page.is_empty() {
            break;
        }
        count += page.len();
        marker = page.last().map(|n| n.uuid.clone());
    }
    assert_eq!(count, 25);
    let e = s
        .list_nodes(&NodeQuery {
            marker: Some(uuid::Uuid::new_v4().to_string()),
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)));
    let counts = s.count_nodes_by_power_state().unwrap();
    assert_eq!(counts, vec![(None, false, 20), (None, true, 5)]);
}

#[test]
fn ports_validate_unique_and_cascade() {
    let s = Store::open_in_memory().unwrap();
    let n = s.create_node(ipmi_node("n1")).unwrap();
    let p = s
        .create_port(NewPort {
            address: "52-54-00-AA-BB-01".into(),
            node_uuid: "n1".into(),
            pxe_enabled: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(p.address, "52:54:00:aa:bb:01");
    assert_eq!(p.node_uuid, n.uuid);
    assert_eq!(
        s.get_port_by_address("52:54:00:AA:BB:01").unwrap().uuid,
        p.uuid
    );
    let dup = s.create_port(NewPort {
        address: "52:54:00:aa:bb:01".into(),
        node_uuid: n.uuid.clone(),
        ..Default::default()
    });
    assert_eq!(
        dup.unwrap_err(),
        StoreError::Duplicate("A port with MAC address 52:54:00:aa:bb:01 already exists.".into())
    );
    assert!(matches!(
        s.create_port(NewPort {
            address: "zz:54:00:aa:bb:01".into(),
            node_uuid: n.uuid.clone(),
            ..Default::default()
        }),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.create_port(NewPort {
            address: "52:54:00:aa:bb:02".into(),
            node_uuid: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        }),
        Err(StoreError::NotFound { kind: "Node", .. })
    ));
    let p2 = s
        .create_port(NewPort {
            address: "52:54:00:aa:bb:02".into(),
            node_uuid: n.uuid.clone(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(s.list_ports(Some("n1"), 0, None).unwrap().len(), 2);
    assert_eq!(
        s.list_ports(None, 0, Some(&p.uuid)).unwrap(),
        vec![p2.clone()]
    );
    s.delete_port(&p2.uuid).unwrap();
    assert!(matches!(
        s.delete_port(&p2.uuid),
        Err(StoreError::NotFound { kind: "Port", .. })
    ));
    s.delete_node(&n.uuid).unwrap();
    assert!(s.list_ports(None, 0, None).unwrap().is_empty());
    assert!(s.get_port(&p.uuid).is_err());
}

#[test]
fn stale_targets_are_cleared_with_a_reason() {
    let s = Store::open_in_memory().unwrap();
    let a = s.create_node(ipmi_node("a")).unwrap();
    let b = s.create_node(ipmi_node("b")).unwrap();
    s.update_node(&a.uuid, |n| {
        n.target_power_state = Some("power off".into());
        Ok(())
    })
    .unwrap();
    assert_eq!(s.clear_stale_targets().unwrap(), vec![a.uuid.clone()]);
    let a = s.get_node(&a.uuid).unwrap();
    assert_eq!(a.target_power_state, None);
    assert!(a.last_error.unwrap().contains("'power off'"));
    assert_eq!(s.get_node(&b.uuid).unwrap().last_error, None);
    assert!(s.clear_stale_targets().unwrap().is_empty());
}

#[test]
fn reopen_keeps_everything_and_refuses_newer_schemas() {
    let dir = TempDir::new();
    let db = dir.0.join("ironrack.db");
    let key = dir.0.join("k");
    let n = {
        let s = Store::open(&db, &key).unwrap();
        let n = s.create_node(ipmi_node("n1")).unwrap();
        s.create_port(NewPort {
            address: "52:54:00:aa:bb:01".into(),
            node_uuid: n.uuid.clone(),
            ..Default::default()
        })
        .unwrap();
        n
    };
    let s = Store::open(&db, &key).unwrap();
    assert_eq!(s.get_node(&n.uuid).unwrap(), n);
    assert_eq!(s.list_ports(None, 0, None).unwrap().len(), 1);
    drop(s);
    let c = Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(c);
    let e = Store::open(&db, &key).unwrap_err();
    assert!(e.to_string().contains("newer"), "{e}");
}

#[test]
fn reads_see_committed_writes_across_connections() {
    let dir = TempDir::new();
    let s = Store::open(&dir.0.join("db"), &dir.0.join("k")).unwrap();
    let t = s.clone();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let t = t.clone();
            std::thread::spawn(move || {
                for j in 0..10 {
                    t.create_node(ipmi_node(&format!("t{i}-{j}"))).unwrap();
                    assert!(t.get_node(&format!("t{i}-{j}")).is_ok());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(s.list_nodes(&NodeQuery::default()).unwrap().len(), 40);
}
