//! Serial-over-LAN (src/ipmi/sol.rs): the payload codec, and a console and
//! a BMC `SolEndpoint` talking through a lossy link the fuzzer drives (loss,
//! immediate duplicates, time, operations, reads) plus raw packets injected
//! into either end.
//!
//! Properties: decode -> encode -> decode is stable and the header is 4
//! bytes; no panic on any packet; without injected packets, what one end
//! receives is a subsequence of what the other wrote (nothing duplicated,
//! reordered or invented), and every character written is accounted for at
//! the end: delivered, reported lost or discarded, or still pending.
//!
//! Input: framed records; the first configures the endpoints.
#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ironrack::ipmi::sol::{Role, SolConfig, SolEndpoint, SolEvent, SolOperation, SolPacket};
use ironrack_fuzz::{records, Bytes};
use libfuzzer_sys::fuzz_target;

/// One end with what was written to it and what it received.
struct End {
    ep: SolEndpoint,
    written: Vec<u8>,
    received: Vec<u8>,
    /// Characters reported lost (`Lost.unsent`) or discarded.
    dropped: usize,
    /// The queue of packets towards this end.
    inbox: VecDeque<Vec<u8>>,
}

impl End {
    fn new(role: Role, b: &mut Bytes<'_>) -> End {
        let mut c = SolConfig::new(role);
        c.max_data = 1 + b.u8() as usize % 255;
        c.retries = u32::from(b.u8() % 8);
        c.retransmit = Duration::from_millis(100 + u64::from(b.u8()) * 10);
        c.send_capacity = 1 + b.u16() as usize;
        c.recv_capacity = 1 + b.u16() as usize;
        End {
            ep: SolEndpoint::new(c),
            written: Vec::new(),
            received: Vec::new(),
            dropped: 0,
            inbox: VecDeque::new(),
        }
    }

    fn events(&mut self) {
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                SolEvent::Data(d) => {
                    assert!(!d.is_empty(), "empty data event");
                    self.received.extend_from_slice(&d);
                }
                SolEvent::Lost(l) => {
                    assert!(!l.reason.is_empty());
                    self.dropped += l.unsent.len();
                }
                SolEvent::Discarded(n) => self.dropped += n,
                _ => {}
            }
        }
    }
}

fn is_subsequence(small: &[u8], big: &[u8]) -> bool {
    let mut it = big.iter();
    small.iter().all(|c| it.any(|b| b == c))
}

fn codec(bytes: &[u8]) {
    match SolPacket::decode(bytes) {
        Ok(p) => {
            let e = p.encode();
            assert_eq!(e.len(), 4 + p.data.len());
            assert_eq!(SolPacket::decode(&e), Ok(p));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    codec(data);
    let mut recs = records(data);
    let cfg = recs.next().map(|r| r.data).unwrap_or_default();
    let mut b = Bytes(cfg);
    let mut console = End::new(Role::Console, &mut b);
    let mut bmc = End::new(Role::Bmc, &mut b);
    let mut now = Instant::now();
    let mut tainted = false;
    let mut flushed = false;

    // Move what each end has to send into the other's inbox.
    fn transmit(from: &mut End, to: &mut End, now: Instant) {
        let mut n = 0;
        while let Some(p) = from.ep.poll_transmit(now) {
            codec(&p);
            to.inbox.push_back(p);
            n += 1;
            assert!(n < 10_000, "endpoint keeps transmitting");
        }
    }
    fn deliver(to: &mut End, now: Instant, times: usize) {
        if let Some(p) = to.inbox.pop_front() {
            for _ in 0..times {
                // A closed endpoint refuses packets; that is fine.
                let _ = to.ep.handle_packet(now, &p);
            }
            to.events();
        }
    }

    for (i, r) in recs.enumerate() {
        if i > 300 {
            break;
        }
        let (a, z) = if r.op & 0x80 == 0 {
            (&mut console, &mut bmc)
        } else {
            (&mut bmc, &mut console)
        };
        match r.op & 0x7f {
            0 => {
                if let Ok(n) = a.ep.write(r.data) {
                    assert!(n <= r.data.len());
                    a.written.extend_from_slice(&r.data[..n]);
                }
            }
            1 => transmit(a, z, now),
            2 => deliver(z, now, 1),
            3 => {
                z.inbox.pop_front();
            }
            4 => deliver(z, now, 2),
            5 => {
                now += Duration::from_millis(u64::from(Bytes(r.data).u16()));
                a.ep.handle_timeout(now);
                z.ep.handle_timeout(now);
                a.events();
                z.events();
            }
            6 => {
                tainted = true;
                let _ = a.ep.handle_packet(now, r.data);
                a.events();
            }
            7 => {
                let mut b = Bytes(r.data);
                let o = match b.u8() % 9 {
                    0 => SolOperation::Break,
                    1 => SolOperation::Ring,
                    2 => SolOperation::DeassertCts(b.u8() & 1 != 0),
                    3 => SolOperation::DeassertDcdDsr(b.u8() & 1 != 0),
                    4 => SolOperation::FlushInbound,
                    5 => SolOperation::FlushOutbound,
                    6 => SolOperation::BreakDetected,
                    7 => SolOperation::TransmitOverrun,
                    _ => SolOperation::TransferUnavailable(b.u8() & 1 != 0),
                };
                if matches!(o, SolOperation::FlushInbound | SolOperation::FlushOutbound) {
                    flushed = true;
                }
                match a.ep.send_operation(o) {
                    Ok(()) => {}
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
            }
            _ => {
                let _ = a.ep.poll_timeout();
                a.events();
            }
        }
        if !tainted {
            assert!(
                is_subsequence(&console.received, &bmc.written),
                "console received what the BMC never wrote"
            );
            assert!(
                is_subsequence(&bmc.received, &console.written),
                "BMC received what the console never wrote"
            );
        }
    }

    // Settle over a perfect link, then account for every character.
    for _ in 0..500 {
        transmit(&mut console, &mut bmc, now);
        transmit(&mut bmc, &mut console, now);
        while !bmc.inbox.is_empty() {
            deliver(&mut bmc, now, 1);
        }
        while !console.inbox.is_empty() {
            deliver(&mut console, now, 1);
        }
        let idle = console.ep.is_idle() && bmc.ep.is_idle()
            || console.ep.is_closed()
            || bmc.ep.is_closed();
        match [console.ep.poll_timeout(), bmc.ep.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        {
            Some(t) if !idle => {
                now = now.max(t);
                console.ep.handle_timeout(now);
                bmc.ep.handle_timeout(now);
                console.events();
                bmc.events();
            }
            _ => break,
        }
    }
    if !tainted && !flushed {
        for (from, to) in [(&console, &bmc), (&bmc, &console)] {
            let accounted = to.received.len() + from.dropped + from.ep.pending();
            assert!(
                accounted >= from.written.len(),
                "characters vanished: wrote {}, delivered {}, dropped {}, pending {}",
                from.written.len(),
                to.received.len(),
                from.dropped,
                from.ep.pending()
            );
        }
    }
});
