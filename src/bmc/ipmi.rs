//! The IPMI implementation of [`Bmc`], over one long-lived RMCP+ session.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Bmc, BmcError, BootDevice, BootMode, BootSetting, PowerAction, PowerState};
use crate::ipmi::cmd::{self, BootFlags, ChassisControl};
use crate::ipmi::{IpmiClient, IpmiError, SessionConfig};
use crate::profiles::IpmiQuirks;

impl From<IpmiError> for BmcError {
    fn from(e: IpmiError) -> Self {
        match e {
            IpmiError::Timeout(d) => BmcError::Timeout(d),
            IpmiError::AuthFailed(m) => BmcError::AuthFailed(m),
            e @ IpmiError::NoCommonCipherSuite { .. } => BmcError::Unsupported(e.to_string()),
            IpmiError::SessionRefused { code, .. } => BmcError::Rejected {
                code: Some(format!("{code:#04x}")),
                message: e.to_string(),
            },
            IpmiError::Completion { code, .. } => BmcError::Rejected {
                code: Some(format!("{code:#04x}")),
                message: e.to_string(),
            },
            IpmiError::Config(m) => BmcError::Config(m),
            IpmiError::Protocol(m) => BmcError::Protocol(m),
            IpmiError::Closed => BmcError::Unreachable("IPMI session closed".into()),
        }
    }
}

/// A BMC driven over IPMI 2.0.
pub struct IpmiBmc {
    client: IpmiClient,
    quirks: IpmiQuirks,
    /// How long a soft reboot waits for the soft power-off to land.
    pub soft_timeout: Duration,
    /// Poll interval while waiting for a power state inside compound actions.
    pub poll_interval: Duration,
}

impl IpmiBmc {
    /// Apply the profile's quirks to `cfg` and start a client for `addr`.
    pub async fn new(
        addr: SocketAddr,
        mut cfg: SessionConfig,
        quirks: IpmiQuirks,
    ) -> Result<IpmiBmc, BmcError> {
        quirks.apply(&mut cfg);
        let client = IpmiClient::new(addr, cfg).await?;
        Ok(IpmiBmc {
            client,
            quirks,
            soft_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
        })
    }

    pub fn client(&self) -> &IpmiClient {
        &self.client
    }

    async fn wait_for(&self, want: PowerState, bound: Duration) -> Result<(), BmcError> {
        let end = Instant::now() + bound;
        loop {
            if self.power_state().await? == want {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(BmcError::Timeout(bound));
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    fn to_flags(&self, s: BootSetting) -> Result<BootFlags, BmcError> {
        let dev = match s.device {
            None => cmd::BootDevice::None,
            Some(BootDevice::Pxe) => cmd::BootDevice::Pxe,
            Some(BootDevice::Disk) => cmd::BootDevice::Disk,
            Some(BootDevice::Cdrom) => cmd::BootDevice::Cdrom,
            Some(BootDevice::Bios) => cmd::BootDevice::Bios,
            Some(BootDevice::Safe) => cmd::BootDevice::Safe,
            Some(BootDevice::UefiHttp) => {
                return Err(BmcError::Unsupported(
                    "UEFI HTTP boot cannot be selected over IPMI".into(),
                ))
            }
        };
        Ok(self
            .quirks
            .boot_flags(dev, s.persistent, s.mode == Some(BootMode::Uefi)))
    }
}

fn from_flags(f: &BootFlags) -> BootSetting {
    let device = match f.device {
        cmd::BootDevice::Pxe => Some(BootDevice::Pxe),
        cmd::BootDevice::Disk => Some(BootDevice::Disk),
        cmd::BootDevice::Cdrom => Some(BootDevice::Cdrom),
        cmd::BootDevice::Bios => Some(BootDevice::Bios),
        cmd::BootDevice::Safe => Some(BootDevice::Safe),
        cmd::BootDevice::None | cmd::BootDevice::Diag | cmd::BootDevice::Floppy => None,
    };
    BootSetting {
        device,
        persistent: f.persistent,
        mode: Some(if f.uefi {
            BootMode::Uefi
        } else {
            BootMode::Bios
        }),
    }
}

#[async_trait::async_trait]
impl Bmc for IpmiBmc {
    fn driver(&self) -> &'static str {
        "ipmi"
    }

    async fn validate(&self) -> Result<(), BmcError> {
        self.client.device_id().await?;
        Ok(())
    }

    async fn power_state(&self) -> Result<PowerState, BmcError> {
        Ok(self.client.power_state().await?)
    }

    async fn set_power(&self, action: PowerAction) -> Result<(), BmcError> {
        if action.is_soft() && self.quirks.no_soft_power {
            return Err(BmcError::Unsupported(format!(
                "{}: this BMC's profile says it has no soft (ACPI) shutdown",
                action.name()
            )));
        }
        let ctl = match action {
            PowerAction::On => ChassisControl::PowerUp,
            PowerAction::Off => ChassisControl::PowerDown,
            PowerAction::SoftOff => ChassisControl::SoftShutdown,
            PowerAction::Cycle => ChassisControl::PowerCycle,
            PowerAction::Reboot => match self.power_state().await? {
                // A power cycle does nothing to a machine that is off.
                PowerState::Off => ChassisControl::PowerUp,
                PowerState::On => ChassisControl::PowerCycle,
            },
            PowerAction::SoftReboot => {
                if self.power_state().await? == PowerState::On {
                    self.client
                        .chassis_control(ChassisControl::SoftShutdown)
                        .await?;
                    self.wait_for(PowerState::Off, self.soft_timeout).await?;
                }
                ChassisControl::PowerUp
            }
        };
        self.client.chassis_control(ctl).await?;
        Ok(())
    }

    async fn supported_power_actions(&self) -> Result<Vec<PowerAction>, BmcError> {
        Ok(PowerAction::ALL
            .into_iter()
            .filter(|a| !(a.is_soft() && self.quirks.no_soft_power))
            .collect())
    }

    async fn inject_nmi(&self) -> Result<(), BmcError> {
        if self.quirks.no_nmi {
            return Err(BmcError::Unsupported(
                "this BMC's profile says it has no diagnostic interrupt (NMI)".into(),
            ));
        }
        self.client
            .chassis_control(ChassisControl::DiagnosticInterrupt)
            .await?;
        Ok(())
    }

    async fn boot_device(&self) -> Result<BootSetting, BmcError> {
        Ok(from_flags(&self.client.boot_flags().await?))
    }

    async fn set_boot_device(&self, setting: BootSetting) -> Result<(), BmcError> {
        let flags = self.to_flags(setting)?;
        self.client
            .set_boot_flags(flags, self.quirks.disable_boot_timeout)
            .await?;
        Ok(())
    }

    async fn supported_boot_devices(&self) -> Result<Vec<BootDevice>, BmcError> {
        Ok(vec![
            BootDevice::Pxe,
            BootDevice::Disk,
            BootDevice::Cdrom,
            BootDevice::Bios,
            BootDevice::Safe,
        ])
    }

    async fn close(&self) {
        self.client.close().await;
    }

    fn ipmi_client(&self) -> Option<IpmiClient> {
        Some(self.client.clone())
    }
}
