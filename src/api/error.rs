//! Ironic's error body: `{"error_message": "<JSON text>"}` where the inner
//! text is `{"faultstring": ..., "faultcode": "Client"|"Server", "debuginfo":
//! null}`. python-ironicclient decodes the inner document and shows its
//! `faultstring`; openstacksdk does the same.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::conductor::ConductorError;
use crate::store::StoreError;

/// Marks a response whose body is already an Ironic error document.
#[derive(Clone, Copy, Debug)]
pub struct IronicError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_ACCEPTABLE, message)
    }

    /// Ironic's plain NotAcceptable, for fields and parameters newer than
    /// the requested version.
    pub fn too_new() -> ApiError {
        ApiError::not_acceptable("Request not acceptable.")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// Replace every occurrence of the given secrets in the message.
    pub fn scrub(mut self, secrets: &[String]) -> ApiError {
        self.message = scrub(&self.message, secrets);
        self
    }
}

/// `text` with each secret (of four characters or more) replaced by `******`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.chars().count() >= 4 && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), crate::store::MASK);
        }
    }
    out
}

/// The body Ironic sends for an error with this status and message.
pub fn error_body(status: StatusCode, message: &str) -> String {
    let faultcode = if status.is_server_error() {
        "Server"
    } else {
        "Client"
    };
    let inner = json!({
        "faultstring": message,
        "faultcode": faultcode,
        "debuginfo": null,
    });
    json!({ "error_message": inner.to_string() }).to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = error_body(self.status, &self.message);
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        resp.extensions_mut().insert(IronicError);
        resp
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::Duplicate(_) => StatusCode::CONFLICT,
        StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        StoreError::Db(_) | StoreError::Crypto(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::new(store_status(&e), e.to_string())
    }
}

impl From<ConductorError> for ApiError {
    fn from(e: ConductorError) -> ApiError {
        ApiError::new(status(e.status()), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn body_is_json_text_inside_json() {
        let b = error_body(StatusCode::NOT_FOUND, "Node x could not be found.");
        let outer: Value = serde_json::from_str(&b).unwrap();
        let inner_text = outer["error_message"].as_str().unwrap();
        let inner: Value = serde_json::from_str(inner_text).unwrap();
        assert_eq!(inner["faultstring"], "Node x could not be found.");
        assert_eq!(inner["faultcode"], "Client");
        assert_eq!(inner["debuginfo"], Value::Null);
        let b = error_body(StatusCode::SERVICE_UNAVAILABLE, "busy");
        let outer: Value = serde_json::from_str(&b).unwrap();
        let inner: Value = serde_json::from_str(outer["error_message"].as_str().unwrap()).unwrap();
        assert_eq!(inner["faultcode"], "Server");
    }

    #[test]
    fn store_errors_map_to_ironic_statuses() {
        let nf: ApiError = StoreError::NotFound {
            kind: "Node",
            ident: "n1".into(),
        }
        .into();
        assert_eq!(nf.status, StatusCode::NOT_FOUND);
        assert_eq!(nf.message, "Node n1 could not be found.");
        let dup: ApiError = StoreError::Duplicate("dup".into()).into();
        assert_eq!(dup.status, StatusCode::CONFLICT);
        let bad: ApiError = StoreError::Invalid("bad".into()).into();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn scrub_hides_secrets_but_not_short_noise() {
        let s = scrub(
            "login as admin with hunter22 failed (a)",
            &["hunter22".into(), "a".into()],
        );
        assert_eq!(s, "login as admin with ****** failed (a)");
    }
}
