//! `ironrack tftp serve|get|bench`: the TFTP server on its own, a client, and
//! the load generator `scripts/bench-tftp.sh` uses.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::json;

use crate::boot::tftp::client::{self, ClientOptions};
use crate::boot::tftp::server::{ServerConfig, TftpServer};
use crate::boot::RootDir;

#[derive(Args, Debug)]
pub struct TftpArgs {
    #[command(subcommand)]
    pub cmd: TftpCmd,
}

impl TftpArgs {
    /// `serve` logs transfers at info level by default.
    pub fn is_serve(&self) -> bool {
        matches!(self.cmd, TftpCmd::Serve(_))
    }
}

#[derive(Subcommand, Debug)]
pub enum TftpCmd {
    /// Serve the regular files under a directory (read requests only).
    Serve(ServeArgs),
    /// Fetch one file.
    Get(GetArgs),
    /// Fetch one file with N clients at once, discard the data, report
    /// throughput as JSON.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The directory to serve.
    #[arg(long)]
    pub root: PathBuf,
    /// UDP address to listen on.
    #[arg(long, default_value = "127.0.0.1:6969")]
    pub listen: SocketAddr,
    /// Largest blksize granted (also capped by the path MTU).
    #[arg(long, default_value_t = 1468, value_parser = clap::value_parser!(u16).range(8..=65464))]
    pub max_blksize: u16,
    /// Largest windowsize granted (RFC 7440).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_windowsize: u16,
    /// Transfers at once; more get ERROR "server busy".
    #[arg(long, default_value_t = 512)]
    pub max_transfers: usize,
    /// Retransmit timeout, seconds (unless a client asks for another).
    #[arg(long, default_value_t = 1.0)]
    pub timeout: f64,
    /// Retransmissions before a transfer is dropped.
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
}

#[derive(Args, Debug, Clone)]
pub struct Transfer {
    /// blksize to ask for (8..65464); none for 512.
    #[arg(long, value_parser = clap::value_parser!(u16).range(8..=65464))]
    pub blksize: Option<u16>,
    /// windowsize to ask for (RFC 7440); none for lock step.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub windowsize: Option<u16>,
    /// Retransmit timeout, seconds (also asked of the server, rounded up).
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Retransmissions before giving up.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
}

impl Transfer {
    fn options(&self) -> Result<ClientOptions, String> {
        let mut o = ClientOptions {
            blksize: self.blksize,
            windowsize: self.windowsize,
            max_retries: self.retries,
            ..ClientOptions::default()
        };
        if let Some(t) = self.timeout {
            o.timeout = super::parse_timeout(t)?;
            o.server_timeout = Some(t.ceil().clamp(1.0, 255.0) as u8);
        }
        Ok(o)
    }
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// HOST[:PORT] (port 69 unless given).
    pub server: String,
    /// The file to fetch.
    pub file: String,
    /// Where to write it ("-" for stdout); by default its base name here.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub transfer: Transfer,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// HOST[:PORT] (port 69 unless given).
    pub server: String,
    /// The file every client fetches.
    pub file: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub clients: u32,
    #[command(flatten)]
    pub transfer: Transfer,
}

pub async fn run(a: TftpArgs) -> i32 {
    let r = match a.cmd {
        TftpCmd::Serve(s) => serve(s).await,
        TftpCmd::Get(g) => get(g).await,
        TftpCmd::Bench(b) => bench(b).await,
    };
    match r {
        Ok(code) => code,
        Err((code, msg)) => {
            eprintln!("ironrack: {msg}");
            code
        }
    }
}

/// HOST[:PORT], port 69 by default; IPv6 literals with or without brackets.
async fn resolve(s: &str) -> Result<SocketAddr, (i32, String)> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 69));
    }
    let with_port = if s.contains(':') {
        s.to_string()
    } else {
        format!("{s}:69")
    };
    tokio::net::lookup_host(&with_port)
        .await
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| (2, format!("cannot resolve {s}")))
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

async fn serve(a: ServeArgs) -> Result<i32, (i32, String)> {
    if !(a.timeout > 0.0 && a.timeout <= 255.0) {
        return Err((2, "--timeout must be between 0 and 255 seconds".into()));
    }
    let root = RootDir::new(&a.root).map_err(|e| {
        (
            2,
            format!("cannot use {} as the root: {e}", a.root.display()),
        )
    })?;
    let cfg = ServerConfig {
        max_blksize: a.max_blksize,
        max_windowsize: a.max_windowsize,
        max_transfers: a.max_transfers.max(1),
        timeout: Duration::from_secs_f64(a.timeout),
        max_retries: a.max_retries,
    };
    let server = TftpServer::bind(a.listen, cfg)
        .await
        .map_err(|e| (1, format!("cannot listen on {}: {e}", a.listen)))?;
    eprintln!("ironrack: TFTP listening on {}", server.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server.run(Arc::new(root), stop_rx));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    Ok(0)
}

async fn get(a: GetArgs) -> Result<i32, (i32, String)> {
    let server = resolve(&a.server).await?;
    let opts = a.transfer.options().map_err(|e| (2, e))?;
    let started = Instant::now();
    let r = match a.output.as_deref() {
        Some(p) if p.as_os_str() == "-" => {
            // (tokio's stdout is not in this build; the file goes out at the end.)
            let mut v = Vec::new();
            let r = client::get_to(server, &a.file, &opts, &mut v).await;
            if r.is_ok() {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                out.write_all(&v)
                    .and_then(|()| out.flush())
                    .map_err(|e| (1, format!("cannot write to stdout: {e}")))?;
            }
            r
        }
        other => {
            let path = match other {
                Some(p) => p.to_path_buf(),
                None => {
                    let base = a.file.rsplit(['/', '\\']).next().unwrap_or("");
                    if base.is_empty() || base == "." || base == ".." {
                        return Err((2, "cannot name the output file; use -o".into()));
                    }
                    PathBuf::from(base)
                }
            };
            let f = tokio::fs::File::create(&path)
                .await
                .map_err(|e| (1, format!("cannot create {}: {e}", path.display())))?;
            let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, f);
            let r = client::get_to(server, &a.file, &opts, &mut out).await;
            if r.is_err() {
                let _ = tokio::fs::remove_file(&path).await;
            }
            r
        }
    };
    match r {
        Ok(f) => {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "ironrack: {} bytes in {secs:.3} s (blksize {}, windowsize {})",
                f.bytes, f.blksize, f.windowsize
            );
            Ok(0)
        }
        Err(e) => Err((1, format!("{}: {e}", a.file))),
    }
}

async fn bench(a: BenchArgs) -> Result<i32, (i32, String)> {
    let server = resolve(&a.server).await?;
    let opts = a.transfer.options().map_err(|e| (2, e))?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(a.clients as usize);
    for _ in 0..a.clients {
        let (file, opts) = (a.file.clone(), opts.clone());
        tasks.push(tokio::spawn(async move {
            client::get_discard(server, &file, &opts).await
        }));
    }
    let mut sizes = Vec::with_capacity(tasks.len());
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(f)) => sizes.push(f),
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(e) => errors.push(format!("task failed: {e}")),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes: u64 = sizes.iter().map(|f| f.bytes).sum();
    let first = sizes.first().map(|f| f.bytes);
    let same = sizes.iter().all(|f| Some(f.bytes) == first);
    let out = json!({
        "server": server.to_string(),
        "file": a.file,
        "clients": a.clients,
        "ok": sizes.len(),
        "failed": errors.len(),
        "bytes": bytes,
        "bytes_per_client": first,
        "tsize": sizes.first().and_then(|f| f.tsize),
        "blksize": sizes.first().map(|f| f.blksize),
        "windowsize": sizes.first().map(|f| f.windowsize),
        "seconds": secs,
        "mb_per_s": if secs > 0.0 { bytes as f64 / 1e6 / secs } else { 0.0 },
        "errors": errors.iter().take(5).collect::<Vec<_>>(),
    });
    println!("{out}");
    if !errors.is_empty() {
        return Err((
            1,
            format!("{} of {} transfers failed", errors.len(), a.clients),
        ));
    }
    if !same {
        return Err((1, "clients received different sizes".into()));
    }
    Ok(0)
}
