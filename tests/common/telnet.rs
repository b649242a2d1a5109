//! The host end of ipmi_sim's serial port: ipmi_sim's `sol "telnet:HOST:PORT"`
//! connects out to a TCP listener of the test and speaks telnet on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const TELNET_IAC: u8 = 255;
pub const TELNET_BREAK: u8 = 243;

/// One telnet connection from ipmi_sim. Dropping it closes the connection
/// (ipmi_sim connects again about every 10 s).
pub struct TelnetHost {
    write: tokio::net::tcp::OwnedWriteHalf,
    /// Characters the console typed, telnet commands removed.
    pub typed: Arc<Mutex<Vec<u8>>>,
    pub breaks: Arc<Mutex<u32>>,
    reader: tokio::task::JoinHandle<()>,
}

impl TelnetHost {
    /// Accept ipmi_sim's connection (within 30 s) and check its opening
    /// negotiation.
    pub async fn accept(listener: &TcpListener) -> TelnetHost {
        Self::accept_within(listener, Duration::from_secs(30)).await
    }

    pub async fn accept_within(listener: &TcpListener, within: Duration) -> TelnetHost {
        let (mut s, _) = tokio::time::timeout(within, listener.accept())
            .await
            .unwrap_or_else(|_| panic!("ipmi_sim did not connect to the SOL port in {within:?}"))
            .unwrap();
        let mut hello = [0u8; 12];
        s.read_exact(&mut hello).await.unwrap();
        // IAC DO BINARY, IAC WILL BINARY, IAC DONT ECHO, IAC WONT ECHO.
        assert_eq!(
            hello,
            [255, 253, 0, 255, 251, 0, 255, 254, 1, 255, 252, 1],
            "ipmi_sim's telnet negotiation"
        );
        let (mut read, write) = s.into_split();
        let typed = Arc::new(Mutex::new(Vec::new()));
        let breaks = Arc::new(Mutex::new(0));
        let (t, b) = (typed.clone(), breaks.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut iac = false;
            let mut skip = 0;
            while let Ok(n) = read.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                for &c in &buf[..n] {
                    if skip > 0 {
                        skip -= 1;
                    } else if iac {
                        iac = false;
                        match c {
                            TELNET_IAC => t.lock().unwrap().push(TELNET_IAC),
                            TELNET_BREAK => *b.lock().unwrap() += 1,
                            251..=254 => skip = 1,
                            _ => {}
                        }
                    } else if c == TELNET_IAC {
                        iac = true;
                    } else {
                        t.lock().unwrap().push(c);
                    }
                }
            }
        });
        TelnetHost {
            write,
            typed,
            breaks,
            reader,
        }
    }

    /// Host output (no 0xff in it, so nothing to escape).
    pub async fn print(&mut self, s: &[u8]) {
        assert!(!s.contains(&TELNET_IAC));
        self.write.write_all(s).await.unwrap();
    }

    /// What the host read so far.
    pub fn typed(&self) -> Vec<u8> {
        self.typed.lock().unwrap().clone()
    }

    /// Wait (up to 15 s) until the host has read exactly `want`.
    pub async fn wait_typed(&self, want: &[u8]) {
        for _ in 0..300 {
            if self.typed.lock().unwrap().as_slice() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the host read {:?}, expected {:?}",
            String::from_utf8_lossy(&self.typed.lock().unwrap()),
            String::from_utf8_lossy(want)
        );
    }
}

impl Drop for TelnetHost {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
