//! The power sync sweep (Ironic's `_sync_power_states` / `do_sync_power_state`)
//! and the power-failure recovery pass (`_power_failure_recovery`).
//!
//! A sweep queries the BMCs without taking the nodes' locks (a user request
//! must never get a 409 because the sync is reading), with bounded
//! concurrency and each query bounded by `bmc_timeout`. What it found is
//! recorded in one store transaction; a node that was locked or changed while
//! it was queried is left alone.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::bmcs::close_later;
use super::lock::LockTable;
use super::{guard, metrics, Conductor, SyncReport, POWER_FAILURE};
use crate::bmc::{BmcError, PowerAction, PowerState};
use crate::store::{Node, NodeQuery, StoreError};

/// One change of a batch (the store's `NodeChange`).
type NodeChange = Box<dyn FnOnce(&mut Node) -> Result<(), StoreError> + Send>;

/// What a node looked like when the sweep read it; recorded results apply
/// only while it still looks the same.
#[derive(Clone, Debug, PartialEq)]
struct Version {
    updated_at: Option<String>,
    power_state: Option<String>,
    target_power_state: Option<String>,
    maintenance: bool,
    fault: Option<String>,
}

impl Version {
    fn of(n: &Node) -> Version {
        Version {
            updated_at: n.updated_at.clone(),
            power_state: n.power_state.clone(),
            target_power_state: n.target_power_state.clone(),
            maintenance: n.maintenance,
            fault: n.fault.clone(),
        }
    }
}

fn parse_state(s: &str) -> Option<PowerState> {
    match s {
        "power on" => Some(PowerState::On),
        "power off" => Some(PowerState::Off),
        _ => None,
    }
}

fn state_name(s: Option<PowerState>) -> &'static str {
    s.map(PowerState::ironic).unwrap_or("None")
}

/// What one query found.
enum Observed {
    State(PowerState),
    /// `force_power_state_during_sync`: the hardware was told to follow the DB.
    Forced {
        to: PowerState,
        landed: bool,
        seen: Option<PowerState>,
        error: Option<BmcError>,
    },
    Failed(BmcError),
    /// Someone took the node while the sync wanted to act on it.
    Busy,
}

struct Probe {
    node: Node,
    /// The lock stamp the result is valid for.
    stamp: u64,
    observed: Observed,
}

/// What to write for one node.
#[derive(Clone, Debug)]
enum Effect {
    Record {
        from: Option<String>,
        to: PowerState,
    },
    Maintenance {
        actual: Option<PowerState>,
        message: String,
    },
    Recovered {
        to: PowerState,
    },
}

/// Ironic's `handle_sync_power_state_max_retries_exceeded` wording.
fn max_retries_message(
    uuid: &str,
    actual: Option<PowerState>,
    expected: Option<&str>,
    error: Option<&dyn std::fmt::Display>,
) -> String {
    let actual = state_name(actual);
    let mut m = format!(
        "During sync_power_state, max retries exceeded for node {uuid}, node state {actual} \
         does not match expected state '{}'. Updating DB state to '{actual}'. Switching node \
         to maintenance mode.",
        expected.unwrap_or("None")
    );
    if let Some(e) = error {
        m.push_str(&format!(" Error: {e}"));
    }
    m
}

/// A batched change that applies `effect` only while the node is unlocked,
/// was not locked since `stamp`, and still looks like `seen`.
fn guarded(
    seen: Version,
    stamp: u64,
    locks: Arc<LockTable>,
    skipped: Arc<Mutex<HashSet<String>>>,
    effect: Effect,
) -> NodeChange {
    Box::new(move |n: &mut Node| {
        let still = Version::of(n) == seen && locks.stamp(&n.uuid) == Some(stamp);
        let applies = match &effect {
            Effect::Recovered { .. } => n.maintenance && n.fault.as_deref() == Some(POWER_FAILURE),
            _ => !n.maintenance,
        };
        if !(still && applies) {
            guard(&skipped).insert(n.uuid.clone());
            return Ok(());
        }
        match effect {
            Effect::Record { to, .. } => n.power_state = Some(to.ironic().to_string()),
            Effect::Maintenance { actual, message } => {
                n.power_state = actual.map(|s| s.ironic().to_string());
                n.maintenance = true;
                n.fault = Some(POWER_FAILURE.to_string());
                n.maintenance_reason = Some(message.clone());
                n.last_error = Some(message);
            }
            Effect::Recovered { to } => {
                n.power_state = Some(to.ironic().to_string());
                n.maintenance = false;
                n.fault = None;
                n.maintenance_reason = None;
            }
        }
        Ok(())
    })
}

impl Conductor {
    /// One power sync sweep over all unlocked, non-maintenance nodes.
    pub async fn sync_power_states(&self) -> SyncReport {
        let started = Instant::now();
        let mut report = SyncReport::default();
        let Some(me) = self.arc() else {
            return report;
        };
        let nodes = match self.store.list_nodes(&NodeQuery {
            maintenance: Some(false),
            ..NodeQuery::default()
        }) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "power sync: cannot list nodes");
                return report;
            }
        };
        let listed: HashSet<String> = nodes.iter().map(|n| n.uuid.clone()).collect();
        let mut todo = Vec::with_capacity(nodes.len());
        for node in nodes {
            // A node being acted on is the worker's to record.
            if node.target_power_state.is_some() {
                report.skipped_locked += 1;
                continue;
            }
            match self.locks.stamp(&node.uuid) {
                Some(stamp) => todo.push((node, stamp)),
                None => report.skipped_locked += 1,
            }
        }
        let probes = self
            .fan_out(me, todo, |c, node, stamp| async move {
                c.probe(node, stamp).await
            })
            .await;

        // Decide what to write (failure counts are in memory).
        let max = self.cfg.power_state_sync_max_retries;
        let mut effects: Vec<(Node, u64, Effect)> = Vec::new();
        {
            let mut failures = self.sync_failures();
            for p in probes {
                let uuid = p.node.uuid.clone();
                match p.observed {
                    Observed::Busy => report.skipped_locked += 1,
                    Observed::State(actual) => {
                        report.checked += 1;
                        failures.remove(&uuid);
                        match p.node.power_state.as_deref() {
                            Some(db) if db == actual.ironic() => {}
                            from => {
                                let from = from.map(str::to_string);
                                effects.push((
                                    p.node,
                                    p.stamp,
                                    Effect::Record { from, to: actual },
                                ));
                            }
                        }
                    }
                    Observed::Forced {
                        to, landed: true, ..
                    } => {
                        report.checked += 1;
                        failures.remove(&uuid);
                        tracing::info!(
                            node = %uuid,
                            state = to.ironic(),
                            "power sync: the hardware follows the recorded power state again"
                        );
                    }
                    Observed::Forced {
                        to,
                        landed: false,
                        seen,
                        error,
                    } => {
                        report.checked += 1;
                        report.failed += 1;
                        if let Some(e) = &error {
                            metrics::bmc_error(&p.node.driver, e);
                        }
                        let count = failures.entry(uuid.clone()).or_insert(0);
                        *count += 1;
                        if *count >= max {
                            let message = max_retries_message(
                                &uuid,
                                seen,
                                Some(to.ironic()),
                                error.as_ref().map(|e| e as &dyn std::fmt::Display),
                            );
                            effects.push((
                                p.node,
                                p.stamp,
                                Effect::Maintenance {
                                    actual: seen,
                                    message,
                                },
                            ));
                        } else {
                            tracing::warn!(
                                node = %uuid,
                                "During sync_power_state, node {uuid} did not reach '{}' when \
                                 forced (it is '{}'), attempt {count} of {max}{}.",
                                to.ironic(),
                                state_name(seen),
                                error.map(|e| format!(". Error: {e}")).unwrap_or_default()
                            );
                        }
                    }
                    Observed::Failed(e) => {
                        report.checked += 1;
                        report.failed += 1;
                        let count = failures.entry(uuid.clone()).or_insert(0);
                        *count += 1;
                        if *count >= max {
                            let message = max_retries_message(
                                &uuid,
                                None,
                                p.node.power_state.as_deref(),
                                Some(&e),
                            );
                            effects.push((
                                p.node,
                                p.stamp,
                                Effect::Maintenance {
                                    actual: None,
                                    message,
                                },
                            ));
                        } else {
                            tracing::warn!(
                                node = %uuid,
                                "During sync_power_state, could not get power state for node \
                                 {uuid}, attempt {count} of {max}. Error: {e}."
                            );
                        }
                    }
                }
            }
            // Counts of nodes no longer synced (deleted, in maintenance) go.
            failures.retain(|u, _| listed.contains(u));
        }

        let skipped = self.write_effects(&effects).await;
        match skipped {
            None => {
                report.duration = started.elapsed();
                return report;
            }
            Some(skipped) => {
                for (node, _, effect) in &effects {
                    if skipped.contains(&node.uuid) {
                        report.skipped_locked += 1;
                        continue;
                    }
                    match effect {
                        Effect::Record {
                            from: Some(from),
                            to,
                        } => {
                            report.changed += 1;
                            metrics::power_state_change(&node.driver);
                            tracing::info!(
                                node = %node.uuid,
                                "During sync_power_state, node {} state '{}' does not match \
                                 expected state '{from}'. Updated recorded power state to '{}'.",
                                node.uuid,
                                to.ironic(),
                                to.ironic()
                            );
                        }
                        Effect::Record { from: None, to } => tracing::debug!(
                            node = %node.uuid,
                            state = to.ironic(),
                            "power sync: initial power state recorded"
                        ),
                        Effect::Maintenance { message, .. } => {
                            report.to_maintenance += 1;
                            self.sync_failures().remove(&node.uuid);
                            tracing::error!(node = %node.uuid, "{message}");
                        }
                        Effect::Recovered { .. } => {}
                    }
                }
            }
        }
        self.prune_clients(&listed);

        report.duration = started.elapsed();
        metrics::sync_sweep(report.duration);
        if report.changed > 0 || report.failed > 0 || report.to_maintenance > 0 {
            tracing::info!(
                checked = report.checked,
                changed = report.changed,
                failed = report.failed,
                to_maintenance = report.to_maintenance,
                skipped = report.skipped_locked,
                seconds = report.duration.as_secs_f64(),
                "power sync sweep"
            );
        } else {
            tracing::debug!(
                checked = report.checked,
                skipped = report.skipped_locked,
                seconds = report.duration.as_secs_f64(),
                "power sync sweep"
            );
        }
        report
    }

    /// One recovery pass over nodes in maintenance with fault "power failure".
    /// Returns how many recovered.
    pub async fn recover_power_failures(&self) -> usize {
        let Some(me) = self.arc() else {
            return 0;
        };
        let nodes = match self.store.list_nodes(&NodeQuery {
            maintenance: Some(true),
            fault: Some(POWER_FAILURE.to_string()),
            ..NodeQuery::default()
        }) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "power failure recovery: cannot list nodes");
                return 0;
            }
        };
        let todo: Vec<(Node, u64)> = nodes
            .into_iter()
            .filter_map(|n| self.locks.stamp(&n.uuid).map(|s| (n, s)))
            .collect();
        if todo.is_empty() {
            return 0;
        }
        let probes = self
            .fan_out(me, todo, |c, node, stamp| async move {
                let observed = match c
                    .bmc_call(&node, |b| async move { b.power_state().await })
                    .await
                {
                    Ok(s) => Observed::State(s),
                    Err(e) => Observed::Failed(e),
                };
                Probe {
                    node,
                    stamp,
                    observed,
                }
            })
            .await;
        let effects: Vec<(Node, u64, Effect)> = probes
            .into_iter()
            .filter_map(|p| match p.observed {
                Observed::State(to) => Some((p.node, p.stamp, Effect::Recovered { to })),
                Observed::Failed(e) => {
                    tracing::debug!(node = %p.node.uuid, error = %e, "still in power failure");
                    None
                }
                _ => None,
            })
            .collect();
        let Some(skipped) = self.write_effects(&effects).await else {
            return 0;
        };
        let mut recovered = 0;
        for (node, _, effect) in &effects {
            if skipped.contains(&node.uuid) {
                continue;
            }
            if let Effect::Recovered { to } = effect {
                recovered += 1;
                self.sync_failures().remove(&node.uuid);
                tracing::info!(
                    node = %node.uuid,
                    "Node {} recovered from power failure: its BMC answers again (power state \
                     '{}'); maintenance mode turned off.",
                    node.uuid,
                    to.ironic()
                );
            }
        }
        recovered
    }

    /// Run `f` over `items` with at most `sync_power_state_workers` at once.
    async fn fan_out<F, Fut>(&self, me: Arc<Conductor>, items: Vec<(Node, u64)>, f: F) -> Vec<Probe>
    where
        F: Fn(Arc<Conductor>, Node, u64) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Probe> + Send + 'static,
    {
        let sem = Arc::new(Semaphore::new(self.cfg.sync_power_state_workers.max(1)));
        let mut set = JoinSet::new();
        for (node, stamp) in items {
            let (me, sem, f) = (me.clone(), sem.clone(), f.clone());
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                f(me, node, stamp).await
            });
        }
        let mut out = Vec::with_capacity(set.len());
        while let Some(r) = set.join_next().await {
            match r {
                Ok(p) => out.push(p),
                Err(e) => tracing::warn!(error = %e, "power sync task failed"),
            }
        }
        out
    }

    /// Query one node; with `force_power_state_during_sync`, make a
    /// disagreeing machine follow the recorded state.
    async fn probe(&self, node: Node, stamp: u64) -> Probe {
        let queried = self
            .bmc_call(&node, |b| async move { b.power_state().await })
            .await;
        let actual = match queried {
            Ok(s) => s,
            Err(e) => {
                return Probe {
                    node,
                    stamp,
                    observed: Observed::Failed(e),
                }
            }
        };
        let recorded = node.power_state.as_deref().and_then(parse_state);
        match recorded {
            Some(db) if db != actual && self.cfg.force_power_state_during_sync => {
                self.force(node, stamp, db, actual).await
            }
            _ => Probe {
                node,
                stamp,
                observed: Observed::State(actual),
            },
        }
    }

    /// Push the recorded state `to` to the hardware, under the node's lock
    /// (this acts on the node, as Ironic's sync does with its upgraded lock),
    /// and wait up to `power_state_change_timeout` for it to land.
    async fn force(&self, node: Node, stamp: u64, to: PowerState, actual: PowerState) -> Probe {
        let busy = |node| Probe {
            node,
            stamp,
            observed: Observed::Busy,
        };
        if self.locks.stamp(&node.uuid) != Some(stamp) {
            return busy(node);
        }
        let Some(lock) = self.locks.try_lock(&node.uuid) else {
            return busy(node);
        };
        match self.store.get_node(&node.uuid) {
            Ok(now) if Version::of(&now) == Version::of(&node) => {}
            _ => return busy(node),
        }
        tracing::warn!(
            node = %node.uuid,
            "During sync_power_state, node {} state '{}' does not match expected state '{}'. \
             Changing hardware state to '{}'.",
            node.uuid,
            actual.ironic(),
            to.ironic(),
            to.ironic()
        );
        let action = match to {
            PowerState::On => PowerAction::On,
            PowerState::Off => PowerAction::Off,
        };
        let mut seen = Some(actual);
        let mut landed = false;
        let error = match self
            .bmc_call(&node, |b| async move { b.set_power(action).await })
            .await
        {
            Err(e) => Some(e),
            Ok(()) => {
                let deadline = Instant::now() + self.timing.change;
                let mut last_error: Option<BmcError>;
                loop {
                    match self
                        .bmc_call(&node, |b| async move { b.power_state().await })
                        .await
                    {
                        Ok(s) => {
                            seen = Some(s);
                            last_error = None;
                            if s == to {
                                landed = true;
                                break;
                            }
                        }
                        Err(e) => last_error = Some(e),
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(self.timing.client.poll_interval).await;
                }
                last_error
            }
        };
        drop(lock);
        // Our own lock moved the stamp; the result holds for the new one
        // unless someone else got in since.
        let Some(stamp) = self.locks.stamp(&node.uuid) else {
            return busy(node);
        };
        Probe {
            node,
            stamp,
            observed: Observed::Forced {
                to,
                landed,
                seen,
                error,
            },
        }
    }

    /// Write all effects in one transaction. Returns the uuids left alone
    /// because they changed meanwhile, or `None` when the write failed.
    async fn write_effects(&self, effects: &[(Node, u64, Effect)]) -> Option<HashSet<String>> {
        if effects.is_empty() {
            return Some(HashSet::new());
        }
        let skipped = Arc::new(Mutex::new(HashSet::new()));
        let changes: Vec<(String, NodeChange)> = effects
            .iter()
            .map(|(node, stamp, effect)| {
                (
                    node.uuid.clone(),
                    guarded(
                        Version::of(node),
                        *stamp,
                        self.locks.clone(),
                        skipped.clone(),
                        effect.clone(),
                    ),
                )
            })
            .collect();
        let store = self.store.clone();
        let written = tokio::task::spawn_blocking(move || store.update_nodes(changes))
            .await
            .unwrap_or_else(|e| Err(StoreError::Db(format!("the write task failed: {e}"))));
        match written {
            Ok(nodes) => {
                let mut skipped = std::mem::take(&mut *guard(&skipped));
                // Vanished nodes are not in the result either.
                let done: HashSet<&str> = nodes.iter().map(|n| n.uuid.as_str()).collect();
                for (node, _, _) in effects {
                    if !done.contains(node.uuid.as_str()) {
                        skipped.insert(node.uuid.clone());
                    }
                }
                Some(skipped)
            }
            Err(e) => {
                tracing::error!(error = %e, "power sync: cannot record the results");
                None
            }
        }
    }

    /// Close clients of nodes that are gone (a sweep may have built one for a
    /// node deleted while it ran).
    fn prune_clients(&self, listed: &HashSet<String>) {
        for uuid in self.bmcs.uuids() {
            if listed.contains(&uuid) || self.locks.is_locked(&uuid) {
                continue;
            }
            if let Err(StoreError::NotFound { .. }) = self.store.get_node(&uuid) {
                if let Some(b) = self.bmcs.remove(&uuid) {
                    close_later(b, self.timing.client.bmc_timeout);
                }
            }
        }
    }
}
