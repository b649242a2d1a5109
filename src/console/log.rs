//! The console log of one node: size-capped files with the time each was
//! started in its name (`console-20261121T101500Z.log`), the oldest removed
//! beyond a count; and the in-memory tail new viewers get as a replay.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where and how much to keep.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// The node's own directory (created 0700).
    pub dir: PathBuf,
    /// A file is closed and a new one started past this size.
    pub max_bytes: u64,
    /// Files kept, the current one included.
    pub keep: usize,
}

pub struct ConsoleLog {
    cfg: LogConfig,
    file: Option<File>,
    written: u64,
    /// The last failure, reported once rather than on every write.
    failed: bool,
}

fn stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

impl ConsoleLog {
    pub fn new(cfg: LogConfig) -> ConsoleLog {
        ConsoleLog {
            cfg,
            file: None,
            written: 0,
            failed: false,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// The log files, oldest first.
    pub fn files(&self) -> Vec<PathBuf> {
        list(&self.cfg.dir)
    }

    fn open_new(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.cfg.dir)?;
        let base = stamp();
        // Files started in the same second get a counter above any already
        // there (a removed older one must not hand its name to a newer one).
        let taken: Vec<u64> = list(&self.cfg.dir)
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .filter_map(|n| {
                let stem = n.strip_prefix("console-")?.strip_suffix(".log")?;
                if stem == base {
                    Some(0)
                } else {
                    stem.strip_prefix(base.as_str())?
                        .strip_prefix('-')?
                        .parse()
                        .ok()
                }
            })
            .collect();
        let name = match taken.iter().max() {
            None => self.cfg.dir.join(format!("console-{base}.log")),
            Some(n) => self.cfg.dir.join(format!("console-{base}-{}.log", n + 1)),
        };
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&name)?;
        self.file = Some(f);
        self.written = 0;
        let files = list(&self.cfg.dir);
        let keep = self.cfg.keep.max(1);
        if files.len() > keep {
            for old in &files[..files.len() - keep] {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(())
    }

    /// Append host output. A failing disk is logged once and otherwise
    /// ignored: the console itself keeps working.
    pub fn append(&mut self, data: &[u8]) {
        let mut rest = data;
        while !rest.is_empty() {
            if self.file.is_none() || self.written >= self.cfg.max_bytes {
                if let Err(e) = self.open_new() {
                    if !self.failed {
                        tracing::warn!(dir = %self.cfg.dir.display(), "console log: {e}");
                        self.failed = true;
                    }
                    self.file = None;
                    return;
                }
            }
            let room = self.cfg.max_bytes.saturating_sub(self.written).max(1) as usize;
            let n = room.min(rest.len());
            let Some(f) = self.file.as_mut() else { return };
            if let Err(e) = f.write_all(&rest[..n]) {
                if !self.failed {
                    tracing::warn!(dir = %self.cfg.dir.display(), "console log: {e}");
                    self.failed = true;
                }
                self.file = None;
                return;
            }
            self.failed = false;
            self.written += n as u64;
            rest = &rest[n..];
        }
    }
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("console-") && n.ends_with(".log"))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    // Names sort by time; the "-N" suffix sorts after its base name.
    v.sort_by_key(|p| {
        let n = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let (base, count) = match n.trim_end_matches(".log").rsplit_once('-') {
            Some((b, c)) if c.chars().all(|x| x.is_ascii_digit()) && b.contains('T') => {
                (b.to_string(), c.parse::<u64>().unwrap_or(0))
            }
            _ => (n.trim_end_matches(".log").to_string(), 0),
        };
        (base, count)
    });
    v
}

/// The last `cap` bytes of host output.
#[derive(Debug)]
pub struct Replay {
    buf: VecDeque<u8>,
    cap: usize,
}

impl Replay {
    pub fn new(cap: usize) -> Replay {
        Replay {
            buf: VecDeque::with_capacity(cap.min(1 << 20)),
            cap,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.cap == 0 {
            return;
        }
        let data = if data.len() > self.cap {
            &data[data.len() - self.cap..]
        } else {
            data
        };
        let over = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..over);
        self.buf.extend(data);
    }

    pub fn snapshot(&self) -> Vec<u8> {
        self.buf.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_the_tail() {
        let mut r = Replay::new(8);
        r.push(b"hello ");
        r.push(b"world");
        assert_eq!(r.snapshot(), b"lo world");
        r.push(b"0123456789abc");
        assert_eq!(r.snapshot(), b"56789abc");
        let mut off = Replay::new(0);
        off.push(b"x");
        assert!(off.snapshot().is_empty());
    }

    #[test]
    fn log_rotates_by_size_and_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!(
            "ironrack-conlog-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut log = ConsoleLog::new(LogConfig {
            dir: dir.clone(),
            max_bytes: 10,
            keep: 3,
        });
        for i in 0..5u8 {
            log.append(&[b'a' + i; 10]);
        }
        let files = log.files();
        assert_eq!(files.len(), 3, "{files:?}");
        let bodies: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
        assert_eq!(bodies, vec![vec![b'c'; 10], vec![b'd'; 10], vec![b'e'; 10]]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // One write larger than a file spans files without losing a byte.
        log.append(&[b'z'; 25]);
        let sizes: Vec<usize> = log
            .files()
            .iter()
            .map(|f| std::fs::read(f).unwrap().len())
            .collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
