//! Redfish client: HTTP(S) via one pooled `reqwest::Client` per BMC, and
//! hand-written serde models ([`model`]) for exactly the subset ironrack uses.
//!
//! # Why hand-written models
//!
//! Generated bindings (nv-redfish, redfish-codegen) were considered and not
//! used: redfish-codegen drops `@odata.id` (the links discovery walks) and, like
//! most generated code, treats enums as closed, so one unknown value
//! (`"PowerState": "PoweringOnSoon"`, an OEM reset type) fails the whole
//! document. Real BMCs ship such values all the time. The models here ignore
//! unknown fields, default missing ones, read mistyped scalars as absent, and
//! keep unknown enum strings in an `Other(String)` variant. They are small
//! enough to review by hand.
//!
//! # Layout
//!
//! * [`model`]: the serde types;
//! * [`client`]: transport (auth, retries, task monitors), discovery and the
//!   Redfish-level operations;
//! * `crate::bmc::redfish`: the [`crate::bmc::Bmc`] implementation on top.

pub mod client;
pub mod model;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

pub use client::{RedfishClient, VirtualMediaStatus};

/// Per-vendor Redfish quirks, set by hardware profiles.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedfishQuirks {
    /// `ResetType` → `ResetType` substitutions applied to every reset before
    /// it is checked against the allowed values and sent (e.g. a BMC that
    /// wants `PushPowerButton` where others take `GracefulShutdown`).
    #[serde(default)]
    pub reset_substitutions: BTreeMap<String, String>,
    /// Always PATCH `BootSourceOverrideTarget`, `BootSourceOverrideEnabled`
    /// and `BootSourceOverrideMode` together (Supermicro, AMI MegaRAC reject
    /// partial `Boot` objects). The current mode is re-sent when the caller
    /// does not ask for one.
    #[serde(default)]
    pub boot_patch_full_object: bool,
    /// Send `Connection: close` and keep no idle connections (BMCs whose
    /// keep-alive handling is broken).
    #[serde(default)]
    pub connection_close: bool,
    /// Send `Content-Type: application/json` with no `charset` parameter
    /// (Cisco CIMC rejects anything else). ironrack's default is already the
    /// plain `application/json`, so this flag pins that choice for the
    /// profiles that depend on it; with it false nothing changes either.
    #[serde(default)]
    pub content_type_no_charset: bool,
    /// Redfish MessageIds that mean "busy, try again later" (iDRAC
    /// `IDRAC.2.8.SYS029`, iLO `UnableToModifyDuringSystemPOST`). They are
    /// retried with backoff like a 409. An entry matches a MessageId exactly or
    /// as its last dotted component(s): `UnableToModifyDuringSystemPOST`
    /// matches `iLO.2.14.UnableToModifyDuringSystemPOST`.
    #[serde(default)]
    pub retryable_error_ids: Vec<String>,
    /// The system's path (`/redfish/v1/Systems/System.Embedded.1`) when
    /// discovery cannot pick it. A per-node `system_id` takes precedence.
    #[serde(default)]
    pub system_path: Option<String>,
}

/// How to reach and log in to one Redfish BMC.
#[derive(Clone)]
pub struct RedfishConfig {
    /// Base URL, e.g. `https://10.0.0.5` or `http://127.0.0.1:8000`. A path
    /// is ignored (resources are addressed from `/redfish/v1/`). A bare host
    /// means `https://host`.
    pub url: String,
    /// The system to manage: its `Id`, `UUID`, the last segment of its path
    /// or its full `@odata.id`. `None`: `quirks.system_path`, else the only
    /// member of the Systems collection.
    pub system_id: Option<String>,
    pub username: String,
    pub password: Zeroizing<String>,
    /// Verify the BMC's certificate. On by default; turn off per node only.
    pub verify_tls: bool,
    /// Extra trusted CAs (PEM bundle) for `https` BMCs.
    pub ca_bundle: Option<PathBuf>,
    /// Bound on one HTTP exchange (default 30 s).
    pub request_timeout: Duration,
    /// Bound on one whole operation including retries, backoff, task
    /// monitors and compound resets (default 180 s).
    pub operation_timeout: Duration,
    pub quirks: RedfishQuirks,
}

impl RedfishConfig {
    /// A configuration with the defaults: TLS verified, 30 s per request.
    pub fn new(
        url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> RedfishConfig {
        RedfishConfig {
            url: url.into(),
            username: username.into(),
            password: Zeroizing::new(password.into()),
            ..RedfishConfig::default()
        }
    }
}

impl Default for RedfishConfig {
    fn default() -> Self {
        RedfishConfig {
            url: String::new(),
            system_id: None,
            username: String::new(),
            password: Zeroizing::new(String::new()),
            verify_tls: true,
            ca_bundle: None,
            request_timeout: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(180),
            quirks: RedfishQuirks::default(),
        }
    }
}

impl fmt::Debug for RedfishConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedfishConfig")
            .field("url", &self.url)
            .field("system_id", &self.system_id)
            .field("username", &self.username)
            .field("password", &"******")
            .field("verify_tls", &self.verify_tls)
            .field("ca_bundle", &self.ca_bundle)
            .field("request_timeout", &self.request_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("quirks", &self.quirks)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let c = RedfishConfig::new("http://127.0.0.1:8000", "admin", "s3cret-pw");
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert!(text.contains("******"));
        assert!(c.verify_tls);
        assert_eq!(c.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn quirks_parse_and_reject_unknown_keys() {
        let q: RedfishQuirks = toml::from_str(
            r#"
            boot_patch_full_object = true
            retryable_error_ids = ["IDRAC.2.8.SYS029", "UnableToModifyDuringSystemPOST"]
            system_path = "/redfish/v1/Systems/System.Embedded.1"
            [reset_substitutions]
            GracefulShutdown = "PushPowerButton"
            "#,
        )
        .unwrap();
        assert!(q.boot_patch_full_object && !q.connection_close);
        assert_eq!(q.reset_substitutions["GracefulShutdown"], "PushPowerButton");
        assert_eq!(q.retryable_error_ids.len(), 2);

        assert_eq!(
            toml::from_str::<RedfishQuirks>("").unwrap(),
            RedfishQuirks::default()
        );
        assert!(toml::from_str::<RedfishQuirks>("bogus = 1").is_err());
    }
}
