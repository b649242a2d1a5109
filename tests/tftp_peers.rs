//! `ironrack tftp serve` against real TFTP clients (curl, tftp-hpa, atftp),
//! our own client, and raw UDP for what no client does on purpose: path
//! traversal, write requests, garbage, a UEFI-style size probe, repeated
//! requests and a full server.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{require, run, text, Scratch};
use ironrack::boot::tftp::client::{self, ClientOptions};
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::net::UdpSocket;

const LISTENING: &str = "ironrack: TFTP listening on ";

/// `ironrack tftp serve` on an ephemeral loopback port, stderr in a file.
struct Server {
    child: Option<Child>,
    addr: SocketAddr,
    log_path: PathBuf,
    root: PathBuf,
    _scratch: Scratch,
}

impl Server {
    async fn start(extra: &[&str]) -> Server {
        let scratch = Scratch::new("tftp");
        let root = scratch.0.join("root");
        std::fs::create_dir(&root).unwrap();
        let log_path = scratch.0.join("server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ironrack"))
            .args(["tftp", "serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(&root)
            .args(extra)
            .env("RUST_LOG", "ironrack=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut s = Server {
            child: Some(child),
            addr: "127.0.0.1:0".parse().unwrap(),
            log_path,
            root,
            _scratch: scratch,
        };
        for _ in 0..500 {
            if let Some(l) = s.log().lines().find(|l| l.starts_with(LISTENING)) {
                s.addr = l[LISTENING.len()..].trim().parse().unwrap();
                return s;
            }
            if let Some(st) = s.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("tftp serve exited ({st}):\n{}", s.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("tftp serve did not start:\n{}", s.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }

    fn url(&self, file: &str) -> String {
        format!("tftp://127.0.0.1:{}/{file}", self.addr.port())
    }

    /// Wait (bounded) for a log line matching `pred`.
    async fn wait_log(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        for _ in 0..1000 {
            if let Some(l) = self.log().lines().find(|l| pred(l)) {
                return l.to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no log line for {what}:\n{}", self.log());
    }

    fn put(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.root.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn sha(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

fn sha_file(p: &Path) -> String {
    sha(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

/// Compare two (large) files in chunks; panics at the first difference.
fn same_files(a: &Path, b: &Path) {
    use std::io::Read;
    let (ma, mb) = (a.metadata().unwrap().len(), b.metadata().unwrap().len());
    assert_eq!(ma, mb, "sizes of {} and {}", a.display(), b.display());
    let mut fa = std::fs::File::open(a).unwrap();
    let mut fb = std::fs::File::open(b).unwrap();
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut off = 0u64;
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            break;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            let i = ba[..n]
                .iter()
                .zip(&bb[..n])
                .position(|(x, y)| x != y)
                .unwrap();
            panic!("files differ at offset {}", off + i as u64);
        }
        off += n as u64;
    }
}

// ---- raw TFTP over UDP ----

fn rrq(file: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    let mut v = vec![0, 1];
    v.extend_from_slice(file.as_bytes());
    v.push(0);
    v.extend_from_slice(b"octet\0");
    for (k, val) in opts {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

fn ack(block: u16) -> Vec<u8> {
    let [a, b] = block.to_be_bytes();
    vec![0, 4, a, b]
}

fn opcode(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[0], p[1]])
}

fn block_of(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}

async fn raw_socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

async fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 70_000];
    match tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => (buf[..n].to_vec(), from),
        Ok(Err(e)) => panic!("recv: {e}"),
        Err(_) => panic!("no answer in 10 s"),
    }
}

/// Send one packet to the server and return the ERROR code it answers.
async fn error_code_for(server: SocketAddr, pkt: &[u8]) -> (u16, String) {
    let s = raw_socket().await;
    s.send_to(pkt, server).await.unwrap();
    let (p, _) = recv(&s).await;
    assert_eq!(opcode(&p), 5, "expected an ERROR, got {p:?}");
    let msg = String::from_utf8_lossy(&p[4..])
        .trim_end_matches('\0')
        .to_string();
    (block_of(&p), msg)
}

/// A lock-step fetch by hand from the server's TID once it answered;
/// `hook` runs after each DATA block with (block, server TID).
async fn raw_fetch_from(
    sock: &UdpSocket,
    first: (Vec<u8>, SocketAddr),
    blksize: usize,
    mut hook: impl AsyncHook,
) -> Vec<u8> {
    let (mut p, tid) = first;
    let mut out = Vec::new();
    let mut expect: u16 = 1;
    if opcode(&p) == 6 {
        sock.send_to(&ack(0), tid).await.unwrap();
        p = recv_from_tid(sock, tid).await;
    }
    loop {
        assert_eq!(
            opcode(&p),
            3,
            "expected DATA, got {:?}",
            &p[..p.len().min(40)]
        );
        let b = block_of(&p);
        if b == expect {
            out.extend_from_slice(&p[4..]);
            sock.send_to(&ack(b), tid).await.unwrap();
            hook.after(b, tid).await;
            if p.len() - 4 < blksize {
                return out;
            }
            expect = expect.wrapping_add(1);
        }
        p = recv_from_tid(sock, tid).await;
    }
}

async fn recv_from_tid(sock: &UdpSocket, tid: SocketAddr) -> Vec<u8> {
    loop {
        let (p, from) = recv(sock).await;
        if from == tid {
            return p;
        }
    }
}

trait AsyncHook {
    fn after(&mut self, block: u16, tid: SocketAddr) -> impl std::future::Future<Output = ()>;
}

struct NoHook;
impl AsyncHook for NoHook {
    async fn after(&mut self, _: u16, _: SocketAddr) {}
}

// ---- real clients ----

#[tokio::test(flavor = "multi_thread")]
async fn curl_fetches_at_blksize_512_and_1468() {
    let curl = require("curl");
    let srv = Server::start(&[]).await;
    let data = random(3_000_000 + 123, 1);
    srv.put("images/f.bin", &data);
    let out = Scratch::new("tftp-out");
    for blk in ["512", "1468"] {
        let dst = out.0.join(format!("curl-{blk}"));
        let o = run(tokio::process::Command::new(&curl)
            .args(["-sS", "--max-time", "60", "--tftp-blksize", blk, "-o"])
            .arg(&dst)
            .arg(srv.url("images/f.bin")))
        .await;
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(sha_file(&dst), sha(&data), "curl blksize {blk}");
    }
    // The server logged both transfers with the negotiated block size.
    let log = srv.log();
    assert!(log.contains("blksize=512"), "{log}");
    assert!(log.contains("blksize=1468"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tftp_hpa_fetches_binary_and_netascii() {
    let tftp = require("tftp");
    let srv = Server::start(&[]).await;
    let data = random(1_000_000, 2);
    srv.put("f.bin", &data);
    let txt = b"DEFAULT menu\nLABEL linux\r\n  KERNEL vmlinuz\rend\n".repeat(50);
    srv.put("pxelinux.cfg/default", &txt);
    let out = Scratch::new("tftp-out");
    let dst = out.0.join("hpa.bin");
    let o = run(tokio::process::Command::new(&tftp)
        .args([
            "127.0.0.1",
            &srv.port(),
            "-m",
            "binary",
            "-c",
            "get",
            "f.bin",
        ])
        .arg(&dst))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(sha_file(&dst), sha(&data));
    // netascii: the client converts CR LF / CR NUL back.
    let dst = out.0.join("default");
    let o = run(tokio::process::Command::new(&tftp)
        .args([
            "127.0.0.1",
            &srv.port(),
            "-m",
            "netascii",
            "-c",
            "get",
            "pxelinux.cfg/default",
        ])
        .arg(&dst))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(&dst).unwrap(), txt);
    // netascii is for small text files; mail mode is obsolete.
    srv.put("big.txt", &vec![b'a'; 5 * 1024 * 1024]);
    let (code, msg) = error_code_for(srv.addr, b"\x00\x01big.txt\x00netascii\x00").await;
    assert_eq!(code, 0, "{msg}");
    let (code, msg) = error_code_for(srv.addr, b"\x00\x01f.bin\x00mail\x00").await;
    assert_eq!(code, 4, "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn atftp_fetches_with_windowsize_16() {
    let atftp = require("atftp");
    let srv = Server::start(&[]).await;
    let data = random(5_000_000 + 7, 3);
    srv.put("boot/vmlinuz", &data);
    let out = Scratch::new("tftp-out");
    let dst = out.0.join("atftp.bin");
    let o = run(tokio::process::Command::new(&atftp)
        .args([
            "--option",
            "windowsize 16",
            "--option",
            "blksize 1468",
            "--option",
            "tsize 0",
            "-g",
            "-r",
            "boot/vmlinuz",
            "-l",
        ])
        .arg(&dst)
        .args(["127.0.0.1", &srv.port()]))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(sha_file(&dst), sha(&data));
    let line = srv
        .wait_log("the atftp transfer", |l| {
            l.contains("tftp: sent") && l.contains("boot/vmlinuz")
        })
        .await;
    assert!(
        line.contains("windowsize=16") && line.contains("blksize=1468"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn our_client_library_and_cli() {
    let srv = Server::start(&["--max-windowsize", "32"]).await;
    let data = random(2_000_000 + 1, 4);
    srv.put("initrd.img", &data);
    // Windowed, capped by the server: we asked 64, it grants 32.
    let opts = ClientOptions {
        blksize: Some(1468),
        windowsize: Some(64),
        ..ClientOptions::default()
    };
    let mut got = Vec::new();
    let f = client::get_to(srv.addr, "initrd.img", &opts, &mut got)
        .await
        .unwrap();
    assert_eq!(got, data);
    assert_eq!(
        (f.bytes, f.tsize, f.blksize, f.windowsize),
        (data.len() as u64, Some(data.len() as u64), 1468, 32)
    );
    // Lock step without options.
    let plain = ClientOptions {
        tsize: false,
        ..ClientOptions::default()
    };
    assert_eq!(
        client::get(srv.addr, "initrd.img", &plain).await.unwrap(),
        data
    );
    // Errors carry the server's code.
    let e = client::get(srv.addr, "missing", &opts).await.unwrap_err();
    assert_eq!(e.server_code(), Some(1), "{e}");
    // The CLI: get and bench.
    let out = Scratch::new("tftp-out");
    let dst = out.0.join("initrd");
    let o = run(common::ironrack()
        .args([
            "tftp",
            "get",
            &srv.addr.to_string(),
            "initrd.img",
            "--blksize",
            "1468",
            "--windowsize",
            "16",
            "-o",
        ])
        .arg(&dst))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(sha_file(&dst), sha(&data));
    let o = run(common::ironrack().args([
        "tftp",
        "bench",
        &srv.addr.to_string(),
        "initrd.img",
        "--clients",
        "4",
        "--blksize",
        "1468",
        "--windowsize",
        "16",
    ]))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clients"], 4);
    assert_eq!(v["ok"], 4);
    assert_eq!(v["bytes"], 4 * data.len() as u64);
    assert_eq!(v["tsize"], data.len() as u64);
    assert!(v["mb_per_s"].as_f64().unwrap() > 0.0);
    let o = run(common::ironrack()
        .args(["tftp", "get", &srv.addr.to_string(), "nope", "-o"])
        .arg(out.0.join("nope")))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("error 1"),
        "{}",
        text(&o)
    );
    assert!(!out.0.join("nope").exists());
}

/// A sparse file over 100 MiB with markers at known offsets, around the
/// 16-bit block rollover at blksize 512 (block 65536 is wire block 0).
fn sparse_with_markers(path: &Path) -> Vec<(u64, [u8; 16])> {
    use std::io::{Seek, SeekFrom, Write};
    let size: u64 = 100 * 1024 * 1024 + 777;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let offsets = [
        0,
        512 * 65_534 - 8,
        512 * 65_535,
        512 * 65_536 - 3,
        512 * 65_536 + 100,
        1468 * 65_535 + 5,
        1468 * 65_536,
        50 * 1024 * 1024,
        size - 16,
    ];
    let mut f = f;
    let mut marks = Vec::new();
    for off in offsets {
        let mut m = [0u8; 16];
        rng.fill(&mut m[..]);
        m[0] |= 1;
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(&m).unwrap();
        marks.push((off, m));
    }
    marks
}

fn check_markers(path: &Path, marks: &[(u64, [u8; 16])]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    for (off, m) in marks {
        let mut got = [0u8; 16];
        f.read_exact_at(&mut got, *off).unwrap();
        assert_eq!(&got, m, "marker at {off} in {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sparse_100_mib_crosses_the_block_rollover() {
    let curl = require("curl");
    let srv = Server::start(&[]).await;
    let src = srv.root.join("big.img");
    let marks = sparse_with_markers(&src);
    let out = Scratch::new("tftp-out");
    // curl, lock step at 512: 204,801 blocks, three times past 65535.
    let dst = out.0.join("curl.img");
    let o = run(tokio::process::Command::new(&curl)
        .args(["-sS", "--max-time", "110", "--tftp-blksize", "512", "-o"])
        .arg(&dst)
        .arg(srv.url("big.img")))
    .await;
    assert!(o.status.success(), "{}", text(&o));
    check_markers(&dst, &marks);
    same_files(&src, &dst);
    std::fs::remove_file(&dst).unwrap();
    // Ours, windowed at 512 (and at 1468: rollover at 93 MiB).
    for blk in ["512", "1468"] {
        let dst = out.0.join(format!("ours-{blk}.img"));
        let o = run(common::ironrack()
            .args([
                "tftp",
                "get",
                &srv.addr.to_string(),
                "big.img",
                "--windowsize",
                "16",
                "--blksize",
                blk,
                "-o",
            ])
            .arg(&dst))
        .await;
        assert!(o.status.success(), "{}", text(&o));
        check_markers(&dst, &marks);
        same_files(&src, &dst);
        std::fs::remove_file(&dst).unwrap();
    }
}

// ---- refusals ----

#[tokio::test(flavor = "multi_thread")]
async fn traversal_symlinks_and_writes_are_refused() {
    let curl = require("curl");
    let srv = Server::start(&[]).await;
    let good = random(100_000, 6);
    srv.put("good.bin", &good);
    std::os::unix::fs::symlink("/etc/passwd", srv.root.join("escape")).unwrap();
    std::os::unix::fs::symlink("/etc", srv.root.join("etcdir")).unwrap();
    // A symlink inside the root is fine.
    std::os::unix::fs::symlink("good.bin", srv.root.join("alias.bin")).unwrap();

    for (name, want) in [
        ("../../etc/passwd", 2),
        ("..\\..\\etc\\passwd", 2),
        ("pxelinux.cfg/../../../etc/shadow", 2),
        ("escape", 2),
        ("etcdir/passwd", 2),
        // Absolute paths are read under the root: not there.
        ("/etc/passwd", 1),
        ("missing.bin", 1),
    ] {
        let (code, msg) = error_code_for(srv.addr, &rrq(name, &[("tsize", "0")])).await;
        assert_eq!(code, want, "{name}: {msg}");
        // One log line naming the peer and the file.
        let needle = format!("file={}", name.escape_debug());
        srv.wait_log(name, |l| {
            l.contains(&needle) && l.contains("peer=127.0.0.1:")
        })
        .await;
    }
    // Percent-encoding means nothing in TFTP: read literally, not found.
    // Overlong names are refused before any lookup (1024 bytes at most),
    // even when they would normalise to a file that exists; a name that
    // fills the whole datagram with no terminator is malformed (4).
    let long_dots = format!("{}good.bin", "./".repeat(600));
    let long_up = format!("{}etc/passwd", "../".repeat(400));
    let long_enc = format!("{}etc/passwd", "%2e%2e%2f".repeat(200));
    for (name, want) in [
        ("%2e%2e/%2e%2e/etc/passwd", 1),
        ("..%2f..%2fetc%2fpasswd", 1),
        (long_dots.as_str(), 2),
        (long_up.as_str(), 2),
        (long_enc.as_str(), 2),
    ] {
        let (code, msg) = error_code_for(srv.addr, &rrq(name, &[])).await;
        assert_eq!(code, want, "{} bytes {:?}: {msg}", name.len(), &name[..40]);
    }
    let mut unterminated = vec![0, 1];
    unterminated.extend(std::iter::repeat_n(b'a', 1400));
    let (code, msg) = error_code_for(srv.addr, &unterminated).await;
    assert_eq!(code, 4, "{msg}");
    // curl decodes the URL's percent-encoding itself: the server gets a
    // plain traversal, and refuses it.
    for url in [
        srv.url("%2e%2e/%2e%2e/etc/passwd"),
        srv.url("..%2f..%2f..%2fetc%2fpasswd"),
        srv.url(&format!("{}good.bin", "%2e/".repeat(600))),
    ] {
        let o = run(tokio::process::Command::new(&curl)
            .args(["-sS", "--path-as-is", "--max-time", "20", "-o", "-"])
            .arg(&url))
        .await;
        assert!(!o.status.success(), "{url}: {}", text(&o));
        assert!(o.stdout.is_empty(), "{url}: data came back: {}", text(&o));
    }
    // Write requests: raw, and from curl.
    let mut wrq = rrq("upload.bin", &[]);
    wrq[1] = 2;
    assert_eq!(error_code_for(srv.addr, &wrq).await.0, 2);
    let out = Scratch::new("tftp-out");
    let local = out.file("upload.bin", "data");
    let o = run(tokio::process::Command::new(&curl)
        .args(["-sS", "--max-time", "20", "-T"])
        .arg(&local)
        .arg(srv.url("upload.bin")))
    .await;
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!srv.root.join("upload.bin").exists());
    let log = srv.log();
    assert!(log.contains("write request refused"), "{log}");
    assert!(
        !log.contains("root:x:0"),
        "file content leaked into the log"
    );
    // Still serving, through the inside symlink too.
    let opts = ClientOptions::default();
    assert_eq!(
        client::get(srv.addr, "good.bin", &opts).await.unwrap(),
        good
    );
    assert_eq!(
        client::get(srv.addr, "alias.bin", &opts).await.unwrap(),
        good
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_server_answers_error_0_then_recovers() {
    let srv = Server::start(&["--max-transfers", "1"]).await;
    let data = random(50_000, 7);
    srv.put("f.bin", &data);
    // Hold the only slot: a transfer that waits for our ACK.
    let a = raw_socket().await;
    a.send_to(&rrq("f.bin", &[]), srv.addr).await.unwrap();
    let first = recv(&a).await;
    assert_eq!(opcode(&first.0), 3);
    let (code, msg) = error_code_for(srv.addr, &rrq("f.bin", &[])).await;
    assert_eq!((code, msg.as_str()), (0, "server busy"));
    // Finish the first; the slot frees up.
    let got = raw_fetch_from(&a, first, 512, NoHook).await;
    assert_eq!(got, data);
    srv.wait_log("the first transfer", |l| l.contains("tftp: sent"))
        .await;
    assert_eq!(
        client::get(srv.addr, "f.bin", &ClientOptions::default())
            .await
            .unwrap(),
        data
    );
}

// ---- robustness ----

fn garbage() -> Vec<Vec<u8>> {
    let mut g = vec![
        vec![],
        vec![0],
        vec![0, 1],
        b"\x00\x01no-nul-anywhere".to_vec(),
        b"\x00\x01f.bin\x00octet".to_vec(),
        b"\x00\x01f.bin\x00octet\x00blksize".to_vec(),
        b"\x00\x01f.bin\x00octet\x00blksize\x00".to_vec(),
        b"\x00\x01f.bin\x00bogus-mode\x00".to_vec(),
        b"\x00\x09whatever".to_vec(),
        b"\x00\x03\x00\x01data to the wrong place".to_vec(),
        b"\x00\x04\x00\x07".to_vec(),
        b"\x00\x06tsize\x00".to_vec(),
        b"\xff\xff\xff\xff\xff".to_vec(),
    ];
    let mut huge = random(65_000, 8);
    huge[0] = 0;
    huge[1] = 1;
    g.push(huge);
    for (i, len) in [1usize, 3, 17, 600, 1500, 9000].iter().enumerate() {
        g.push(random(*len, 100 + i as u64));
    }
    g
}

struct Garbage {
    at: u16,
    listen: SocketAddr,
}

impl AsyncHook for Garbage {
    async fn after(&mut self, block: u16, tid: SocketAddr) {
        if block != self.at {
            return;
        }
        // From a stranger to the transfer's port, and to the listening port.
        let stranger = raw_socket().await;
        for g in garbage() {
            let _ = stranger.send_to(&g, tid).await;
            let _ = stranger.send_to(&g, self.listen).await;
        }
        // A stranger's well-formed ACK far ahead must not move the window.
        let _ = stranger.send_to(&ack(block.wrapping_add(5)), tid).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_does_not_disturb_transfers() {
    let curl = require("curl");
    let srv = Server::start(&[]).await;
    let data = random(2_000_000 + 3, 9);
    srv.put("f.bin", &data);

    // A malformed request on the listening port gets ERROR 4.
    for bad in [
        &b"\x00\x01no-nul-anywhere"[..],
        b"\x00\x01f.bin\x00bogus-mode\x00",
    ] {
        let (code, _) = error_code_for(srv.addr, bad).await;
        assert_eq!(code, 4, "{bad:?}");
    }

    // A flood of garbage at the listening port while curl fetches.
    let flood_to = srv.addr;
    let flood = tokio::spawn(async move {
        let s = raw_socket().await;
        for _ in 0..20 {
            for g in garbage() {
                let _ = s.send_to(&g, flood_to).await;
            }
            tokio::task::yield_now().await;
        }
    });
    let out = Scratch::new("tftp-out");
    let dst = out.0.join("curl.bin");
    let o = run(tokio::process::Command::new(&curl)
        .args(["-sS", "--max-time", "60", "--tftp-blksize", "1468", "-o"])
        .arg(&dst)
        .arg(srv.url("f.bin")))
    .await;
    flood.await.unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(sha_file(&dst), sha(&data));

    // Garbage at a live transfer's own port, mid-transfer.
    let s = raw_socket().await;
    s.send_to(&rrq("f.bin", &[("blksize", "512")]), srv.addr)
        .await
        .unwrap();
    let first = recv(&s).await;
    let got = raw_fetch_from(
        &s,
        first,
        512,
        Garbage {
            at: 100,
            listen: srv.addr,
        },
    )
    .await;
    assert_eq!(sha(&got), sha(&data));

    // Still serving, and alive.
    assert_eq!(
        client::get(srv.addr, "f.bin", &ClientOptions::default())
            .await
            .unwrap(),
        data
    );
    let log = srv.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn uefi_size_probe_then_fetch() {
    let srv = Server::start(&[]).await;
    let data = random(300_000 + 11, 10);
    srv.put("shimx64.efi", &data);
    let size = data.len().to_string();
    // Twice: the second RRQ the same as the first (the hardest case for
    // duplicate detection), then a different one (as EDK2 sends).
    for (round, second) in [
        rrq("shimx64.efi", &[("tsize", "0"), ("blksize", "1468")]),
        rrq("shimx64.efi", &[("blksize", "1468")]),
    ]
    .into_iter()
    .enumerate()
    {
        let s = raw_socket().await;
        s.send_to(
            &rrq("shimx64.efi", &[("tsize", "0"), ("blksize", "1468")]),
            srv.addr,
        )
        .await
        .unwrap();
        let (oack, tid) = recv(&s).await;
        assert_eq!(opcode(&oack), 6);
        let text_oack = String::from_utf8_lossy(&oack[2..]).to_string();
        assert!(
            text_oack.contains(&format!("tsize\0{size}\0")),
            "{text_oack:?}"
        );
        // Abort after the OACK, then ask again at once from the same port.
        s.send_to(b"\x00\x05\x00\x08User aborted the transfer\x00", tid)
            .await
            .unwrap();
        s.send_to(&second, srv.addr).await.unwrap();
        let first = recv(&s).await;
        assert_eq!(opcode(&first.0), 6, "round {round}: {:?}", first.0);
        let got = raw_fetch_from(&s, first, 1468, NoHook).await;
        assert_eq!(got, data, "round {round}");
    }
    srv.wait_log("two complete transfers", |_| {
        srv.log().matches("tftp: sent").count() >= 2
    })
    .await;
    let log = srv.log();
    let probes: Vec<&str> = log.lines().filter(|l| l.contains("size probe")).collect();
    assert_eq!(probes.len(), 2, "{log}");
    assert!(probes.iter().all(|l| l.contains("DEBUG")), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains(" WARN ") || l.contains("ERROR")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retransmitted_request_starts_one_transfer() {
    let srv = Server::start(&[]).await;
    let data = random(100_000, 12);
    srv.put("f.bin", &data);
    let s = raw_socket().await;
    let req = rrq("f.bin", &[("tsize", "0")]);
    s.send_to(&req, srv.addr).await.unwrap();
    let first = recv(&s).await;
    assert_eq!(opcode(&first.0), 6);
    // The client did not see the OACK in time and asks again.
    s.send_to(&req, srv.addr).await.unwrap();
    srv.wait_log("the ignored duplicate", |l| {
        l.contains("retransmitted request ignored")
    })
    .await;
    let got = raw_fetch_from(&s, first, 512, NoHook).await;
    assert_eq!(got, data);
    srv.wait_log("the transfer", |l| l.contains("tftp: sent"))
        .await;
    let log = srv.log();
    assert_eq!(log.matches("transfer starts").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_client_is_given_up_after_retries() {
    let srv = Server::start(&["--timeout", "0.2", "--max-retries", "2"]).await;
    srv.put("f.bin", &random(10_000, 13));
    let s = raw_socket().await;
    s.send_to(&rrq("f.bin", &[]), srv.addr).await.unwrap();
    // DATA 1, then the same block twice more, then nothing.
    let (p, tid) = recv(&s).await;
    assert_eq!((opcode(&p), block_of(&p)), (3, 1));
    for _ in 0..2 {
        let p = recv_from_tid(&s, tid).await;
        assert_eq!((opcode(&p), block_of(&p)), (3, 1));
    }
    let line = srv
        .wait_log("giving up", |l| l.contains("client stopped answering"))
        .await;
    assert!(line.contains(" INFO "), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_acks_send_nothing_more() {
    // A long timeout, so no retransmission happens during the test.
    let srv = Server::start(&["--timeout", "30"]).await;
    srv.put("f.bin", &random(10_000, 13));
    // Duplicate ACKs never trigger extra DATA (Sorcerer's Apprentice).
    let s = raw_socket().await;
    s.send_to(&rrq("f.bin", &[]), srv.addr).await.unwrap();
    let (p, tid) = recv(&s).await;
    assert_eq!(block_of(&p), 1);
    for _ in 0..3 {
        s.send_to(&ack(1), tid).await.unwrap();
    }
    let p = recv_from_tid(&s, tid).await;
    assert_eq!(block_of(&p), 2);
    // Block 3 arrives next, not another block 2.
    s.send_to(&ack(2), tid).await.unwrap();
    let p = recv_from_tid(&s, tid).await;
    assert_eq!(block_of(&p), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_server_cleanly() {
    let mut srv = Server::start(&[]).await;
    srv.put("f.bin", b"x");
    assert_eq!(
        client::get(srv.addr, "f.bin", &ClientOptions::default())
            .await
            .unwrap(),
        b"x"
    );
    let mut child = srv.child.take().unwrap();
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    for _ in 0..500 {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "exit {st}:\n{}", srv.log());
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    panic!("still running 10 s after SIGTERM:\n{}", srv.log());
}
