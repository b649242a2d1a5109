//! `ironrack serve --config FILE`: the agent. Opens the inventory, starts the
//! conductor (power sync, recovery) and serves the Ironic-compatible API on
//! every listen address until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::api::{self, ApiState, BasicAuth};
use crate::boot::render::{self, BootMode, RenderContext};
use crate::boot::tftp::server::{ServerConfig, TftpServer};
use crate::boot::{BootService, FileSource, RootDir};
use crate::conductor::{BootContext, Conductor};
use crate::config::{AuthMode, Config};
use crate::console::manager::ConsoleManager;
use crate::profiles::Profiles;
use crate::store::Store;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The agent's TOML configuration; without it, every default applies
    /// (API on 127.0.0.1:6385 without authentication, ./ironrack.db).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// How long in-flight requests get to finish after a signal.
const DRAIN: Duration = Duration::from_secs(10);

/// This host's name (a node's `reservation`, the drivers' `hosts`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub async fn run(a: ServeArgs) -> i32 {
    match serve(a).await {
        Ok(()) => 0,
        Err((code, msg)) => {
            eprintln!("ironrack: {msg}");
            code
        }
    }
}

async fn serve(a: ServeArgs) -> Result<(), (i32, String)> {
    let cfg = match &a.config {
        Some(p) => Config::load(p).map_err(|e| (2, e))?,
        None => Config::parse("").map_err(|e| (2, e))?,
    };
    let addrs = cfg.api.check().map_err(|e| (2, e))?;
    let auth = match (cfg.api.auth, &cfg.api.htpasswd) {
        (AuthMode::HttpBasic, Some(path)) => {
            let path = path.clone();
            let auth = tokio::task::spawn_blocking(move || BasicAuth::load(&path))
                .await
                .map_err(|e| (1, format!("loading the htpasswd file: {e}")))?
                .map_err(|e| (2, format!("htpasswd: {e}")))?;
            Some(auth)
        }
        _ => None,
    };

    let store_path = cfg.store.path.clone();
    let key_path = cfg.store.key_path();
    let store = tokio::task::spawn_blocking(move || Store::open(&store_path, &key_path))
        .await
        .map_err(|e| (1, format!("opening the store: {e}")))?
        .map_err(|e| {
            (
                1,
                format!("cannot open the store {}: {e}", cfg.store.path.display()),
            )
        })?;
    let s2 = store.clone();
    let stale = tokio::task::spawn_blocking(move || s2.clear_stale_targets())
        .await
        .map_err(|e| (1, format!("clearing stale power targets: {e}")))?
        .map_err(|e| (1, format!("clearing stale power targets: {e}")))?;
    for uuid in &stale {
        tracing::warn!(node = %uuid, "cleared a target power state left by an earlier run");
    }
    let profiles = Profiles::load(cfg.conductor.hw_profiles_dir.as_deref())
        .map_err(|e| (2, format!("hardware profiles: {e}")))?;

    let host = host_name();
    let metrics = api::install_recorder();
    let conductor = Conductor::new(store.clone(), cfg.conductor.clone(), profiles, host.clone());
    let consoles = ConsoleManager::new(cfg.console.clone()).map_err(|e| (2, e.to_string()))?;
    conductor.set_console_manager(Arc::new(consoles));
    for uuid in conductor.recover_provision_states() {
        tracing::warn!(node = %uuid, "failed a provisioning step left unfinished by an earlier run");
    }
    conductor.start();
    conductor.restore_consoles().await;

    let state = Arc::new(ApiState {
        conductor: conductor.clone(),
        store,
        max_limit: cfg.api.max_limit,
        public_url: cfg
            .api
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string()),
        auth,
        metrics,
    });

    let mut listeners = Vec::new();
    for addr in &addrs {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => listeners.push(l),
            Err(e) => {
                conductor.shutdown().await;
                return Err((1, format!("cannot listen on {addr}: {e}")));
            }
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let first_bound = match listeners.first().map(|l| l.local_addr()) {
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            conductor.shutdown().await;
            return Err((1, format!("listening socket: {e}")));
        }
        None => {
            conductor.shutdown().await;
            return Err((2, "[api] listen names no address".into()));
        }
    };
    // The boot servers start (and say so) before the API does: once the
    // API answers, the configs it prepares are being served.
    let mut boot_servers = tokio::task::JoinSet::new();
    if let Err(e) = start_boot_services(
        &cfg,
        conductor.store(),
        &conductor,
        cfg.api.public_url(first_bound),
        &stop_rx,
        &mut boot_servers,
    )
    .await
    {
        boot_servers.abort_all();
        conductor.shutdown().await;
        return Err(e);
    }
    let mut servers = tokio::task::JoinSet::new();
    for l in listeners {
        let bound: SocketAddr = match l.local_addr() {
            Ok(a) => a,
            Err(e) => {
                conductor.shutdown().await;
                return Err((1, format!("listening socket: {e}")));
            }
        };
        let app = api::app(state.clone(), bound);
        let mut rx = stop_rx.clone();
        servers.spawn(async move {
            let r = axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await;
            (bound, r)
        });
        let auth = match cfg.api.auth {
            AuthMode::Noauth => "noauth",
            AuthMode::HttpBasic => "http_basic",
        };
        tracing::info!(%bound, auth, host = %host, "API listening");
        eprintln!("ironrack: API listening on http://{bound}");
    }

    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("signal received, shutting down");
        }
        Some(done) = servers.join_next() => {
            // A server stopped on its own: report it and stop the rest.
            if let Ok((bound, Err(e))) = &done {
                tracing::error!(%bound, "API server failed: {e}");
            }
        }
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN, async {
        while let Some(done) = servers.join_next().await {
            if let Ok((bound, Err(e))) = done {
                tracing::error!(%bound, "API server failed: {e}");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("requests still running after {DRAIN:?}; stopping anyway");
        servers.abort_all();
    }
    if tokio::time::timeout(DRAIN, async {
        while boot_servers.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("boot transfers still running after {DRAIN:?}; stopping anyway");
        boot_servers.abort_all();
    }
    conductor.shutdown().await;
    // Fold the WAL into the database so a clean stop leaves one file.
    let store = conductor.store().clone();
    match tokio::task::spawn_blocking(move || store.checkpoint()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("store checkpoint on stop failed: {e}"),
        Err(e) => tracing::warn!("store checkpoint on stop failed: {e}"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// A boot root: it must exist and be a directory.
fn boot_root(section: &str, path: &std::path::Path) -> Result<RootDir, (i32, String)> {
    if !path.is_dir() {
        return Err((
            2,
            format!(
                "[{section}] root {}: not a directory (create it and put the loaders, \
                 deploy kernels and ramdisks there)",
                path.display()
            ),
        ));
    }
    RootDir::new(path).map_err(|e| (2, format!("[{section}] root {}: {e}", path.display())))
}

fn warn_unroutable(what: &str, url: &str, bound: SocketAddr) {
    if bound.ip().is_unspecified() {
        tracing::warn!(
            url,
            "{what} is derived from a wildcard listen address, which machines cannot reach; \
             set its public_url"
        );
    }
}

/// Install the boot context in the conductor and start the TFTP and HTTP
/// boot servers that are configured, each until `stop` turns true.
async fn start_boot_services(
    cfg: &Config,
    store: &Store,
    conductor: &Arc<Conductor>,
    api_url: String,
    stop: &tokio::sync::watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), (i32, String)> {
    render::check_global_params(&cfg.boot.kernel_append_params).map_err(|e| (2, e.to_string()))?;
    let default_boot_mode = BootMode::parse(&cfg.boot.default_boot_mode).ok_or_else(|| {
        (
            2,
            "[boot] default_boot_mode must be \"uefi\" or \"bios\"".to_string(),
        )
    })?;
    if cfg.api.public_url.is_none() {
        if let Ok(a) = api_url.trim_start_matches("http://").parse::<SocketAddr>() {
            warn_unroutable("the API URL given to deploy ramdisks", &api_url, a);
        }
    }

    let tftp_root = match (&cfg.tftp, cfg.tftp.as_ref().and_then(|t| t.root.as_ref())) {
        (Some(_), Some(p)) => Some(boot_root("tftp", p)?),
        _ => None,
    };
    let http = match &cfg.http_boot {
        Some(h) => {
            let root = match cfg.http_boot_root() {
                Some(p) => boot_root("http_boot", &p)?,
                None => {
                    return Err((
                        2,
                        "[http_boot] needs root = \"PATH\" (or [tftp] root)".into(),
                    ))
                }
            };
            let listen: SocketAddr = h
                .listen
                .parse()
                .map_err(|e| (2, format!("[http_boot] listen {:?}: {e}", h.listen)))?;
            let l = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| (1, format!("cannot listen on {listen} (HTTP boot): {e}")))?;
            let bound = l
                .local_addr()
                .map_err(|e| (1, format!("HTTP boot listening socket: {e}")))?;
            let url = match &h.public_url {
                Some(u) => u.trim_end_matches('/').to_string(),
                None => {
                    let u = format!("http://{bound}");
                    warn_unroutable("the HTTP boot URL named in iPXE scripts", &u, bound);
                    u
                }
            };
            Some((root, l, bound, url))
        }
        None => None,
    };

    let ctx = RenderContext {
        api_url,
        http_url: http.as_ref().map(|(_, _, _, u)| u.clone()),
        default_boot_mode,
        kernel_append_params: cfg.boot.kernel_append_params.clone(),
    };
    let mut roots = Vec::new();
    for r in tftp_root.iter().chain(http.as_ref().map(|(r, ..)| r)) {
        if !roots.iter().any(|p: &std::path::PathBuf| p == r.root()) {
            roots.push(r.root().to_path_buf());
        }
    }
    conductor.set_boot_context(BootContext {
        render: ctx.clone(),
        roots,
    });

    if let (Some(t), Some(root)) = (&cfg.tftp, tftp_root) {
        let listen: SocketAddr = t
            .listen
            .parse()
            .map_err(|e| (2, format!("[tftp] listen {:?}: {e}", t.listen)))?;
        let server = TftpServer::bind(listen, ServerConfig::from(t))
            .await
            .map_err(|e| (1, format!("cannot listen on {listen} (TFTP): {e}")))?;
        let bound = server.local_addr();
        let source: Arc<dyn FileSource> = Arc::new(BootService::new(
            store.clone(),
            Some(root),
            ctx.clone(),
            cfg.boot.unknown_mac,
        ));
        tasks.spawn(server.run(source, stop.clone()));
        tracing::info!(%bound, "TFTP listening");
        eprintln!("ironrack: TFTP listening on {bound}");
    }
    if let Some((root, listener, bound, url)) = http {
        let source: Arc<dyn FileSource> = Arc::new(BootService::new(
            store.clone(),
            Some(root),
            ctx,
            cfg.boot.unknown_mac,
        ));
        let app =
            crate::boot::http::router(source).into_make_service_with_connect_info::<SocketAddr>();
        let mut rx = stop.clone();
        tasks.spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = r {
                tracing::error!(%bound, "HTTP boot server failed: {e}");
            }
        });
        tracing::info!(%bound, %url, "HTTP boot listening");
        eprintln!("ironrack: HTTP boot listening on http://{bound}");
    }
    Ok(())
}
