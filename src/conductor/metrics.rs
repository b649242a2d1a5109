//! The conductor's metrics (recorded with the `metrics` macros; without an
//! installed recorder they cost nothing). The API installs the Prometheus
//! recorder and may call [`describe`] to add help texts.

use std::time::Duration;

use crate::bmc::BmcError;

/// Power changes finished, by `driver`, `target` (Ironic's target string) and
/// `result` (`success` / `error`).
pub const POWER_OPERATIONS_TOTAL: &str = "ironrack_power_operations_total";
/// Duration of a power change from the worker's start to its outcome, by `driver`.
pub const POWER_OPERATION_SECONDS: &str = "ironrack_power_operation_seconds";
/// Duration of one power sync sweep.
pub const SYNC_SWEEP_SECONDS: &str = "ironrack_sync_sweep_seconds";
/// Power states the sync found changed behind the agent's back, by `driver`.
pub const POWER_STATE_CHANGES_TOTAL: &str = "ironrack_power_state_changes_total";
/// BMC errors, by `driver` and `kind` ([`BmcError::kind`]).
pub const BMC_ERRORS_TOTAL: &str = "ironrack_bmc_errors_total";

/// Label values of `result`.
pub const RESULT_SUCCESS: &str = "success";
pub const RESULT_ERROR: &str = "error";

/// Register help texts with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(
        POWER_OPERATIONS_TOTAL,
        "Power state changes finished, by driver, target and result"
    );
    metrics::describe_histogram!(
        POWER_OPERATION_SECONDS,
        metrics::Unit::Seconds,
        "Time from the start of a power change to its outcome"
    );
    metrics::describe_histogram!(
        SYNC_SWEEP_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one power state sync sweep"
    );
    metrics::describe_counter!(
        POWER_STATE_CHANGES_TOTAL,
        "Power state changes the sync found behind the agent's back"
    );
    metrics::describe_counter!(BMC_ERRORS_TOTAL, "BMC errors by driver and kind");
}

pub(crate) fn power_operation(driver: &str, target: &'static str, ok: bool, took: Duration) {
    let result = if ok { RESULT_SUCCESS } else { RESULT_ERROR };
    metrics::counter!(
        POWER_OPERATIONS_TOTAL,
        "driver" => driver.to_string(),
        "target" => target,
        "result" => result
    )
    .increment(1);
    metrics::histogram!(POWER_OPERATION_SECONDS, "driver" => driver.to_string())
        .record(took.as_secs_f64());
}

pub(crate) fn sync_sweep(took: Duration) {
    metrics::histogram!(SYNC_SWEEP_SECONDS).record(took.as_secs_f64());
}

pub(crate) fn power_state_change(driver: &str) {
    metrics::counter!(POWER_STATE_CHANGES_TOTAL, "driver" => driver.to_string()).increment(1);
}

pub(crate) fn bmc_error(driver: &str, e: &BmcError) {
    metrics::counter!(
        BMC_ERRORS_TOTAL,
        "driver" => driver.to_string(),
        "kind" => e.kind()
    )
    .increment(1);
}
