//! The one BMC interface both protocols implement (IPMI in [`ipmi`], Redfish in
//! `crate::redfish`). Everything above it (conductor, API, console, boot) speaks
//! only to [`Bmc`]. The split follows Ironic's power / management interfaces.

pub mod ipmi;
pub mod redfish;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Observed power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowerState {
    On,
    Off,
}

impl PowerState {
    /// Ironic's state string.
    pub fn ironic(self) -> &'static str {
        match self {
            PowerState::On => "power on",
            PowerState::Off => "power off",
        }
    }

    /// ipmitool's short word.
    pub fn word(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
        }
    }
}

/// A power action, named after Ironic's targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    On,
    Off,
    SoftOff,
    Reboot,
    SoftReboot,
    Cycle,
}

impl PowerAction {
    pub fn name(self) -> &'static str {
        match self {
            PowerAction::On => "power on",
            PowerAction::Off => "power off",
            PowerAction::SoftOff => "soft power off",
            PowerAction::Reboot => "reboot",
            PowerAction::SoftReboot => "soft reboot",
            PowerAction::Cycle => "power cycle",
        }
    }

    /// Every action, in a stable order.
    pub const ALL: [PowerAction; 6] = [
        PowerAction::On,
        PowerAction::Off,
        PowerAction::SoftOff,
        PowerAction::Reboot,
        PowerAction::SoftReboot,
        PowerAction::Cycle,
    ];

    /// True for the actions that ask the operating system to shut down
    /// (ACPI soft off): soft power off and soft reboot.
    pub fn is_soft(self) -> bool {
        matches!(self, PowerAction::SoftOff | PowerAction::SoftReboot)
    }

    /// The state the machine ends in once the action is complete.
    pub fn target(self) -> PowerState {
        match self {
            PowerAction::Off | PowerAction::SoftOff => PowerState::Off,
            _ => PowerState::On,
        }
    }
}

/// Boot devices, in Ironic's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootDevice {
    Pxe,
    Disk,
    Cdrom,
    Bios,
    Safe,
    UefiHttp,
}

impl BootDevice {
    pub fn name(self) -> &'static str {
        match self {
            BootDevice::Pxe => "pxe",
            BootDevice::Disk => "disk",
            BootDevice::Cdrom => "cdrom",
            BootDevice::Bios => "bios",
            BootDevice::Safe => "safe",
            BootDevice::UefiHttp => "uefi_http",
        }
    }
}

impl std::str::FromStr for BootDevice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "pxe" | "network" => BootDevice::Pxe,
            "disk" | "hdd" => BootDevice::Disk,
            "cdrom" | "cd" => BootDevice::Cdrom,
            "bios" | "setup" => BootDevice::Bios,
            "safe" => BootDevice::Safe,
            "uefi_http" | "uefihttp" | "http" => BootDevice::UefiHttp,
            other => return Err(format!("unknown boot device {other:?}")),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootMode {
    Uefi,
    Bios,
}

/// A boot device setting, read or to be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSetting {
    /// `None` when no override is set.
    pub device: Option<BootDevice>,
    pub persistent: bool,
    /// `None` when the BMC does not say, or to leave it as it is.
    pub mode: Option<BootMode>,
}

/// Typed errors, mapped by the API layer to Ironic-style errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BmcError {
    #[error("BMC unreachable: {0}")]
    Unreachable(String),
    #[error("BMC authentication failed: {0}")]
    AuthFailed(String),
    #[error("not supported by this BMC: {0}")]
    Unsupported(String),
    #[error("BMC rejected the request: {message}")]
    Rejected {
        /// Completion code, HTTP status or Redfish message id.
        code: Option<String>,
        message: String,
    },
    #[error("BMC did not answer within {0:?}")]
    Timeout(Duration),
    #[error("BMC protocol error: {0}")]
    Protocol(String),
    #[error("invalid BMC configuration: {0}")]
    Config(String),
}

impl BmcError {
    /// A stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            BmcError::Unreachable(_) => "unreachable",
            BmcError::AuthFailed(_) => "auth_failed",
            BmcError::Unsupported(_) => "unsupported",
            BmcError::Rejected { .. } => "rejected",
            BmcError::Timeout(_) => "timeout",
            BmcError::Protocol(_) => "protocol",
            BmcError::Config(_) => "config",
        }
    }
}

/// The interface every BMC driver implements.
#[async_trait::async_trait]
pub trait Bmc: Send + Sync {
    /// `ipmi` or `redfish`.
    fn driver(&self) -> &'static str;
    /// Check that the BMC answers and the credentials work.
    async fn validate(&self) -> Result<(), BmcError>;
    async fn power_state(&self) -> Result<PowerState, BmcError>;
    /// Start a power action. Completion is observed through `power_state`;
    /// compound actions (a soft reboot over IPMI) may wait internally.
    async fn set_power(&self, action: PowerAction) -> Result<(), BmcError>;
    /// The power actions this BMC can carry out (Ironic's
    /// `get_supported_power_states`). The default claims every action.
    async fn supported_power_actions(&self) -> Result<Vec<PowerAction>, BmcError> {
        Ok(PowerAction::ALL.to_vec())
    }
    async fn inject_nmi(&self) -> Result<(), BmcError>;
    async fn boot_device(&self) -> Result<BootSetting, BmcError>;
    async fn set_boot_device(&self, setting: BootSetting) -> Result<(), BmcError>;
    async fn supported_boot_devices(&self) -> Result<Vec<BootDevice>, BmcError>;
    /// Release sessions held on the BMC.
    async fn close(&self);
    /// The IPMI client underneath, for payloads beyond this trait
    /// (serial-over-LAN shares the session). `None` for other protocols.
    fn ipmi_client(&self) -> Option<crate::ipmi::IpmiClient> {
        None
    }
}
