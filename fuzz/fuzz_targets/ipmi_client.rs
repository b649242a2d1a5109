//! The client session (src/ipmi/session.rs `ClientSession::handle_input`)
//! fed what the fuzzer chooses: the simulated BMC's real answers delivered,
//! dropped, duplicated, reordered or mutated, and raw datagrams, while
//! commands are submitted and time passes.
//!
//! Properties: no panic; every submitted command is answered exactly once
//! and never after its deadline; a session is only established with a
//! cipher suite the client accepts (no downgrade to suite 0 by a hostile
//! BMC); the BMC's own invariants hold.
//!
//! Input: framed records; the first record configures the client and BMC.
#![no_main]

use std::time::Duration;

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
        // The client's datagrams always reach the BMC; the fuzzer decides
        // what comes back.
        while let Some(d) = net.from_client() {
            net.to_bmc(&d);
        }
        net.bmc_spontaneous();
        match r.op % 9 {
            // A raw datagram "from the BMC".
            0 => net.client.handle_input(net.now, r.data),
            // Deliver the oldest queued answer.
            1 => {
                if !net.to_client.is_empty() {
                    let d = net.to_client.remove(0);
                    net.client.handle_input(net.now, &d);
                }
            }
            // Drop the oldest queued answer.
            2 => {
                if !net.to_client.is_empty() {
                    net.to_client.remove(0);
                }
            }
            // Deliver a queued answer out of order, keeping it for later.
            3 => {
                if !net.to_client.is_empty() {
                    let k = Bytes(r.data).u8() as usize % net.to_client.len();
                    let d = net.to_client[k].clone();
                    net.client.handle_input(net.now, &d);
                }
            }
            // Deliver the oldest answer with bytes flipped.
            4 => {
                if !net.to_client.is_empty() {
                    let mut d = net.to_client.remove(0);
                    let mut b = Bytes(r.data);
                    while !b.0.is_empty() {
                        let at = b.u16() as usize % d.len();
                        d[at] ^= b.u8() | 1;
                    }
                    net.client.handle_input(net.now, &d);
                }
            }
            // Submit a command.
            5 => {
                let mut b = Bytes(r.data);
                let (netfn, cmd) = (b.u8() & 0x3f, b.u8());
                net.submit(netfn, cmd, b.rest().to_vec());
            }
            // Time passes; queued answers stay queued.
            6 => {
                let ms = u64::from(Bytes(r.data).u16() % 8000);
                net.advance(Duration::from_millis(ms), false);
            }
            // Deliver everything over a perfect network.
            7 => net.pump(),
            // The oldest answer truncated, or extended with bytes.
            _ => {
                if !net.to_client.is_empty() {
                    let mut d = net.to_client.remove(0);
                    let mut b = Bytes(r.data);
                    let n = b.u8() as usize;
                    if n < d.len() {
                        d.truncate(n);
                    } else {
                        d.extend_from_slice(b.rest());
                    }
                    net.client.handle_input(net.now, &d);
                }
            }
        }
        net.events();
        net.check_bmc();
    }
    net.finish();
});
