//! Typed IPMI commands: request data builders and response parsers.

use serde::Serialize;

pub const NETFN_CHASSIS: u8 = 0x00;
pub const NETFN_APP: u8 = 0x06;

pub const CMD_GET_DEVICE_ID: u8 = 0x01;
pub const CMD_GET_CHANNEL_AUTH_CAPS: u8 = 0x38;
pub const CMD_SET_SESSION_PRIV: u8 = 0x3b;
pub const CMD_CLOSE_SESSION: u8 = 0x3c;
pub const CMD_GET_CHANNEL_CIPHER_SUITES: u8 = 0x54;
pub const CMD_GET_SYSTEM_GUID: u8 = 0x37;
pub const CMD_ACTIVATE_PAYLOAD: u8 = 0x48;
pub const CMD_DEACTIVATE_PAYLOAD: u8 = 0x49;
pub const CMD_GET_PAYLOAD_ACTIVATION_STATUS: u8 = 0x4a;

pub const CMD_CHASSIS_STATUS: u8 = 0x01;
pub const CMD_CHASSIS_CONTROL: u8 = 0x02;
pub const CMD_SET_BOOT_OPTIONS: u8 = 0x08;
pub const CMD_GET_BOOT_OPTIONS: u8 = 0x09;

/// The "current channel" number.
pub const CHANNEL_CURRENT: u8 = 0x0e;

/// Names for the generic completion codes (IPMI v2.0 table 5-2).
pub fn completion_name(cc: u8) -> &'static str {
    match cc {
        0x00 => "command completed normally",
        0x80 => "command-specific error 0x80",
        0x81 => "command-specific error 0x81",
        0xc0 => "node busy",
        0xc1 => "invalid command",
        0xc2 => "command invalid for given LUN",
        0xc3 => "timeout while processing command",
        0xc4 => "out of space",
        0xc5 => "reservation canceled or invalid reservation ID",
        0xc6 => "request data truncated",
        0xc7 => "request data length invalid",
        0xc8 => "request data field length limit exceeded",
        0xc9 => "parameter out of range",
        0xca => "cannot return number of requested data bytes",
        0xcb => "requested sensor, data, or record not present",
        0xcc => "invalid data field in request",
        0xcd => "command illegal for specified sensor or record type",
        0xce => "command response could not be provided",
        0xcf => "cannot execute duplicated request",
        0xd0 => "SDR repository in update mode",
        0xd1 => "device in firmware update mode",
        0xd2 => "BMC initialization in progress",
        0xd3 => "destination unavailable",
        0xd4 => "insufficient privilege level",
        0xd5 => "command not supported in present state",
        0xd6 => "command sub-function has been disabled or is unavailable",
        0xff => "unspecified error",
        _ => "unknown completion code",
    }
}

/// Session privilege levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Privilege {
    Callback = 1,
    User = 2,
    Operator = 3,
    Administrator = 4,
    Oem = 5,
}

impl Privilege {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v & 0x0f {
            1 => Self::Callback,
            2 => Self::User,
            3 => Self::Operator,
            4 => Self::Administrator,
            5 => Self::Oem,
            _ => return None,
        })
    }
}

impl std::str::FromStr for Privilege {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "callback" => Ok(Self::Callback),
            "user" => Ok(Self::User),
            "operator" => Ok(Self::Operator),
            "administrator" | "admin" => Ok(Self::Administrator),
            "oem" => Ok(Self::Oem),
            other => Err(format!(
                "unknown privilege level {other:?} (callback, user, operator, administrator, oem)"
            )),
        }
    }
}

/// Response to Get Channel Authentication Capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCaps {
    pub channel: u8,
    pub ipmi20: bool,
    /// K_G is set to something other than the default (all zero).
    pub kg_set: bool,
}

impl AuthCaps {
    pub fn request(privilege: Privilege) -> Vec<u8> {
        vec![0x80 | CHANNEL_CURRENT, privilege as u8]
    }

    pub fn parse(d: &[u8]) -> Option<AuthCaps> {
        if d.len() < 8 {
            return None;
        }
        Some(AuthCaps {
            channel: d[0],
            ipmi20: d[1] & 0x80 != 0 && d[3] & 0x02 != 0,
            kg_set: d[2] & 0x20 != 0,
        })
    }

    /// The BMC side: response data advertising IPMI v2.0 support.
    pub fn response(channel: u8, kg_set: bool) -> Vec<u8> {
        vec![
            channel,
            0x80, // v2.0 extended capabilities; no v1.5 auth types offered
            (if kg_set { 0x20 } else { 0x00 }) | 0x04, // K_G status; non-null usernames enabled
            0x02, // supports IPMI v2.0 connections
            0,
            0,
            0, // OEM id
            0, // OEM aux
        ]
    }
}

/// Get Channel Cipher Suites request for list index `index` (algorithms by suite).
pub fn cipher_suites_request(index: u8) -> Vec<u8> {
    vec![CHANNEL_CURRENT, 0x00, 0x80 | (index & 0x3f)]
}

/// Parse the concatenated cipher suite record data into suite ids.
/// Records: 0xC0 id auth integ.. conf.. | 0xC1 id iana(3) auth integ.. conf..
pub fn parse_cipher_suite_records(data: &[u8]) -> Vec<u8> {
    let mut ids = Vec::new();
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            0xc0 => {
                if let Some(&id) = data.get(i + 1) {
                    ids.push(id);
                }
                i += 2;
            }
            0xc1 => {
                // OEM suite: id + 3-byte IANA. Not one we can use, skip it.
                i += 5;
            }
            _ => i += 1, // algorithm tag bytes
        }
    }
    ids
}

/// Encode the cipher suite records a BMC advertises for the given suites.
pub fn cipher_suite_records(suites: &[super::crypto::CipherSuite]) -> Vec<u8> {
    let mut v = Vec::new();
    for s in suites {
        v.extend_from_slice(&[
            0xc0,
            s.id,
            s.auth as u8,
            0x40 | s.integrity as u8,
            0x80 | s.conf as u8,
        ]);
    }
    v
}

/// Parsed Get Device ID response (the fields an operator cares about).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceId {
    pub device_id: u8,
    pub device_revision: u8,
    pub firmware: String,
    pub ipmi_version: String,
    pub manufacturer_id: u32,
    pub product_id: u16,
}

impl DeviceId {
    pub fn parse(d: &[u8]) -> Option<DeviceId> {
        if d.len() < 11 {
            return None;
        }
        Some(DeviceId {
            device_id: d[0],
            device_revision: d[1] & 0x0f,
            firmware: format!("{}.{:02x}", d[2] & 0x7f, d[3]),
            ipmi_version: format!("{}.{}", d[4] & 0x0f, d[4] >> 4),
            manufacturer_id: u32::from_le_bytes([d[6], d[7], d[8] & 0x0f, 0]),
            product_id: u16::from_le_bytes([d[9], d[10]]),
        })
    }
}

/// Chassis power state as read from Get Chassis Status: the BMC layer's type.
pub use crate::bmc::PowerState;

pub fn parse_chassis_status(d: &[u8]) -> Option<PowerState> {
    let b = d.first()?;
    Some(if b & 0x01 != 0 {
        PowerState::On
    } else {
        PowerState::Off
    })
}

/// Chassis Control actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ChassisControl {
    PowerDown = 0,
    PowerUp = 1,
    PowerCycle = 2,
    HardReset = 3,
    DiagnosticInterrupt = 4,
    SoftShutdown = 5,
}

impl ChassisControl {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v & 0x0f {
            0 => Self::PowerDown,
            1 => Self::PowerUp,
            2 => Self::PowerCycle,
            3 => Self::HardReset,
            4 => Self::DiagnosticInterrupt,
            5 => Self::SoftShutdown,
            _ => return None,
        })
    }
}

/// Boot device selector (boot flags parameter 5, data byte 2 bits 5:2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootDevice {
    None,
    Pxe,
    Disk,
    Safe,
    Diag,
    Cdrom,
    Bios,
    Floppy,
}

impl BootDevice {
    pub fn code(self) -> u8 {
        match self {
            Self::None => 0x0,
            Self::Pxe => 0x1,
            Self::Disk => 0x2,
            Self::Safe => 0x3,
            Self::Diag => 0x4,
            Self::Cdrom => 0x5,
            Self::Bios => 0x6,
            Self::Floppy => 0xf,
        }
    }
    pub fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0x0 => Self::None,
            0x1 => Self::Pxe,
            0x2 => Self::Disk,
            0x3 => Self::Safe,
            0x4 => Self::Diag,
            0x5 => Self::Cdrom,
            0x6 => Self::Bios,
            0xf => Self::Floppy,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Pxe => "pxe",
            Self::Disk => "disk",
            Self::Safe => "safe",
            Self::Diag => "diag",
            Self::Cdrom => "cdrom",
            Self::Bios => "bios",
            Self::Floppy => "floppy",
        }
    }
}

impl std::str::FromStr for BootDevice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "none" => Self::None,
            "pxe" | "network" => Self::Pxe,
            "disk" | "hdd" => Self::Disk,
            "safe" => Self::Safe,
            "diag" => Self::Diag,
            "cdrom" | "cd" => Self::Cdrom,
            "bios" | "setup" => Self::Bios,
            "floppy" => Self::Floppy,
            other => return Err(format!("unknown boot device {other:?}")),
        })
    }
}

/// Boot flags, parameter 5 of the system boot options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BootFlags {
    pub valid: bool,
    pub device: BootDevice,
    pub persistent: bool,
    pub uefi: bool,
    /// The raw device byte (data byte 2), for vendor codes such as Supermicro's 0x24.
    #[serde(skip)]
    pub raw_device_byte: u8,
}

impl BootFlags {
    pub fn new(device: BootDevice, persistent: bool, uefi: bool) -> Self {
        BootFlags {
            valid: true,
            device,
            persistent,
            uefi,
            raw_device_byte: device.code() << 2,
        }
    }

    /// Set System Boot Options request data for parameter 5.
    pub fn set_request(&self) -> Vec<u8> {
        let mut b1 = 0u8;
        if self.valid {
            b1 |= 0x80;
        }
        if self.persistent {
            b1 |= 0x40;
        }
        if self.uefi {
            b1 |= 0x20;
        }
        vec![0x05, b1, self.raw_device_byte, 0, 0, 0]
    }

    /// Parse parameter 5 data (the 5 bytes after version and selector).
    pub fn parse(d: &[u8]) -> Option<BootFlags> {
        if d.len() < 2 {
            return None;
        }
        Some(BootFlags {
            valid: d[0] & 0x80 != 0,
            persistent: d[0] & 0x40 != 0,
            uefi: d[0] & 0x20 != 0,
            device: BootDevice::from_code((d[1] >> 2) & 0x0f).unwrap_or(BootDevice::None),
            raw_device_byte: d[1],
        })
    }

    /// Parse a full Get System Boot Options response (version, selector, data).
    pub fn parse_get_response(d: &[u8]) -> Option<BootFlags> {
        if d.len() < 3 || d[1] & 0x7f != 0x05 {
            return None;
        }
        Self::parse(&d[2..])
    }
}

/// Get System Boot Options request for a parameter.
pub fn get_boot_option_request(param: u8) -> Vec<u8> {
    vec![param & 0x7f, 0x00, 0x00]
}

/// Set System Boot Options parameter 3 (BMC boot flag valid bit clearing) so the
/// BMC does not drop the boot flags after its 60-second timeout.
pub fn disable_boot_flag_timeout_request() -> Vec<u8> {
    vec![0x03, 0x08]
}

/// The SOL payload type in Activate / Deactivate Payload.
pub const PAYLOAD_SOL: u8 = 0x01;

/// Activate Payload auxiliary data, byte 1 (IPMI v2.0 table 24-2, SOL).
pub mod sol_aux {
    /// Encrypt the SOL payload.
    pub const ENCRYPT: u8 = 0x80;
    /// Authenticate the SOL payload.
    pub const AUTHENTICATE: u8 = 0x40;
    /// Serial/modem alerts are deferred while SOL is active.
    pub const ALERTS_DEFERRED: u8 = 0x04;
    /// The BMC does not assert CTS/DCD/DSR to the host until the console does.
    pub const BMC_ASSERTS_CTS_FALSE: u8 = 0x02;
}

/// Names of the Activate Payload completion codes (IPMI v2.0 section 24.1).
pub fn activate_payload_completion_name(cc: u8) -> &'static str {
    match cc {
        0x80 => "payload already active on another session",
        0x81 => "payload type is disabled",
        0x82 => "payload activation limit reached",
        0x83 => "cannot activate payload with encryption",
        0x84 => "cannot activate payload without encryption",
        other => completion_name(other),
    }
}

/// Names of the Deactivate Payload completion codes (IPMI v2.0 section 24.2).
pub fn deactivate_payload_completion_name(cc: u8) -> &'static str {
    match cc {
        0x80 => "payload already deactivated",
        0x81 => "payload type is disabled",
        other => completion_name(other),
    }
}

/// Activate Payload request data: type, instance, auxiliary data (4 bytes).
pub fn activate_payload_request(payload_type: u8, instance: u8, aux: u8) -> Vec<u8> {
    vec![payload_type & 0x3f, instance & 0x0f, aux, 0, 0, 0]
}

/// Deactivate Payload request data: type, instance, auxiliary data (4 bytes, zero).
pub fn deactivate_payload_request(payload_type: u8, instance: u8) -> Vec<u8> {
    vec![payload_type & 0x3f, instance & 0x0f, 0, 0, 0, 0]
}

/// A successful Activate Payload response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PayloadActivation {
    /// Auxiliary data, as the BMC echoes it (for SOL: test mode bit only).
    pub aux: u32,
    /// The most payload bytes the BMC accepts in one packet.
    pub inbound_size: u16,
    /// The most payload bytes the BMC sends in one packet.
    pub outbound_size: u16,
    /// The UDP port the payload uses (normally the session's port).
    pub port: u16,
    /// 0xffff when no VLAN is used.
    pub vlan: u16,
}

impl PayloadActivation {
    pub fn parse(d: &[u8]) -> Option<PayloadActivation> {
        let d = d.get(..12)?;
        let u16_at = |i: usize| u16::from_le_bytes([d[i], d[i + 1]]);
        Some(PayloadActivation {
            aux: u32::from_le_bytes([d[0], d[1], d[2], d[3]]),
            inbound_size: u16_at(4),
            outbound_size: u16_at(6),
            port: u16_at(8),
            vlan: u16_at(10),
        })
    }

    /// The BMC side: response data.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.aux.to_le_bytes().to_vec();
        for x in [self.inbound_size, self.outbound_size, self.port, self.vlan] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }
}

/// Get Payload Activation Status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PayloadActivationStatus {
    /// How many instances of the payload the BMC supports.
    pub capacity: u8,
    /// Bit n-1 set when instance n is active.
    pub active: u16,
}

impl PayloadActivationStatus {
    pub fn parse(d: &[u8]) -> Option<PayloadActivationStatus> {
        Some(PayloadActivationStatus {
            capacity: d.first()? & 0x0f,
            active: u16::from_le_bytes([*d.get(1)?, *d.get(2)?]),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let a = self.active.to_le_bytes();
        vec![self.capacity & 0x0f, a[0], a[1]]
    }

    pub fn is_active(&self, instance: u8) -> bool {
        (1..=16).contains(&instance) && self.active & (1 << (instance - 1)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipmi::crypto::CipherSuite;

    #[test]
    fn activate_payload_as_ipmitool_and_ipmi_sim_send_it() {
        // Captured from ipmitool `sol activate` against ipmi_sim (suite 3).
        assert_eq!(
            activate_payload_request(
                PAYLOAD_SOL,
                1,
                sol_aux::ENCRYPT
                    | sol_aux::AUTHENTICATE
                    | sol_aux::ALERTS_DEFERRED
                    | sol_aux::BMC_ASSERTS_CTS_FALSE
            ),
            vec![0x01, 0x01, 0xc6, 0, 0, 0]
        );
        // ipmi_sim's answer on UDP port 17000: inbound 32, outbound 16384, no VLAN.
        let rs = [0, 0, 0, 0, 0x20, 0x00, 0x00, 0x40, 0x68, 0x42, 0xff, 0xff];
        let a = PayloadActivation::parse(&rs).unwrap();
        assert_eq!(
            a,
            PayloadActivation {
                aux: 0,
                inbound_size: 32,
                outbound_size: 16384,
                port: 17000,
                vlan: 0xffff
            }
        );
        assert_eq!(a.encode(), rs.to_vec());
        assert!(PayloadActivation::parse(&rs[..11]).is_none());
        assert_eq!(
            deactivate_payload_request(PAYLOAD_SOL, 1),
            vec![1, 1, 0, 0, 0, 0]
        );
        let st = PayloadActivationStatus::parse(&[0x01, 0x01, 0x00]).unwrap();
        assert!(st.is_active(1) && !st.is_active(2) && !st.is_active(0));
        assert_eq!(st.encode(), vec![1, 1, 0]);
        assert!(PayloadActivationStatus::parse(&[1, 1]).is_none());
        assert_eq!(
            activate_payload_completion_name(0x80),
            "payload already active on another session"
        );
        assert_eq!(
            activate_payload_completion_name(0x82),
            "payload activation limit reached"
        );
        assert_eq!(
            deactivate_payload_completion_name(0x80),
            "payload already deactivated"
        );
    }

    #[test]
    fn boot_flags_pxe_persistent_uefi() {
        let f = BootFlags::new(BootDevice::Pxe, true, true);
        assert_eq!(f.set_request(), vec![0x05, 0xe0, 0x04, 0, 0, 0]);
        let back = BootFlags::parse_get_response(&[0x01, 0x05, 0xe0, 0x04, 0, 0, 0]).unwrap();
        assert_eq!(back, f);
        let disk_once = BootFlags::new(BootDevice::Disk, false, false);
        assert_eq!(disk_once.set_request(), vec![0x05, 0x80, 0x08, 0, 0, 0]);
    }

    #[test]
    fn cipher_records_roundtrip() {
        let rec = cipher_suite_records(&[CipherSuite::SUITE_3, CipherSuite::SUITE_17]);
        assert_eq!(rec, vec![0xc0, 3, 1, 0x41, 0x81, 0xc0, 17, 3, 0x44, 0x81]);
        assert_eq!(parse_cipher_suite_records(&rec), vec![3, 17]);
        // OEM record skipped; garbage tolerated.
        assert_eq!(
            parse_cipher_suite_records(&[0xc1, 9, 1, 2, 3, 0x01, 0xc0]),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn device_id_parses() {
        let d = [
            0x20, 0x01, 0x02, 0x15, 0x02, 0xbf, 0x57, 0x01, 0x00, 0x34, 0x12,
        ];
        let id = DeviceId::parse(&d).unwrap();
        assert_eq!(id.manufacturer_id, 0x157);
        assert_eq!(id.product_id, 0x1234);
        assert_eq!(id.ipmi_version, "2.0");
        assert!(DeviceId::parse(&d[..5]).is_none());
    }

    #[test]
    fn chassis_status_bits() {
        assert_eq!(parse_chassis_status(&[0x01, 0, 0]), Some(PowerState::On));
        assert_eq!(parse_chassis_status(&[0x60, 0, 0]), Some(PowerState::Off));
        assert_eq!(parse_chassis_status(&[]), None);
    }
}
