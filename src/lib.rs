//! ironrack: a rack-local bare-metal agent.
//!
//! One room per concern: `ipmi` (wire codec, session), `redfish`, `bmc` (the
//! trait both implement), `profiles` (hardware quirks), `store` (inventory),
//! `conductor` (locks, workers, power sync), `api` (Ironic-compatible REST),
//! `boot` (TFTP, PXE configs, HTTP boot), `console` (SOL and serial lines bridged to TCP),
//! `driver` (the Nova-side mapping), `sim` (the BMC fleet simulator), and the
//! CLI glue in `cli`.

pub mod api;
pub mod bmc;
pub mod boot;
pub mod cli;
pub mod conductor;
pub mod config;
pub mod console;
pub mod driver;
pub mod ipmi;
pub mod profiles;
pub mod redfish;
pub mod sim;
pub mod store;
pub mod util;

/// Entry points for the cargo-fuzz targets in `fuzz/` that reach code not
/// otherwise public (the API's body parsers, the Redfish client's error
/// mapping). Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use serde_json::{Map, Value};

    use crate::api::{error, nodes, params, patch, ports, version::Version};

    /// Host the API renders links with.
    const HOST: &str = "http://127.0.0.1:6385";

    /// `POST /v1/nodes`: the body checks, then the error message as the
    /// client would see it (secrets scrubbed), with the secrets it carried.
    pub fn api_create_node(body: Value, minor: u32) -> (Result<(), String>, Vec<String>) {
        let obj = match params::json_object(body) {
            Ok(o) => o,
            Err(e) => return (Err(e.message), Vec::new()),
        };
        let secrets = nodes::secret_values_in(&obj);
        let r = nodes::new_node(obj, Version { minor })
            .map(drop)
            .map_err(|e| e.scrub(&secrets).message);
        (r, secrets)
    }

    /// `POST /v1/ports`: the body checks.
    pub fn api_create_port(body: Value, minor: u32) -> Result<(), String> {
        let obj = params::json_object(body).map_err(|e| e.message)?;
        ports::new_port(obj, Version { minor })
            .map(drop)
            .map_err(|e| e.message)
    }

    /// `PATCH /v1/nodes/{id}` applied to `node`, as the handler and the
    /// conductor do it; errors scrubbed. Returns the secrets the patch carried.
    pub fn api_patch_node(
        node: &mut crate::store::Node,
        body: &Value,
        minor: u32,
    ) -> (Result<(), String>, Vec<String>) {
        let ops = match patch::parse_ops(body) {
            Ok(o) => o,
            Err(e) => return (Err(e.message), Vec::new()),
        };
        if let Err(e) = patch::check_ops(&ops, Version { minor }) {
            return (Err(e.message), Vec::new());
        }
        let secrets = patch::secret_values(&ops);
        let r = patch::apply_to_node(node, &ops, HOST).map_err(|e| error::scrub(&e, &secrets));
        (r, secrets)
    }

    /// A node as `GET /v1/nodes/{id}` shows it at the newest version.
    pub fn api_node_doc(node: &crate::store::Node) -> Map<String, Value> {
        nodes::node_doc(node, None, HOST)
    }

    /// The Redfish client's typed error for an HTTP error answer.
    pub fn redfish_http_error(status: u16, body: &[u8]) -> Option<String> {
        let status = reqwest::StatusCode::from_u16(status).ok()?;
        let e = crate::redfish::client::http_error(&reqwest::Method::GET, "/x", status, body);
        Some(e.to_string())
    }

    /// The Redfish client's reading of a configured BMC address.
    pub fn redfish_parse_base(raw: &str) -> Result<String, String> {
        crate::redfish::client::parse_base(raw)
            .map(String::from)
            .map_err(|e| e.to_string())
    }
}
