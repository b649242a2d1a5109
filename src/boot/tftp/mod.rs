//! TFTP (RFC 1350 with options: RFC 2347 negotiation, RFC 2348 `blksize`,
//! RFC 2349 `timeout` and `tsize`, RFC 7440 `windowsize`), read requests only.
//!
//! Sans-IO core, tested with byte vectors and a fake clock:
//! - [`packet`]: the codec; decoding never panics.
//! - [`netascii`]: line-end conversion for `netascii` mode.
//! - [`sender`]: the server side of a transfer: negotiation, OACK, windows,
//!   ACKs across the 16-bit block rollover, retransmission, completion.
//! - [`receiver`]: the client side.
//!
//! Thin tokio layer:
//! - [`udp`]: the socket plumbing (GSO sends, GRO receives, PKTINFO).
//! - [`server`]: the listening socket and one socket per transfer.
//! - [`client`]: fetch a file into any `AsyncWrite` (or count and discard).

pub mod client;
pub mod netascii;
pub mod packet;
pub mod receiver;
pub mod sender;
pub mod server;
pub mod udp;

#[cfg(test)]
mod tests {
    //! The server and client state machines against each other in memory:
    //! a seeded lossy, duplicating network and a fake clock.

    use std::collections::VecDeque;
    use std::time::{Duration, Instant};

    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::packet::{self, Packet};
    use super::receiver::{Receiver, ReceiverConfig};
    use super::sender::{self, Limits, Outcome, Sender, Transmit};

    struct Net {
        rng: StdRng,
        loss: f64,
        dup: f64,
    }

    impl Net {
        /// What arrives of one datagram: nothing, once, or twice.
        fn carry(&mut self, p: Vec<u8>, q: &mut VecDeque<Vec<u8>>) {
            if self.rng.gen_bool(self.loss) {
                return;
            }
            if self.rng.gen_bool(self.dup) {
                q.push_back(p.clone());
            }
            q.push_back(p);
        }
    }

    /// Run one transfer of `data`; returns what the client got and the
    /// server's outcome.
    fn transfer(
        data: &[u8],
        blksize: u16,
        windowsize: u16,
        loss: f64,
        dup: f64,
        seed: u64,
    ) -> (Vec<u8>, Option<Outcome>, bool) {
        let mut now = Instant::now();
        let mut net = Net {
            rng: StdRng::seed_from_u64(seed),
            loss,
            dup,
        };
        let mut rcv = Receiver::new(
            ReceiverConfig {
                blksize: Some(blksize),
                windowsize: Some(windowsize),
                max_retries: 50,
                ..ReceiverConfig::new("f")
            },
            now,
        );
        let limits = Limits {
            max_blksize: 1468,
            max_windowsize: 64,
            timeout: Duration::from_secs(1),
            max_retries: 50,
        };
        let mut snd: Option<Sender> = None;
        let (mut to_srv, mut to_cli) = (VecDeque::new(), VecDeque::new());
        let mut got = Vec::new();
        for _ in 0..10_000_000 {
            while let Some(p) = rcv.poll_transmit() {
                net.carry(p, &mut to_srv);
            }
            if let Some(s) = snd.as_mut() {
                while let Some(t) = s.poll_transmit() {
                    match t {
                        Transmit::Packet(p) => net.carry(p, &mut to_cli),
                        Transmit::Data { first, count } => {
                            for b in first..first + count {
                                let (off, len) = s.block_span(b);
                                let off = off as usize;
                                let mut p = Vec::new();
                                packet::encode_data(
                                    &mut p,
                                    Sender::wire_block(b),
                                    &data[off..off + len],
                                );
                                net.carry(p, &mut to_cli);
                            }
                        }
                    }
                }
            }
            // Done when both ends are (a lost final ACK leaves the server
            // retrying until it gives up), or the client failed.
            let server_done = snd.as_ref().is_some_and(|s| s.is_done());
            match rcv.result() {
                Some(Ok(())) if server_done => break,
                Some(Err(_)) => break,
                _ => {}
            }
            if let Some(p) = to_srv.pop_front() {
                match (snd.as_mut(), packet::decode(&p)) {
                    (None, Ok(Packet::Rrq(r))) => {
                        let n = sender::negotiate(&r.options, data.len() as u64, &limits);
                        snd = Some(Sender::new(n, data.len() as u64, limits.max_retries, now));
                    }
                    (Some(s), Ok(p)) => s.handle_packet(now, &p),
                    _ => {}
                }
                continue;
            }
            if let Some(p) = to_cli.pop_front() {
                if let Some(d) = rcv.handle_datagram(now, &p) {
                    got.extend_from_slice(d);
                }
                continue;
            }
            // Quiet: the clock jumps to the next timer.
            let next = [
                rcv.poll_timeout(),
                snd.as_ref().and_then(|s| s.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) => {
                    now = now.max(t);
                    rcv.handle_timeout(now);
                    if let Some(s) = snd.as_mut() {
                        s.handle_timeout(now);
                    }
                }
                None => break,
            }
        }
        let ok = rcv.result() == Some(&Ok(()));
        (got, snd.and_then(|s| s.outcome().cloned()), ok)
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn clean_network() {
        for (blk, win) in [(512, 1), (1468, 16), (100, 7)] {
            let data = payload(50_000);
            let (got, outcome, ok) = transfer(&data, blk, win, 0.0, 0.0, 1);
            assert!(ok);
            assert_eq!(got, data);
            assert_eq!(outcome, Some(Outcome::Complete));
        }
    }

    #[test]
    fn loss_and_duplicates_in_lock_step_and_windows() {
        for (seed, (blk, win)) in [(512u16, 1u16), (64, 4), (100, 16), (8, 3)]
            .into_iter()
            .enumerate()
        {
            let data = payload(20_000 + seed);
            let (got, _, ok) = transfer(&data, blk, win, 0.1, 0.05, seed as u64);
            assert!(ok, "blksize {blk} windowsize {win}");
            assert_eq!(got, data, "blksize {blk} windowsize {win}");
        }
    }

    #[test]
    fn rollover_under_loss() {
        // 8-byte blocks: 90,000 blocks cross 65535 -> 0.
        let data = payload(8 * 90_000 + 5);
        let (got, _, ok) = transfer(&data, 8, 8, 0.02, 0.02, 7);
        assert!(ok);
        assert_eq!(got.len(), data.len());
        assert!(got == data);
    }
}
