//! Power state changes (Ironic's `change_node_power_state` and
//! `node_power_action`): validated and accepted at once, carried out by a
//! worker that holds the node's lock and a pool permit until the outcome is
//! recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lock::NodeLock;
use super::{metrics, Conductor, ConductorError, PowerTarget};
use crate::bmc::{Bmc, BmcError, PowerAction, PowerState};
use crate::store::Node;

/// Longest a power change may take, whatever the request asks (keeps a
/// huge timeout from overflowing the deadline).
const MAX_BOUND: Duration = Duration::from_secs(7 * 86400);

/// Why a power change failed.
#[derive(Debug)]
enum Failure {
    Bmc(BmcError),
    /// The BMC took the request but the machine did not get there in time.
    NotReached {
        want: PowerState,
        bound: Duration,
        last: Option<PowerState>,
        last_error: Option<BmcError>,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Bmc(e) => write!(f, "{e}"),
            Failure::NotReached {
                want,
                bound,
                last,
                last_error,
            } => {
                write!(
                    f,
                    "the node did not reach '{}' within {} seconds",
                    want.ironic(),
                    fmt_secs(*bound)
                )?;
                match (last, last_error) {
                    (_, Some(e)) => write!(f, " (last poll failed: {e})"),
                    (Some(s), None) => write!(f, " (it is '{}')", s.ironic()),
                    (None, None) => Ok(()),
                }
            }
        }
    }
}

fn fmt_secs(d: Duration) -> String {
    let s = format!("{:.3}", d.as_secs_f64());
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl Conductor {
    /// Validate, take the lock and a worker, set target_power_state and return
    /// the node at once; the worker acts, waits and records the outcome.
    ///
    /// The bound on the change is `timeout`, else `soft_power_off_timeout`
    /// for a soft power off (plus `power_state_change_timeout` for a soft
    /// reboot), else `power_state_change_timeout`.
    pub async fn change_node_power_state(
        self: &Arc<Self>,
        ident: &str,
        target: PowerTarget,
        timeout: Option<Duration>,
    ) -> Result<Node, ConductorError> {
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConductorError::InvalidParameter(
                "The timeout must be a positive number of seconds.".into(),
            ));
        }
        let node = self.node(ident)?;
        if target.action().is_soft() {
            self.check_supported(&node, target).await?;
        }
        let (lock, permit, node) = self.accept(&node, ident, |n| {
            n.target_power_state = Some(target.ironic().to_string());
        })?;
        let bound = timeout
            .unwrap_or(match target {
                PowerTarget::SoftOff => self.timing.soft,
                PowerTarget::SoftReboot => self.timing.soft + self.timing.change,
                _ => self.timing.change,
            })
            .min(MAX_BOUND);
        tracing::info!(
            node = %node.uuid,
            target = target.ironic(),
            timeout_s = bound.as_secs_f64(),
            "power state change accepted"
        );
        let this = self.clone();
        let snapshot = node.clone();
        tokio::spawn(async move {
            let _permit = permit;
            this.power_worker(lock, snapshot, target, bound).await;
        });
        Ok(node)
    }

    /// Refuse a soft target the BMC does not offer. When the BMC cannot be
    /// asked, the request goes ahead (the worker reports the failure).
    async fn check_supported(
        &self,
        node: &Node,
        target: PowerTarget,
    ) -> Result<(), ConductorError> {
        match self
            .bmc_call(node, |b| async move { b.supported_power_actions().await })
            .await
        {
            Ok(list) if !list.contains(&target.action()) => {
                let offered: Vec<&str> = list
                    .iter()
                    .filter_map(|a| match a {
                        PowerAction::On => Some("power on"),
                        PowerAction::Off => Some("power off"),
                        PowerAction::Reboot => Some("rebooting"),
                        PowerAction::SoftOff => Some("soft power off"),
                        PowerAction::SoftReboot => Some("soft rebooting"),
                        PowerAction::Cycle => None,
                    })
                    .collect();
                Err(ConductorError::Unsupported(format!(
                    "The requested power state '{}' is not supported by the BMC of node {}; \
                     supported: {}.",
                    target.ironic(),
                    node.uuid,
                    if offered.is_empty() {
                        "none".to_string()
                    } else {
                        offered.join(", ")
                    }
                )))
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(
                    node = %node.uuid,
                    error = %e,
                    "cannot read the supported power actions; going ahead"
                );
                Ok(())
            }
        }
    }

    /// The worker: act, wait, record. Holds `lock` until the record is written.
    async fn power_worker(&self, lock: NodeLock, node: Node, target: PowerTarget, bound: Duration) {
        let started = Instant::now();
        let want = target.end_state();
        let mut last: Option<PowerState> = None;
        let mut last_error: Option<BmcError> = None;
        let deadline = tokio::time::Instant::now() + bound;
        let driven = tokio::time::timeout_at(
            deadline,
            self.drive(&node, target, &mut last, &mut last_error),
        )
        .await;
        let outcome = match driven {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Bmc(e)),
            Err(_) => Err(Failure::NotReached {
                want,
                bound,
                last,
                last_error: last_error.clone(),
            }),
        };
        if let Err(Failure::Bmc(e)) = &outcome {
            // The BMC refused rather than vanished: it can still say where
            // the machine is.
            if last.is_none() && !matches!(e, BmcError::Timeout(_) | BmcError::Unreachable(_)) {
                last = self
                    .bmc_call(&node, |b| async move { b.power_state().await })
                    .await
                    .ok();
            }
        }
        let took = started.elapsed();
        let bmc_error = match &outcome {
            Err(Failure::Bmc(e)) => Some(e.clone()),
            Err(Failure::NotReached { last_error, .. }) => last_error.clone(),
            Ok(()) => None,
        };
        if let Some(e) = &bmc_error {
            metrics::bmc_error(&node.driver, e);
        }
        metrics::power_operation(&node.driver, target.ironic(), outcome.is_ok(), took);

        let error_text = outcome.as_ref().err().map(|f| {
            format!(
                "Failed to change power state to '{}' by '{}'. Error: {f}",
                want.ironic(),
                target.ironic()
            )
        });
        match &error_text {
            None => tracing::info!(
                node = %node.uuid,
                target = target.ironic(),
                seconds = took.as_secs_f64(),
                "power state change done"
            ),
            Some(m) => tracing::warn!(node = %node.uuid, target = target.ironic(), "{m}"),
        }
        if outcome.is_ok() {
            self.sync_failures().remove(&node.uuid);
        }
        let recorded = self.store.update_node(&node.uuid, |n| {
            n.target_power_state = None;
            match &error_text {
                None => n.power_state = Some(want.ironic().to_string()),
                Some(m) => {
                    n.last_error = Some(m.clone());
                    if let Some(s) = last {
                        n.power_state = Some(s.ironic().to_string());
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = recorded {
            tracing::error!(node = %node.uuid, error = %e, "cannot record the power state change");
        }
        drop(lock);
    }

    /// Act through the BMC and poll until the end state. Unbounded here: the
    /// caller bounds it; each BMC exchange is bounded by `bmc_timeout`.
    pub(super) async fn drive(
        &self,
        node: &Node,
        target: PowerTarget,
        last: &mut Option<PowerState>,
        last_error: &mut Option<BmcError>,
    ) -> Result<(), BmcError> {
        let bmc: Arc<dyn Bmc> = self.bmc_call(node, |b| async move { Ok(b) }).await?;
        let bound = self.timing.client.bmc_timeout;
        let read = |b: Arc<dyn Bmc>| async move {
            match tokio::time::timeout(bound, b.power_state()).await {
                Ok(r) => r,
                Err(_) => Err(BmcError::Timeout(bound)),
            }
        };
        let want = target.end_state();
        let mut action = target.action();
        if matches!(target, PowerTarget::Reboot | PowerTarget::SoftReboot) {
            // Ironic's reboot of a machine that is off powers it on.
            let now = read(bmc.clone()).await?;
            *last = Some(now);
            if now == PowerState::Off {
                action = PowerAction::On;
            }
        }
        bmc.set_power(action).await?;
        let poll = self.timing.client.poll_interval;
        loop {
            match read(bmc.clone()).await {
                Ok(s) => {
                    *last = Some(s);
                    *last_error = None;
                    if s == want {
                        return Ok(());
                    }
                }
                Err(e) => {
                    tracing::debug!(node = %node.uuid, error = %e, "power poll failed");
                    *last_error = Some(e);
                }
            }
            tokio::time::sleep(poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(fmt_secs(Duration::from_secs(60)), "60");
        assert_eq!(fmt_secs(Duration::from_millis(400)), "0.4");
        assert_eq!(fmt_secs(Duration::from_millis(1250)), "1.25");
        assert_eq!(fmt_secs(Duration::from_millis(50)), "0.05");
    }

    #[test]
    fn failures_say_what_happened() {
        let f = Failure::NotReached {
            want: PowerState::Off,
            bound: Duration::from_secs(30),
            last: Some(PowerState::On),
            last_error: None,
        };
        assert_eq!(
            f.to_string(),
            "the node did not reach 'power off' within 30 seconds (it is 'power on')"
        );
        let f = Failure::Bmc(BmcError::Timeout(Duration::from_secs(1)));
        assert!(f.to_string().contains("did not answer"));
    }
}
