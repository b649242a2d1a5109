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

impl BootService {
    /// A regular file under the root, or `None` when there is none by that
    /// name (no root, no such file, not a regular file). Safety refusals
    /// are errors.
    fn root_file(&self, rel: &Path) -> Result<Option<BootFile>, BootError> {
        let Some(root) = &self.root else {
            return Ok(None);
        };
        match path::open_under(root.root(), rel) {
            Ok((file, len)) => Ok(Some(BootFile::File { file, len })),
            Err(path::PathError::NotFound | path::PathError::NotAFile) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The loader's default config: the root's own file, else (with
    /// `unknown_mac = "default"`) the built-in one that boots the local disk.
    fn default_config(&self, kind: render::ConfigKind) -> Result<BootFile, BootError> {
        if let Some(f) = self.root_file(Path::new(kind.default_path()))? {
            return Ok(f);
        }
        match self.unknown_mac {
            UnknownMac::Default => Ok(BootFile::Memory(kind.builtin_default().as_bytes().to_vec())),
            UnknownMac::NotFound => Err(BootError::NotFound),
        }
    }

    /// The rendered config of kind `kind` for `mac`, when the MAC is a
    /// PXE-enabled port of a prepared node whose boot mode uses that kind.
    fn node_config(
        &self,
        kind: render::ConfigKind,
        mac: &str,
        via: Via,
    ) -> Result<Option<String>, BootError> {
        use crate::store::StoreError;
        let port = match self.store.get_port_by_address(mac) {
            Ok(p) => p,
            Err(StoreError::NotFound { .. } | StoreError::Invalid(_)) => return Ok(None),
            Err(e) => return Err(BootError::Io(e.to_string())),
        };
        if !port.pxe_enabled {
            return Ok(None);
        }
        let node = match self.store.get_node(&port.node_uuid) {
            Ok(n) => n,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(BootError::Io(e.to_string())),
        };
        if !render::is_prepared(&node) {
            tracing::debug!(node = %node.uuid, %mac, ?via, "boot config asked for a node that is not prepared");
            return Ok(None);
        }
        match render::render_node(&node, std::slice::from_ref(&port), &self.ctx) {
            Ok(list) => {
                let found = list.into_iter().find(|r| r.kind == kind).map(|r| r.text);
                match &found {
                    Some(_) => tracing::info!(
                        node = %node.uuid, %mac, kind = kind.name(), ?via, "boot config served"
                    ),
                    None => tracing::info!(
                        node = %node.uuid, %mac, kind = kind.name(), ?via,
                        "boot config of another boot mode asked for; not served"
                    ),
                }
                Ok(found)
            }
            Err(e) => {
                tracing::warn!(
                    node = %node.uuid, %mac, ?via, error = %e,
                    "prepared node's boot config cannot be rendered; treating its MAC as unknown"
                );
                Ok(None)
            }
        }
    }
}

/// A normalised relative path as the `/`-separated name configs are known by.
fn slash_name(rel: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    parts.map(|p| p.join("/"))
}

impl FileSource for BootService {
    /// Config names first (a prepared node's rendered config wins over a
    /// file of the same name), then the root, then `[boot] unknown_mac`.
    fn open(&self, requested: &str, via: Via) -> Result<BootFile, BootError> {
        let root = self
            .root
            .as_ref()
            .map(|r| r.root())
            .unwrap_or(Path::new(""));
        let rel = path::normalize(requested, root)?;
        let Some(name) = slash_name(&rel) else {
            return Err(BootError::NotFound);
        };
        match render::parse_request(&name) {
            None => self.root_file(&rel)?.ok_or(BootError::NotFound),
            Some(render::ConfigRequest::BootIpxe) => match self.root_file(&rel)? {
                Some(f) => Ok(f),
                None => Ok(BootFile::Memory(render::boot_ipxe(&self.ctx).into_bytes())),
            },
            Some(render::ConfigRequest::Default(kind)) => self.default_config(kind),
            Some(render::ConfigRequest::Node { kind, mac }) => {
                if let Some(text) = self.node_config(kind, &mac, via)? {
                    return Ok(BootFile::Memory(text.into_bytes()));
                }
                if let Some(f) = self.root_file(&rel)? {
                    return Ok(f);
                }
                match self.unknown_mac {
                    UnknownMac::Default => self.default_config(kind),
                    UnknownMac::NotFound => Err(BootError::NotFound),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::render::{BootMode, RenderContext, PREPARED_KEY};
    use super::*;
    use crate::store::{NewNode, NewPort};
    use serde_json::json;
    use std::io::Read;

    const MAC: &str = "52:54:00:12:34:56";

    struct Fixture {
        dir: PathBuf,
        store: Store,
        uuid: String,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!(
            "ironrack-bootsvc-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(dir.join("deploy")).unwrap();
        std::fs::write(dir.join("deploy/vmlinuz"), b"kernel").unwrap();
        std::fs::write(dir.join("pxelinux.0"), b"loader").unwrap();
        let store = Store::open_in_memory().unwrap();
        let node = store
            .create_node(NewNode {
                driver: "ipmi".into(),
                driver_info: serde_json::from_value(json!({
                    "deploy_kernel": "deploy/vmlinuz",
                    "deploy_ramdisk": "deploy/initrd",
                }))
                .unwrap(),
                ..NewNode::default()
            })
            .unwrap();
        store
            .create_port(NewPort {
                address: MAC.into(),
                node_uuid: node.uuid.clone(),
                pxe_enabled: true,
                ..NewPort::default()
            })
            .unwrap();
        Fixture {
            dir,
            store,
            uuid: node.uuid,
        }
    }

    impl Fixture {
        fn service(&self, unknown: UnknownMac) -> BootService {
            BootService::new(
                self.store.clone(),
                Some(RootDir::new(&self.dir).unwrap()),
                RenderContext {
                    api_url: "http://192.0.2.1:6385".into(),
                    http_url: Some("http://192.0.2.1:8080".into()),
                    default_boot_mode: BootMode::Uefi,
                    kernel_append_params: String::new(),
                },
                unknown,
            )
        }

        fn set(&self, f: impl FnOnce(&mut crate::store::Node)) {
            self.store
                .update_node(&self.uuid, |n| {
                    f(n);
                    Ok(())
                })
                .unwrap();
        }

        fn prepare(&self, on: bool) {
            self.set(|n| {
                if on {
                    n.driver_internal_info
                        .insert(PREPARED_KEY.into(), json!(true));
                } else {
                    n.driver_internal_info.remove(PREPARED_KEY);
                }
            });
        }
    }

    fn read(r: Result<BootFile, BootError>) -> Result<String, BootError> {
        Ok(match r? {
            BootFile::Memory(v) => String::from_utf8(v).unwrap(),
            BootFile::File { mut file, len } => {
                let mut s = String::new();
                file.read_to_string(&mut s).unwrap();
                assert_eq!(s.len() as u64, len);
                s
            }
        })
    }

    const GRUB: &str = "grub/grub.cfg-01-52-54-00-12-34-56";
    const PXELINUX: &str = "pxelinux.cfg/01-52-54-00-12-34-56";
    const IPXE: &str = "ipxe/52:54:00:12:34:56.ipxe";

    #[test]
    fn prepared_nodes_get_their_configs() {
        let f = fixture("prepared");
        let s = f.service(UnknownMac::Default);
        // Not prepared yet: the built-in default (local disk).
        let grub = read(s.open(GRUB, Via::Tftp)).unwrap();
        assert_eq!(grub, render::ConfigKind::Grub.builtin_default());
        f.prepare(true);
        let grub = read(s.open(GRUB, Via::Tftp)).unwrap();
        assert!(grub.contains("linux /deploy/vmlinuz ipa-api-url=http://192.0.2.1:6385"));
        assert!(grub.contains(&format!("ipa-node-uuid={}", f.uuid)));
        let grub2 = read(s.open(&format!("/{GRUB}"), Via::Tftp)).unwrap();
        assert_eq!(grub, grub2);
        let ipxe = read(s.open(IPXE, Via::Http)).unwrap();
        assert!(ipxe.contains("kernel http://192.0.2.1:8080/deploy/vmlinuz"));
        let dashes = read(s.open("ipxe/52-54-00-12-34-56.ipxe", Via::Http)).unwrap();
        assert_eq!(ipxe, dashes);
        // A uefi node has no PXELINUX config: the default instead.
        let pxe = read(s.open(PXELINUX, Via::Tftp)).unwrap();
        assert_eq!(pxe, render::ConfigKind::Pxelinux.builtin_default());
        // bios: the other way round.
        f.set(|n| {
            n.properties
                .insert("capabilities".into(), json!("boot_mode:bios"));
        });
        let pxe = read(s.open(PXELINUX, Via::Tftp)).unwrap();
        assert!(pxe.contains("kernel /deploy/vmlinuz\nappend initrd=/deploy/initrd"));
        assert_eq!(
            read(s.open(GRUB, Via::Tftp)).unwrap(),
            render::ConfigKind::Grub.builtin_default()
        );
        // Cleaned up: gone again.
        f.prepare(false);
        assert_eq!(
            read(s.open(PXELINUX, Via::Tftp)).unwrap(),
            render::ConfigKind::Pxelinux.builtin_default()
        );
    }

    #[test]
    fn rendered_configs_win_over_files_of_the_same_name() {
        let f = fixture("shadow");
        std::fs::create_dir_all(f.dir.join("grub")).unwrap();
        std::fs::write(f.dir.join(GRUB), "static\n").unwrap();
        std::fs::write(f.dir.join("grub/grub.cfg"), "site default\n").unwrap();
        let s = f.service(UnknownMac::Default);
        assert_eq!(read(s.open(GRUB, Via::Tftp)).unwrap(), "static\n");
        f.prepare(true);
        assert!(read(s.open(GRUB, Via::Tftp))
            .unwrap()
            .contains("linux /deploy/vmlinuz"));
        // Unknown MACs get the root's own default.
        assert_eq!(
            read(s.open("grub/grub.cfg-01-52-54-00-00-00-99", Via::Tftp)).unwrap(),
            "site default\n"
        );
        assert_eq!(
            read(s.open("grub/grub.cfg", Via::Tftp)).unwrap(),
            "site default\n"
        );
    }

    #[test]
    fn unknown_macs_not_found() {
        let f = fixture("notfound");
        let s = f.service(UnknownMac::NotFound);
        assert!(matches!(s.open(GRUB, Via::Tftp), Err(BootError::NotFound)));
        assert!(matches!(s.open(IPXE, Via::Http), Err(BootError::NotFound)));
        assert!(matches!(
            s.open("pxelinux.cfg/default", Via::Tftp),
            Err(BootError::NotFound)
        ));
        f.prepare(true);
        assert!(read(s.open(GRUB, Via::Tftp))
            .unwrap()
            .contains("initrd /deploy/initrd"));
        assert!(matches!(
            s.open("ipxe/52:54:00:00:00:99.ipxe", Via::Http),
            Err(BootError::NotFound)
        ));
        // A port that is not PXE-enabled is not served either.
        let other = f
            .store
            .create_port(NewPort {
                address: "52:54:00:00:00:77".into(),
                node_uuid: f.uuid.clone(),
                pxe_enabled: false,
                ..NewPort::default()
            })
            .unwrap();
        assert!(matches!(
            s.open(&format!("ipxe/{}.ipxe", other.address), Via::Http),
            Err(BootError::NotFound)
        ));
    }

    #[test]
    fn a_broken_prepared_node_falls_back() {
        let f = fixture("broken");
        f.prepare(true);
        f.set(|n| {
            n.driver_info
                .insert("kernel_append_params".into(), json!("a\nkernel /evil"));
        });
        let s = f.service(UnknownMac::Default);
        assert_eq!(
            read(s.open(GRUB, Via::Tftp)).unwrap(),
            render::ConfigKind::Grub.builtin_default()
        );
    }

    #[test]
    fn boot_ipxe_and_root_files() {
        let f = fixture("files");
        let s = f.service(UnknownMac::NotFound);
        let b = read(s.open("boot.ipxe", Via::Http)).unwrap();
        assert!(b.contains("chain http://192.0.2.1:8080/ipxe/${mac}.ipxe"));
        std::fs::write(f.dir.join("boot.ipxe"), "#!ipxe\nshell\n").unwrap();
        assert_eq!(
            read(s.open("boot.ipxe", Via::Http)).unwrap(),
            "#!ipxe\nshell\n"
        );
        assert_eq!(read(s.open("pxelinux.0", Via::Tftp)).unwrap(), "loader");
        assert_eq!(
            read(s.open("/deploy//vmlinuz", Via::Http)).unwrap(),
            "kernel"
        );
        assert!(matches!(
            s.open("nope", Via::Tftp),
            Err(BootError::NotFound)
        ));
        assert!(matches!(
            s.open("../../etc/passwd", Via::Http),
            Err(BootError::AccessViolation(_))
        ));
        std::os::unix::fs::symlink("/etc/hostname", f.dir.join("out")).unwrap();
        assert!(matches!(
            s.open("out", Via::Http),
            Err(BootError::AccessViolation(_))
        ));
        assert!(matches!(
            s.open("deploy", Via::Http),
            Err(BootError::NotFound)
        ));
    }
}
