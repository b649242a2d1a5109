//! `GET /metrics`: the process's Prometheus recorder (the conductor's power
//! operation counters and histograms, sync sweeps, BMC errors) plus gauges
//! computed at scrape time: nodes by power state and maintenance, and open
//! BMC sessions.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::error::ApiError;
use super::{blocking, Shared};

/// Histogram buckets, seconds: from a fast IPMI reply to a slow soft power off.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// The name of the thread that does it.
const UPKEEP_THREAD: &str = "metrics-upkeep";

/// Install the process-wide Prometheus recorder (once; later calls return the
/// same handle). `None` when another recorder was installed first.
pub fn install_recorder() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .and_then(|b| b.install_recorder());
            match built {
                Ok(h) => {
                    // The recorder keeps every histogram sample until upkeep
                    // folds it into the buckets, and a scrape is the only
                    // other upkeep: an agent nobody scrapes would grow with
                    // every power change and sweep, for ever.
                    let upkeep = h.clone();
                    let spawned = std::thread::Builder::new()
                        .name(UPKEEP_THREAD.into())
                        .spawn(move || loop {
                            std::thread::sleep(UPKEEP_EVERY);
                            upkeep.run_upkeep();
                        });
                    if let Err(e) = spawned {
                        tracing::warn!("no metrics upkeep thread: {e}");
                    }
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!("no Prometheus recorder: {e}");
                    None
                }
            }
        })
        .clone()
}

/// Label sets of `ironrack_nodes` set at earlier scrapes, so a combination
/// that disappeared drops to 0 instead of keeping its last count.
static SEEN: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);

pub async fn scrape(State(st): State<Shared>) -> Result<Response, ApiError> {
    let Some(handle) = st.metrics.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "No metrics recorder is installed in this process.",
        ));
    };
    let store = st.store.clone();
    let counts =
        blocking(move || store.count_nodes_by_power_state().map_err(ApiError::from)).await?;
    let now: Vec<((String, String), u64)> = counts
        .into_iter()
        .map(|(ps, m, n)| ((ps.unwrap_or_else(|| "none".into()), m.to_string()), n))
        .collect();
    {
        let mut seen = match SEEN.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let seen = seen.get_or_insert_with(HashSet::new);
        for ((ps, m), n) in &now {
            metrics::gauge!("ironrack_nodes", "power_state" => ps.clone(), "maintenance" => m.clone())
                .set(*n as f64);
        }
        let current: HashSet<(String, String)> = now.iter().map(|(k, _)| k.clone()).collect();
        for (ps, m) in seen.difference(&current) {
            metrics::gauge!("ironrack_nodes", "power_state" => ps.clone(), "maintenance" => m.clone())
                .set(0.0);
        }
        seen.extend(current);
    }
    metrics::gauge!("ironrack_bmc_sessions_open").set(st.conductor.open_sessions() as f64);
    handle.run_upkeep();
    let body = handle.render();
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (fault campaign soak): histogram samples were drained only
    /// by a scrape. Installing the recorder now starts the upkeep thread.
    #[test]
    fn installing_the_recorder_starts_its_upkeep() {
        if install_recorder().is_none() {
            // Another recorder won in this process: nothing of ours runs.
            return;
        }
        let names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        };
        // The thread names itself once it runs.
        for _ in 0..200 {
            if names().iter().any(|n| n == UPKEEP_THREAD) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no {UPKEEP_THREAD} thread: {:?}", names());
    }
}
