//! Hand-written serde models for the slice of the Redfish schema ironrack uses.
//!
//! Rules every type here follows, so that one odd BMC never fails a whole
//! document:
//!
//! * unknown fields are ignored (no `deny_unknown_fields` anywhere);
//! * every field is optional or defaults when missing;
//! * scalar fields are read leniently: a value of the wrong JSON type (a
//!   string where a bool was expected, say) reads as "absent" instead of
//!   failing the document;
//! * enumerations are *open*: a string the schema (or this file) does not know
//!   is kept in an `Other(String)` variant.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Read a value of type `T`, or `None` when it is null, missing (with
/// `#[serde(default)]`) or of an unexpected shape.
pub(crate) fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    Ok(T::deserialize(v).ok())
}

/// Read a Redfish body as `T`, as the client reads every document: through a
/// `serde_json::Value` first, so a name that appears twice in one object
/// keeps its last value (as Python's `json`, and so sushy and Ironic, do)
/// instead of failing the whole document, which derived `Deserialize` does.
pub fn from_body<T: DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
    T::deserialize(serde_json::from_slice::<Value>(body)?)
}

/// Read a list leniently: a non-array reads as empty, and entries that do not
/// parse are skipped.
pub(crate) fn lenient_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|i| T::deserialize(i).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// Like [`lenient_vec`] but keeps "absent" distinct from "empty": annotations
/// such as `@Redfish.AllowableValues` mean "no restriction" when missing.
pub(crate) fn lenient_opt_vec<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Array(items) => Some(
            items
                .into_iter()
                .filter_map(|i| T::deserialize(i).ok())
                .collect(),
        ),
        _ => None,
    })
}

/// Declares an open enumeration: known variants plus `Other(String)`, read
/// from and written as the Redfish string.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A value this crate does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// The Redfish spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other(s) => s.as_str(),
                }
            }

            /// Parse a Redfish string; never fails.
            pub fn parse(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // Accept any JSON value: a string is parsed, anything else is
                // kept as its JSON text in `Other`.
                Ok(match Value::deserialize(d)? {
                    Value::String(s) => $name::parse(&s),
                    other => $name::Other(other.to_string()),
                })
            }
        }
    };
}

open_enum! {
    /// `ComputerSystem.PowerState` (also used by managers and chassis).
    PowerState {
        On => "On",
        Off => "Off",
        PoweringOn => "PoweringOn",
        PoweringOff => "PoweringOff",
        Paused => "Paused",
    }
}

open_enum! {
    /// `Resource.ResetType`, the parameter of `#ComputerSystem.Reset`.
    ResetType {
        On => "On",
        ForceOff => "ForceOff",
        GracefulShutdown => "GracefulShutdown",
        GracefulRestart => "GracefulRestart",
        ForceRestart => "ForceRestart",
        Nmi => "Nmi",
        ForceOn => "ForceOn",
        PushPowerButton => "PushPowerButton",
        PowerCycle => "PowerCycle",
        FullPowerCycle => "FullPowerCycle",
        Suspend => "Suspend",
        Pause => "Pause",
        Resume => "Resume",
    }
}

open_enum! {
    /// `ComputerSystem.BootSource` (`Boot.BootSourceOverrideTarget`).
    BootSource {
        None => "None",
        Pxe => "Pxe",
        Floppy => "Floppy",
        Cd => "Cd",
        Usb => "Usb",
        Hdd => "Hdd",
        BiosSetup => "BiosSetup",
        Utilities => "Utilities",
        Diags => "Diags",
        UefiShell => "UefiShell",
        UefiTarget => "UefiTarget",
        SdCard => "SDCard",
        UefiHttp => "UefiHttp",
        RemoteDrive => "RemoteDrive",
        UefiBootNext => "UefiBootNext",
        Recovery => "Recovery",
    }
}

open_enum! {
    /// `Boot.BootSourceOverrideEnabled`.
    BootSourceOverrideEnabled {
        Disabled => "Disabled",
        Once => "Once",
        Continuous => "Continuous",
    }
}

open_enum! {
    /// `Boot.BootSourceOverrideMode`.
    BootSourceOverrideMode {
        Legacy => "Legacy",
        Uefi => "UEFI",
    }
}

open_enum! {
    /// `VirtualMedia.MediaType`.
    MediaType {
        Cd => "CD",
        Dvd => "DVD",
        Floppy => "Floppy",
        UsbStick => "USBStick",
    }
}

open_enum! {
    /// `Task.TaskState`.
    TaskState {
        New => "New",
        Starting => "Starting",
        Running => "Running",
        Suspended => "Suspended",
        Interrupted => "Interrupted",
        Pending => "Pending",
        Stopping => "Stopping",
        Completed => "Completed",
        Killed => "Killed",
        Exception => "Exception",
        Service => "Service",
        Cancelling => "Cancelling",
        Cancelled => "Cancelled",
    }
}

impl TaskState {
    /// The task will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Killed | TaskState::Exception | TaskState::Cancelled
        )
    }

    /// The task ended without doing its work.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            TaskState::Killed | TaskState::Exception | TaskState::Cancelled
        )
    }
}

/// A link: `{"@odata.id": "/redfish/v1/..."}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct OdataRef {
    #[serde(rename = "@odata.id", default, deserialize_with = "lenient")]
    pub odata_id: Option<String>,
}

/// The service root, `/redfish/v1/`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServiceRoot {
    #[serde(rename = "RedfishVersion", default, deserialize_with = "lenient")]
    pub redfish_version: Option<String>,
    #[serde(rename = "Systems", default, deserialize_with = "lenient")]
    pub systems: Option<OdataRef>,
    #[serde(rename = "Managers", default, deserialize_with = "lenient")]
    pub managers: Option<OdataRef>,
    #[serde(rename = "SessionService", default, deserialize_with = "lenient")]
    pub session_service: Option<OdataRef>,
    #[serde(rename = "Links", default, deserialize_with = "lenient")]
    pub links: Option<ServiceRootLinks>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServiceRootLinks {
    #[serde(rename = "Sessions", default, deserialize_with = "lenient")]
    pub sessions: Option<OdataRef>,
}

/// Any resource collection.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Collection {
    #[serde(rename = "Members", default, deserialize_with = "lenient_vec")]
    pub members: Vec<OdataRef>,
    #[serde(
        rename = "Members@odata.nextLink",
        default,
        deserialize_with = "lenient"
    )]
    pub next_link: Option<String>,
}

impl Collection {
    /// Member paths, skipping links without an `@odata.id`.
    pub fn member_paths(&self) -> impl Iterator<Item = &str> {
        self.members.iter().filter_map(|m| m.odata_id.as_deref())
    }
}

/// `@Redfish.Settings`: where pending settings are written.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SettingsAnnotation {
    #[serde(rename = "SettingsObject", default, deserialize_with = "lenient")]
    pub settings_object: Option<OdataRef>,
}

/// `ComputerSystem`, the fields ironrack reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ComputerSystem {
    #[serde(rename = "@odata.id", default, deserialize_with = "lenient")]
    pub odata_id: Option<String>,
    #[serde(rename = "@odata.etag", default, deserialize_with = "lenient")]
    pub odata_etag: Option<String>,
    #[serde(rename = "Id", default, deserialize_with = "lenient")]
    pub id: Option<String>,
    #[serde(rename = "Name", default, deserialize_with = "lenient")]
    pub name: Option<String>,
    #[serde(rename = "UUID", default, deserialize_with = "lenient")]
    pub uuid: Option<String>,
    /// For hardware-profile matching (`redfish_manufacturers`).
    #[serde(rename = "Manufacturer", default, deserialize_with = "lenient")]
    pub manufacturer: Option<String>,
    #[serde(rename = "Model", default, deserialize_with = "lenient")]
    pub model: Option<String>,
    #[serde(rename = "PowerState", default, deserialize_with = "lenient")]
    pub power_state: Option<PowerState>,
    #[serde(rename = "Boot", default, deserialize_with = "lenient")]
    pub boot: Option<Boot>,
    #[serde(rename = "Actions", default, deserialize_with = "lenient")]
    pub actions: Option<SystemActions>,
    #[serde(rename = "Links", default, deserialize_with = "lenient")]
    pub links: Option<SystemLinks>,
    #[serde(rename = "VirtualMedia", default, deserialize_with = "lenient")]
    pub virtual_media: Option<OdataRef>,
    #[serde(rename = "@Redfish.Settings", default, deserialize_with = "lenient")]
    pub settings: Option<SettingsAnnotation>,
}

impl ComputerSystem {
    pub fn reset_action(&self) -> Option<&ResetAction> {
        self.actions.as_ref()?.reset.as_ref()
    }

    /// The URI boot settings are written to: the settings object when the
    /// system advertises one.
    pub fn settings_object(&self) -> Option<&str> {
        self.settings
            .as_ref()?
            .settings_object
            .as_ref()?
            .odata_id
            .as_deref()
    }

    /// `Links.ManagedBy[0]`.
    pub fn manager_path(&self) -> Option<&str> {
        self.links
            .as_ref()?
            .managed_by
            .iter()
            .find_map(|m| m.odata_id.as_deref())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SystemLinks {
    #[serde(rename = "ManagedBy", default, deserialize_with = "lenient_vec")]
    pub managed_by: Vec<OdataRef>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SystemActions {
    #[serde(
        rename = "#ComputerSystem.Reset",
        default,
        deserialize_with = "lenient"
    )]
    pub reset: Option<ResetAction>,
}

/// `Actions."#ComputerSystem.Reset"`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ResetAction {
    #[serde(default, deserialize_with = "lenient")]
    pub target: Option<String>,
    #[serde(
        rename = "ResetType@Redfish.AllowableValues",
        default,
        deserialize_with = "lenient_opt_vec"
    )]
    pub allowable_values: Option<Vec<ResetType>>,
    #[serde(rename = "@Redfish.ActionInfo", default, deserialize_with = "lenient")]
    pub action_info: Option<String>,
}

/// `ActionInfo`: parameters of an action and their allowed values.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ActionInfo {
    #[serde(rename = "Parameters", default, deserialize_with = "lenient_vec")]
    pub parameters: Vec<ActionParameter>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ActionParameter {
    #[serde(rename = "Name", default, deserialize_with = "lenient")]
    pub name: Option<String>,
    #[serde(
        rename = "AllowableValues",
        default,
        deserialize_with = "lenient_opt_vec"
    )]
    pub allowable_values: Option<Vec<String>>,
}

impl ActionInfo {
    /// Allowed values of one parameter, when the BMC lists them.
    pub fn allowable(&self, parameter: &str) -> Option<&[String]> {
        self.parameters
            .iter()
            .find(|p| p.name.as_deref() == Some(parameter))?
            .allowable_values
            .as_deref()
    }
}

/// `ComputerSystem.Boot`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Boot {
    #[serde(
        rename = "BootSourceOverrideEnabled",
        default,
        deserialize_with = "lenient"
    )]
    pub enabled: Option<BootSourceOverrideEnabled>,
    #[serde(
        rename = "BootSourceOverrideEnabled@Redfish.AllowableValues",
        default,
        deserialize_with = "lenient_opt_vec"
    )]
    pub enabled_allowable: Option<Vec<BootSourceOverrideEnabled>>,
    #[serde(
        rename = "BootSourceOverrideTarget",
        default,
        deserialize_with = "lenient"
    )]
    pub target: Option<BootSource>,
    #[serde(
        rename = "BootSourceOverrideTarget@Redfish.AllowableValues",
        default,
        deserialize_with = "lenient_opt_vec"
    )]
    pub target_allowable: Option<Vec<BootSource>>,
    #[serde(
        rename = "BootSourceOverrideMode",
        default,
        deserialize_with = "lenient"
    )]
    pub mode: Option<BootSourceOverrideMode>,
    #[serde(
        rename = "BootSourceOverrideMode@Redfish.AllowableValues",
        default,
        deserialize_with = "lenient_opt_vec"
    )]
    pub mode_allowable: Option<Vec<BootSourceOverrideMode>>,
}

/// `Manager`, the fields ironrack reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Manager {
    #[serde(rename = "@odata.id", default, deserialize_with = "lenient")]
    pub odata_id: Option<String>,
    #[serde(rename = "Id", default, deserialize_with = "lenient")]
    pub id: Option<String>,
    #[serde(rename = "VirtualMedia", default, deserialize_with = "lenient")]
    pub virtual_media: Option<OdataRef>,
}

/// `VirtualMedia`, the fields ironrack reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct VirtualMedia {
    #[serde(rename = "@odata.id", default, deserialize_with = "lenient")]
    pub odata_id: Option<String>,
    #[serde(rename = "@odata.etag", default, deserialize_with = "lenient")]
    pub odata_etag: Option<String>,
    #[serde(rename = "Id", default, deserialize_with = "lenient")]
    pub id: Option<String>,
    #[serde(rename = "Name", default, deserialize_with = "lenient")]
    pub name: Option<String>,
    #[serde(rename = "MediaTypes", default, deserialize_with = "lenient_vec")]
    pub media_types: Vec<MediaType>,
    #[serde(rename = "Image", default, deserialize_with = "lenient")]
    pub image: Option<String>,
    #[serde(rename = "ImageName", default, deserialize_with = "lenient")]
    pub image_name: Option<String>,
    #[serde(rename = "Inserted", default, deserialize_with = "lenient")]
    pub inserted: Option<bool>,
    #[serde(rename = "WriteProtected", default, deserialize_with = "lenient")]
    pub write_protected: Option<bool>,
    #[serde(rename = "Actions", default, deserialize_with = "lenient")]
    pub actions: Option<VirtualMediaActions>,
}

impl VirtualMedia {
    /// Whether this device takes CD/DVD images.
    pub fn is_cd(&self) -> bool {
        self.media_types
            .iter()
            .any(|t| matches!(t, MediaType::Cd | MediaType::Dvd))
    }

    pub fn insert_target(&self) -> Option<&str> {
        self.actions.as_ref()?.insert.as_ref()?.target.as_deref()
    }

    pub fn eject_target(&self) -> Option<&str> {
        self.actions.as_ref()?.eject.as_ref()?.target.as_deref()
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct VirtualMediaActions {
    #[serde(
        rename = "#VirtualMedia.InsertMedia",
        default,
        deserialize_with = "lenient"
    )]
    pub insert: Option<ActionTarget>,
    #[serde(
        rename = "#VirtualMedia.EjectMedia",
        default,
        deserialize_with = "lenient"
    )]
    pub eject: Option<ActionTarget>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ActionTarget {
    #[serde(default, deserialize_with = "lenient")]
    pub target: Option<String>,
}

/// A `Message` (as found in `@Message.ExtendedInfo` and task `Messages`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Message {
    #[serde(rename = "MessageId", default, deserialize_with = "lenient")]
    pub message_id: Option<String>,
    #[serde(rename = "Message", default, deserialize_with = "lenient")]
    pub message: Option<String>,
    #[serde(rename = "Resolution", default, deserialize_with = "lenient")]
    pub resolution: Option<String>,
    #[serde(rename = "Severity", default, deserialize_with = "lenient")]
    pub severity: Option<String>,
}

/// `Task` (what a task monitor returns while and after it runs).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Task {
    #[serde(rename = "TaskState", default, deserialize_with = "lenient")]
    pub task_state: Option<TaskState>,
    #[serde(rename = "TaskStatus", default, deserialize_with = "lenient")]
    pub task_status: Option<String>,
    #[serde(rename = "Messages", default, deserialize_with = "lenient_vec")]
    pub messages: Vec<Message>,
}

/// The body of a Redfish error response.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ErrorResponse {
    #[serde(default, deserialize_with = "lenient")]
    pub error: Option<ErrorInfo>,
    /// Some services put the messages at the top level.
    #[serde(
        rename = "@Message.ExtendedInfo",
        default,
        deserialize_with = "lenient_vec"
    )]
    pub extended_info: Vec<Message>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ErrorInfo {
    #[serde(default, deserialize_with = "lenient")]
    pub code: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub message: Option<String>,
    #[serde(
        rename = "@Message.ExtendedInfo",
        default,
        deserialize_with = "lenient_vec"
    )]
    pub extended_info: Vec<Message>,
}

impl ErrorResponse {
    /// All messages, nested ones first.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.error
            .iter()
            .flat_map(|e| e.extended_info.iter())
            .chain(self.extended_info.iter())
    }

    /// Every MessageId the body carries (plus `error.code`).
    pub fn message_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .messages()
            .filter_map(|m| m.message_id.as_deref())
            .collect();
        if let Some(code) = self.error.as_ref().and_then(|e| e.code.as_deref()) {
            ids.push(code);
        }
        ids
    }

    /// The most specific code: the first extended MessageId, else `error.code`.
    pub fn code(&self) -> Option<String> {
        self.messages()
            .find_map(|m| m.message_id.clone())
            .or_else(|| self.error.as_ref().and_then(|e| e.code.clone()))
    }

    /// A human message: every extended message, else `error.message`.
    pub fn text(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .messages()
            .filter_map(|m| m.message.as_deref())
            .filter(|m| !m.trim().is_empty())
            .collect();
        if !parts.is_empty() {
            return Some(parts.join("; "));
        }
        self.error
            .as_ref()
            .and_then(|e| e.message.clone())
            .filter(|m| !m.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz/fuzz_targets/redfish_json.rs`: a duplicated name made
    /// every model fail the whole document ("duplicate field `@odata.id`").
    #[test]
    fn duplicate_names_keep_the_last_value() {
        let body = br#"{"@odata.id":"","@odata.id":""}"#;
        assert!(serde_json::from_slice::<ComputerSystem>(body).is_err());
        let s: ComputerSystem = from_body(body).unwrap();
        assert_eq!(s.odata_id.as_deref(), Some(""));
        let s: ComputerSystem =
            from_body(br#"{"Id": "1", "PowerState": "Off", "PowerState": "On"}"#).unwrap();
        assert_eq!(s.power_state, Some(PowerState::On));
        assert_eq!(s.id.as_deref(), Some("1"));
        let t: Task = from_body(br#"{"TaskState": "Running", "TaskState": "Exception"}"#).unwrap();
        assert_eq!(t.task_state, Some(TaskState::Exception));
        let e: ErrorResponse =
            from_body(br#"{"error": {"code": "A"}, "error": {"code": "B"}}"#).unwrap();
        assert_eq!(e.code().as_deref(), Some("B"));
        assert!(from_body::<ComputerSystem>(b"{").is_err());
    }

    #[test]
    fn unknown_power_state_is_kept() {
        let s: ComputerSystem =
            serde_json::from_slice(br#"{"PowerState": "PoweringOnSoon", "Id": "1"}"#).unwrap();
        assert_eq!(
            s.power_state,
            Some(PowerState::Other("PoweringOnSoon".into()))
        );
        assert_eq!(s.id.as_deref(), Some("1"));
    }

    #[test]
    fn unknown_reset_types_are_kept() {
        let s: ComputerSystem = serde_json::from_slice(
            br##"{"Actions": {"#ComputerSystem.Reset": {
                "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": ["On", "FancyOEMReset", 7, null]
            }, "Oem": {"#Vendor.Thing": {}}}}"##,
        )
        .unwrap();
        let reset = s.reset_action().unwrap();
        assert_eq!(
            reset.allowable_values.as_deref().unwrap(),
            &[
                ResetType::On,
                ResetType::Other("FancyOEMReset".into()),
                ResetType::Other("7".into()),
                ResetType::Other("null".into()),
            ]
        );
        assert_eq!(
            reset.target.as_deref(),
            Some("/redfish/v1/Systems/1/Actions/ComputerSystem.Reset")
        );
    }

    #[test]
    fn open_enums_round_trip() {
        for s in ["On", "Paused", "WarpSpeed"] {
            let v = PowerState::parse(s);
            assert_eq!(v.as_str(), s);
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(BootSource::parse("SDCard"), BootSource::SdCard);
        assert_eq!(
            BootSourceOverrideMode::parse("UEFI"),
            BootSourceOverrideMode::Uefi
        );
        assert_eq!(
            BootSource::parse("OemMagicTarget"),
            BootSource::Other("OemMagicTarget".into())
        );
    }

    #[test]
    fn extra_fields_and_wrong_types_do_not_fail() {
        let s: ComputerSystem = serde_json::from_slice(
            br#"{
                "@odata.id": "/redfish/v1/Systems/1",
                "Oem": {"Dell": {"Anything": [1, 2, {"x": null}]}},
                "NewIn2030": {"Nested": true},
                "PowerState": "On",
                "UUID": 42,
                "Boot": {
                    "BootSourceOverrideEnabled": "SometimesMaybe",
                    "BootSourceOverrideTarget": "Pxe",
                    "BootSourceOverrideTarget@Redfish.AllowableValues": "not a list",
                    "BootSourceOverrideMode": "UEFI",
                    "BootOrder": ["Boot0001"]
                },
                "Links": {"ManagedBy": [{"@odata.id": "/redfish/v1/Managers/1"}], "Chassis": []},
                "VirtualMedia": "bogus"
            }"#,
        )
        .unwrap();
        assert_eq!(s.odata_id.as_deref(), Some("/redfish/v1/Systems/1"));
        assert_eq!(
            s.uuid, None,
            "a number where a string belongs reads as absent"
        );
        let boot = s.boot.as_ref().unwrap();
        assert_eq!(
            boot.enabled,
            Some(BootSourceOverrideEnabled::Other("SometimesMaybe".into()))
        );
        assert_eq!(boot.target, Some(BootSource::Pxe));
        assert_eq!(boot.target_allowable, None);
        assert_eq!(boot.mode, Some(BootSourceOverrideMode::Uefi));
        assert_eq!(s.manager_path(), Some("/redfish/v1/Managers/1"));
        assert!(s.virtual_media.is_none());
    }

    #[test]
    fn missing_fields_default() {
        let s: ComputerSystem = serde_json::from_slice(b"{}").unwrap();
        assert!(s.power_state.is_none());
        assert!(s.boot.is_none());
        assert!(s.reset_action().is_none());
        assert!(s.manager_path().is_none());
        assert!(s.settings_object().is_none());

        let c: Collection = serde_json::from_slice(br#"{"Name": "x"}"#).unwrap();
        assert_eq!(c.member_paths().count(), 0);

        let v: VirtualMedia = serde_json::from_slice(br#"{"Image": null}"#).unwrap();
        assert!(v.image.is_none() && v.inserted.is_none() && !v.is_cd());

        let r: ServiceRoot = serde_json::from_slice(b"{}").unwrap();
        assert!(r.systems.is_none());
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"PowerState\": }",
            b"\xff\xfe",
            b"null",
            b"[1, 2",
        ] {
            assert!(serde_json::from_slice::<ComputerSystem>(bad).is_err());
        }
    }

    #[test]
    fn settings_and_virtual_media() {
        let s: ComputerSystem = serde_json::from_slice(
            br#"{"@Redfish.Settings": {"SettingsObject": {"@odata.id": "/redfish/v1/Systems/1/Settings"}}}"#,
        )
        .unwrap();
        assert_eq!(s.settings_object(), Some("/redfish/v1/Systems/1/Settings"));

        let v: VirtualMedia = serde_json::from_slice(
            br##"{"MediaTypes": ["USBStick", "DVD", "HoloDisc"], "Inserted": true,
                "Image": "http://x/y.iso",
                "Actions": {"#VirtualMedia.InsertMedia": {"target": "/vm/1/Insert"}}}"##,
        )
        .unwrap();
        assert!(v.is_cd());
        assert_eq!(v.insert_target(), Some("/vm/1/Insert"));
        assert_eq!(v.eject_target(), None);
        assert_eq!(v.media_types[2], MediaType::Other("HoloDisc".into()));
    }

    #[test]
    fn error_bodies() {
        let e: ErrorResponse = serde_json::from_slice(
            br#"{"error": {"code": "Base.1.8.GeneralError",
                "message": "A general error has occurred.",
                "@Message.ExtendedInfo": [
                    {"MessageId": "IDRAC.2.8.SYS029", "Message": "Unable to perform the operation because a reset is in progress.", "Severity": "Warning"},
                    {"MessageId": "Base.1.8.ActionNotSupported", "Message": "Second."}
                ]}}"#,
        )
        .unwrap();
        assert_eq!(e.code().as_deref(), Some("IDRAC.2.8.SYS029"));
        assert_eq!(
            e.text().as_deref(),
            Some("Unable to perform the operation because a reset is in progress.; Second.")
        );
        assert_eq!(
            e.message_ids(),
            vec![
                "IDRAC.2.8.SYS029",
                "Base.1.8.ActionNotSupported",
                "Base.1.8.GeneralError"
            ]
        );

        // Only the outer code and message.
        let e: ErrorResponse =
            serde_json::from_slice(br#"{"error": {"code": 401, "message": "no"}}"#).unwrap();
        assert_eq!(e.code(), None, "a numeric code is not a MessageId");
        assert_eq!(e.text().as_deref(), Some("no"));

        // Top-level extended info (seen on some 400s).
        let e: ErrorResponse = serde_json::from_slice(
            br#"{"@Message.ExtendedInfo": [{"MessageId": "iLO.2.14.UnableToModifyDuringSystemPOST"}]}"#,
        )
        .unwrap();
        assert_eq!(
            e.code().as_deref(),
            Some("iLO.2.14.UnableToModifyDuringSystemPOST")
        );
        assert_eq!(e.text(), None);
    }

    #[test]
    fn task_states() {
        let t: Task = serde_json::from_slice(
            br#"{"TaskState": "Exception", "Messages": [{"MessageId": "X.1", "Message": "boom"}]}"#,
        )
        .unwrap();
        let state = t.task_state.unwrap();
        assert!(state.is_terminal() && state.is_failure());
        assert!(!TaskState::Running.is_terminal());
        assert!(!TaskState::Other("Weird".into()).is_terminal());
    }

    #[test]
    fn action_info_parameters() {
        let a: ActionInfo = serde_json::from_slice(
            br#"{"Parameters": [{"Name": "ResetType", "Required": true, "DataType": "String",
                "AllowableValues": ["On", "ForceOff"]}, {"Name": "Other"}]}"#,
        )
        .unwrap();
        assert_eq!(
            a.allowable("ResetType").unwrap(),
            &["On".to_string(), "ForceOff".to_string()]
        );
        assert!(a.allowable("Other").is_none());
        assert!(a.allowable("Missing").is_none());
    }
}
