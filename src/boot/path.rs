//! Request paths made safe. TFTP and HTTP boot share these rules: only
//! regular files under the root are served; `..` is refused; a symlink whose
//! target resolves outside the root is refused; an absolute path is read
//! relative to the root (as Ironic's tftpd map file does), after stripping
//! the root's own absolute prefix when a loader names it.

use std::fs::File;
use std::path::{Component, Path, PathBuf};

/// Longest request path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("path longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("path contains a control character")]
    BadChar,
    #[error("path climbs out of the root with '..'")]
    Traversal,
    #[error("path resolves outside the root")]
    OutsideRoot,
    #[error("no such file")]
    NotFound,
    #[error("not a regular file")]
    NotAFile,
    #[error("{0}")]
    Io(std::io::Error),
}

impl PathError {
    /// A refusal for safety reasons (TFTP "access violation", HTTP 403), as
    /// opposed to a file that is simply not there.
    pub fn is_violation(&self) -> bool {
        matches!(
            self,
            PathError::TooLong | PathError::BadChar | PathError::Traversal | PathError::OutsideRoot
        )
    }
}

/// The request path as a relative path under `root`: backslashes read as
/// slashes, `.` and empty components dropped, `..` refused.
pub fn normalize(raw: &str, root: &Path) -> Result<PathBuf, PathError> {
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if raw.chars().any(|c| c.is_control()) {
        return Err(PathError::BadChar);
    }
    let unified = raw.replace('\\', "/");
    let mut rest = unified.as_str();
    if rest.starts_with('/') {
        // A loader that names the root's absolute path ("/srv/tftp/pxelinux.0").
        if let Some(r) = root.to_str() {
            let r = r.trim_end_matches('/');
            if !r.is_empty() {
                if let Some(tail) = rest.strip_prefix(r) {
                    if tail.starts_with('/') {
                        rest = tail;
                    }
                }
            }
        }
    }
    let mut out = PathBuf::new();
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(PathError::Traversal),
            p => out.push(p),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(PathError::NotFound);
    }
    // Belt and braces: every component must be a plain name.
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(PathError::Traversal);
    }
    Ok(out)
}

/// Open `rel` (from [`normalize`]) under `root`, which must already be
/// canonical. Symlinks are followed, and the result must still lie under
/// `root` and be a regular file. Returns the file and its length.
pub fn open_under(root: &Path, rel: &Path) -> Result<(File, u64), PathError> {
    let joined = root.join(rel);
    let real = match joined.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(PathError::NotFound),
        Err(e) if e.raw_os_error() == Some(20) => return Err(PathError::NotFound), // ENOTDIR
        Err(e) => return Err(PathError::Io(e)),
    };
    if !real.starts_with(root) {
        return Err(PathError::OutsideRoot);
    }
    let file = match File::open(&real) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(PathError::NotFound),
        Err(e) => return Err(PathError::Io(e)),
    };
    let meta = file.metadata().map_err(PathError::Io)?;
    if !meta.is_file() {
        return Err(PathError::NotAFile);
    }
    Ok((file, meta.len()))
}

/// Resolve and open a request path under a canonical root in one step.
pub fn open_request(root: &Path, raw: &str) -> Result<(File, u64), PathError> {
    let rel = normalize(raw, root)?;
    open_under(root, &rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        let d = std::env::temp_dir().join(format!("ironrack-path-{}", std::process::id()));
        let _ = std::fs::create_dir_all(d.join("sub"));
        std::fs::write(d.join("sub/file"), b"hello").unwrap();
        std::fs::write(d.join("top"), b"x").unwrap();
        let _ = std::os::unix::fs::symlink("/etc/hostname", d.join("escape"));
        let _ = std::os::unix::fs::symlink("sub/file", d.join("inside"));
        d.canonicalize().unwrap()
    }

    #[test]
    fn normalize_rules() {
        let r = Path::new("/srv/tftp");
        assert_eq!(normalize("a/./b//c", r).unwrap(), PathBuf::from("a/b/c"));
        assert_eq!(normalize("a\\b", r).unwrap(), PathBuf::from("a/b"));
        assert_eq!(
            normalize("/pxelinux.0", r).unwrap(),
            PathBuf::from("pxelinux.0")
        );
        assert_eq!(normalize("/srv/tftp/x/y", r).unwrap(), PathBuf::from("x/y"));
        assert_eq!(
            normalize("/etc/passwd", r).unwrap(),
            PathBuf::from("etc/passwd")
        );
        assert!(matches!(
            normalize("../../etc/passwd", r),
            Err(PathError::Traversal)
        ));
        assert!(matches!(
            normalize("a/../../b", r),
            Err(PathError::Traversal)
        ));
        assert!(matches!(
            normalize("a\\..\\b", r),
            Err(PathError::Traversal)
        ));
        assert!(matches!(
            normalize("/srv/tftp/../etc", r),
            Err(PathError::Traversal)
        ));
        assert!(matches!(normalize("a\nb", r), Err(PathError::BadChar)));
        assert!(matches!(
            normalize(&"a".repeat(2000), r),
            Err(PathError::TooLong)
        ));
        assert!(matches!(normalize("/", r), Err(PathError::NotFound)));
    }

    #[test]
    fn open_rules() {
        let r = root();
        let (_, len) = open_request(&r, "sub/file").unwrap();
        assert_eq!(len, 5);
        let (_, len) = open_request(&r, "inside").unwrap();
        assert_eq!(len, 5);
        assert!(matches!(
            open_request(&r, "escape"),
            Err(PathError::OutsideRoot)
        ));
        assert!(matches!(open_request(&r, "sub"), Err(PathError::NotAFile)));
        assert!(matches!(open_request(&r, "nope"), Err(PathError::NotFound)));
        assert!(matches!(
            open_request(&r, "top/below"),
            Err(PathError::NotFound)
        ));
        let abs = format!("{}/top", r.display());
        assert_eq!(open_request(&r, &abs).unwrap().1, 1);
    }
}
