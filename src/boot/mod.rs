//! Boot services: the TFTP server (RFC 1350/2347/2348/2349/7440), per-node
//! PXELINUX / GRUB / iPXE configs rendered in memory from the inventory, and
//! HTTP boot.
//!
//! - [`path`]: the safety rules both servers share.
//! - [`render`]: configs from a node, its ports and the agent's URLs.
//! - [`tftp`]: sans-IO packet codec and transfer state machines, plus the
//!   thin tokio server and client.
//! - [`http`]: the HTTP boot server (Range, HEAD).
//!
//! Both servers read files through a [`FileSource`]: [`RootDir`] serves a
//! directory; [`BootService`] puts the rendered per-MAC configs in front of it.

pub mod http;
pub mod path;
pub mod render;
pub mod tftp;

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::config::UnknownMac;
use crate::store::Store;

/// What a request resolves to.
pub enum BootFile {
    /// Rendered in memory (a per-node config, a default config).
    Memory(Vec<u8>),
    /// A regular file under the root, and its length.
    File { file: File, len: u64 },
}

impl BootFile {
    pub fn len(&self) -> u64 {
        match self {
            BootFile::Memory(v) => v.len() as u64,
            BootFile::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a request is not served.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// TFTP error 1, HTTP 404.
    #[error("file not found")]
    NotFound,
    /// TFTP error 2, HTTP 403; the reason goes to the log, not the wire.
    #[error("access violation: {0}")]
    AccessViolation(String),
    /// TFTP error 0, HTTP 500.
    #[error("{0}")]
    Io(String),
}

impl From<path::PathError> for BootError {
    fn from(e: path::PathError) -> Self {
        match e {
            path::PathError::NotFound | path::PathError::NotAFile => BootError::NotFound,
            path::PathError::Io(e) => BootError::Io(e.to_string()),
            other => BootError::AccessViolation(other.to_string()),
        }
    }
}

/// Which server asks: rendered iPXE scripts name HTTP URLs either way, but
/// logs and metrics tell the two apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Tftp,
    Http,
}

/// Where servers get files. `open` may block (disk, database); callers run
/// it on a blocking thread.
pub trait FileSource: Send + Sync + 'static {
    fn open(&self, requested: &str, via: Via) -> Result<BootFile, BootError>;
}

/// Regular files under one directory, nothing else.
pub struct RootDir {
    root: PathBuf,
}

impl RootDir {
    /// `root` must exist; it is canonicalised once here.
    pub fn new(root: &Path) -> std::io::Result<RootDir> {
        Ok(RootDir {
            root: root.canonicalize()?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl FileSource for RootDir {
    fn open(&self, requested: &str, _via: Via) -> Result<BootFile, BootError> {
        let (file, len) = path::open_request(&self.root, requested)?;
        Ok(BootFile::File { file, len })
    }
}

/// The agent's boot file source: per-MAC configs of prepared nodes rendered
/// from the store on each request, the root's files, and the fallback for
/// unknown MACs.
pub struct BootService {
    store: Store,
    root: Option<RootDir>,
    ctx: render::RenderContext,
    unknown_mac: UnknownMac,
}

impl BootService {
    pub fn new(
        store: Store,
        root: Option<RootDir>,
        ctx: render::RenderContext,
        unknown_mac: UnknownMac,
    ) -> BootService {
        BootService {
            store,
            root,
            ctx,
            unknown_mac,
        }
    }

    pub fn context(&self) -> &render::RenderContext {
        &self.ctx
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn root(&self) -> Option<&RootDir> {
        self.root.as_ref()
    }

    pub fn unknown_mac(&self) -> UnknownMac {
        self.unknown_mac
    }
}

impl FileSource for BootService {
    fn open(&self, requested: &str, via: Via) -> Result<BootFile, BootError> {
        let _ = (requested, via);
        todo!("config names first (render::parse_request), then the root, then the fallback")
    }
}
