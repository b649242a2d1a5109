//! Microversion negotiation, as Ironic does it: the client names a version
//! in `OpenStack-API-Version: baremetal 1.N` or the legacy
//! `X-OpenStack-Ironic-API-Version: 1.N` (or `latest`); no header means the
//! minimum version; anything outside `[MIN, MAX]` is 406.
//!
//! The maximum, 1.109, is the highest version at which every client we test
//! against (python-ironicclient 6.3.0, which knows 1.115, and openstacksdk
//! 4.22, whose Node resource stops at 1.109) has its requests understood by
//! this server: nothing between 1.1 and 1.109 changes the request or response
//! shapes of the endpoints served here in a way that is not honoured below
//! (fields gated by version, soft power and timeouts from 1.27, NMI from 1.29,
//! `fault` from 1.42, `?detail=` from 1.43, `reset_interfaces` from 1.45), and
//! at 1.91 and later names ending in `.json` are taken literally, which is
//! all this server ever does.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::error::ApiError;

pub const MAJOR: u32 = 1;
pub const MIN_MINOR: u32 = 1;
pub const MAX_MINOR: u32 = 109;

pub const HDR_VERSION: &str = "x-openstack-ironic-api-version";
pub const HDR_MIN: &str = "x-openstack-ironic-api-minimum-version";
pub const HDR_MAX: &str = "x-openstack-ironic-api-maximum-version";
pub const HDR_OPENSTACK: &str = "openstack-api-version";

// Microversions the API consults.
pub const V_NAME: u32 = 5;
pub const V_FIELDS: u32 = 8;
pub const V_STATES_LINKS: u32 = 14;
pub const V_PORT_ADVANCED: u32 = 19;
pub const V_RESOURCE_CLASS: u32 = 21;
pub const V_SOFT_POWER: u32 = 27;
pub const V_INJECT_NMI: u32 = 29;
pub const V_DYNAMIC_DRIVERS: u32 = 30;
pub const V_FAULT: u32 = 42;
pub const V_DETAIL_QUERY: u32 = 43;
pub const V_RESET_INTERFACES: u32 = 45;
pub const V_CONDUCTOR_GROUP: u32 = 46;
pub const V_CONDUCTORS: u32 = 49;
pub const V_OWNER: u32 = 50;
pub const V_DESCRIPTION: u32 = 51;
pub const V_RETIRED: u32 = 61;
pub const V_LESSEE: u32 = 65;
pub const V_DRIVER_FIELDS: u32 = 77;
pub const V_PROJECT: u32 = 80;
pub const V_SHARD: u32 = 82;
pub const V_PARENT_NODE: u32 = 83;
pub const V_PORT_NODE_IDENT: u32 = 94;
pub const V_INSTANCE_NAME: u32 = 104;

/// A negotiated `1.N` version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub minor: u32,
}

impl Version {
    pub const MIN: Version = Version { minor: MIN_MINOR };
    pub const MAX: Version = Version { minor: MAX_MINOR };

    pub fn at_least(self, minor: u32) -> bool {
        self.minor >= minor
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{MAJOR}.{}", self.minor)
    }
}

pub fn min_string() -> String {
    Version::MIN.to_string()
}

pub fn max_string() -> String {
    Version::MAX.to_string()
}

/// The version a request asks for, as microversion-parse finds it: the
/// `baremetal` entry of `OpenStack-API-Version` first, then the legacy header.
fn requested(headers: &HeaderMap) -> Option<String> {
    let joined = |name: &str| -> Option<String> {
        let vals: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!vals.is_empty()).then(|| vals.join(","))
    };
    if let Some(all) = joined(HDR_OPENSTACK) {
        for item in all.split(',') {
            let mut it = item.split_whitespace();
            if let (Some(service), Some(ver)) = (it.next(), it.next()) {
                if service.eq_ignore_ascii_case("baremetal") {
                    return Some(ver.to_string());
                }
            }
        }
    }
    joined(HDR_VERSION).map(|s| s.trim().to_string())
}

fn range_text() -> String {
    format!("[{}, {}]", min_string(), max_string())
}

/// Negotiate the version of one request, or the 406 Ironic would answer.
pub fn negotiate(headers: &HeaderMap) -> Result<Version, ApiError> {
    let Some(req) = requested(headers) else {
        return Ok(Version::MIN);
    };
    if req.eq_ignore_ascii_case("latest") {
        return Ok(Version::MAX);
    }
    let invalid = || {
        ApiError::not_acceptable(format!(
            "Invalid value for {} header",
            "X-OpenStack-Ironic-API-Version"
        ))
    };
    let (maj, min) = req.split_once('.').ok_or_else(invalid)?;
    let parse = |s: &str| -> Option<u32> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (Some(maj), Some(min)) = (parse(maj), parse(min)) else {
        return Err(invalid());
    };
    if maj != MAJOR {
        return Err(ApiError::not_acceptable(format!(
            "Mutually exclusive versions requested. Version {maj}.{min} requested but not \
             supported by this service. The supported version range is: {}.",
            range_text()
        )));
    }
    if !(MIN_MINOR..=MAX_MINOR).contains(&min) {
        return Err(ApiError::not_acceptable(format!(
            "Version {maj}.{min} was requested but the minor version is not supported by \
             this service. The supported version range is: {}.",
            range_text()
        )));
    }
    Ok(Version { minor: min })
}

/// The version headers every response carries.
pub fn response_headers(v: Version) -> Vec<(HeaderName, HeaderValue)> {
    let mk = |s: String| HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("1.1"));
    vec![
        (HeaderName::from_static(HDR_MIN), mk(min_string())),
        (HeaderName::from_static(HDR_MAX), mk(max_string())),
        (HeaderName::from_static(HDR_VERSION), mk(v.to_string())),
        (
            HeaderName::from_static(HDR_OPENSTACK),
            mk(format!("baremetal {v}")),
        ),
        (
            HeaderName::from_static("vary"),
            HeaderValue::from_static("X-OpenStack-Ironic-API-Version, OpenStack-API-Version"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn default_is_minimum_and_latest_is_maximum() {
        assert_eq!(negotiate(&h(&[])).unwrap(), Version::MIN);
        assert_eq!(
            negotiate(&h(&[(HDR_VERSION, "latest")])).unwrap(),
            Version::MAX
        );
        assert_eq!(
            negotiate(&h(&[(HDR_VERSION, "LATEST")])).unwrap(),
            Version::MAX
        );
    }

    #[test]
    fn both_headers_are_read_and_the_new_one_wins() {
        assert_eq!(negotiate(&h(&[(HDR_VERSION, "1.31")])).unwrap().minor, 31);
        assert_eq!(
            negotiate(&h(&[(HDR_OPENSTACK, "compute 2.1, baremetal 1.72")]))
                .unwrap()
                .minor,
            72
        );
        assert_eq!(
            negotiate(&h(&[
                (HDR_OPENSTACK, "baremetal 1.50"),
                (HDR_VERSION, "1.20")
            ]))
            .unwrap()
            .minor,
            50
        );
        // Another service's entry only: the legacy header decides.
        assert_eq!(
            negotiate(&h(&[(HDR_OPENSTACK, "compute 2.1"), (HDR_VERSION, "1.20")]))
                .unwrap()
                .minor,
            20
        );
    }

    #[test]
    fn out_of_range_and_garbage_are_406() {
        for bad in ["1.110", "1.0", "2.1", "1", "1.x", "abc", "1.-1", ""] {
            let e = negotiate(&h(&[(HDR_VERSION, bad)])).unwrap_err();
            assert_eq!(e.status.as_u16(), 406, "{bad}");
        }
        let e = negotiate(&h(&[(HDR_VERSION, "1.999")])).unwrap_err();
        assert!(e.message.contains("[1.1, 1.109]"), "{}", e.message);
    }

    #[test]
    fn headers_name_the_range_and_the_choice() {
        let hs = response_headers(Version { minor: 42 });
        let get = |n: &str| {
            hs.iter()
                .find(|(k, _)| k.as_str() == n)
                .map(|(_, v)| v.to_str().unwrap().to_string())
                .unwrap()
        };
        assert_eq!(get(HDR_MIN), "1.1");
        assert_eq!(get(HDR_MAX), "1.109");
        assert_eq!(get(HDR_VERSION), "1.42");
        assert_eq!(get(HDR_OPENSTACK), "baremetal 1.42");
    }
}
