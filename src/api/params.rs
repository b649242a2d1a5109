//! Query-string helpers: Ironic's boolean spellings, integer limits, field
//! lists, and the `next` link of a paginated collection.

use axum::http::Uri;

use super::error::ApiError;

/// The query parameters of one request. Parameters a handler does not take
/// are refused (400) rather than silently ignored, so a filter this server
/// does not implement never returns an unfiltered list.
pub struct Params {
    pairs: Vec<(String, String)>,
    taken: Vec<String>,
}

impl Params {
    pub fn from_uri(uri: &Uri) -> Result<Params, ApiError> {
        let pairs = match uri.query() {
            None | Some("") => Vec::new(),
            Some(_) => {
                axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
                    .map_err(|_| ApiError::bad_request("The query string could not be parsed."))?
                    .0
            }
        };
        Ok(Params {
            pairs,
            taken: Vec::new(),
        })
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Params {
        Params {
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            taken: Vec::new(),
        }
    }

    /// The last value given for `name`.
    pub fn str(&mut self, name: &str) -> Option<String> {
        self.taken.push(name.to_string());
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    pub fn bool(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) => parse_bool(&v)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(bool_error(name, &v))),
        }
    }

    pub fn int(&mut self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some(v) => {
                v.trim().parse::<i64>().map(Some).map_err(|_| {
                    ApiError::bad_request(format!("Expected an integer for {name}: {v}"))
                })
            }
        }
    }

    /// `fields=a,b,c` as a list (`None` when absent).
    pub fn list(&mut self, name: &str) -> Option<Vec<String>> {
        self.str(name).map(|v| split_list(&v))
    }

    /// Refuse parameters no handler step asked for.
    pub fn finish(&self) -> Result<(), ApiError> {
        let mut unknown: Vec<&str> = self
            .pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !self.taken.iter().any(|t| t == k))
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "Unknown argument(s): {}",
                unknown.join(", ")
            )))
        }
    }
}

pub fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// oslo's strict `bool_from_string`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

pub fn bool_error(name: &str, v: &str) -> String {
    format!(
        "Invalid boolean value for {name}: Unrecognized value '{v}', acceptable values are: \
         '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"
    )
}

/// A JSON value read as Ironic's lenient booleans (`true`, `"true"`, `"on"`...).
pub fn json_bool(name: &str, v: &serde_json::Value) -> Result<Option<bool>, ApiError> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Bool(b) => Ok(Some(*b)),
        serde_json::Value::String(s) => parse_bool(s)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(bool_error(name, s))),
        _ => Err(ApiError::bad_request(format!(
            "Invalid boolean value for {name}"
        ))),
    }
}

/// Ironic's limit: absent means `max_limit`, at most `max_limit`, positive.
pub fn limit(v: Option<i64>, max_limit: usize) -> Result<usize, ApiError> {
    match v {
        None => Ok(max_limit),
        Some(n) if n <= 0 => Err(ApiError::bad_request("Limit must be positive")),
        Some(n) => Ok((n as u64).min(max_limit as u64) as usize),
    }
}

/// `asc` or `desc` (true for descending).
pub fn sort_dir(v: Option<String>) -> Result<bool, ApiError> {
    match v.as_deref() {
        None | Some("asc") => Ok(false),
        Some("desc") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid sort direction: {other}. Acceptable values are 'asc' or 'desc'"
        ))),
    }
}

/// Percent-encode a query value (RFC 3986 unreserved characters and `,` pass).
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b',') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Ironic's `next` link: `{base}/v1/{resource}?{args}limit=N&marker=UUID`,
/// present only when the page is full.
pub fn next_link(
    base: &str,
    resource: &str,
    args: &[(String, String)],
    count: usize,
    limit: usize,
    last_uuid: Option<&str>,
) -> Option<String> {
    if count == 0 || count != limit {
        return None;
    }
    let marker = last_uuid?;
    let mut q = String::new();
    for (k, v) in args {
        q.push_str(&format!("{k}={}&", encode(v)));
    }
    Some(format!(
        "{base}/v1/{resource}?{q}limit={limit}&marker={}",
        encode(marker)
    ))
}

/// A UUID in any spelling oslo's `is_uuid_like` accepts.
pub fn is_uuid_like(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// RFC 3986 unreserved characters only, at most 255 (Ironic's logical names).
pub fn is_valid_logical_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A node (or port) identifier in a URL: a UUID or a logical name.
pub fn check_ident(kind: &str, ident: &str) -> Result<(), ApiError> {
    if is_uuid_like(ident) || is_valid_logical_name(ident) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Expected UUID or name for {kind}: {ident}"
        )))
    }
}

/// The shape a list request asks for: `fields=`, `detail=` (1.43+), or
/// neither; the two together are refused, as Ironic does.
pub struct ListView {
    pub fields: Option<Vec<String>>,
    /// `detail=` as given, for the `next` link.
    pub detail_raw: Option<String>,
    pub detail: Option<bool>,
}

impl ListView {
    pub fn parse(
        p: &mut Params,
        v: super::version::Version,
        detail_path: bool,
        known: &[&str],
        min: fn(&str) -> u32,
    ) -> Result<ListView, ApiError> {
        let fields = if detail_path { None } else { p.list("fields") };
        let detail_raw = if detail_path { None } else { p.str("detail") };
        let detail = match &detail_raw {
            None => None,
            Some(raw) => {
                if !v.at_least(super::version::V_DETAIL_QUERY) {
                    return Err(ApiError::bad_request(format!(
                        "Invalid query parameter ?detail={raw} received."
                    )));
                }
                Some(
                    parse_bool(raw)
                        .ok_or_else(|| ApiError::bad_request(bool_error("detail", raw)))?,
                )
            }
        };
        if let Some(f) = &fields {
            super::nodes::check_fields(f, v, known, min)?;
            if detail == Some(true) {
                return Err(ApiError::bad_request(
                    "Can not specify ?detail=True and fields in the same request.",
                ));
            }
        }
        Ok(ListView {
            fields,
            detail_raw,
            detail,
        })
    }

    /// What the `next` link must repeat of this view.
    pub fn push_next_args(&self, args: &mut Vec<(String, String)>) {
        if let Some(d) = &self.detail_raw {
            args.push(("detail".into(), d.clone()));
        }
        if let Some(f) = &self.fields {
            args.push(("fields".into(), f.join(",")));
        }
    }
}

/// A request body that must be a JSON object.
pub fn json_object(
    body: serde_json::Value,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match body {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad_request(
            "The request body must be a JSON object",
        )),
    }
}

/// A required string argument of a JSON body.
/// A boolean argument that must be there (Ironic's "Missing argument").
pub fn required_bool(
    obj: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<bool, ApiError> {
    match obj.get(key) {
        None => None,
        Some(v) => json_bool(key, v)?,
    }
    .ok_or_else(|| ApiError::bad_request(format!("Missing argument: \"{key}\"")))
}

pub fn required_str(
    obj: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<String, ApiError> {
    match obj.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        None | Some(serde_json::Value::Null) => Err(ApiError::bad_request(format!(
            "Missing argument: \"{key}\""
        ))),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

/// `limit` (capped at `max_limit`) and `marker` (a UUID) of a list request.
pub fn paging(p: &mut Params, max_limit: usize) -> Result<(usize, Option<String>), ApiError> {
    let limit = limit(p.int("limit")?, max_limit)?;
    let marker = p.str("marker");
    if let Some(m) = &marker {
        if !is_uuid_like(m) {
            return Err(ApiError::bad_request(format!(
                "Expected a UUID for marker: {m}"
            )));
        }
    }
    Ok((limit, marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_as_oslo() {
        for t in ["1", "t", "True", "on", "Y", "yes "] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "FALSE", "off", "n", "no"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
        let mut p = Params::from_pairs(&[("maintenance", "perhaps")]);
        assert_eq!(p.bool("maintenance").unwrap_err().status.as_u16(), 400);
    }

    #[test]
    fn limits_are_capped_and_positive() {
        assert_eq!(limit(None, 1000).unwrap(), 1000);
        assert_eq!(limit(Some(5), 1000).unwrap(), 5);
        assert_eq!(limit(Some(5000), 1000).unwrap(), 1000);
        assert!(limit(Some(0), 1000).is_err());
        assert!(limit(Some(-1), 1000).is_err());
    }

    #[test]
    fn unknown_parameters_are_refused() {
        let mut p = Params::from_pairs(&[("driver", "ipmi"), ("bogus", "1"), ("bogus", "2")]);
        assert_eq!(p.str("driver").as_deref(), Some("ipmi"));
        let e = p.finish().unwrap_err();
        assert_eq!(e.message, "Unknown argument(s): bogus");
        let mut p = Params::from_pairs(&[("fields", "uuid, name,,power_state")]);
        assert_eq!(
            p.list("fields").unwrap(),
            vec!["uuid", "name", "power_state"]
        );
        assert!(p.finish().is_ok());
    }

    #[test]
    fn next_link_only_on_a_full_page() {
        let args = vec![
            ("sort_key".to_string(), "id".to_string()),
            ("fields".to_string(), "uuid,name".to_string()),
            ("driver".to_string(), "a b&c".to_string()),
        ];
        assert_eq!(
            next_link("http://h:1", "nodes", &args, 2, 2, Some("u-1")).unwrap(),
            "http://h:1/v1/nodes?sort_key=id&fields=uuid,name&driver=a%20b%26c&limit=2&marker=u-1"
        );
        assert!(next_link("http://h:1", "nodes", &args, 1, 2, Some("u-1")).is_none());
        assert!(next_link("http://h:1", "nodes", &args, 0, 0, None).is_none());
    }

    #[test]
    fn names_and_uuids() {
        assert!(is_uuid_like("1be26c0b-03f2-4d2e-ae87-c02d7f33c123"));
        assert!(is_uuid_like("1BE26C0B03F24D2EAE87C02D7F33C123"));
        assert!(!is_uuid_like("node-1"));
        assert!(is_valid_logical_name("node-1.rack_2~a"));
        assert!(!is_valid_logical_name("node 1"));
        assert!(!is_valid_logical_name("node/1"));
        assert!(check_ident("node", "n@1").is_err());
    }
}
