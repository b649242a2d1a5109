//! Exclusive per-node locks, in memory (Ironic's TaskManager reservation, for
//! a single conductor). Try-lock only: a second request is refused at once,
//! never queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The locks of one conductor.
#[derive(Debug, Default)]
pub(crate) struct LockTable {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Locked node uuid → the epoch its current lock was taken at.
    held: HashMap<String, u64>,
    /// Node uuid → the epoch of the latest lock taken on it (kept after the
    /// release, so a sweep can tell that something ran meanwhile).
    last: HashMap<String, u64>,
    epoch: u64,
}

impl LockTable {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Nothing here can be left half-done by a panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take `uuid`'s lock, or `None` when someone holds it.
    pub(crate) fn try_lock(self: &Arc<Self>, uuid: &str) -> Option<NodeLock> {
        let mut g = self.inner();
        if g.held.contains_key(uuid) {
            return None;
        }
        g.epoch += 1;
        let epoch = g.epoch;
        g.held.insert(uuid.to_string(), epoch);
        g.last.insert(uuid.to_string(), epoch);
        Some(NodeLock {
            table: self.clone(),
            uuid: uuid.to_string(),
        })
    }

    pub(crate) fn is_locked(&self, uuid: &str) -> bool {
        self.inner().held.contains_key(uuid)
    }

    /// A stamp that changes whenever `uuid` is locked: `None` while it is
    /// locked, else the epoch of its latest lock (0 if never locked).
    pub(crate) fn stamp(&self, uuid: &str) -> Option<u64> {
        let g = self.inner();
        if g.held.contains_key(uuid) {
            None
        } else {
            Some(g.last.get(uuid).copied().unwrap_or(0))
        }
    }

    /// Forget a deleted node's history.
    pub(crate) fn forget(&self, uuid: &str) {
        let mut g = self.inner();
        if !g.held.contains_key(uuid) {
            g.last.remove(uuid);
        }
    }

    pub(crate) fn held(&self) -> usize {
        self.inner().held.len()
    }
}

/// An exclusive lock on one node, released on drop.
#[derive(Debug)]
pub(crate) struct NodeLock {
    table: Arc<LockTable>,
    uuid: String,
}

impl NodeLock {
    pub(crate) fn uuid(&self) -> &str {
        &self.uuid
    }
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        self.table.inner().held.remove(&self.uuid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_and_released_on_drop() {
        let t = Arc::new(LockTable::default());
        assert_eq!(t.stamp("a"), Some(0));
        let g = t.try_lock("a").unwrap();
        assert_eq!(g.uuid(), "a");
        assert!(t.try_lock("a").is_none());
        assert!(t.is_locked("a"));
        assert_eq!(t.stamp("a"), None);
        let other = t.try_lock("b").unwrap();
        assert_eq!(t.held(), 2);
        drop(g);
        assert!(!t.is_locked("a"));
        let s1 = t.stamp("a").unwrap();
        assert!(s1 > 0);
        let g = t.try_lock("a").unwrap();
        drop(g);
        assert_ne!(t.stamp("a"), Some(s1), "a new lock changes the stamp");
        drop(other);
        assert_eq!(t.held(), 0);
        t.forget("a");
        assert_eq!(t.stamp("a"), Some(0));
    }
}
