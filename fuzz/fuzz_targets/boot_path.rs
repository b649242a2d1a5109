//! Request paths and headers of the boot servers (src/boot/path.rs,
//! src/boot/render.rs `parse_request`, src/boot/http.rs): the path rules
//! TFTP and HTTP boot share, percent-decoding, config names and `Range`.
//!
//! Properties: no panic; a path the rules accept is relative, made only of
//! plain names (no `..`, no root, no prefix), stays under the root when
//! joined, and is at most 1024 bytes with no control character; decoding
//! `%2e%2e` and friends never lets a `..` through; config names carry a
//! normalised MAC; a partial range lies inside the body.
#![no_main]

use std::path::{Component, Path};

use ironrack::boot::http::{self, RangeAnswer};
use ironrack::boot::path::{self, MAX_PATH_LEN};
use ironrack::boot::render::{self, ConfigRequest};
use libfuzzer_sys::fuzz_target;

fn check_path(raw: &str) {
    for root in [
        Path::new("/srv/tftp"),
        Path::new("/"),
        Path::new("/srv/tftp/"),
    ] {
        match path::normalize(raw, root) {
            Ok(rel) => {
                assert!(raw.len() <= MAX_PATH_LEN);
                assert!(!raw.chars().any(char::is_control));
                assert!(rel.is_relative(), "{rel:?}");
                assert!(
                    rel.components().all(|c| matches!(c, Component::Normal(_))),
                    "{rel:?}"
                );
                assert!(!rel.as_os_str().is_empty());
                assert!(root.join(&rel).starts_with(root));
                let s = rel.to_str().expect("UTF-8 in, UTF-8 out");
                assert!(!s.split('/').any(|p| p == ".." || p == "."), "{s:?}");
                assert!(!s.contains('\\'));
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                if raw.split(['/', '\\']).any(|p| p == "..") {
                    assert!(e.is_violation(), "{raw:?}: {e}");
                }
            }
        }
    }
    match render::parse_request(raw) {
        Some(ConfigRequest::Node { mac, .. }) => {
            assert_eq!(mac.len(), 17);
            assert!(
                mac.bytes().enumerate().all(|(i, b)| if i % 3 == 2 {
                    b == b':'
                } else {
                    b.is_ascii_hexdigit() && !b.is_ascii_uppercase()
                }),
                "{mac}"
            );
        }
        Some(_) | None => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    check_path(raw);
    if let Some(decoded) = http::percent_decode(raw) {
        assert!(decoded.len() <= raw.len());
        check_path(&decoded);
    }
    for len in [0u64, 1, 100, 1 << 40, u64::MAX] {
        match http::parse_range(raw, len) {
            RangeAnswer::Partial { start, end } => {
                assert!(
                    start <= end && end < len,
                    "{start}-{end} of {len} for {raw:?}"
                );
            }
            RangeAnswer::Full | RangeAnswer::Unsatisfiable => {}
        }
    }
});
