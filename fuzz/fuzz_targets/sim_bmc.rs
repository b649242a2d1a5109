//! The simulated BMC (src/sim/bmc.rs `Bmc::handle`) fed datagrams the fuzzer
//! chooses: raw bytes, commands and payloads wrapped by a real client
//! session (so they pass integrity checks and reach the command handlers
//! and SOL), mutated or replayed client datagrams, host serial output and
//! the passing of time.
//!
//! Properties: no panic; every datagram the BMC sends decodes; the session
//! table never exceeds its limit; the client stays consistent (each command
//! answered exactly once, none after its deadline, only suites it accepts).
//!
//! Input: framed records (see `ironrack_fuzz::records`); the first record
//! configures the client and BMC.
#![no_main]

use std::time::Duration;

use ironrack::ipmi::wire::PayloadType;
use ironrack_fuzz::ipmi::Net;
use ironrack_fuzz::{records, Bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut recs = records(data);
    let cfg = recs.next().map(|r| r.data).unwrap_or_default();
    let mut net = Net::new(cfg);
    for (i, r) in recs.enumerate() {
        if i > 200 {
            break;
        }
        match r.op % 10 {
            // A raw datagram from some console.
            0 => {
                net.to_bmc(r.data);
                // Its answer goes to that console, not to our client.
                net.to_client.clear();
            }
            // A command through the client session.
            1 => {
                let mut b = Bytes(r.data);
                let (netfn, cmd) = (b.u8() & 0x3f, b.u8());
                net.submit(netfn, cmd, b.rest().to_vec());
                net.pump();
            }
            // A payload (SOL or anything) inside the active session.
            2 => {
                let mut b = Bytes(r.data);
                let pt = match b.u8() % 3 {
                    0 => PayloadType::Sol,
                    1 => PayloadType::Ipmi,
                    _ => PayloadType::Rakp3,
                };
                if let Ok(d) = net.client.send_payload(pt, b.rest()) {
                    net.to_bmc(&d);
                    net.pump();
                }
            }
            // Time passes (up to ~65 s).
            3 => {
                let ms = u64::from(Bytes(r.data).u16());
                net.advance(Duration::from_millis(ms), true);
            }
            // The host writes to its serial port.
            4 => {
                net.bmc.host_write(r.data);
                net.pump();
                let _ = net.bmc.host_read();
            }
            // The client's next datagram, with bytes flipped.
            5 => {
                if let Some(mut d) = net.from_client() {
                    let mut b = Bytes(r.data);
                    while !b.0.is_empty() {
                        let at = b.u16() as usize % d.len();
                        d[at] ^= b.u8() | 1;
                    }
                    net.to_bmc(&d);
                    net.to_client.clear();
                }
            }
            // Replay something the client sent before.
            6 => {
                if !net.sent.is_empty() {
                    let k = Bytes(r.data).u8() as usize % net.sent.len();
                    let d = net.sent[k].clone();
                    net.to_bmc(&d);
                    net.pump();
                }
            }
            // The client's datagram truncated or extended.
            7 => {
                if let Some(mut d) = net.from_client() {
                    let mut b = Bytes(r.data);
                    let n = b.u8() as usize;
                    if n < d.len() {
                        d.truncate(n);
                    } else {
                        d.extend_from_slice(b.rest());
                    }
                    net.to_bmc(&d);
                    net.to_client.clear();
                }
            }
            // A reset or the power button.
            8 => match Bytes(r.data).u8() % 3 {
                0 => net.bmc.drop_sessions(),
                1 => net.bmc.set_power(true, net.now),
                _ => net.bmc.set_power(false, net.now),
            },
            // Deliver whatever is queued.
            _ => net.pump(),
        }
    }
    net.finish();
});
