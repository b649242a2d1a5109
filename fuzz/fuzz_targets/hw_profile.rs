//! A hardware profile file (src/profiles: `parse` of one TOML file, as
//! `Profiles::load` reads `hw-profiles/*.toml` and an operator's directory).
//!
//! Properties: no panic on any text; an error names the file and, when the
//! parser points at a place, a line that exists; a profile that parses
//! applies to a client session config (whose own validation then accepts or
//! refuses it without panicking) and gives boot flags for every device.
#![no_main]

use std::sync::OnceLock;

use ironrack::ipmi::{BootDevice, SessionConfig};
use ironrack::profiles::{self, ProfileError, Profiles};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match profiles::parse("fuzz.toml", text) {
        Err(ProfileError::Parse { file, message }) => {
            assert_eq!(file, "fuzz.toml");
            assert!(!message.is_empty());
            if let Some(rest) = message.strip_prefix("line ") {
                let n: usize = rest
                    .split(':')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("line number");
                assert!(n >= 1 && n <= text.lines().count().max(1) + 1, "line {n}");
            }
        }
        Err(e) => panic!("parse gave a non-parse error: {e}"),
        Ok(p) => {
            assert!(!ProfileError::Unknown(p.name.clone()).to_string().is_empty());
            let mut cfg = SessionConfig::new("admin", b"password");
            p.ipmi.apply(&mut cfg);
            if let Err(e) = cfg.validate() {
                assert!(!e.to_string().is_empty());
            }
            for d in [
                BootDevice::None,
                BootDevice::Pxe,
                BootDevice::Disk,
                BootDevice::Cdrom,
                BootDevice::Bios,
                BootDevice::Floppy,
                BootDevice::Safe,
                BootDevice::Diag,
            ] {
                for uefi in [false, true] {
                    let f = p.ipmi.boot_flags(d, true, uefi);
                    assert_eq!(f.uefi, uefi);
                }
            }
            for (from, to) in &p.redfish.reset_substitutions {
                let _ = (from.len(), to.len());
            }
        }
    }
    // The built-in set matched against the text as a vendor name.
    static BUILTIN: OnceLock<Option<Profiles>> = OnceLock::new();
    if let Some(all) = BUILTIN.get_or_init(|| Profiles::builtin().ok()) {
        let _ = all.for_redfish(text, text);
        let _ = all.for_ipmi_manufacturer(data.len() as u32);
        let _ = all.get(text);
    }
});
