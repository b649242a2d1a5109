//! The lines behind a bridge: IPMI serial-over-LAN on the node's session,
//! or a local serial port. Each runs as a task holding the far ends of the
//! bridge's channels, and keeps the line up while the console is enabled:
//! a lost SOL link is re-activated (with `force`), a serial port that goes
//! away is reopened, both with backoff, and viewers are told.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::bridge::{HostEvent, LineEnds, ToHost};
use crate::ipmi::sol::SolEvent;
use crate::ipmi::{IpmiClient, SolOptions};

/// First and longest wait between attempts to bring a line back.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

struct Far {
    host_tx: mpsc::Sender<HostEvent>,
    to_host: mpsc::Receiver<ToHost>,
}

fn channels() -> (LineEnds, Far) {
    let (host_tx, from_host) = mpsc::channel(256);
    let (to_host_tx, to_host) = mpsc::channel(256);
    (
        LineEnds {
            from_host,
            to_host: to_host_tx,
        },
        Far { host_tx, to_host },
    )
}

impl Far {
    async fn notice(&self, text: String) -> bool {
        self.host_tx.send(HostEvent::Notice(text)).await.is_ok()
    }

    /// Wait out a backoff; false when the bridge went away meanwhile.
    /// Keystrokes typed while the line is down go nowhere.
    async fn backoff(&mut self, wait: Duration) -> bool {
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return !self.host_tx.is_closed(),
                m = self.to_host.recv() => if m.is_none() { return false },
            }
        }
    }
}

fn next(b: Duration) -> Duration {
    (b * 2).min(BACKOFF_MAX)
}

/// Serial-over-LAN on `client`'s session.
pub fn sol(
    client: IpmiClient,
    opts: SolOptions,
    name: String,
) -> (LineEnds, tokio::task::JoinHandle<()>) {
    let (ends, far) = channels();
    let task = tokio::spawn(run_sol(client, opts, name, far));
    (ends, task)
}

async fn run_sol(client: IpmiClient, opts: SolOptions, name: String, mut far: Far) {
    let mut wait = BACKOFF_MIN;
    let mut last_error: Option<String> = None;
    let mut was_up = false;
    loop {
        match client.sol_activate(opts.clone()).await {
            Ok(mut con) => {
                if was_up || last_error.is_some() {
                    tracing::info!(node = %name, "SOL re-activated");
                    if !far.notice("serial-over-LAN re-activated".into()).await {
                        let _ = con.deactivate().await;
                        return;
                    }
                } else {
                    tracing::info!(node = %name, "SOL activated");
                }
                was_up = true;
                last_error = None;
                wait = BACKOFF_MIN;
                let why = loop {
                    tokio::select! {
                        ev = con.recv() => match ev {
                            Some(SolEvent::Data(d)) => {
                                if far.host_tx.send(HostEvent::Data(d)).await.is_err() {
                                    let _ = con.deactivate().await;
                                    return;
                                }
                            }
                            Some(SolEvent::Deactivated) => break "the BMC deactivated serial-over-LAN".to_string(),
                            Some(SolEvent::Lost(l)) => break format!("serial-over-LAN lost ({l:?})"),
                            Some(SolEvent::TransmitOverrun) => {
                                let _ = far.notice("the BMC dropped host output (transmit overrun)".into()).await;
                            }
                            Some(_) => {}
                            None => break "serial-over-LAN ended".to_string(),
                        },
                        m = far.to_host.recv() => match m {
                            Some(ToHost::Data(b)) => {
                                if let Err(e) = con.send(&b).await {
                                    break format!("serial-over-LAN send failed: {e}");
                                }
                            }
                            Some(ToHost::Break) => {
                                if let Err(e) = con.send_break().await {
                                    break format!("serial-over-LAN break failed: {e}");
                                }
                            }
                            None => {
                                // The console was disabled.
                                let _ = con.deactivate().await;
                                return;
                            }
                        },
                    }
                };
                tracing::warn!(node = %name, "{why}; re-activating");
                if !far.notice(format!("{why}; re-activating")).await {
                    return;
                }
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(node = %name, "SOL activation failed: {text}");
                    if !far
                        .notice(format!(
                            "serial-over-LAN activation failed: {text}; retrying"
                        ))
                        .await
                    {
                        return;
                    }
                    last_error = Some(text);
                }
            }
        }
        if !far.backoff(wait).await {
            return;
        }
        wait = next(wait);
    }
}

/// A local serial port (or terminal-server tty), reopened when it fails.
pub fn serial(device: PathBuf, baud: u32, name: String) -> (LineEnds, tokio::task::JoinHandle<()>) {
    let (ends, far) = channels();
    let task = tokio::spawn(run_serial(device, baud, name, far));
    (ends, task)
}

async fn run_serial(device: PathBuf, baud: u32, name: String, mut far: Far) {
    use tokio_serial::SerialPortBuilderExt;
    let mut wait = BACKOFF_MIN;
    let mut last_error: Option<String> = None;
    let mut was_up = false;
    loop {
        let opened = tokio_serial::new(device.to_string_lossy(), baud).open_native_async();
        match opened {
            Ok(mut port) => {
                #[cfg(unix)]
                let _ = port.set_exclusive(false);
                if was_up || last_error.is_some() {
                    let _ = far
                        .notice(format!("serial line {} reopened", device.display()))
                        .await;
                }
                tracing::info!(node = %name, device = %device.display(), baud, "serial console open");
                was_up = true;
                last_error = None;
                wait = BACKOFF_MIN;
                let why = match pump(&mut port, &mut far, |p, on| {
                    use tokio_serial::SerialPort;
                    let _ = if on { p.set_break() } else { p.clear_break() };
                })
                .await
                {
                    Ok(()) => return,
                    Err(e) => e,
                };
                tracing::warn!(node = %name, device = %device.display(), "serial line lost: {why}");
                if !far
                    .notice(format!("serial line lost ({why}); reopening"))
                    .await
                {
                    return;
                }
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(node = %name, device = %device.display(), "cannot open serial line: {text}");
                    if !far
                        .notice(format!(
                            "cannot open serial line {}: {text}; retrying",
                            device.display()
                        ))
                        .await
                    {
                        return;
                    }
                    last_error = Some(text);
                }
            }
        }
        if !far.backoff(wait).await {
            return;
        }
        wait = next(wait);
    }
}

/// Move bytes between a stream and the bridge. `Ok` when the bridge went
/// away (the console was disabled); `Err` when the stream failed. `brk`
/// sets (true) and clears (false) a break condition.
async fn pump<S>(s: &mut S, far: &mut Far, mut brk: impl FnMut(&mut S, bool)) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) => return Err("end of file".into()),
                Ok(n) => {
                    if far.host_tx.send(HostEvent::Data(buf[..n].to_vec())).await.is_err() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e.to_string()),
            },
            m = far.to_host.recv() => match m {
                Some(ToHost::Data(b)) => {
                    match tokio::time::timeout(Duration::from_secs(10), s.write_all(&b)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(e.to_string()),
                        Err(_) => return Err("write stalled for 10 s".into()),
                    }
                }
                Some(ToHost::Break) => {
                    // A break is the line held low for a while (250 ms).
                    brk(s, true);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    brk(s, false);
                }
                None => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::bridge::{Bridge, BridgeConfig};
    use tokio::net::{TcpListener, TcpStream};

    async fn read_until(s: &mut (impl AsyncRead + Unpin), needle: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let r = tokio::time::timeout(Duration::from_secs(10), async {
            while !got.windows(needle.len()).any(|w| w == needle) {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before {needle:?}");
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(
            r.is_ok(),
            "timed out waiting for {:?}; got {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&got)
        );
        got
    }

    /// A pty pair stands in for a serial cable: the "host" holds the
    /// master; the console opens the slave by its path.
    #[tokio::test]
    async fn a_pty_serial_line_feeds_the_bridge_both_ways() {
        use tokio_serial::SerialPort;
        let (mut host, slave) = tokio_serial::SerialStream::pair().unwrap();
        let path = PathBuf::from(slave.name().unwrap());
        drop(slave);
        let (ends, task) = serial(path, 115_200, "pty-node".into());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bridge = Bridge::start(listener, ends, BridgeConfig::default()).unwrap();
        let mut viewer = TcpStream::connect(bridge.local_addr()).await.unwrap();
        read_until(&mut viewer, b"write access").await;
        // The port may open a moment after the viewer connects; repeat the
        // banner until it comes through.
        let mut seen = false;
        for _ in 0..50 {
            host.write_all(b"host says hi\r\n").await.unwrap();
            let mut buf = [0u8; 256];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(200), viewer.read(&mut buf)).await
            {
                if buf[..n].windows(12).any(|w| w == b"host says hi") {
                    seen = true;
                    break;
                }
            }
        }
        assert!(seen, "host output never reached the viewer");
        viewer.write_all(b"typed\r").await.unwrap();
        let got = read_until(&mut host, b"typed").await;
        assert!(got.ends_with(b"typed") || got.windows(5).any(|w| w == b"typed"));
        bridge.stop().await;
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
