//! Hardware profiles: one TOML file per vendor/model family in `hw-profiles/`,
//! holding the quirks the protocol clients must honour.
//!
//! The files under `hw-profiles/` are compiled in, so the binary works on its own;
//! a directory given at run time overrides or adds profiles.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// IPMI quirks of a hardware family.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IpmiQuirks {
    /// Use exactly this cipher suite (no discovery).
    pub cipher_suite: Option<u8>,
    /// Allow suite 0 (no authentication). Never on by default.
    #[serde(default)]
    pub allow_suite0: bool,
    /// FreeIPMI's "opensesspriv" workaround: name the privilege level in Open Session.
    #[serde(default)]
    pub opensesspriv: bool,
    /// Write boot option parameter 3 so boot flags survive the 60 s timeout.
    #[serde(default)]
    pub disable_boot_timeout: bool,
    /// Minimum gap between two commands, milliseconds.
    #[serde(default)]
    pub min_command_interval_ms: u64,
    /// The BMC has no diagnostic interrupt: NMI is refused locally.
    #[serde(default)]
    pub no_nmi: bool,
    /// The BMC has no ACPI soft shutdown: soft power off and soft reboot are
    /// refused locally (and not listed as supported).
    #[serde(default)]
    pub no_soft_power: bool,
    /// Boot flags device byte to send for "UEFI hard disk" instead of the
    /// standard selector (Supermicro uses 0x24).
    #[serde(default)]
    pub uefi_disk_device_byte: Option<u8>,
}

impl IpmiQuirks {
    /// Apply the session-level quirks to a client configuration. An explicit
    /// cipher suite already in `cfg` wins over the profile's.
    pub fn apply(&self, cfg: &mut crate::ipmi::SessionConfig) {
        if cfg.cipher_suite.is_none() {
            cfg.cipher_suite = self.cipher_suite;
        }
        cfg.allow_suite0 = self.allow_suite0;
        cfg.opensesspriv |= self.opensesspriv;
        cfg.min_interval = std::time::Duration::from_millis(self.min_command_interval_ms);
    }

    /// Boot flags for a request, with the vendor's device code for UEFI disk.
    pub fn boot_flags(
        &self,
        device: crate::ipmi::BootDevice,
        persistent: bool,
        uefi: bool,
    ) -> crate::ipmi::BootFlags {
        let mut f = crate::ipmi::BootFlags::new(device, persistent, uefi);
        if let (crate::ipmi::BootDevice::Disk, true, Some(code)) =
            (device, uefi, self.uefi_disk_device_byte)
        {
            f.raw_device_byte = code;
        }
        f
    }
}

/// How a profile is recognised.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// IANA manufacturer ids from Get Device ID.
    #[serde(default)]
    pub ipmi_manufacturer_ids: Vec<u32>,
    /// Redfish `Manufacturer` values (case-insensitive prefix match).
    #[serde(default)]
    pub redfish_manufacturers: Vec<String>,
    /// Redfish `Model` values (case-insensitive substring); empty = any model.
    #[serde(default)]
    pub redfish_models: Vec<String>,
}

impl Match {
    fn redfish(&self, manufacturer: &str, model: &str) -> bool {
        let m = manufacturer.trim().to_ascii_lowercase();
        let md = model.to_ascii_lowercase();
        self.redfish_manufacturers
            .iter()
            .any(|p| m.starts_with(&p.to_ascii_lowercase()))
            && (self.redfish_models.is_empty()
                || self
                    .redfish_models
                    .iter()
                    .any(|p| md.contains(&p.to_ascii_lowercase())))
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, rename = "match")]
    pub matches: Match,
    #[serde(default)]
    pub ipmi: IpmiQuirks,
    #[serde(default)]
    pub redfish: crate::redfish::RedfishQuirks,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("unknown hardware profile {0:?}")]
    Unknown(String),
}

/// The profiles shipped in `hw-profiles/`, compiled in.
macro_rules! builtin {
    ($($f:literal),* $(,)?) => {
        &[$(($f, include_str!(concat!("../../hw-profiles/", $f)))),*]
    };
}

const BUILTIN: &[(&str, &str)] = builtin!(
    "generic.toml",
    "cisco-cimc.toml",
    "dell-idrac.toml",
    "hpe-ilo.toml",
    "ipmi-sim.toml",
    "ironrack-sim.toml",
    "lenovo-xcc.toml",
    "openbmc.toml",
    "supermicro.toml",
    "sushy-emulator.toml",
);

/// A set of profiles by name.
#[derive(Debug, Clone)]
pub struct Profiles {
    by_name: BTreeMap<String, Profile>,
}

/// Parse one profile file; errors name the file and, from the TOML parser, the line.
pub fn parse(file: &str, text: &str) -> Result<Profile, ProfileError> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        ProfileError::Parse {
            file: file.to_string(),
            message: match line {
                Some(l) => format!("line {l}: {}", e.message()),
                None => e.message().to_string(),
            },
        }
    })
}

impl Profiles {
    /// The compiled-in profiles.
    pub fn builtin() -> Result<Profiles, ProfileError> {
        let mut by_name = BTreeMap::new();
        for (file, text) in BUILTIN {
            let p = parse(file, text)?;
            by_name.insert(p.name.clone(), p);
        }
        Ok(Profiles { by_name })
    }

    /// Built-in profiles, then every `*.toml` in `dir` (which wins on equal names).
    pub fn load(dir: Option<&Path>) -> Result<Profiles, ProfileError> {
        let mut set = Self::builtin()?;
        let Some(dir) = dir else {
            return Ok(set);
        };
        let rd =
            std::fs::read_dir(dir).map_err(|e| ProfileError::Io(dir.display().to_string(), e))?;
        let mut files: Vec<_> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| ProfileError::Io(f.display().to_string(), e))?;
            let p = parse(&f.display().to_string(), &text)?;
            set.by_name.insert(p.name.clone(), p);
        }
        Ok(set)
    }

    pub fn get(&self, name: &str) -> Result<&Profile, ProfileError> {
        self.by_name
            .get(name)
            .ok_or_else(|| ProfileError::Unknown(name.to_string()))
    }

    /// The profile whose IPMI manufacturer id matches, or `generic`.
    pub fn for_ipmi_manufacturer(&self, id: u32) -> Option<&Profile> {
        self.by_name
            .values()
            .find(|p| p.matches.ipmi_manufacturer_ids.contains(&id))
            .or_else(|| self.by_name.get("generic"))
    }

    /// The profile whose Redfish manufacturer (and model) match, or `generic`.
    pub fn for_redfish(&self, manufacturer: &str, model: &str) -> Option<&Profile> {
        self.by_name
            .values()
            .find(|p| p.matches.redfish(manufacturer, model))
            .or_else(|| self.by_name.get("generic"))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(|s| s.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse() {
        let p = Profiles::builtin().unwrap();
        assert!(p.get("generic").is_ok());
        let sim = p.get("ipmi-sim").unwrap();
        assert!(sim.ipmi.opensesspriv);
        assert_eq!(sim.ipmi.cipher_suite, Some(3));
    }

    #[test]
    fn every_required_profile_ships_and_matches() {
        let p = Profiles::builtin().unwrap();
        for name in [
            "generic",
            "dell-idrac",
            "hpe-ilo",
            "supermicro",
            "lenovo-xcc",
            "openbmc",
            "ipmi-sim",
            "sushy-emulator",
        ] {
            assert!(p.get(name).is_ok(), "{name}");
        }
        assert_eq!(p.for_ipmi_manufacturer(674).unwrap().name, "dell-idrac");
        assert_eq!(p.for_ipmi_manufacturer(10876).unwrap().name, "supermicro");
        assert_eq!(p.for_ipmi_manufacturer(999_999).unwrap().name, "generic");
        assert_eq!(
            p.for_redfish("Dell Inc.", "PowerEdge R650").unwrap().name,
            "dell-idrac"
        );
        assert_eq!(
            p.for_redfish("HPE", "ProLiant DL360 Gen10").unwrap().name,
            "hpe-ilo"
        );
        assert_eq!(
            p.for_redfish("Supermicro", "X12").unwrap().name,
            "supermicro"
        );
        assert_eq!(p.for_redfish("Acme", "X").unwrap().name, "generic");
        let smc = p.get("supermicro").unwrap();
        assert_eq!(smc.ipmi.uefi_disk_device_byte, Some(0x24));
        assert!(smc.redfish.boot_patch_full_object);
        let ilo = p.get("hpe-ilo").unwrap();
        assert_eq!(
            ilo.redfish
                .reset_substitutions
                .get("ForceRestart")
                .map(String::as_str),
            Some("PowerCycle")
        );
        assert!(p.get("cisco-cimc").unwrap().redfish.content_type_no_charset);
        assert!(p.get("lenovo-xcc").unwrap().redfish.connection_close);
        assert!(p
            .get("dell-idrac")
            .unwrap()
            .redfish
            .retryable_error_ids
            .iter()
            .any(|i| i == "SYS029"));
    }

    #[test]
    fn parse_error_names_file_and_line() {
        let e = parse(
            "bad.toml",
            "name = \"x\"\n[ipmi]\ncipher_suite = \"three\"\n",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("bad.toml: line 3"), "{s}");
        let e = parse("typo.toml", "name = \"x\"\n[ipmi]\nopensespriv = true\n").unwrap_err();
        assert!(e.to_string().contains("typo.toml"));
    }
}
