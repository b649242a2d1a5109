//! The tokio side of the TFTP server: one listening socket for requests, one
//! ephemeral socket (the server TID) per transfer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::boot::FileSource;
use crate::config::TftpConfig;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub max_blksize: u16,
    pub max_windowsize: u16,
    pub max_transfers: usize,
    pub timeout: Duration,
    pub max_retries: u32,
}

impl From<&TftpConfig> for ServerConfig {
    fn from(c: &TftpConfig) -> Self {
        ServerConfig {
            max_blksize: c.max_blksize,
            max_windowsize: c.max_windowsize,
            max_transfers: c.max_transfers,
            timeout: crate::config::secs(c.timeout).unwrap_or(Duration::from_secs(1)),
            max_retries: c.max_retries,
        }
    }
}

pub struct TftpServer {
    _private: (),
}

impl TftpServer {
    pub async fn bind(listen: SocketAddr, cfg: ServerConfig) -> std::io::Result<TftpServer> {
        let _ = (listen, cfg);
        todo!()
    }

    pub fn local_addr(&self) -> SocketAddr {
        todo!()
    }

    /// Serve until `stop` turns true; in-flight transfers are dropped then.
    pub async fn run(self, source: Arc<dyn FileSource>, stop: tokio::sync::watch::Receiver<bool>) {
        let _ = (source, stop);
        todo!()
    }
}
