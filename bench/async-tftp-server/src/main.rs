//! async-tftp 0.4.2 serving a directory read-only, as the second peer of
//! `scripts/bench-tftp.sh`.
//!
//!     async-tftp-server ROOT ADDR [MAX_BLKSIZE] [MAX_WINDOWSIZE]

use std::net::SocketAddr;
use std::time::Duration;

use async_tftp::server::TftpServerBuilder;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: async-tftp-server ROOT ADDR [MAX_BLKSIZE] [MAX_WINDOWSIZE]");
        std::process::exit(2);
    }
    let addr: SocketAddr = match args[1].parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bad address {}: {e}", args[1]);
            std::process::exit(2);
        }
    };
    let blksize: u16 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(65464);
    let windowsize: u16 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let server = TftpServerBuilder::with_dir_ro(&args[0])
        .map(|b| {
            b.bind(addr)
                .block_size_limit(blksize)
                .window_size_limit(windowsize)
                .timeout(Duration::from_secs(1))
                .max_send_retries(5)
        });
    let server = match server {
        Ok(b) => b.build().await,
        Err(e) => Err(e),
    };
    match server {
        Ok(s) => {
            match s.listen_addr() {
                Ok(a) => eprintln!("async-tftp listening on {a}"),
                Err(e) => eprintln!("async-tftp: {e}"),
            }
            if let Err(e) = s.serve().await {
                eprintln!("async-tftp: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("async-tftp: {e}");
            std::process::exit(1);
        }
    }
}
