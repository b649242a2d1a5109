use super::*;

struct Rig {
    bridge: Bridge,
    host_tx: mpsc::Sender<HostEvent>,
    host_rx: mpsc::Receiver<ToHost>,
}

async fn rig(tweak: impl FnOnce(&mut BridgeConfig)) -> Rig {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (host_tx, from_host) = mpsc::channel(64);
    let (to_host, host_rx) = mpsc::channel(64);
    let mut cfg = BridgeConfig {
        name: "test-node".into(),
        ..BridgeConfig::default()
    };
    tweak(&mut cfg);
    let bridge = Bridge::start(listener, LineEnds { from_host, to_host }, cfg).unwrap();
    Rig {
        bridge,
        host_tx,
        host_rx,
    }
}

impl Rig {
    async fn connect(&self) -> TcpStream {
        let want = self.bridge.stats().viewers + 1;
        let s = TcpStream::connect(self.bridge.local_addr()).await.unwrap();
        self.wait(|st| st.viewers >= want).await;
        s
    }

    async fn wait(&self, f: impl Fn(&BridgeStats) -> bool) {
        for _ in 0..500 {
            if f(&self.bridge.stats()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "bridge never reached the state; now {:?}",
            self.bridge.stats()
        );
    }

    async fn host(&self, text: &str) {
        self.host_tx
            .send(HostEvent::Data(text.as_bytes().to_vec()))
            .await
            .unwrap();
    }
}

/// Read until `needle` shows up; returns everything read.
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&got).contains(needle) {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(r.is_ok(), "timed out waiting for {needle:?}; got {text:?}");
    text
}

#[tokio::test]
async fn every_viewer_sees_output_and_only_the_writer_types() {
    let mut rig = rig(|_| {}).await;
    let mut a = rig.connect().await;
    let mut b = rig.connect().await;
    assert!(read_until(&mut a, "write access")
        .await
        .contains("you have write access"));
    assert!(read_until(&mut b, "read-only").await.contains("Ctrl-E c f"));
    rig.host("login: ").await;
    assert!(read_until(&mut a, "login: ").await.contains("login: "));
    assert!(read_until(&mut b, "login: ").await.contains("login: "));

    a.write_all(b"root\r").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rig.host_rx.recv())
        .await
        .unwrap();
    assert_eq!(got, Some(ToHost::Data(b"root\r".to_vec())));

    // The read-only viewer's keys go nowhere, and it is told so.
    b.write_all(b"rm -rf /\r").await.unwrap();
    assert!(read_until(&mut b, "not forwarded")
        .await
        .contains("read-only"));
    // Take write access; the old writer is told.
    b.write_all(b"\x05cf").await.unwrap();
    assert!(read_until(&mut b, "you have write access")
        .await
        .contains("access"));
    assert!(read_until(&mut a, "read-only now").await.contains("access"));
    assert_eq!(rig.bridge.stats().writer, Some(2));
    b.write_all(b"ok\r").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rig.host_rx.recv())
        .await
        .unwrap();
    assert_eq!(
        got,
        Some(ToHost::Data(b"ok\r".to_vec())),
        "the rm was never forwarded"
    );
    b.write_all(b"\x05cl0").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rig.host_rx.recv())
        .await
        .unwrap();
    assert_eq!(got, Some(ToHost::Break));

    // The writer leaves: write access passes to the remaining viewer.
    drop(b);
    rig.wait(|s| s.viewers == 1 && s.writer == Some(1)).await;
    assert!(read_until(&mut a, "you have write access")
        .await
        .contains("access"));
    rig.bridge.stop().await;
}

#[tokio::test]
async fn new_viewers_get_the_replay_then_the_live_stream() {
    let rig = rig(|c| c.replay_bytes = 10).await;
    rig.host("0123456789ABCDEF").await;
    // The first viewer's arrival races the output; wait until it is in.
    rig.wait(|s| s.host_bytes == 16).await;
    let mut v = rig.connect().await;
    rig.host("-live").await;
    let got = read_until(&mut v, "-live").await;
    assert!(got.starts_with("6789ABCDEF"), "{got:?}");
    assert!(!got.contains('5'), "{got:?}");
    rig.bridge.stop().await;
}

#[tokio::test]
async fn a_viewer_that_does_not_read_is_dropped_and_others_get_everything() {
    let rig = rig(|c| {
        c.viewer_queue = 8;
        c.write_timeout = Duration::from_millis(500);
    })
    .await;
    let stalled = rig.connect().await; // never reads
    let mut good = rig.connect().await;
    let chunk = "x".repeat(16 * 1024);
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p2 = progress.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let mut seen: Vec<u8> = Vec::new();
        while seen.len() < 400 * 16 * 1024 {
            let n = good.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "the good viewer was cut off after {} bytes",
                seen.len()
            );
            seen.extend(
                buf[..n]
                    .iter()
                    .copied()
                    .filter(|b| *b == b'x' || *b == b'#'),
            );
            p2.store(seen.len(), std::sync::atomic::Ordering::SeqCst);
        }
        seen
    });
    for i in 0..400usize {
        let mut c = chunk.clone();
        if i == 399 {
            c.replace_range(0..1, "#");
        }
        rig.host(&c).await;
        // The good viewer keeps up (as viewers of a serial line do); the
        // stalled one never reads at all.
        while progress.load(std::sync::atomic::Ordering::SeqCst) + 4 * 16 * 1024
            < (i + 1) * 16 * 1024
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.len(), 400 * 16 * 1024);
    assert_eq!(seen.last(), Some(&b'x'));
    assert_eq!(seen[399 * 16 * 1024], b'#');
    // The stalled viewer was dropped as lagging; the good one (closed by
    // its reader when done) was not.
    rig.wait(|s| s.dropped_viewers == 1).await;
    drop(stalled);
    rig.bridge.stop().await;
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let rig = rig(|c| c.token = Some(Arc::new(Zeroizing::new("s3cret".into())))).await;
    let mut bad = TcpStream::connect(rig.bridge.local_addr()).await.unwrap();
    bad.write_all(b"guess\n").await.unwrap();
    assert!(read_until(&mut bad, "denied")
        .await
        .contains("access denied"));
    assert_eq!(rig.bridge.stats().viewers, 0);
    let mut good = TcpStream::connect(rig.bridge.local_addr()).await.unwrap();
    good.write_all(b"s3cret\r\n").await.unwrap();
    rig.wait(|s| s.viewers == 1).await;
    rig.host("hello").await;
    assert!(read_until(&mut good, "hello").await.contains("hello"));
    rig.bridge.stop().await;
}

#[tokio::test]
async fn output_is_logged_and_stop_tells_viewers() {
    let dir = std::env::temp_dir().join(format!("ironrack-bridge-{}", rand::random::<u32>()));
    let d2 = dir.clone();
    let rig = rig(move |c| {
        c.log = Some(LogConfig {
            dir: d2,
            max_bytes: 1 << 20,
            keep: 2,
        })
    })
    .await;
    let mut v = rig.connect().await;
    rig.host("first half\n").await;
    rig.host_tx
        .send(HostEvent::Notice("line lost; reconnecting".into()))
        .await
        .unwrap();
    rig.host("second half\n").await;
    read_until(&mut v, "second half").await;
    rig.bridge.stop().await;
    assert!(read_until(&mut v, "console disabled")
        .await
        .contains("disabled"));
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(text.starts_with("first half\n"), "{text:?}");
    assert!(text.contains("line lost; reconnecting") && text.ends_with("second half\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
