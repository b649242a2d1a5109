//! SQLite access for [`Store`].

use std::path::Path;

use super::{NewNode, NewPort, Node, NodeQuery, Port, SecretBox, StoreError};

/// A change applied to one node inside a batch (see [`Store::update_nodes`]).
pub type NodeChange = Box<dyn FnOnce(&mut Node) -> Result<(), StoreError> + Send>;

/// The inventory. Cheap to clone; all clones share the connections.
#[derive(Clone)]
pub struct Store {
    _todo: (),
}

impl Store {
    /// Open (creating and migrating) the database at `path`, with secrets
    /// sealed under the key in `key_file` (created 0600 when absent).
    pub fn open(path: &Path, key_file: &Path) -> Result<Store, StoreError> {
        let _ = (path, key_file);
        todo!()
    }

    /// An in-memory store with an ephemeral key (for tests).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        todo!()
    }

    /// The schema version after migrations.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        todo!()
    }

    /// Conflicts (name, uuid) give `Duplicate`.
    pub fn create_node(&self, new: NewNode) -> Result<Node, StoreError> {
        let _ = new;
        todo!()
    }

    /// By uuid, or by name when `ident` is not a uuid.
    pub fn get_node(&self, ident: &str) -> Result<Node, StoreError> {
        let _ = ident;
        todo!()
    }

    pub fn list_nodes(&self, q: &NodeQuery) -> Result<Vec<Node>, StoreError> {
        let _ = q;
        todo!()
    }

    /// Count of nodes by (power_state, maintenance), for metrics.
    pub fn count_nodes_by_power_state(&self) -> Result<Vec<(Option<String>, bool, u64)>, StoreError> {
        todo!()
    }

    /// Read-modify-write one node in a transaction; `updated_at` is bumped.
    /// `uuid` must be the node's uuid (not its name).
    pub fn update_node(
        &self,
        uuid: &str,
        f: impl FnOnce(&mut Node) -> Result<(), StoreError>,
    ) -> Result<Node, StoreError> {
        let _ = (uuid, f);
        todo!()
    }

    /// Apply many changes in one transaction (one fsync): what a power sync
    /// sweep records. A node that vanished meanwhile is skipped; an error from
    /// one change skips that node only. Returns the nodes written.
    pub fn update_nodes(&self, changes: Vec<(String, NodeChange)>) -> Result<Vec<Node>, StoreError> {
        let _ = changes;
        todo!()
    }

    /// Delete a node and its ports.
    pub fn delete_node(&self, uuid: &str) -> Result<(), StoreError> {
        let _ = uuid;
        todo!()
    }

    /// On start: clear every target_power_state left by a crash, with a
    /// last_error saying so. Returns the uuids touched.
    pub fn clear_stale_targets(&self) -> Result<Vec<String>, StoreError> {
        todo!()
    }

    /// Conflicts (MAC, uuid) give `Duplicate`; an unknown node `NotFound`;
    /// a malformed MAC `Invalid`.
    pub fn create_port(&self, new: NewPort) -> Result<Port, StoreError> {
        let _ = new;
        todo!()
    }

    pub fn get_port(&self, uuid: &str) -> Result<Port, StoreError> {
        let _ = uuid;
        todo!()
    }

    pub fn get_port_by_address(&self, mac: &str) -> Result<Port, StoreError> {
        let _ = mac;
        todo!()
    }

    /// Ports in id order, optionally of one node, after `marker` (a port uuid).
    pub fn list_ports(
        &self,
        node_uuid: Option<&str>,
        limit: usize,
        marker: Option<&str>,
    ) -> Result<Vec<Port>, StoreError> {
        let _ = (node_uuid, limit, marker);
        todo!()
    }

    pub fn delete_port(&self, uuid: &str) -> Result<(), StoreError> {
        let _ = uuid;
        todo!()
    }

    #[doc(hidden)]
    pub fn secret_box(&self) -> &SecretBox {
        todo!()
    }
}
