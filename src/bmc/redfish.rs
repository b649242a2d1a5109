//! The Redfish implementation of [`Bmc`], on top of
//! [`crate::redfish::RedfishClient`].
//!
//! Power actions map to `ResetType`s as Ironic's redfish driver does:
//!
//! | action      | ResetType (first allowed)            |
//! |-------------|--------------------------------------|
//! | on          | `On`, `ForceOn`                      |
//! | off         | `ForceOff`                           |
//! | soft off    | `GracefulShutdown`                   |
//! | reboot      | `ForceRestart`, else ForceOff + On   |
//! | soft reboot | `GracefulRestart`                    |
//! | cycle       | `PowerCycle`, else ForceOff + On     |
//! | nmi         | `Nmi`                                |
//!
//! The profile's `reset_substitutions` are applied first; the result must be
//! in the system's allowed values (when it lists them), otherwise the action
//! fails with [`BmcError::Unsupported`] without sending anything.
//!
//! Boot devices: pxe ⇄ `Pxe`, disk ⇄ `Hdd`, cdrom ⇄ `Cd`, bios ⇄ `BiosSetup`,
//! uefi_http ⇄ `UefiHttp`; `safe` has no Redfish equivalent.

use crate::bmc::{Bmc, BmcError, BootDevice, BootMode, BootSetting, PowerAction, PowerState};
use crate::redfish::client::ResetInfo;
use crate::redfish::model::{
    BootSource, BootSourceOverrideEnabled, BootSourceOverrideMode, PowerState as RfPower, ResetType,
};
use crate::redfish::{RedfishClient, RedfishConfig, VirtualMediaStatus};

/// A BMC driven over Redfish.
#[derive(Debug)]
pub struct RedfishBmc {
    client: RedfishClient,
}

/// One way to carry out a power action.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Plan {
    Single(ResetType),
    /// `ForceOff`, wait until off, then `On`.
    OffThenOn,
}

fn candidates(action: PowerAction) -> Vec<Plan> {
    use Plan::*;
    match action {
        PowerAction::On => vec![Single(ResetType::On), Single(ResetType::ForceOn)],
        PowerAction::Off => vec![Single(ResetType::ForceOff)],
        PowerAction::SoftOff => vec![Single(ResetType::GracefulShutdown)],
        PowerAction::Reboot => vec![Single(ResetType::ForceRestart), OffThenOn],
        PowerAction::SoftReboot => vec![Single(ResetType::GracefulRestart)],
        PowerAction::Cycle => vec![Single(ResetType::PowerCycle), OffThenOn],
    }
}

/// Map a Redfish boot source to Ironic's vocabulary.
pub fn boot_device_of(source: &BootSource) -> Option<BootDevice> {
    Some(match source {
        BootSource::Pxe => BootDevice::Pxe,
        BootSource::Hdd => BootDevice::Disk,
        BootSource::Cd => BootDevice::Cdrom,
        BootSource::BiosSetup => BootDevice::Bios,
        BootSource::UefiHttp => BootDevice::UefiHttp,
        _ => return None,
    })
}

/// Map an Ironic boot device to a Redfish boot source.
pub fn boot_source_of(device: BootDevice) -> Option<BootSource> {
    Some(match device {
        BootDevice::Pxe => BootSource::Pxe,
        BootDevice::Disk => BootSource::Hdd,
        BootDevice::Cdrom => BootSource::Cd,
        BootDevice::Bios => BootSource::BiosSetup,
        BootDevice::UefiHttp => BootSource::UefiHttp,
        BootDevice::Safe => return None,
    })
}

/// Ironic's reading of `PowerState`: transitions count as their destination,
/// `Paused` as on.
pub fn power_state_of(state: Option<&RfPower>) -> Result<PowerState, BmcError> {
    match state {
        Some(RfPower::On | RfPower::PoweringOn | RfPower::Paused) => Ok(PowerState::On),
        Some(RfPower::Off | RfPower::PoweringOff) => Ok(PowerState::Off),
        Some(RfPower::Other(s)) => Err(BmcError::Protocol(format!("unknown PowerState {s:?}"))),
        None => Err(BmcError::Protocol(
            "the system reports no PowerState".into(),
        )),
    }
}

impl RedfishBmc {
    /// Build the client; nothing is sent until the first call.
    pub fn new(config: RedfishConfig) -> Result<RedfishBmc, BmcError> {
        Ok(RedfishBmc {
            client: RedfishClient::new(config)?,
        })
    }

    pub fn client(&self) -> &RedfishClient {
        &self.client
    }

    /// True when the BMC refused a persistent boot override and a one-time
    /// override was set instead: set the boot device again before each boot.
    pub fn needs_reassert(&self) -> bool {
        self.client.needs_reassert()
    }

    /// The system's `Manufacturer` (for hardware-profile matching).
    pub async fn manufacturer(&self) -> Result<Option<String>, BmcError> {
        Ok(self.client.system().await?.0.manufacturer)
    }

    /// Insert an image URL into the virtual CD (ejecting another one first).
    pub async fn insert_virtual_media(&self, url: &str) -> Result<(), BmcError> {
        self.client.insert_virtual_media(url).await
    }

    /// Eject the virtual CD.
    pub async fn eject_virtual_media(&self) -> Result<(), BmcError> {
        self.client.eject_virtual_media().await
    }

    /// The virtual CD's current image and inserted state.
    pub async fn virtual_media(&self) -> Result<VirtualMediaStatus, BmcError> {
        self.client.virtual_media_status().await
    }

    /// The first plan whose reset types (after substitution) the BMC allows.
    fn choose(&self, action: &str, plans: &[Plan], info: &ResetInfo) -> Result<Plan, BmcError> {
        let sub = |t: ResetType| self.client.substitute(&t);
        for plan in plans {
            let ok = match plan {
                Plan::Single(t) => info.allows(&sub(t.clone())),
                Plan::OffThenOn => {
                    info.allows(&sub(ResetType::ForceOff))
                        && (info.allows(&sub(ResetType::On))
                            || info.allows(&sub(ResetType::ForceOn)))
                }
            };
            if ok {
                return Ok(plan.clone());
            }
        }
        let tried: Vec<String> = plans
            .iter()
            .map(|p| match p {
                Plan::Single(t) => describe(t, &sub(t.clone())),
                Plan::OffThenOn => format!(
                    "{}+{}",
                    describe(&ResetType::ForceOff, &sub(ResetType::ForceOff)),
                    describe(&ResetType::On, &sub(ResetType::On))
                ),
            })
            .collect();
        let allowed = info
            .allowed
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        Err(BmcError::Unsupported(format!(
            "{action}: the BMC allows none of {} (allowed reset types: {allowed})",
            tried.join(", ")
        )))
    }

    /// The power actions some plan of which `info` allows.
    fn supported(&self, info: &ResetInfo) -> Vec<PowerAction> {
        PowerAction::ALL
            .into_iter()
            .filter(|a| self.choose(a.name(), &candidates(*a), info).is_ok())
            .collect()
    }

    async fn run(
        &self,
        action: &str,
        plans: &[Plan],
        skip_if: Option<PowerState>,
    ) -> Result<(), BmcError> {
        let deadline = self.client.operation_deadline();
        let (system, _) = self.client.system().await?;
        let info = self.client.reset_info(&system).await?;
        let plan = self.choose(action, plans, &info)?;
        let current = power_state_of(system.power_state.as_ref()).ok();
        if skip_if.is_some() && current == skip_if {
            tracing::debug!(action, "already in the target power state");
            return Ok(());
        }
        match plan {
            Plan::Single(t) => self.client.reset(&info, &self.client.substitute(&t)).await,
            Plan::OffThenOn => {
                if system.power_state != Some(RfPower::Off) {
                    let off = self.client.substitute(&ResetType::ForceOff);
                    self.client.reset(&info, &off).await?;
                    self.client
                        .wait_power(|s| *s == RfPower::Off, deadline)
                        .await?;
                }
                let on = [ResetType::On, ResetType::ForceOn]
                    .into_iter()
                    .map(|t| self.client.substitute(&t))
                    .find(|t| info.allows(t))
                    .unwrap_or(ResetType::On);
                self.client.reset(&info, &on).await
            }
        }
    }
}

fn describe(original: &ResetType, sent: &ResetType) -> String {
    if original == sent {
        original.to_string()
    } else {
        format!("{original}→{sent}")
    }
}

#[async_trait::async_trait]
impl Bmc for RedfishBmc {
    fn driver(&self) -> &'static str {
        "redfish"
    }

    async fn validate(&self) -> Result<(), BmcError> {
        self.client.discovery().await?;
        self.client.system().await?;
        Ok(())
    }

    async fn power_state(&self) -> Result<PowerState, BmcError> {
        let (system, _) = self.client.system().await?;
        power_state_of(system.power_state.as_ref())
    }

    async fn set_power(&self, action: PowerAction) -> Result<(), BmcError> {
        let skip_if = match action {
            PowerAction::On => Some(PowerState::On),
            PowerAction::Off | PowerAction::SoftOff => Some(PowerState::Off),
            _ => None,
        };
        self.run(action.name(), &candidates(action), skip_if).await
    }

    /// The actions the system's Reset action allows (after the profile's
    /// substitutions); everything when it lists no allowable values, nothing
    /// when the system has no Reset action.
    async fn supported_power_actions(&self) -> Result<Vec<PowerAction>, BmcError> {
        let (system, _) = self.client.system().await?;
        let info = match self.client.reset_info(&system).await {
            Ok(info) => info,
            Err(BmcError::Unsupported(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(self.supported(&info))
    }

    async fn inject_nmi(&self) -> Result<(), BmcError> {
        self.run("nmi", &[Plan::Single(ResetType::Nmi)], None).await
    }

    async fn boot_device(&self) -> Result<BootSetting, BmcError> {
        let (system, _) = self.client.system().await?;
        let boot = system.boot.unwrap_or_default();
        let device = match boot.enabled {
            Some(BootSourceOverrideEnabled::Disabled) => None,
            _ => boot.target.as_ref().and_then(boot_device_of),
        };
        let mode = match boot.mode {
            Some(BootSourceOverrideMode::Uefi) => Some(BootMode::Uefi),
            Some(BootSourceOverrideMode::Legacy) => Some(BootMode::Bios),
            _ => None,
        };
        Ok(BootSetting {
            device,
            persistent: boot.enabled == Some(BootSourceOverrideEnabled::Continuous),
            mode,
        })
    }

    async fn set_boot_device(&self, setting: BootSetting) -> Result<(), BmcError> {
        let target = match setting.device {
            None => None,
            Some(d) => Some(boot_source_of(d).ok_or_else(|| {
                BmcError::Unsupported(format!(
                    "boot device {} has no Redfish equivalent",
                    d.name()
                ))
            })?),
        };
        let mode = setting.mode.map(|m| match m {
            BootMode::Uefi => BootSourceOverrideMode::Uefi,
            BootMode::Bios => BootSourceOverrideMode::Legacy,
        });
        self.client
            .set_boot_override(target, setting.persistent, mode)
            .await
    }

    async fn supported_boot_devices(&self) -> Result<Vec<BootDevice>, BmcError> {
        let (system, _) = self.client.system().await?;
        let mut out = Vec::new();
        for source in crate::redfish::client::allowed_boot_targets(&system) {
            if let Some(d) = boot_device_of(&source) {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    async fn close(&self) {
        self.client.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_maps_round_trip() {
        for d in [
            BootDevice::Pxe,
            BootDevice::Disk,
            BootDevice::Cdrom,
            BootDevice::Bios,
            BootDevice::UefiHttp,
        ] {
            assert_eq!(boot_device_of(&boot_source_of(d).unwrap()), Some(d));
        }
        assert_eq!(boot_source_of(BootDevice::Safe), None);
        assert_eq!(boot_device_of(&BootSource::Usb), None);
        assert_eq!(boot_device_of(&BootSource::Other("Oem".into())), None);
    }

    #[test]
    fn power_states() {
        assert_eq!(
            power_state_of(Some(&RfPower::PoweringOn)).unwrap(),
            PowerState::On
        );
        assert_eq!(
            power_state_of(Some(&RfPower::PoweringOff)).unwrap(),
            PowerState::Off
        );
        assert!(matches!(
            power_state_of(Some(&RfPower::Other("PoweringOnSoon".into()))),
            Err(BmcError::Protocol(_))
        ));
        assert!(matches!(power_state_of(None), Err(BmcError::Protocol(_))));
    }

    fn bmc(subs: &[(&str, &str)]) -> RedfishBmc {
        let mut cfg = RedfishConfig::new("http://127.0.0.1:9", "u", "p");
        for (a, b) in subs {
            cfg.quirks
                .reset_substitutions
                .insert(a.to_string(), b.to_string());
        }
        RedfishBmc::new(cfg).unwrap()
    }

    fn info(allowed: Option<&[&str]>) -> ResetInfo {
        ResetInfo {
            target: "/x".into(),
            allowed: allowed.map(|l| l.iter().map(|s| ResetType::parse(s)).collect()),
        }
    }

    #[test]
    fn plans_follow_allowable_values() {
        let b = bmc(&[]);
        let sushy = info(Some(&[
            "On",
            "ForceOff",
            "GracefulShutdown",
            "GracefulRestart",
            "ForceRestart",
            "Nmi",
            "ForceOn",
        ]));
        assert_eq!(
            b.choose("cycle", &candidates(PowerAction::Cycle), &sushy)
                .unwrap(),
            Plan::OffThenOn
        );
        assert_eq!(
            b.choose("reboot", &candidates(PowerAction::Reboot), &sushy)
                .unwrap(),
            Plan::Single(ResetType::ForceRestart)
        );
        // Nothing listed: the first choice.
        assert_eq!(
            b.choose("cycle", &candidates(PowerAction::Cycle), &info(None))
                .unwrap(),
            Plan::Single(ResetType::PowerCycle)
        );
        // Unknown values in the list do not get in the way.
        let odd = info(Some(&["ForceOn", "FancyOEMReset"]));
        assert_eq!(
            b.choose("on", &candidates(PowerAction::On), &odd).unwrap(),
            Plan::Single(ResetType::ForceOn)
        );
        let err = b
            .choose("power off", &candidates(PowerAction::Off), &odd)
            .unwrap_err();
        assert!(
            matches!(&err, BmcError::Unsupported(m) if m.contains("ForceOff") && m.contains("FancyOEMReset")),
            "{err}"
        );
    }

    #[test]
    fn supported_actions_follow_allowable_values() {
        let b = bmc(&[]);
        assert_eq!(b.supported(&info(None)), PowerAction::ALL.to_vec());
        let no_graceful = info(Some(&["On", "ForceOff", "ForceRestart", "PowerCycle"]));
        assert_eq!(
            b.supported(&no_graceful),
            vec![
                PowerAction::On,
                PowerAction::Off,
                PowerAction::Reboot,
                PowerAction::Cycle
            ]
        );
        // Reboot and cycle through ForceOff + On.
        let minimal = info(Some(&["On", "ForceOff", "GracefulShutdown"]));
        assert_eq!(
            b.supported(&minimal),
            vec![
                PowerAction::On,
                PowerAction::Off,
                PowerAction::SoftOff,
                PowerAction::Reboot,
                PowerAction::Cycle
            ]
        );
    }

    #[test]
    fn substitutions_apply_before_the_check() {
        let b = bmc(&[("GracefulShutdown", "PushPowerButton")]);
        let err = b
            .choose(
                "soft power off",
                &candidates(PowerAction::SoftOff),
                &info(Some(&["On", "GracefulShutdown"])),
            )
            .unwrap_err();
        assert!(
            matches!(&err, BmcError::Unsupported(m) if m.contains("GracefulShutdown→PushPowerButton")),
            "{err}"
        );
        assert!(b
            .choose(
                "soft power off",
                &candidates(PowerAction::SoftOff),
                &info(Some(&["PushPowerButton"])),
            )
            .is_ok());
    }
}
