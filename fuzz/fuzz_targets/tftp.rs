//! TFTP (src/boot/tftp): one datagram as the server's listening port gets
//! it (RRQ/WRQ with options, or anything else), the server's option
//! negotiation and path rules for a request, netascii, and then a whole
//! transfer in memory: our client (`Receiver`) asking for the same options
//! against the server's `Sender`, over a link that loses packets as the
//! input's bytes say.
//!
//! Properties: no panic; decode/encode agree (options, modes, ERROR
//! messages); granted options lie within the limits and are never granted
//! twice; the OACK we would send decodes to what was granted; netascii
//! round trips; a transfer the client reports complete delivered exactly
//! the file, and one the server reports complete is complete at the client.
#![no_main]

use std::path::Path;
use std::time::{Duration, Instant};

use ironrack::boot::path;
use ironrack::boot::render;
use ironrack::boot::tftp::netascii;
use ironrack::boot::tftp::packet::{self, Mode, Packet, MAX_BLKSIZE, MIN_BLKSIZE};
use ironrack::boot::tftp::receiver::{Receiver, ReceiverConfig};
use ironrack::boot::tftp::sender::{self, Limits, Outcome, Sender, Transmit, MAX_WINDOW};
use libfuzzer_sys::fuzz_target;

fn put(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

fn limits(big: bool) -> Limits {
    Limits {
        max_blksize: if big { 65464 } else { 1468 },
        max_windowsize: if big { 65535 } else { 16 },
        timeout: Duration::from_secs(1),
        max_retries: 4,
    }
}

/// Server and client in memory. `loss` decides, packet by packet, what is
/// dropped (cycled).
fn transfer(cfg: ReceiverConfig, file: &[u8], loss: &[u8]) {
    let netascii_mode = cfg.mode == Mode::Netascii;
    let served = if netascii_mode {
        netascii::encode(file)
    } else {
        file.to_vec()
    };
    let mut now = Instant::now();
    let mut rx = Receiver::new(cfg, now);
    let mut tx: Option<Sender> = None;
    let mut got = Vec::new();
    let mut n = 0usize;
    let lost = |n: &mut usize| {
        *n += 1;
        !loss.is_empty() && loss[*n % loss.len()] % 5 == 0
    };
    for _ in 0..20_000 {
        let mut moved = false;
        while let Some(d) = rx.poll_transmit() {
            moved = true;
            if lost(&mut n) {
                continue;
            }
            let p = packet::decode(&d).expect("our client sends valid packets");
            match (&mut tx, p) {
                (None, Packet::Rrq(req)) => {
                    let neg = sender::negotiate(&req.options, served.len() as u64, &limits(false));
                    tx = Some(Sender::new(neg, served.len() as u64, 4, now));
                }
                (Some(_), Packet::Rrq(_)) => {} // a retransmitted request
                (Some(s), p) => s.handle_packet(now, &p),
                (None, _) => {}
            }
        }
        if let Some(s) = &mut tx {
            while let Some(t) = s.poll_transmit() {
                moved = true;
                let datagrams: Vec<Vec<u8>> = match t {
                    Transmit::Packet(p) => vec![p],
                    Transmit::Data { first, count } => (first..first + count)
                        .map(|b| {
                            let (off, len) = s.block_span(b);
                            let off = off as usize;
                            let mut p = Vec::new();
                            packet::encode_data(
                                &mut p,
                                Sender::wire_block(b),
                                &served[off..off + len],
                            );
                            p
                        })
                        .collect(),
                };
                for d in datagrams {
                    if lost(&mut n) {
                        continue;
                    }
                    if let Some(chunk) = rx.handle_datagram(now, &d) {
                        got.extend_from_slice(chunk);
                    }
                }
            }
        }
        if rx.result().is_some() && tx.as_ref().is_none_or(|s| s.is_done()) {
            break;
        }
        if !moved {
            let next = [
                rx.poll_timeout(),
                tx.as_ref().and_then(|s| s.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) => {
                    now = now.max(t);
                    rx.handle_timeout(now);
                    if let Some(s) = &mut tx {
                        s.handle_timeout(now);
                    }
                }
                None => break,
            }
        }
    }
    if let Some(Ok(())) = rx.result() {
        assert_eq!(got.len(), served.len(), "client complete with a short file");
        assert_eq!(got, served);
        if netascii_mode {
            assert_eq!(netascii::decode(&got), file);
        }
    }
    if let Some(s) = &tx {
        if s.outcome() == Some(&Outcome::Complete) {
            assert!(
                matches!(rx.result(), Some(Ok(()))),
                "server complete, client not"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // netascii round trip on anything.
    let enc = netascii::encode(data);
    assert_eq!(netascii::decode(&enc), data);
    assert!(netascii::decode(data).len() <= data.len());

    let p = match packet::decode(data) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    match &p {
        Packet::Rrq(r) | Packet::Wrq(r) => {
            let mut e = p.opcode().to_be_bytes().to_vec();
            put(&mut e, r.filename.as_bytes());
            put(&mut e, r.mode.as_str().as_bytes());
            for o in r.options.iter() {
                assert!(!o.name.is_empty());
                put(&mut e, o.name);
                put(&mut e, o.value);
            }
            assert_eq!(packet::decode(&e).as_ref(), Ok(&p));

            // What the server does with it.
            let root = Path::new("/srv/tftp");
            if let Ok(rel) = path::normalize(r.filename, root) {
                assert!(rel.is_relative());
                assert!(root.join(&rel).starts_with(root));
            }
            let _ = render::parse_request(r.filename);
            let size = (data.len() as u64) * 977;
            for big in [false, true] {
                let l = limits(big);
                let n = sender::negotiate(&r.options, size, &l);
                assert!(n.blksize >= MIN_BLKSIZE && n.blksize <= l.max_blksize.min(MAX_BLKSIZE));
                assert!(n.windowsize >= 1 && n.windowsize <= l.max_windowsize.min(MAX_WINDOW));
                assert!(
                    n.timeout >= Duration::from_secs(1) && n.timeout <= Duration::from_secs(255)
                );
                for (i, (k, v)) in n.oack.iter().enumerate() {
                    assert!(
                        n.oack[..i].iter().all(|(k2, _)| k2 != k),
                        "{k} granted twice"
                    );
                    let v: u64 = v.parse().expect("numeric option value");
                    match *k {
                        "blksize" => assert_eq!(v, u64::from(n.blksize)),
                        "windowsize" => assert_eq!(v, u64::from(n.windowsize)),
                        "timeout" => assert_eq!(Duration::from_secs(v), n.timeout),
                        "tsize" => assert_eq!(v, size),
                        other => panic!("granted unknown option {other}"),
                    }
                }
                let mut oack = Vec::new();
                packet::encode_oack(&mut oack, &n.oack);
                match packet::decode(&oack) {
                    Ok(Packet::Oack(opts)) => {
                        assert_eq!(opts.0.len(), n.oack.len());
                        for (o, (k, v)) in opts.iter().zip(&n.oack) {
                            assert!(o.is(k) && o.value == v.as_bytes());
                        }
                    }
                    other => panic!("our OACK decodes as {other:?}"),
                }
            }

            // A whole transfer with what this request asks for.
            if r.mode != Mode::Mail {
                let num = |name: &str| r.options.get(name).and_then(|o| o.number());
                let cfg = ReceiverConfig {
                    filename: r.filename.to_string(),
                    mode: r.mode,
                    blksize: num("blksize")
                        .filter(|v| (u64::from(MIN_BLKSIZE)..=u64::from(MAX_BLKSIZE)).contains(v))
                        .map(|v| v as u16),
                    windowsize: num("windowsize")
                        .filter(|v| (1..=65535).contains(v))
                        .map(|v| v as u16),
                    tsize: r.options.get("tsize").is_some(),
                    timeout_option: num("timeout")
                        .filter(|v| (1..=255).contains(v))
                        .map(|v| v as u8),
                    timeout: Duration::from_millis(500),
                    max_retries: 4,
                };
                let len = (data.iter().map(|b| *b as usize).sum::<usize>() * 7 + data.len()) % 5000;
                let file: Vec<u8> = (0..len)
                    .map(|i| {
                        let b = data[i % data.len()];
                        if i % 13 == 0 {
                            b'\n'
                        } else if i % 17 == 0 {
                            b'\r'
                        } else {
                            b
                        }
                    })
                    .collect();
                // Once over a perfect link, once lossy.
                transfer(cfg.clone(), &file, &[]);
                transfer(cfg, &file, data);
            }
        }
        Packet::Data { block, data: d } => {
            let mut e = Vec::new();
            packet::encode_data(&mut e, *block, d);
            assert_eq!(e, data);
        }
        Packet::Ack { block } => {
            let mut e = Vec::new();
            packet::encode_ack(&mut e, *block);
            assert_eq!(&e[..], &data[..4]);
        }
        Packet::Error { code, message } => {
            let text = packet::ErrorText(message).to_string();
            assert!(!text.contains('\0'));
            if let Ok(m) = std::str::from_utf8(message) {
                let e = packet::error_packet(*code, m);
                assert_eq!(
                    packet::decode(&e),
                    Ok(Packet::Error {
                        code: *code,
                        message: m.as_bytes()
                    })
                );
            }
        }
        Packet::Oack(opts) => {
            let mut e = packet::OP_OACK.to_be_bytes().to_vec();
            for o in opts.iter() {
                put(&mut e, o.name);
                put(&mut e, o.value);
            }
            assert_eq!(packet::decode(&e), Ok(Packet::Oack(opts.clone())));
        }
    }
});
