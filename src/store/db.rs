//! SQLite access for [`Store`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde_json::{Map, Value};

use super::crypto::SEALED_PREFIX;
use super::{
    is_secret_key, normalize_mac, now, NewNode, NewPort, Node, NodeQuery, Port, SecretBox, SortKey,
    StoreError,
};

/// A change applied to one node inside a batch (see [`Store::update_nodes`]).
pub type NodeChange = Box<dyn FnOnce(&mut Node) -> Result<(), StoreError> + Send>;

/// Versioned migrations: `PRAGMA user_version` is how many have run. Append
/// only; never edit a released step.
const MIGRATIONS: &[&str] = &[
    // 1: nodes and ports.
    "CREATE TABLE nodes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT UNIQUE,
        driver TEXT NOT NULL,
        driver_info TEXT NOT NULL DEFAULT '{}',
        driver_internal_info TEXT NOT NULL DEFAULT '{}',
        properties TEXT NOT NULL DEFAULT '{}',
        extra TEXT NOT NULL DEFAULT '{}',
        instance_info TEXT NOT NULL DEFAULT '{}',
        instance_uuid TEXT UNIQUE,
        power_state TEXT,
        target_power_state TEXT,
        provision_state TEXT NOT NULL,
        target_provision_state TEXT,
        provision_updated_at TEXT,
        maintenance INTEGER NOT NULL DEFAULT 0,
        maintenance_reason TEXT,
        fault TEXT,
        last_error TEXT,
        console_enabled INTEGER NOT NULL DEFAULT 0,
        description TEXT,
        resource_class TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT
    );
    CREATE INDEX nodes_maintenance ON nodes (maintenance);
    CREATE INDEX nodes_driver ON nodes (driver);
    CREATE INDEX nodes_provision_state ON nodes (provision_state);
    CREATE TABLE ports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        address TEXT NOT NULL UNIQUE,
        node_uuid TEXT NOT NULL REFERENCES nodes (uuid) ON DELETE CASCADE,
        pxe_enabled INTEGER NOT NULL DEFAULT 1,
        extra TEXT NOT NULL DEFAULT '{}',
        local_link_connection TEXT NOT NULL DEFAULT '{}',
        physical_network TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT
    );
    CREATE INDEX ports_node_uuid ON ports (node_uuid);",
];

const NODE_COLUMNS: &str = "id, uuid, name, driver, driver_info, driver_internal_info, \
    properties, extra, instance_info, instance_uuid, power_state, target_power_state, \
    provision_state, target_provision_state, provision_updated_at, maintenance, \
    maintenance_reason, fault, last_error, console_enabled, description, resource_class, \
    created_at, updated_at";

const PORT_COLUMNS: &str = "id, uuid, address, node_uuid, pxe_enabled, extra, \
    local_link_connection, physical_network, created_at, updated_at";

/// Idle read connections kept for reuse.
const READ_POOL: usize = 8;

struct Inner {
    path: Option<PathBuf>,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    secrets: SecretBox,
}

/// The inventory. Cheap to clone; all clones share the connections.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Map a uniqueness violation to `Duplicate` with Ironic's wording.
fn write_err(e: rusqlite::Error, what: &dyn Fn(&str) -> Option<String>) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, Some(msg)) = &e {
        if f.code == rusqlite::ErrorCode::ConstraintViolation {
            if let Some(col) = msg.strip_prefix("UNIQUE constraint failed: ") {
                if let Some(m) = what(col) {
                    return StoreError::Duplicate(m);
                }
                return StoreError::Duplicate(format!("duplicate value for {col}"));
            }
        }
    }
    db_err(e)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave SQLite inconsistent (an open
    // transaction rolls back when dropped), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn configure(conn: &Connection, file: bool) -> Result<(), StoreError> {
    if file {
        // WAL: readers never block the writer. FULL: a committed transaction
        // survives a crash of the process and of the machine.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Db(format!(
                "cannot switch the database to WAL mode (got {mode})"
            )));
        }
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
    )
    .map_err(db_err)
}

/// Create the database file with mode 0600 when it does not exist yet;
/// SQLite gives its -wal and -shm files the same mode. The inventory names
/// every BMC and its user, which is nobody else's business on the host.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Db(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err)?;
    if version as usize > MIGRATIONS.len() {
        return Err(StoreError::Db(format!(
            "the database has schema version {version}, newer than this ironrack knows ({}); \
             refusing to touch it",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(db_err)?;
        tx.execute_batch(sql).map_err(db_err)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}

fn to_json(m: &Map<String, Value>) -> String {
    Value::Object(m.clone()).to_string()
}

fn from_json(field: &str, s: &str) -> Result<Map<String, Value>, StoreError> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(StoreError::Db(format!(
            "column {field} does not hold a JSON object"
        ))),
    }
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

/// The stored row of a node, before secrets are opened.
struct RawNode {
    node: Node,
    driver_info: String,
}

fn raw_node(r: &Row<'_>) -> rusqlite::Result<RawNode> {
    let json = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let obj = |i: usize, name: &str| -> rusqlite::Result<Map<String, Value>> {
        from_json(name, &json(i)?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    Ok(RawNode {
        driver_info: json(4)?,
        node: Node {
            id: r.get(0)?,
            uuid: r.get(1)?,
            name: r.get(2)?,
            driver: r.get(3)?,
            driver_info: Map::new(),
            driver_internal_info: obj(5, "driver_internal_info")?,
            properties: obj(6, "properties")?,
            extra: obj(7, "extra")?,
            instance_info: obj(8, "instance_info")?,
            instance_uuid: r.get(9)?,
            power_state: r.get(10)?,
            target_power_state: r.get(11)?,
            provision_state: r.get(12)?,
            target_provision_state: r.get(13)?,
            provision_updated_at: r.get(14)?,
            maintenance: r.get::<_, i64>(15)? != 0,
            maintenance_reason: r.get(16)?,
            fault: r.get(17)?,
            last_error: r.get(18)?,
            console_enabled: r.get::<_, i64>(19)? != 0,
            description: r.get(20)?,
            resource_class: r.get(21)?,
            created_at: r.get(22)?,
            updated_at: r.get(23)?,
        },
    })
}

fn port_row(r: &Row<'_>) -> rusqlite::Result<Port> {
    let obj = |i: usize, name: &str| -> rusqlite::Result<Map<String, Value>> {
        from_json(name, &r.get::<_, String>(i)?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    Ok(Port {
        id: r.get(0)?,
        uuid: r.get(1)?,
        address: r.get(2)?,
        node_uuid: r.get(3)?,
        pxe_enabled: r.get::<_, i64>(4)? != 0,
        extra: obj(5, "extra")?,
        local_link_connection: obj(6, "local_link_connection")?,
        physical_network: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

fn node_dup(
    name: Option<&str>,
    uuid: &str,
    instance: Option<&str>,
) -> impl Fn(&str) -> Option<String> {
    let name = name.map(str::to_string);
    let uuid = uuid.to_string();
    let instance = instance.map(str::to_string);
    move |col: &str| match col {
        "nodes.name" => Some(format!(
            "A node with name {} already exists.",
            name.as_deref().unwrap_or("")
        )),
        "nodes.uuid" => Some(format!("A node with UUID {uuid} already exists.")),
        "nodes.instance_uuid" => Some(format!(
            "Instance {} is already associated with a node, it cannot be associated with this \
             other node {uuid}",
            instance.as_deref().unwrap_or("")
        )),
        _ => None,
    }
}

impl Store {
    /// Open (creating and migrating) the database at `path`, with secrets
    /// sealed under the key in `key_file` (created 0600 when absent).
    pub fn open(path: &Path, key_file: &Path) -> Result<Store, StoreError> {
        let secrets = SecretBox::load_or_create(key_file)?;
        create_private(path)?;
        let mut writer = Connection::open(path)
            .map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
        configure(&writer, true)?;
        migrate(&mut writer)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: Some(path.to_path_buf()),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                secrets,
            }),
        })
    }

    /// An in-memory store with an ephemeral key (for tests). Reads share the
    /// one connection.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let mut writer = Connection::open_in_memory().map_err(db_err)?;
        configure(&writer, false)?;
        migrate(&mut writer)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: None,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                secrets: SecretBox::ephemeral()?,
            }),
        })
    }

    /// Run `f` on a read connection (the writer's for an in-memory store).
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Some(path) = &self.inner.path else {
            return f(&lock(&self.inner.writer));
        };
        let conn = lock(&self.inner.readers).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(db_err)?;
                c.execute_batch("PRAGMA busy_timeout = 10000;")
                    .map_err(db_err)?;
                c
            }
        };
        let out = f(&conn);
        let mut pool = lock(&self.inner.readers);
        if pool.len() < READ_POOL {
            pool.push(conn);
        }
        out
    }

    /// Run `f` in an IMMEDIATE write transaction; commit when it succeeds.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let out = f(&tx)?;
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Copy the WAL into the database and truncate it (on a clean stop).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        if self.inner.path.is_none() {
            return Ok(());
        }
        lock(&self.inner.writer)
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(db_err)
    }

    /// The schema version after migrations.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.read(|c| {
            c.query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(db_err)
        })
    }

    fn seal_info(&self, uuid: &str, info: &Map<String, Value>) -> Result<String, StoreError> {
        let mut out = Map::new();
        for (k, v) in info {
            let v = if is_secret_key(k) && !v.is_null() {
                Value::String(self.inner.secrets.seal(uuid, k, &v.to_string())?)
            } else {
                v.clone()
            };
            out.insert(k.clone(), v);
        }
        Ok(Value::Object(out).to_string())
    }

    fn open_info(&self, uuid: &str, stored: &str) -> Result<Map<String, Value>, StoreError> {
        let mut info = from_json("driver_info", stored)?;
        for (k, v) in info.iter_mut() {
            if let Value::String(s) = v {
                if s.starts_with(SEALED_PREFIX) {
                    let plain = self.inner.secrets.open(uuid, k, s)?;
                    *v = serde_json::from_str(&plain).unwrap_or(Value::String(plain));
                }
            }
        }
        Ok(info)
    }

    fn finish(&self, raw: RawNode) -> Result<Node, StoreError> {
        let mut node = raw.node;
        node.driver_info = self.open_info(&node.uuid, &raw.driver_info)?;
        Ok(node)
    }

    fn node_where(
        &self,
        c: &Connection,
        clause: &str,
        arg: &str,
    ) -> Result<Option<Node>, StoreError> {
        let raw = c
            .prepare_cached(&format!("SELECT {NODE_COLUMNS} FROM nodes WHERE {clause}"))
            .map_err(db_err)?
            .query_row([arg], raw_node)
            .optional()
            .map_err(db_err)?;
        raw.map(|r| self.finish(r)).transpose()
    }

    fn find_node(&self, c: &Connection, ident: &str) -> Result<Node, StoreError> {
        let found = if is_uuid(ident) {
            self.node_where(c, "uuid = ?1", &ident.to_ascii_lowercase())?
        } else {
            self.node_where(c, "name = ?1", ident)?
        };
        found.ok_or_else(|| StoreError::NotFound {
            kind: "Node",
            ident: ident.to_string(),
        })
    }

    fn write_node(&self, tx: &Connection, n: &Node) -> Result<(), StoreError> {
        let info = self.seal_info(&n.uuid, &n.driver_info)?;
        tx.prepare_cached(
            "UPDATE nodes SET name = ?2, driver = ?3, driver_info = ?4, \
             driver_internal_info = ?5, properties = ?6, extra = ?7, instance_info = ?8, \
             instance_uuid = ?9, power_state = ?10, target_power_state = ?11, \
             provision_state = ?12, target_provision_state = ?13, provision_updated_at = ?14, \
             maintenance = ?15, maintenance_reason = ?16, fault = ?17, last_error = ?18, \
             console_enabled = ?19, description = ?20, resource_class = ?21, updated_at = ?22 \
             WHERE uuid = ?1",
        )
        .map_err(db_err)?
        .execute(params![
            n.uuid,
            n.name,
            n.driver,
            info,
            to_json(&n.driver_internal_info),
            to_json(&n.properties),
            to_json(&n.extra),
            to_json(&n.instance_info),
            n.instance_uuid,
            n.power_state,
            n.target_power_state,
            n.provision_state,
            n.target_provision_state,
            n.provision_updated_at,
            n.maintenance as i64,
            n.maintenance_reason,
            n.fault,
            n.last_error,
            n.console_enabled as i64,
            n.description,
            n.resource_class,
            n.updated_at,
        ])
        .map_err(|e| {
            write_err(
                e,
                &node_dup(n.name.as_deref(), &n.uuid, n.instance_uuid.as_deref()),
            )
        })?;
        Ok(())
    }

    /// Conflicts (name, uuid) give `Duplicate`.
    pub fn create_node(&self, new: NewNode) -> Result<Node, StoreError> {
        let uuid = match &new.uuid {
            Some(u) => uuid::Uuid::try_parse(u)
                .map_err(|_| StoreError::Invalid(format!("Expected a UUID but received {u}.")))?
                .to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        if let Some(name) = &new.name {
            if is_uuid(name) {
                return Err(StoreError::Invalid(format!(
                    "Expected a logical name but received {name}: a name must not look like a UUID."
                )));
            }
        }
        let info = self.seal_info(&uuid, &new.driver_info)?;
        let created = now();
        let uuid2 = uuid.clone();
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO nodes (uuid, name, driver, driver_info, properties, extra, \
                 instance_info, instance_uuid, provision_state, maintenance, maintenance_reason, \
                 description, resource_class, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'enroll', ?9, ?10, ?11, ?12, ?13)",
            )
            .map_err(db_err)?
            .execute(params![
                uuid2,
                new.name,
                new.driver,
                info,
                to_json(&new.properties),
                to_json(&new.extra),
                to_json(&new.instance_info),
                new.instance_uuid,
                new.maintenance as i64,
                new.maintenance_reason,
                new.description,
                new.resource_class,
                created,
            ])
            .map_err(|e| {
                write_err(
                    e,
                    &node_dup(new.name.as_deref(), &uuid2, new.instance_uuid.as_deref()),
                )
            })?;
            Ok(())
        })?;
        self.get_node(&uuid)
    }

    /// By uuid, or by name when `ident` is not a uuid.
    pub fn get_node(&self, ident: &str) -> Result<Node, StoreError> {
        self.read(|c| self.find_node(c, ident))
    }

    pub fn list_nodes(&self, q: &NodeQuery) -> Result<Vec<Node>, StoreError> {
        let sort = match q.sort_key {
            SortKey::Id => "id",
            SortKey::Uuid => "uuid",
            SortKey::Name => "IFNULL(name, '')",
            SortKey::Driver => "driver",
            SortKey::PowerState => "IFNULL(power_state, '')",
            SortKey::ProvisionState => "provision_state",
            SortKey::Maintenance => "maintenance",
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "IFNULL(updated_at, '')",
        };
        let (dir, cmp) = if q.sort_desc {
            ("DESC", "<")
        } else {
            ("ASC", ">")
        };
        let mut clauses: Vec<String> = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let arg = |v: rusqlite::types::Value, args: &mut Vec<_>| {
            args.push(v);
            format!("?{}", args.len())
        };
        if let Some(m) = q.maintenance {
            let p = arg((m as i64).into(), &mut args);
            clauses.push(format!("maintenance = {p}"));
        }
        if let Some(d) = &q.driver {
            let p = arg(d.clone().into(), &mut args);
            clauses.push(format!("driver = {p}"));
        }
        if let Some(s) = &q.provision_state {
            let p = arg(s.clone().into(), &mut args);
            clauses.push(format!("provision_state = {p}"));
        }
        if let Some(f) = &q.fault {
            let p = arg(f.clone().into(), &mut args);
            clauses.push(format!("fault = {p}"));
        }
        match q.associated {
            Some(true) => clauses.push("instance_uuid IS NOT NULL".into()),
            Some(false) => clauses.push("instance_uuid IS NULL".into()),
            None => {}
        }
        self.read(|c| {
            if let Some(marker) = &q.marker {
                let key: Option<(rusqlite::types::Value, i64)> = c
                    .query_row(
                        &format!("SELECT {sort}, id FROM nodes WHERE uuid = ?1"),
                        [marker.to_ascii_lowercase()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(db_err)?;
                let Some((v, id)) = key else {
                    return Err(StoreError::Invalid(format!(
                        "marker {marker} does not name a node"
                    )));
                };
                let pv = arg(v, &mut args);
                let pi = arg(id.into(), &mut args);
                clauses.push(format!("({sort}, id) {cmp} ({pv}, {pi})"));
            }
            let mut sql = format!("SELECT {NODE_COLUMNS} FROM nodes");
            if !clauses.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&clauses.join(" AND "));
            }
            sql.push_str(&format!(" ORDER BY {sort} {dir}, id {dir}"));
            if q.limit > 0 {
                sql.push_str(&format!(" LIMIT {}", q.limit));
            }
            let mut stmt = c.prepare_cached(&sql).map_err(db_err)?;
            let raws = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), raw_node)
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            raws.into_iter().map(|r| self.finish(r)).collect()
        })
    }

    /// Count of nodes by (power_state, maintenance), for metrics.
    pub fn count_nodes_by_power_state(
        &self,
    ) -> Result<Vec<(Option<String>, bool, u64)>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT power_state, maintenance, COUNT(*) FROM nodes \
                     GROUP BY power_state, maintenance ORDER BY 1, 2",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, i64>(1)? != 0,
                        r.get::<_, i64>(2)?.max(0) as u64,
                    ))
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            Ok(rows)
        })
    }

    /// Apply `f` to the node `uuid` inside `tx`, keeping identity fields.
    fn change_in(
        &self,
        tx: &Connection,
        uuid: &str,
        f: impl FnOnce(&mut Node) -> Result<(), StoreError>,
    ) -> Result<Node, StoreError> {
        let before = self.find_node(tx, uuid)?;
        let mut node = before.clone();
        f(&mut node)?;
        // Identity is not the closure's to change.
        node.id = before.id;
        node.uuid = before.uuid.clone();
        node.created_at = before.created_at.clone();
        if node == before {
            return Ok(node);
        }
        node.updated_at = Some(now());
        self.write_node(tx, &node)?;
        Ok(node)
    }

    /// Read-modify-write one node in a transaction; `updated_at` is bumped
    /// when anything changed. `uuid` may also be the node's name.
    pub fn update_node(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut Node) -> Result<(), StoreError>,
    ) -> Result<Node, StoreError> {
        self.write(|tx| self.change_in(tx, uuid, f))
    }

    /// Apply many changes in one transaction (one fsync): what a power sync
    /// sweep records. A node that vanished meanwhile is skipped; an error from
    /// one change skips that node only. Returns the nodes written.
    pub fn update_nodes(
        &self,
        changes: Vec<(String, NodeChange)>,
    ) -> Result<Vec<Node>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|tx| {
            let mut done = Vec::with_capacity(changes.len());
            for (uuid, f) in changes {
                tx.execute_batch("SAVEPOINT one").map_err(db_err)?;
                match self.change_in(tx, &uuid, f) {
                    Ok(n) => {
                        tx.execute_batch("RELEASE one").map_err(db_err)?;
                        done.push(n);
                    }
                    Err(e) => {
                        tx.execute_batch("ROLLBACK TO one; RELEASE one")
                            .map_err(db_err)?;
                        if !matches!(e, StoreError::NotFound { .. }) {
                            tracing::warn!(node = %uuid, error = %e, "batched node update skipped");
                        }
                    }
                }
            }
            Ok(done)
        })
    }

    /// Delete a node and its ports.
    pub fn delete_node(&self, uuid: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let node = self.find_node(tx, uuid)?;
            tx.execute("DELETE FROM ports WHERE node_uuid = ?1", [&node.uuid])
                .map_err(db_err)?;
            tx.execute("DELETE FROM nodes WHERE uuid = ?1", [&node.uuid])
                .map_err(db_err)?;
            Ok(())
        })
    }

    /// On start: clear every target_power_state left by a crash, with a
    /// last_error saying so. Returns the uuids touched.
    pub fn clear_stale_targets(&self) -> Result<Vec<String>, StoreError> {
        self.write(|tx| {
            let stale: Vec<(String, String)> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT uuid, target_power_state FROM nodes \
                         WHERE target_power_state IS NOT NULL ORDER BY id",
                    )
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(db_err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_err)?;
                rows
            };
            let stamp = now();
            for (uuid, target) in &stale {
                tx.execute(
                    "UPDATE nodes SET target_power_state = NULL, last_error = ?2, \
                     updated_at = ?3 WHERE uuid = ?1",
                    params![
                        uuid,
                        format!(
                            "The agent stopped while the power state change to '{target}' was \
                             in progress (crash or kill); its outcome is unknown. \
                             target_power_state was cleared on restart; the power sync will \
                             record the actual state."
                        ),
                        stamp
                    ],
                )
                .map_err(db_err)?;
            }
            Ok(stale.into_iter().map(|(u, _)| u).collect())
        })
    }

    /// Conflicts (MAC, uuid) give `Duplicate`; an unknown node `NotFound`;
    /// a malformed MAC `Invalid`.
    pub fn create_port(&self, new: NewPort) -> Result<Port, StoreError> {
        let address = normalize_mac(&new.address)?;
        let uuid = match &new.uuid {
            Some(u) => uuid::Uuid::try_parse(u)
                .map_err(|_| StoreError::Invalid(format!("Expected a UUID but received {u}.")))?
                .to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let created = now();
        self.write(|tx| {
            let node = self.find_node(tx, &new.node_uuid)?;
            let addr = address.clone();
            let u = uuid.clone();
            tx.prepare_cached(
                "INSERT INTO ports (uuid, address, node_uuid, pxe_enabled, extra, \
                 local_link_connection, physical_network, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(db_err)?
            .execute(params![
                uuid,
                address,
                node.uuid,
                new.pxe_enabled as i64,
                to_json(&new.extra),
                to_json(&new.local_link_connection),
                new.physical_network,
                created,
            ])
            .map_err(|e| {
                write_err(e, &|col: &str| match col {
                    "ports.address" => {
                        Some(format!("A port with MAC address {addr} already exists."))
                    }
                    "ports.uuid" => Some(format!("A port with UUID {u} already exists.")),
                    _ => None,
                })
            })?;
            Ok(())
        })?;
        self.get_port(&uuid)
    }

    fn port_where(&self, clause: &str, arg: &str, ident: &str) -> Result<Port, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {PORT_COLUMNS} FROM ports WHERE {clause}"))
                .map_err(db_err)?
                .query_row([arg], port_row)
                .optional()
                .map_err(db_err)?
                .ok_or_else(|| StoreError::NotFound {
                    kind: "Port",
                    ident: ident.to_string(),
                })
        })
    }

    pub fn get_port(&self, uuid: &str) -> Result<Port, StoreError> {
        self.port_where("uuid = ?1", &uuid.to_ascii_lowercase(), uuid)
    }

    pub fn get_port_by_address(&self, mac: &str) -> Result<Port, StoreError> {
        let norm = normalize_mac(mac)?;
        self.port_where("address = ?1", &norm, mac)
    }

    /// Ports in id order, optionally of one node, after `marker` (a port uuid).
    pub fn list_ports(
        &self,
        node_uuid: Option<&str>,
        limit: usize,
        marker: Option<&str>,
    ) -> Result<Vec<Port>, StoreError> {
        self.read(|c| {
            let node = match node_uuid {
                Some(ident) => Some(self.find_node(c, ident)?.uuid),
                None => None,
            };
            let after: i64 = match marker {
                Some(m) => c
                    .query_row(
                        "SELECT id FROM ports WHERE uuid = ?1",
                        [m.to_ascii_lowercase()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err)?
                    .ok_or_else(|| {
                        StoreError::Invalid(format!("marker {m} does not name a port"))
                    })?,
                None => 0,
            };
            let limit = if limit == 0 { -1 } else { limit as i64 };
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {PORT_COLUMNS} FROM ports WHERE id > ?1 \
                     AND (?2 IS NULL OR node_uuid = ?2) ORDER BY id LIMIT ?3"
                ))
                .map_err(db_err)?;
            let ports = stmt
                .query_map(params![after, node, limit], port_row)
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            Ok(ports)
        })
    }

    pub fn delete_port(&self, uuid: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM ports WHERE uuid = ?1",
                    [uuid.to_ascii_lowercase()],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    kind: "Port",
                    ident: uuid.to_string(),
                });
            }
            Ok(())
        })
    }

    #[doc(hidden)]
    pub fn secret_box(&self) -> &SecretBox {
        &self.inner.secrets
    }
}

#[cfg(test)]
mod tests;
