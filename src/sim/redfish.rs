//! The Redfish side of the simulator: N `ComputerSystem`s, one manager (BMC)
//! and one virtual CD per system, and a session service, all served by one
//! HTTP or HTTPS server on one address.
//!
//! # API
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use ironrack::sim::redfish::{RedfishFleet, RedfishFleetConfig};
//! let mut cfg = RedfishFleetConfig::new("127.0.0.1:8000".parse().unwrap(), 3, "admin", "secret");
//! cfg.power_delay = std::time::Duration::from_secs(2);
//! let fleet = RedfishFleet::start(cfg).await?;
//! println!("serving {} systems at {}", fleet.len(), fleet.base_url());
//! let sys = fleet.system(0);
//! assert!(!sys.power_on());
//! # Ok(()) }
//! ```
//!
//! * [`RedfishFleetConfig`]: listen address (port 0 gives an ephemeral port),
//!   `count`, `tls` (a self-signed certificate made at start; its PEM is
//!   [`RedfishFleet::cert_pem`]), `username`/`password`, `power_delay`,
//!   `session_timeout` (idle expiry of `X-Auth-Token` sessions), `latency`
//!   (added to every request) and `jitter` (a random extra up to that much),
//!   `error_503_rate` (probability of a 503 with
//!   `Retry-After: 1`), `allow_nmi`, `manufacturer`/`model`, `unknown_enums`.
//! * [`RedfishFleet::start`] binds and serves; dropping the fleet stops it.
//!   [`RedfishFleet::addr`], [`RedfishFleet::base_url`],
//!   [`RedfishFleet::system`] (an `Arc<SimSystem>` with the machine's state,
//!   counters and fault switches), fleet-wide counters, and live fault knobs
//!   ([`RedfishFleet::set_latency`], [`RedfishFleet::set_jitter`],
//!   [`RedfishFleet::set_error_503_rate`], and
//!   [`RedfishFleet::fail_next_with_503`] for an exact number of 503s).
//! * [`RedfishSim`] is the whole service as plain state: [`RedfishSim::handle`]
//!   takes a parsed request ([`SimRequest`]) and the time, and returns a
//!   [`SimResponse`]. The server only adds the faults (latency, 503s,
//!   unresponsive systems) and moves bytes.
//!
//! # URL layout (system `i` of `count`, ids zero-padded to at least 4 digits)
//!
//! | Path | Methods |
//! |---|---|
//! | `/redfish`, `/redfish/v1/` (service root) | GET (no authentication) |
//! | `/redfish/v1/Systems` | GET |
//! | `/redfish/v1/Systems/sys-0000` | GET, PATCH (`Boot`) |
//! | `/redfish/v1/Systems/sys-0000/Actions/ComputerSystem.Reset` | POST |
//! | `/redfish/v1/Managers`, `/redfish/v1/Managers/bmc-0000` | GET |
//! | `/redfish/v1/Managers/bmc-0000/VirtualMedia` | GET |
//! | `/redfish/v1/Managers/bmc-0000/VirtualMedia/Cd` | GET, PATCH (`Image`, `Inserted`, `WriteProtected`) |
//! | `.../VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia` / `.EjectMedia` | POST |
//! | `/redfish/v1/SessionService` | GET |
//! | `/redfish/v1/SessionService/Sessions` | GET, POST (log in, no authentication) |
//! | `/redfish/v1/SessionService/Sessions/{id}` | GET, DELETE |
//!
//! A trailing slash is accepted everywhere; a query string is ignored. HEAD is
//! answered like GET. Anything else is a 404 (unknown path) or 405 (known path,
//! other method, with an `Allow` header), with a Redfish error body.
//!
//! # Behaviour
//!
//! * **Authentication**: everything except the service root and the session
//!   login needs a valid `X-Auth-Token` (when that header is present it must be
//!   valid; basic auth is then not looked at) or HTTP basic auth with the
//!   configured credentials; else 401 `Base.1.8.NoValidSession` with
//!   `WWW-Authenticate: Basic`. A login with wrong credentials is a 401
//!   `Base.1.8.ResourceAtUriUnauthorized`. Sessions are service-wide (one
//!   `SessionService` for the whole fleet), expire after `session_timeout`
//!   without use, and die on DELETE.
//! * **Power**: `On`, `ForceOff`, `GracefulShutdown` (only when on; otherwise a
//!   no-op) land after `power_delay`; a newer request replaces a pending one.
//!   `PowerCycle` turns the machine off at once and on after the delay.
//!   `ForceRestart`/`GracefulRestart` reboot a running machine at once (a boot:
//!   counted, consumes a `Once` override) and are a 409 when it is off.
//!   `Nmi` (offered only with `allow_nmi`) increments a counter.
//!   With `no_graceful`, `GracefulShutdown` and `GracefulRestart` are not
//!   offered (so they are refused like any type not in the list).
//!   `PushPowerButton` (offered only with `unknown_enums`) toggles the power.
//!   A type not in the allowable values is a 400
//!   `Base.1.8.ActionParameterValueNotInList`. Success is a 204.
//! * **Boot override**: PATCH `{"Boot": {...}}` with `BootSourceOverrideTarget`
//!   (one of the allowable values), `BootSourceOverrideEnabled`
//!   (`Once`/`Continuous`/`Disabled`) and `BootSourceOverrideMode`
//!   (`UEFI`/`Legacy`); anything else is a 400 (`PropertyValueNotInList`,
//!   `PropertyValueTypeError`, `PropertyUnknown`, `PropertyNotWritable`) and
//!   nothing is applied. Success is a 200 with the updated system. Every boot
//!   (an off→on transition, a restart) turns a `Once` override into
//!   `Disabled` (the target stays as it was).
//! * **ETag**: the system's `ETag` header (mirrored as `@odata.etag`) is a
//!   strong tag `"sys-0000-<n>"` where `n` counts the changes to the system's
//!   representation (power state landing, boot settings). The CD has its own
//!   (`"sys-0000-cd-<n>"`). A PATCH or POST carrying `If-Match` that matches
//!   none of the current tags (`*` always matches; a `W/` prefix is ignored)
//!   is a 412 `Base.1.8.PreconditionFailed`.
//! * **Virtual media**: InsertMedia takes `{"Image": url, "Inserted": bool,
//!   "WriteProtected": bool}` (plus ignored `TransferProtocolType`,
//!   `TransferMethod`, `UserName`, `Password`); the URL is only checked for a
//!   `scheme://` shape, never fetched. Inserting while an image is inserted is
//!   a 409 `Base.1.8.ResourceInUse`. EjectMedia always succeeds.
//! * **Faults** (the server layer): `latency` plus a random part of `jitter`
//!   is slept before every request;
//!   then with probability `error_503_rate` the answer is a 503
//!   `Base.1.8.ServiceTemporarilyUnavailable` with `Retry-After: 1`. A request
//!   to an unresponsive system's resources (system, its reset action, its
//!   manager and virtual media) never gets an answer (it waits an hour or
//!   until the fleet stops). Bad JSON is a 400 `Base.1.8.MalformedJSON`.
//! * **`unknown_enums`**: documents carry what a strict client chokes on:
//!   `Oem` objects with vendor fields, boot targets `SDCard` and `UefiTarget`,
//!   the reset type `PushPowerButton`, and `Status.HealthRollup`.
//!   `PowerState` stays `On`/`Off` and `Status.Health` stays `OK`.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::prelude::{Engine as _, BASE64_STANDARD};
use rand::Rng;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use super::netboot::{redfish_boot_flags, Mac, NetbootConfig, DEFAULT_REDFISH_MAC_BASE};
use super::pxe::{self, NetbootHost};

/// The service root.
pub const ROOT_PATH: &str = "/redfish/v1/";
/// The systems collection.
pub const SYSTEMS_PATH: &str = "/redfish/v1/Systems";
/// The managers collection.
pub const MANAGERS_PATH: &str = "/redfish/v1/Managers";
/// The session service.
pub const SESSION_SERVICE_PATH: &str = "/redfish/v1/SessionService";
/// The sessions collection (POST here to log in).
pub const SESSIONS_PATH: &str = "/redfish/v1/SessionService/Sessions";

/// Boot override targets every system offers.
pub const BOOT_TARGETS: [&str; 6] = ["None", "Pxe", "Hdd", "Cd", "BiosSetup", "UefiHttp"];
/// Extra targets offered with `unknown_enums`.
pub const VENDOR_BOOT_TARGETS: [&str; 2] = ["SDCard", "UefiTarget"];
/// `BootSourceOverrideEnabled` values.
pub const BOOT_ENABLED: [&str; 3] = ["Once", "Continuous", "Disabled"];
/// `BootSourceOverrideMode` values.
pub const BOOT_MODES: [&str; 2] = ["UEFI", "Legacy"];
/// Reset types every system offers (`Nmi` is added with `allow_nmi`,
/// `PushPowerButton` with `unknown_enums`; the `Graceful*` ones are left out
/// with `no_graceful`).
pub const RESET_TYPES: [&str; 6] = [
    "On",
    "ForceOff",
    "GracefulShutdown",
    "GracefulRestart",
    "ForceRestart",
    "PowerCycle",
];

/// Largest request body read.
const MAX_BODY: usize = 1 << 20;
/// How long a request to an unresponsive system waits (if the fleet lives).
const HANG: Duration = Duration::from_secs(3600);
/// Longest power transition (a longer configured delay is cut to this).
const MAX_POWER_DELAY: Duration = Duration::from_secs(365 * 86400);
const REGISTRY: &str = "Base.1.8";
const JSON_TYPE: &str = "application/json; charset=utf-8";

// ------------------------------------------------------------------ config

/// Settings of a simulated Redfish fleet.
#[derive(Clone)]
pub struct RedfishFleetConfig {
    /// Where to listen; port 0 picks an ephemeral port ([`RedfishFleet::addr`]).
    pub listen: SocketAddr,
    /// Number of systems (at least 1).
    pub count: usize,
    /// Serve HTTPS with a self-signed certificate generated at start
    /// (ring is installed as the process's rustls provider first).
    pub tls: bool,
    pub username: String,
    pub password: Zeroizing<String>,
    /// Time a power transition takes to land.
    pub power_delay: Duration,
    /// Idle time after which an `X-Auth-Token` session expires.
    pub session_timeout: Duration,
    /// Added before answering every request.
    pub latency: Duration,
    /// A random extra delay up to this much, per request.
    pub jitter: Duration,
    /// Probability (0..=1) of answering a request with 503.
    pub error_503_rate: f64,
    /// Offer (and accept) the `Nmi` reset type.
    pub allow_nmi: bool,
    pub manufacturer: String,
    pub model: String,
    /// Add vendor extras a strict client chokes on (see the module docs).
    pub unknown_enums: bool,
    /// Leave `GracefulShutdown` and `GracefulRestart` out of the allowable
    /// reset types (and refuse them with a 400), like a BMC without ACPI
    /// soft power control.
    pub no_graceful: bool,
    /// MAC of system 0's PXE NIC; system i gets this plus i (`None`:
    /// [`DEFAULT_REDFISH_MAC_BASE`]).
    pub mac_base: Option<Mac>,
    /// What the systems do when they boot from the network (see
    /// [`super::netboot`]): with `BootSourceOverrideTarget` `Pxe` in effect
    /// at a boot, GRUB in UEFI mode, PXELINUX in Legacy mode.
    pub netboot: NetbootConfig,
}

impl RedfishFleetConfig {
    /// Defaults (see [`Default`]) with the address, size and credentials given.
    pub fn new(listen: SocketAddr, count: usize, username: &str, password: &str) -> Self {
        RedfishFleetConfig {
            listen,
            count,
            username: username.to_owned(),
            password: Zeroizing::new(password.to_owned()),
            ..Default::default()
        }
    }
}

impl Default for RedfishFleetConfig {
    /// `127.0.0.1:0`, one system, plain HTTP, `admin`/`password`, no power
    /// delay, 300 s session timeout, no faults, NMI allowed,
    /// `ironrack`/`sim`, no vendor extras.
    fn default() -> Self {
        RedfishFleetConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            count: 1,
            tls: false,
            username: "admin".to_owned(),
            password: Zeroizing::new("password".to_owned()),
            power_delay: Duration::ZERO,
            session_timeout: Duration::from_secs(300),
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            error_503_rate: 0.0,
            allow_nmi: true,
            manufacturer: "ironrack".to_owned(),
            model: "sim".to_owned(),
            unknown_enums: false,
            no_graceful: false,
            mac_base: None,
            netboot: NetbootConfig::default(),
        }
    }
}

impl fmt::Debug for RedfishFleetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedfishFleetConfig")
            .field("listen", &self.listen)
            .field("count", &self.count)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("power_delay", &self.power_delay)
            .field("session_timeout", &self.session_timeout)
            .field("latency", &self.latency)
            .field("jitter", &self.jitter)
            .field("error_503_rate", &self.error_503_rate)
            .field("allow_nmi", &self.allow_nmi)
            .field("manufacturer", &self.manufacturer)
            .field("model", &self.model)
            .field("unknown_enums", &self.unknown_enums)
            .field("no_graceful", &self.no_graceful)
            .field("mac_base", &self.mac_base)
            .field("netboot", &self.netboot)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

// ---------------------------------------------------------------- sessions

struct SessionEntry {
    id: String,
    user: String,
    last_seen: Instant,
}

#[derive(Default)]
struct SessionTable {
    /// By token.
    by_token: HashMap<String, SessionEntry>,
    next_id: u64,
}

/// The service-wide session table.
struct SessionStore {
    timeout: Duration,
    table: Mutex<SessionTable>,
    created: AtomicU64,
}

impl SessionStore {
    fn new(timeout: Duration) -> Self {
        SessionStore {
            timeout,
            table: Mutex::new(SessionTable::default()),
            created: AtomicU64::new(0),
        }
    }

    fn locked(&self, now: Instant) -> MutexGuard<'_, SessionTable> {
        let mut t = lock(&self.table);
        let timeout = self.timeout;
        t.by_token
            .retain(|_, s| now.saturating_duration_since(s.last_seen) < timeout);
        t
    }

    /// A new session: its id and token.
    fn create(&self, user: &str, now: Instant) -> (String, String) {
        let bytes: [u8; 24] = rand::thread_rng().gen();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut t = self.locked(now);
        t.next_id += 1;
        let id = t.next_id.to_string();
        t.by_token.insert(
            token.clone(),
            SessionEntry {
                id: id.clone(),
                user: user.to_owned(),
                last_seen: now,
            },
        );
        self.created.fetch_add(1, Ordering::Relaxed);
        (id, token)
    }

    /// Whether the token is live; marks it used.
    fn touch(&self, token: &str, now: Instant) -> bool {
        let mut t = self.locked(now);
        match t.by_token.get_mut(token) {
            Some(s) => {
                s.last_seen = now;
                true
            }
            None => false,
        }
    }

    fn user_of(&self, id: &str, now: Instant) -> Option<String> {
        let t = self.locked(now);
        t.by_token
            .values()
            .find(|s| s.id == id)
            .map(|s| s.user.clone())
    }

    fn delete(&self, id: &str, now: Instant) -> bool {
        let mut t = self.locked(now);
        let before = t.by_token.len();
        t.by_token.retain(|_, s| s.id != id);
        t.by_token.len() != before
    }

    fn ids(&self, now: Instant) -> Vec<String> {
        let t = self.locked(now);
        let mut ids: Vec<(u64, String)> = t
            .by_token
            .values()
            .map(|s| (s.id.parse().unwrap_or(u64::MAX), s.id.clone()))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    fn active(&self, now: Instant) -> usize {
        self.locked(now).by_token.len()
    }

    fn clear(&self) {
        lock(&self.table).by_token.clear();
    }
}

// ----------------------------------------------------------------- systems

/// The mutable state of one system (the machine, its boot override, its
/// virtual CD).
#[derive(Debug, Clone)]
struct Machine {
    on: bool,
    /// A power transition landing at the given instant.
    pending: Option<(bool, Instant)>,
    boot_target: String,
    boot_enabled: String,
    boot_mode: String,
    nmi_count: u64,
    resets: u64,
    boots: u64,
    /// The override target in effect at the last boot (`None` when disabled).
    last_boot_target: Option<String>,
    /// Counts changes to the system's representation (its ETag).
    generation: u64,
    media_image: Option<String>,
    media_inserted: bool,
    media_write_protected: bool,
    media_generation: u64,
}

impl Machine {
    fn new() -> Self {
        Machine {
            on: false,
            pending: None,
            boot_target: "None".to_owned(),
            boot_enabled: "Disabled".to_owned(),
            boot_mode: "UEFI".to_owned(),
            nmi_count: 0,
            resets: 0,
            boots: 0,
            last_boot_target: None,
            generation: 1,
            media_image: None,
            media_inserted: false,
            media_write_protected: true,
            media_generation: 1,
        }
    }

    /// Apply a transition that is due.
    fn tick(&mut self, now: Instant) {
        if let Some((target, at)) = self.pending {
            if now >= at {
                self.pending = None;
                self.land(target);
            }
        }
    }

    fn land(&mut self, target: bool) {
        if target && !self.on {
            self.boot();
        }
        if self.on != target {
            self.on = target;
            self.generation += 1;
        }
    }

    /// The firmware starts: a one-time override is used up.
    fn boot(&mut self) {
        self.boots += 1;
        self.last_boot_target = Some(if self.boot_enabled == "Disabled" {
            "None".to_owned()
        } else {
            self.boot_target.clone()
        });
        if self.boot_enabled == "Once" {
            self.boot_enabled = "Disabled".to_owned();
            self.generation += 1;
        }
    }

    fn schedule(&mut self, target: bool, now: Instant, delay: Duration) {
        // An absurd delay lands at once rather than overflowing the clock.
        self.pending = Some((target, now.checked_add(delay).unwrap_or(now)));
        self.tick(now);
    }
}

/// One simulated system (with its BMC and virtual CD), shared between the
/// server and whoever holds the fleet.
pub struct SimSystem {
    index: usize,
    id: String,
    manager_id: String,
    uuid: String,
    power_delay: Duration,
    machine: Mutex<Machine>,
    requests: AtomicU64,
    unresponsive: AtomicBool,
    sessions: Arc<SessionStore>,
}

impl fmt::Debug for SimSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimSystem")
            .field("id", &self.id)
            .field("machine", &*lock(&self.machine))
            .finish_non_exhaustive()
    }
}

impl SimSystem {
    fn with<R>(&self, now: Instant, f: impl FnOnce(&mut Machine) -> R) -> R {
        let mut m = lock(&self.machine);
        m.tick(now);
        f(&mut m)
    }

    /// Position in the fleet.
    pub fn index(&self) -> usize {
        self.index
    }
    /// `sys-0000`.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// `/redfish/v1/Systems/sys-0000`.
    pub fn path(&self) -> String {
        format!("{SYSTEMS_PATH}/{}", self.id)
    }
    /// `bmc-0000`.
    pub fn manager_id(&self) -> &str {
        &self.manager_id
    }
    pub fn uuid(&self) -> &str {
        &self.uuid
    }
    /// Power state now (transitions that are due have landed).
    pub fn power_on(&self) -> bool {
        self.with(Instant::now(), |m| m.on)
    }
    /// Whether a power transition is pending, and to which state.
    pub fn pending_power(&self) -> Option<bool> {
        self.with(Instant::now(), |m| m.pending.map(|(on, _)| on))
    }
    pub fn nmi_count(&self) -> u64 {
        self.with(Instant::now(), |m| m.nmi_count)
    }
    /// `(BootSourceOverrideTarget, BootSourceOverrideEnabled, BootSourceOverrideMode)`.
    pub fn boot(&self) -> (String, String, String) {
        self.with(Instant::now(), |m| {
            (
                m.boot_target.clone(),
                m.boot_enabled.clone(),
                m.boot_mode.clone(),
            )
        })
    }
    /// Boots so far (off→on transitions and restarts).
    pub fn boots(&self) -> u64 {
        self.with(Instant::now(), |m| m.boots)
    }
    /// The override target in effect at the last boot (`"None"` if none was).
    pub fn last_boot_target(&self) -> Option<String> {
        self.with(Instant::now(), |m| m.last_boot_target.clone())
    }
    /// What the machine's network side needs (due transitions landed
    /// first): boots so far, the override target at the last one, the boot
    /// mode, and whether it is on.
    pub fn boot_state(&self) -> (u64, Option<String>, String, bool) {
        self.with(Instant::now(), |m| {
            (
                m.boots,
                m.last_boot_target.clone(),
                m.boot_mode.clone(),
                m.on,
            )
        })
    }
    /// Restarts (`ForceRestart`, `GracefulRestart`) so far.
    pub fn resets(&self) -> u64 {
        self.with(Instant::now(), |m| m.resets)
    }
    /// `(Image, Inserted)` of the virtual CD.
    pub fn virtual_media(&self) -> (Option<String>, bool) {
        self.with(Instant::now(), |m| {
            (m.media_image.clone(), m.media_inserted)
        })
    }
    /// The system's current ETag (quoted, as sent).
    pub fn etag(&self) -> String {
        self.with(Instant::now(), |m| self.system_etag(m))
    }
    /// Requests that arrived for this system's resources (including the ones
    /// answered with a fault or left hanging).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Sessions created since start. Sessions are service-wide: this is the
    /// same for every system of the fleet.
    pub fn sessions_created(&self) -> u64 {
        self.sessions.created.load(Ordering::Relaxed)
    }
    /// Live sessions (service-wide, like [`sessions_created`](Self::sessions_created)).
    pub fn active_sessions(&self) -> usize {
        self.sessions.active(Instant::now())
    }
    /// Drop every session (service-wide), as a BMC reset would.
    pub fn expire_sessions(&self) {
        self.sessions.clear();
    }
    /// Change the power behind the service's back (a person at the button):
    /// immediate, cancels a pending transition; powering on is a boot.
    pub fn set_power(&self, on: bool) {
        self.with(Instant::now(), |m| {
            m.pending = None;
            m.land(on);
        })
    }
    /// Make requests to this system hang (or answer again).
    pub fn set_unresponsive(&self, v: bool) {
        self.unresponsive.store(v, Ordering::Relaxed);
    }
    pub fn is_unresponsive(&self) -> bool {
        self.unresponsive.load(Ordering::Relaxed)
    }

    fn system_etag(&self, m: &Machine) -> String {
        format!("\"{}-{}\"", self.id, m.generation)
    }
    fn media_etag(&self, m: &Machine) -> String {
        format!("\"{}-cd-{}\"", self.id, m.media_generation)
    }
    fn manager_path(&self) -> String {
        format!("{MANAGERS_PATH}/{}", self.manager_id)
    }
    fn media_path(&self) -> String {
        format!("{}/VirtualMedia", self.manager_path())
    }
    fn cd_path(&self) -> String {
        format!("{}/VirtualMedia/Cd", self.manager_path())
    }
    fn reset_target(&self) -> String {
        format!("{}/Actions/ComputerSystem.Reset", self.path())
    }
}

// ------------------------------------------------------ requests, answers

/// A parsed HTTP request, as [`RedfishSim::handle`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct SimRequest<'a> {
    pub method: &'a Method,
    /// The path, without the query string.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// An answer of [`RedfishSim::handle`].
#[derive(Debug, Clone)]
pub struct SimResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

impl SimResponse {
    fn new(status: StatusCode, body: Option<Value>) -> Self {
        let mut r = SimResponse {
            status,
            headers: HeaderMap::new(),
            body,
        };
        r.set_header(HeaderName::from_static("odata-version"), "4.0");
        if r.body.is_some() {
            r.set_header(header::CONTENT_TYPE, JSON_TYPE);
        }
        r
    }

    fn ok(body: Value) -> Self {
        SimResponse::new(StatusCode::OK, Some(body))
    }

    fn no_content() -> Self {
        SimResponse::new(StatusCode::NO_CONTENT, None)
    }

    fn set_header(&mut self, name: HeaderName, value: &str) {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
    }

    fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        self.set_header(name, value);
        self
    }

    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as sent.
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            Some(v) => serde_json::to_vec(v).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// The first `MessageId` of a Redfish error body.
    pub fn message_id(&self) -> Option<&str> {
        self.body.as_ref()?.get("error")?.get("code")?.as_str()
    }
}

/// An error answer on its way out of a helper (boxed: `SimResponse` is big).
type Reject = Box<SimResponse>;

/// A Redfish error answer with one message of the Base registry.
fn error(status: StatusCode, id: &str, message: String, args: &[&str]) -> SimResponse {
    let message_id = format!("{REGISTRY}.{id}");
    let severity = if status.is_server_error() {
        "Critical"
    } else {
        "Warning"
    };
    let body = json!({
        "error": {
            "code": message_id,
            "message": message,
            "@Message.ExtendedInfo": [{
                "@odata.type": "#Message.v1_1_1.Message",
                "MessageId": message_id,
                "Message": message,
                "MessageArgs": args,
                "Severity": severity,
                "MessageSeverity": severity,
                "Resolution": resolution(id),
            }],
        }
    });
    SimResponse::new(status, Some(body))
}

fn resolution(id: &str) -> &'static str {
    match id {
        "NoValidSession" | "ResourceAtUriUnauthorized" => {
            "Establish a session with valid credentials or use HTTP basic authentication."
        }
        "ResourceMissingAtURI" => "Place a valid resource at the URI or correct the URI.",
        "MalformedJSON" => "Ensure that the request body is valid JSON and resubmit the request.",
        "PreconditionFailed" => "Get the resource again for its current ETag and resubmit.",
        "ServiceTemporarilyUnavailable" => "Wait for the indicated retry duration and retry.",
        "ResourceInUse" => "Remove the condition and resubmit the request.",
        _ => "Correct the request and resubmit it.",
    }
}

fn unauthorized() -> SimResponse {
    error(
        StatusCode::UNAUTHORIZED,
        "NoValidSession",
        "There is no valid session established with the implementation.".to_owned(),
        &[],
    )
    .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"ironrack-sim\"")
}

fn not_found(path: &str) -> SimResponse {
    error(
        StatusCode::NOT_FOUND,
        "ResourceMissingAtURI",
        format!("The resource at the URI {path} was not found."),
        &[path],
    )
}

fn method_not_allowed(method: &Method, path: &str, allow: &str) -> SimResponse {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "GeneralError",
        format!("The method {method} is not allowed on {path}; allowed: {allow}."),
        &[],
    )
    .with_header(header::ALLOW, allow)
}

fn malformed(detail: &str) -> SimResponse {
    error(
        StatusCode::BAD_REQUEST,
        "MalformedJSON",
        format!("The request body submitted was malformed JSON and could not be parsed by the receiving service: {detail}"),
        &[],
    )
}

fn precondition_failed() -> SimResponse {
    error(
        StatusCode::PRECONDITION_FAILED,
        "PreconditionFailed",
        "The ETag supplied did not match the ETag required to change this resource.".to_owned(),
        &[],
    )
}

/// The 503 the server answers with under `error_503_rate`.
pub fn service_unavailable() -> SimResponse {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceTemporarilyUnavailable",
        "The service is temporarily unavailable. Retry in 1 seconds.".to_owned(),
        &["1"],
    )
    .with_header(header::RETRY_AFTER, "1")
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The request body as a JSON object (`empty_ok`: an empty body is `{}`).
fn parse_object(body: &[u8], empty_ok: bool) -> Result<Map<String, Value>, Reject> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if empty_ok {
            Ok(Map::new())
        } else {
            Err(Box::new(malformed("the body is empty")))
        };
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(Box::new(malformed(&format!(
            "expected a JSON object, got {}",
            json_type(&other)
        )))),
        Err(e) => Err(Box::new(malformed(&e.to_string()))),
    }
}

/// Whether `If-Match` (if any) admits the current tag.
fn if_match_ok(headers: &HeaderMap, current: &str) -> bool {
    let mut seen = false;
    let strip = |t: &str| -> String { t.trim().trim_start_matches("W/").to_owned() };
    let current = strip(current);
    for v in headers.get_all(header::IF_MATCH) {
        seen = true;
        let Ok(text) = v.to_str() else { continue };
        for tag in text.split(',') {
            let tag = tag.trim();
            if tag == "*" || strip(tag) == current {
                return true;
            }
        }
    }
    !seen
}

fn odata_ref(path: &str) -> Value {
    json!({ "@odata.id": path })
}

fn string_param<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    action: bool,
) -> Result<Option<&'a str>, Reject> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Box::new(type_error(name, other, action))),
    }
}

fn bool_param(obj: &Map<String, Value>, name: &str, action: bool) -> Result<Option<bool>, Reject> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(Box::new(type_error(name, other, action))),
    }
}

fn type_error(name: &str, value: &Value, action: bool) -> SimResponse {
    let shown = value.to_string();
    if action {
        error(
            StatusCode::BAD_REQUEST,
            "ActionParameterValueTypeError",
            format!("The value {shown} for the parameter {name} is of a different type than the parameter can accept."),
            &[&shown, name],
        )
    } else {
        error(
            StatusCode::BAD_REQUEST,
            "PropertyValueTypeError",
            format!("The value {shown} for the property {name} is of a different type than the property can accept."),
            &[&shown, name],
        )
    }
}

fn not_in_list(name: &str, value: &str, action: bool) -> SimResponse {
    if action {
        error(
            StatusCode::BAD_REQUEST,
            "ActionParameterValueNotInList",
            format!("The value {value} for the parameter {name} is not in the list of acceptable values."),
            &[value, name],
        )
    } else {
        error(
            StatusCode::BAD_REQUEST,
            "PropertyValueNotInList",
            format!("The value {value} for the property {name} is not in the list of acceptable values."),
            &[value, name],
        )
    }
}

fn unknown_parameter(action: &str, name: &str) -> SimResponse {
    error(
        StatusCode::BAD_REQUEST,
        "ActionParameterUnknown",
        format!("The action {action} was submitted with the invalid parameter {name}."),
        &[action, name],
    )
}

fn missing_parameter(action: &str, name: &str) -> SimResponse {
    error(
        StatusCode::BAD_REQUEST,
        "ActionParameterMissing",
        format!(
            "The action {action} requires the parameter {name} to be present in the request body."
        ),
        &[action, name],
    )
}

fn property_unknown(name: &str) -> SimResponse {
    error(
        StatusCode::BAD_REQUEST,
        "PropertyUnknown",
        format!("The property {name} is not in the list of valid properties for the resource."),
        &[name],
    )
}

fn property_not_writable(name: &str) -> SimResponse {
    error(
        StatusCode::BAD_REQUEST,
        "PropertyNotWritable",
        format!("The property {name} is a read only property and cannot be assigned a value."),
        &[name],
    )
}

/// `scheme://rest`, no whitespace.
fn looks_like_url(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        && !rest.is_empty()
        && !s.chars().any(char::is_whitespace)
}

// ----------------------------------------------------------------- routes

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `/redfish`
    Versions,
    Root,
    Systems,
    System(usize),
    Reset(usize),
    Managers,
    Manager(usize),
    MediaCollection(usize),
    Cd(usize),
    Insert(usize),
    Eject(usize),
    SessionService,
    Sessions,
    Session(String),
}

impl Route {
    fn system(&self) -> Option<usize> {
        match self {
            Route::System(i)
            | Route::Reset(i)
            | Route::Manager(i)
            | Route::MediaCollection(i)
            | Route::Cd(i)
            | Route::Insert(i)
            | Route::Eject(i) => Some(*i),
            _ => None,
        }
    }
}

// ------------------------------------------------------------ the service

/// Everything the service knows, without any I/O: call [`handle`](Self::handle)
/// with a request and the time.
pub struct RedfishSim {
    username: String,
    password: Zeroizing<String>,
    allow_nmi: bool,
    unknown_enums: bool,
    no_graceful: bool,
    manufacturer: String,
    model: String,
    session_timeout: Duration,
    /// Digits in the zero-padded ids.
    width: usize,
    systems: Vec<Arc<SimSystem>>,
    sessions: Arc<SessionStore>,
}

impl fmt::Debug for RedfishSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedfishSim")
            .field("systems", &self.systems.len())
            .finish_non_exhaustive()
    }
}

impl RedfishSim {
    pub fn new(cfg: &RedfishFleetConfig) -> Self {
        let width = cfg.count.saturating_sub(1).to_string().len().max(4);
        let sessions = Arc::new(SessionStore::new(cfg.session_timeout));
        let systems = (0..cfg.count)
            .map(|i| {
                Arc::new(SimSystem {
                    index: i,
                    id: format!("sys-{i:0width$}"),
                    manager_id: format!("bmc-{i:0width$}"),
                    uuid: format!(
                        "1a0c2b7e-5d1f-4c3a-8e2d-{:012x}",
                        i as u64 & 0xffff_ffff_ffff
                    ),
                    power_delay: cfg.power_delay.min(MAX_POWER_DELAY),
                    machine: Mutex::new(Machine::new()),
                    requests: AtomicU64::new(0),
                    unresponsive: AtomicBool::new(false),
                    sessions: sessions.clone(),
                })
            })
            .collect();
        RedfishSim {
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            allow_nmi: cfg.allow_nmi,
            unknown_enums: cfg.unknown_enums,
            no_graceful: cfg.no_graceful,
            manufacturer: cfg.manufacturer.clone(),
            model: cfg.model.clone(),
            session_timeout: cfg.session_timeout,
            width,
            systems,
            sessions,
        }
    }

    pub fn systems(&self) -> &[Arc<SimSystem>] {
        &self.systems
    }

    pub fn system(&self, i: usize) -> Option<&Arc<SimSystem>> {
        self.systems.get(i)
    }

    pub fn sessions_created(&self) -> u64 {
        self.sessions.created.load(Ordering::Relaxed)
    }

    pub fn active_sessions(&self, now: Instant) -> usize {
        self.sessions.active(now)
    }

    pub fn expire_sessions(&self) {
        self.sessions.clear();
    }

    /// The system whose resources `path` names (its system, reset action,
    /// manager, virtual media), if any.
    pub fn system_index(&self, path: &str) -> Option<usize> {
        self.route(path).and_then(|r| r.system())
    }

    /// Count an arriving request against the system it targets; returns that
    /// system.
    pub fn arrive(&self, path: &str) -> Option<&Arc<SimSystem>> {
        let sys = self.system_index(path).and_then(|i| self.systems.get(i))?;
        sys.requests.fetch_add(1, Ordering::Relaxed);
        Some(sys)
    }

    fn parse_index(&self, id: &str, prefix: &str) -> Option<usize> {
        let digits = id.strip_prefix(prefix)?;
        if digits.len() != self.width || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let i: usize = digits.parse().ok()?;
        (i < self.systems.len()).then_some(i)
    }

    fn route(&self, path: &str) -> Option<Route> {
        let path = path.trim_end_matches('/');
        if path == "/redfish" {
            return Some(Route::Versions);
        }
        let rest = path.strip_prefix("/redfish/v1")?;
        if rest.is_empty() {
            return Some(Route::Root);
        }
        let rest = rest.strip_prefix('/')?;
        let segs: Vec<&str> = rest.split('/').collect();
        let sys = |id: &str| self.parse_index(id, "sys-");
        let mgr = |id: &str| self.parse_index(id, "bmc-");
        Some(match segs.as_slice() {
            ["Systems"] => Route::Systems,
            ["Systems", id] => Route::System(sys(id)?),
            ["Systems", id, "Actions", "ComputerSystem.Reset"] => Route::Reset(sys(id)?),
            ["Managers"] => Route::Managers,
            ["Managers", id] => Route::Manager(mgr(id)?),
            ["Managers", id, "VirtualMedia"] => Route::MediaCollection(mgr(id)?),
            ["Managers", id, "VirtualMedia", "Cd"] => Route::Cd(mgr(id)?),
            ["Managers", id, "VirtualMedia", "Cd", "Actions", "VirtualMedia.InsertMedia"] => {
                Route::Insert(mgr(id)?)
            }
            ["Managers", id, "VirtualMedia", "Cd", "Actions", "VirtualMedia.EjectMedia"] => {
                Route::Eject(mgr(id)?)
            }
            ["SessionService"] => Route::SessionService,
            ["SessionService", "Sessions"] => Route::Sessions,
            ["SessionService", "Sessions", id] if !id.is_empty() => {
                Route::Session((*id).to_owned())
            }
            _ => return None,
        })
    }

    /// Answer one request at time `now`.
    pub fn handle(&self, req: &SimRequest<'_>, now: Instant) -> SimResponse {
        let method = if *req.method == Method::HEAD {
            &Method::GET
        } else {
            req.method
        };
        let route = self.route(req.path);
        match (&route, method) {
            (Some(Route::Versions), &Method::GET) => {
                return SimResponse::ok(json!({ "v1": ROOT_PATH }))
            }
            (Some(Route::Root), &Method::GET) => return SimResponse::ok(self.root_doc()),
            (Some(Route::Sessions), &Method::POST) => return self.login(req.body, now),
            _ => {}
        }
        if !self.authenticated(req.headers, now) {
            return unauthorized();
        }
        let Some(route) = route else {
            return not_found(req.path);
        };
        let wrong = |allow: &str| method_not_allowed(req.method, req.path, allow);
        let sys = route.system().and_then(|i| self.systems.get(i));
        match (route, sys) {
            (Route::Versions, _) | (Route::Root, _) => wrong("GET, HEAD"),
            (Route::Systems, _) => match *method {
                Method::GET => SimResponse::ok(self.systems_doc()),
                _ => wrong("GET, HEAD"),
            },
            (Route::Managers, _) => match *method {
                Method::GET => SimResponse::ok(self.managers_doc()),
                _ => wrong("GET, HEAD"),
            },
            (Route::SessionService, _) => match *method {
                Method::GET => SimResponse::ok(self.session_service_doc()),
                _ => wrong("GET, HEAD"),
            },
            (Route::Sessions, _) => match *method {
                Method::GET => SimResponse::ok(self.sessions_doc(now)),
                _ => wrong("GET, HEAD, POST"),
            },
            (Route::Session(id), _) => match *method {
                Method::GET => match self.sessions.user_of(&id, now) {
                    Some(user) => SimResponse::ok(session_doc(&id, &user)),
                    None => not_found(req.path),
                },
                Method::DELETE => {
                    if self.sessions.delete(&id, now) {
                        SimResponse::no_content()
                    } else {
                        not_found(req.path)
                    }
                }
                _ => wrong("GET, HEAD, DELETE"),
            },
            (Route::System(_), Some(s)) => match *method {
                Method::GET => s.with(now, |m| self.system_response(s, m)),
                Method::PATCH => self.patch_system(s, req, now),
                _ => wrong("GET, HEAD, PATCH"),
            },
            (Route::Reset(_), Some(s)) => match *method {
                Method::POST => self.reset(s, req, now),
                _ => wrong("POST"),
            },
            (Route::Manager(_), Some(s)) => match *method {
                Method::GET => SimResponse::ok(self.manager_doc(s)),
                _ => wrong("GET, HEAD"),
            },
            (Route::MediaCollection(_), Some(s)) => match *method {
                Method::GET => SimResponse::ok(media_collection_doc(s)),
                _ => wrong("GET, HEAD"),
            },
            (Route::Cd(_), Some(s)) => match *method {
                Method::GET => s.with(now, |m| cd_response(s, m)),
                Method::PATCH => self.patch_cd(s, req, now),
                _ => wrong("GET, HEAD, PATCH"),
            },
            (Route::Insert(_), Some(s)) => match *method {
                Method::POST => self.insert_media(s, req, now),
                _ => wrong("POST"),
            },
            (Route::Eject(_), Some(s)) => match *method {
                Method::POST => self.eject_media(s, req, now),
                _ => wrong("POST"),
            },
            // A system route whose index is out of range cannot be built.
            (_, None) => not_found(req.path),
        }
    }

    // ------------------------------------------------------------ auth

    fn credentials_ok(&self, user: &str, password: &str) -> bool {
        let u = user.as_bytes().ct_eq(self.username.as_bytes());
        let p = password.as_bytes().ct_eq(self.password.as_bytes());
        bool::from(u & p)
    }

    fn authenticated(&self, headers: &HeaderMap, now: Instant) -> bool {
        if let Some(token) = headers.get("x-auth-token") {
            return match token.to_str() {
                Ok(t) => self.sessions.touch(t.trim(), now),
                Err(_) => false,
            };
        }
        let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, encoded)) = auth.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = BASE64_STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let decoded = Zeroizing::new(decoded);
        let Ok(text) = std::str::from_utf8(&decoded) else {
            return false;
        };
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        self.credentials_ok(user, password)
    }

    fn login(&self, body: &[u8], now: Instant) -> SimResponse {
        let obj = match parse_object(body, false) {
            Ok(o) => o,
            Err(r) => return *r,
        };
        let field = |name: &str| -> Result<&str, Reject> {
            match obj.get(name) {
                Some(Value::String(s)) => Ok(s.as_str()),
                Some(other) => Err(Box::new(type_error(name, other, false))),
                None => Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    "PropertyMissing",
                    format!("The property {name} is a required property and must be included in the request."),
                    &[name],
                ))),
            }
        };
        let (user, password) = match (field("UserName"), field("Password")) {
            (Ok(u), Ok(p)) => (u, p),
            (Err(r), _) | (_, Err(r)) => return *r,
        };
        if !self.credentials_ok(user, password) {
            return error(
                StatusCode::UNAUTHORIZED,
                "ResourceAtUriUnauthorized",
                format!("While accessing the resource at {SESSIONS_PATH}, the service received an authorization error: invalid credentials."),
                &[SESSIONS_PATH, "invalid credentials"],
            );
        }
        let (id, token) = self.sessions.create(user, now);
        let location = format!("{SESSIONS_PATH}/{id}");
        let mut r = SimResponse::new(StatusCode::CREATED, Some(session_doc(&id, user)));
        r.set_header(header::LOCATION, &location);
        r.set_header(HeaderName::from_static("x-auth-token"), &token);
        r
    }

    // ------------------------------------------------------- documents

    fn oem(&self, kind: &str, extra: Value) -> Option<Value> {
        self.unknown_enums.then(|| {
            json!({
                "Ironrack": {
                    "@odata.type": format!("#Ironrack{kind}.v1_0_0.Ironrack{kind}"),
                    "Vendor": "ironrack",
                    "Extra": extra,
                }
            })
        })
    }

    fn status(&self) -> Value {
        if self.unknown_enums {
            json!({ "State": "Enabled", "Health": "OK", "HealthRollup": "OK" })
        } else {
            json!({ "State": "Enabled", "Health": "OK" })
        }
    }

    fn root_doc(&self) -> Value {
        let mut doc = json!({
            "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
            "@odata.id": ROOT_PATH,
            "Id": "RootService",
            "Name": "Root Service",
            "RedfishVersion": "1.11.0",
            "UUID": "1a0c2b7e-5d1f-4c3a-8e2d-ffffffffffff",
            "Product": "ironrack Redfish simulator",
            "Vendor": self.manufacturer,
            "Systems": odata_ref(SYSTEMS_PATH),
            "Managers": odata_ref(MANAGERS_PATH),
            "SessionService": odata_ref(SESSION_SERVICE_PATH),
            "Links": { "Sessions": odata_ref(SESSIONS_PATH) },
        });
        if let (Some(oem), Some(obj)) = (
            self.oem("ServiceRoot", json!({ "Fleet": self.systems.len() })),
            doc.as_object_mut(),
        ) {
            obj.insert("Oem".into(), oem);
        }
        doc
    }

    fn systems_doc(&self) -> Value {
        let members: Vec<Value> = self.systems.iter().map(|s| odata_ref(&s.path())).collect();
        json!({
            "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
            "@odata.id": SYSTEMS_PATH,
            "Name": "Computer System Collection",
            "Members@odata.count": members.len(),
            "Members": members,
        })
    }

    fn managers_doc(&self) -> Value {
        let members: Vec<Value> = self
            .systems
            .iter()
            .map(|s| odata_ref(&s.manager_path()))
            .collect();
        json!({
            "@odata.type": "#ManagerCollection.ManagerCollection",
            "@odata.id": MANAGERS_PATH,
            "Name": "Manager Collection",
            "Members@odata.count": members.len(),
            "Members": members,
        })
    }

    fn session_service_doc(&self) -> Value {
        json!({
            "@odata.type": "#SessionService.v1_1_8.SessionService",
            "@odata.id": SESSION_SERVICE_PATH,
            "Id": "SessionService",
            "Name": "Session Service",
            "ServiceEnabled": true,
            "SessionTimeout": self.session_timeout.as_secs(),
            "Status": { "State": "Enabled", "Health": "OK" },
            "Sessions": odata_ref(SESSIONS_PATH),
        })
    }

    fn sessions_doc(&self, now: Instant) -> Value {
        let members: Vec<Value> = self
            .sessions
            .ids(now)
            .iter()
            .map(|id| odata_ref(&format!("{SESSIONS_PATH}/{id}")))
            .collect();
        json!({
            "@odata.type": "#SessionCollection.SessionCollection",
            "@odata.id": SESSIONS_PATH,
            "Name": "Session Collection",
            "Members@odata.count": members.len(),
            "Members": members,
        })
    }

    /// Boot targets offered.
    pub fn boot_targets(&self) -> Vec<&'static str> {
        let mut v = BOOT_TARGETS.to_vec();
        if self.unknown_enums {
            v.extend(VENDOR_BOOT_TARGETS);
        }
        v
    }

    /// Reset types offered.
    pub fn reset_types(&self) -> Vec<&'static str> {
        let mut v = RESET_TYPES.to_vec();
        if self.no_graceful {
            v.retain(|t| !t.starts_with("Graceful"));
        }
        if self.allow_nmi {
            v.push("Nmi");
        }
        if self.unknown_enums {
            v.push("PushPowerButton");
        }
        v
    }

    fn system_doc(&self, s: &SimSystem, m: &Machine) -> Value {
        let mut doc = json!({
            "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
            "@odata.id": s.path(),
            "@odata.etag": s.system_etag(m),
            "Id": s.id,
            "Name": format!("Simulated system {}", s.index),
            "SystemType": "Physical",
            "Manufacturer": self.manufacturer,
            "Model": self.model,
            "SerialNumber": format!("IRSIM{:0width$}", s.index, width = self.width),
            "UUID": s.uuid,
            "PowerState": if m.on { "On" } else { "Off" },
            "Status": self.status(),
            "Boot": {
                "BootSourceOverrideTarget": m.boot_target,
                "BootSourceOverrideEnabled": m.boot_enabled,
                "BootSourceOverrideMode": m.boot_mode,
                "BootSourceOverrideTarget@Redfish.AllowableValues": self.boot_targets(),
                "BootSourceOverrideEnabled@Redfish.AllowableValues": BOOT_ENABLED,
                "BootSourceOverrideMode@Redfish.AllowableValues": BOOT_MODES,
            },
            "Actions": {
                "#ComputerSystem.Reset": {
                    "target": s.reset_target(),
                    "ResetType@Redfish.AllowableValues": self.reset_types(),
                }
            },
            "Links": {
                "ManagedBy": [odata_ref(&s.manager_path())],
            },
        });
        if let (Some(oem), Some(obj)) = (
            self.oem(
                "ComputerSystem",
                json!({
                    "RackSlot": s.index,
                    "FanMode": "AcousticQuiet",
                    "PowerRestorePolicy": "LastStateVendorSpecific",
                }),
            ),
            doc.as_object_mut(),
        ) {
            obj.insert("Oem".into(), oem);
        }
        doc
    }

    fn system_response(&self, s: &SimSystem, m: &Machine) -> SimResponse {
        SimResponse::ok(self.system_doc(s, m)).with_header(header::ETAG, &s.system_etag(m))
    }

    fn manager_doc(&self, s: &SimSystem) -> Value {
        let mut doc = json!({
            "@odata.type": "#Manager.v1_5_0.Manager",
            "@odata.id": s.manager_path(),
            "Id": s.manager_id,
            "Name": format!("Simulated BMC {}", s.index),
            "ManagerType": "BMC",
            "FirmwareVersion": concat!("ironrack-sim ", env!("CARGO_PKG_VERSION")),
            "Status": self.status(),
            "VirtualMedia": odata_ref(&s.media_path()),
            "Links": {
                "ManagerForServers": [odata_ref(&s.path())],
            },
        });
        if let (Some(oem), Some(obj)) = (
            self.oem("Manager", json!({ "LicenseTier": "Enterprise+" })),
            doc.as_object_mut(),
        ) {
            obj.insert("Oem".into(), oem);
        }
        doc
    }

    // --------------------------------------------------------- changes

    fn patch_system(&self, s: &SimSystem, req: &SimRequest<'_>, now: Instant) -> SimResponse {
        let obj = match parse_object(req.body, false) {
            Ok(o) => o,
            Err(r) => return *r,
        };
        s.with(now, |m| {
            if !if_match_ok(req.headers, &s.system_etag(m)) {
                return precondition_failed();
            }
            let mut target = None;
            let mut enabled = None;
            let mut mode = None;
            for (key, value) in &obj {
                match key.as_str() {
                    "Boot" => {
                        let Value::Object(boot) = value else {
                            return type_error("Boot", value, false);
                        };
                        for (k, v) in boot {
                            let name = format!("Boot/{k}");
                            let (slot, allowed) = match k.as_str() {
                                "BootSourceOverrideTarget" => (&mut target, self.boot_targets()),
                                "BootSourceOverrideEnabled" => {
                                    (&mut enabled, BOOT_ENABLED.to_vec())
                                }
                                "BootSourceOverrideMode" => (&mut mode, BOOT_MODES.to_vec()),
                                other if other.contains('@') => {
                                    return property_not_writable(&name)
                                }
                                _ => return property_unknown(&name),
                            };
                            let Value::String(text) = v else {
                                return type_error(&name, v, false);
                            };
                            if !allowed.contains(&text.as_str()) {
                                return not_in_list(&name, text, false);
                            }
                            *slot = Some(text.clone());
                        }
                    }
                    k if k.starts_with("@odata.") => {}
                    "Id" | "Name" | "PowerState" | "UUID" | "Manufacturer" | "Model"
                    | "SerialNumber" | "SystemType" | "Status" | "Actions" | "Links" => {
                        return property_not_writable(key)
                    }
                    _ => return property_unknown(key),
                }
            }
            let before = (
                m.boot_target.clone(),
                m.boot_enabled.clone(),
                m.boot_mode.clone(),
            );
            if let Some(t) = target {
                m.boot_target = t;
            }
            if let Some(e) = enabled {
                m.boot_enabled = e;
            }
            if let Some(md) = mode {
                m.boot_mode = md;
            }
            if before
                != (
                    m.boot_target.clone(),
                    m.boot_enabled.clone(),
                    m.boot_mode.clone(),
                )
            {
                m.generation += 1;
            }
            self.system_response(s, m)
        })
    }

    fn reset(&self, s: &SimSystem, req: &SimRequest<'_>, now: Instant) -> SimResponse {
        const ACTION: &str = "ComputerSystem.Reset";
        let obj = match parse_object(req.body, true) {
            Ok(o) => o,
            Err(r) => return *r,
        };
        if let Some(k) = obj.keys().find(|k| k.as_str() != "ResetType") {
            return unknown_parameter(ACTION, k);
        }
        let reset_type = match string_param(&obj, "ResetType", true) {
            Ok(Some(t)) => t,
            Ok(None) => return missing_parameter(ACTION, "ResetType"),
            Err(r) => return *r,
        };
        if !self.reset_types().contains(&reset_type) {
            return not_in_list("ResetType", reset_type, true);
        }
        let delay = s.power_delay;
        s.with(now, |m| {
            if !if_match_ok(req.headers, &s.system_etag(m)) {
                return precondition_failed();
            }
            match reset_type {
                "On" => m.schedule(true, now, delay),
                "ForceOff" => m.schedule(false, now, delay),
                "GracefulShutdown" => {
                    if m.on {
                        m.schedule(false, now, delay)
                    }
                }
                "PushPowerButton" => {
                    let target = !m.on;
                    m.schedule(target, now, delay)
                }
                "PowerCycle" => {
                    if m.on {
                        m.on = false;
                        m.generation += 1;
                    }
                    m.schedule(true, now, delay)
                }
                "ForceRestart" | "GracefulRestart" => {
                    if !m.on {
                        return error(
                            StatusCode::CONFLICT,
                            "GeneralError",
                            format!("The system is powered off; {reset_type} needs it on."),
                            &[],
                        );
                    }
                    m.pending = None;
                    m.resets += 1;
                    m.boot();
                }
                "Nmi" => m.nmi_count += 1,
                _ => return not_in_list("ResetType", reset_type, true),
            }
            SimResponse::no_content()
        })
    }

    fn patch_cd(&self, s: &SimSystem, req: &SimRequest<'_>, now: Instant) -> SimResponse {
        let obj = match parse_object(req.body, false) {
            Ok(o) => o,
            Err(r) => return *r,
        };
        s.with(now, |m| {
            if !if_match_ok(req.headers, &s.media_etag(m)) {
                return precondition_failed();
            }
            let mut image = None;
            for (k, v) in &obj {
                match k.as_str() {
                    "Image" => match v {
                        Value::Null => image = Some(None),
                        Value::String(u) if u.is_empty() => image = Some(None),
                        Value::String(u) if looks_like_url(u) => image = Some(Some(u.clone())),
                        Value::String(u) => {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "PropertyValueFormatError",
                                format!("The value {u} for the property Image is of a different format than the property can accept."),
                                &[u, "Image"],
                            )
                        }
                        other => return type_error("Image", other, false),
                    },
                    "Inserted" | "WriteProtected" => {
                        if !v.is_boolean() {
                            return type_error(k, v, false);
                        }
                    }
                    k if k.starts_with("@odata.") => {}
                    "Id" | "Name" | "MediaTypes" | "ConnectedVia" | "ImageName" | "Actions" => {
                        return property_not_writable(k)
                    }
                    _ => return property_unknown(k),
                }
            }
            let inserted = obj.get("Inserted").and_then(Value::as_bool);
            let write_protected = obj.get("WriteProtected").and_then(Value::as_bool);
            if let Some(img) = image {
                m.media_inserted = img.is_some();
                m.media_image = img;
            }
            if let Some(i) = inserted {
                m.media_inserted = i && m.media_image.is_some();
            }
            if let Some(w) = write_protected {
                m.media_write_protected = w;
            }
            m.media_generation += 1;
            cd_response(s, m)
        })
    }

    fn insert_media(&self, s: &SimSystem, req: &SimRequest<'_>, now: Instant) -> SimResponse {
        const ACTION: &str = "VirtualMedia.InsertMedia";
        let obj = match parse_object(req.body, true) {
            Ok(o) => o,
            Err(r) => return *r,
        };
        const KNOWN: [&str; 7] = [
            "Image",
            "Inserted",
            "WriteProtected",
            "TransferProtocolType",
            "TransferMethod",
            "UserName",
            "Password",
        ];
        if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return unknown_parameter(ACTION, k);
        }
        let image = match string_param(&obj, "Image", true) {
            Ok(Some(i)) => i,
            Ok(None) => return missing_parameter(ACTION, "Image"),
            Err(r) => return *r,
        };
        if !looks_like_url(image) {
            return error(
                StatusCode::BAD_REQUEST,
                "ActionParameterValueFormatError",
                format!("The value {image} for the parameter Image in the action {ACTION} is of a different format than the parameter can accept."),
                &[image, "Image", ACTION],
            );
        }
        let inserted = match bool_param(&obj, "Inserted", true) {
            Ok(v) => v.unwrap_or(true),
            Err(r) => return *r,
        };
        let write_protected = match bool_param(&obj, "WriteProtected", true) {
            Ok(v) => v.unwrap_or(true),
            Err(r) => return *r,
        };
        for name in [
            "TransferProtocolType",
            "TransferMethod",
            "UserName",
            "Password",
        ] {
            if let Err(r) = string_param(&obj, name, true) {
                return *r;
            }
        }
        s.with(now, |m| {
            if !if_match_ok(req.headers, &s.media_etag(m)) {
                return precondition_failed();
            }
            if m.media_inserted {
                let path = s.cd_path();
                return error(
                    StatusCode::CONFLICT,
                    "ResourceInUse",
                    format!("The change to the requested resource failed because the resource is in use or in transition: {path} has an image inserted; eject it first."),
                    &[],
                );
            }
            m.media_image = Some(image.to_owned());
            m.media_inserted = inserted;
            m.media_write_protected = write_protected;
            m.media_generation += 1;
            SimResponse::no_content()
        })
    }

    fn eject_media(&self, s: &SimSystem, req: &SimRequest<'_>, now: Instant) -> SimResponse {
        const ACTION: &str = "VirtualMedia.EjectMedia";
        let obj = match parse_object(req.body, true) {
            Ok(o) => o,
            Err(r) => return *r,
        };
        if let Some(k) = obj.keys().next() {
            return unknown_parameter(ACTION, k);
        }
        s.with(now, |m| {
            if !if_match_ok(req.headers, &s.media_etag(m)) {
                return precondition_failed();
            }
            if m.media_image.is_some() || m.media_inserted {
                m.media_image = None;
                m.media_inserted = false;
                m.media_generation += 1;
            }
            SimResponse::no_content()
        })
    }
}

fn session_doc(id: &str, user: &str) -> Value {
    json!({
        "@odata.type": "#Session.v1_0_0.Session",
        "@odata.id": format!("{SESSIONS_PATH}/{id}"),
        "Id": id,
        "Name": "User Session",
        "UserName": user,
        "Password": null,
    })
}

fn media_collection_doc(s: &SimSystem) -> Value {
    json!({
        "@odata.type": "#VirtualMediaCollection.VirtualMediaCollection",
        "@odata.id": s.media_path(),
        "Name": "Virtual Media Collection",
        "Members@odata.count": 1,
        "Members": [odata_ref(&s.cd_path())],
    })
}

fn cd_doc(s: &SimSystem, m: &Machine) -> Value {
    let image_name = m
        .media_image
        .as_deref()
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| !n.is_empty());
    let cd = s.cd_path();
    json!({
        "@odata.type": "#VirtualMedia.v1_3_0.VirtualMedia",
        "@odata.id": cd,
        "@odata.etag": s.media_etag(m),
        "Id": "Cd",
        "Name": "Virtual CD",
        "MediaTypes": ["CD", "DVD"],
        "Image": m.media_image,
        "ImageName": image_name,
        "Inserted": m.media_inserted,
        "WriteProtected": m.media_write_protected,
        "ConnectedVia": if m.media_image.is_some() { "URI" } else { "NotConnected" },
        "Actions": {
            "#VirtualMedia.InsertMedia": {
                "target": format!("{cd}/Actions/VirtualMedia.InsertMedia"),
            },
            "#VirtualMedia.EjectMedia": {
                "target": format!("{cd}/Actions/VirtualMedia.EjectMedia"),
            },
        },
    })
}

fn cd_response(s: &SimSystem, m: &Machine) -> SimResponse {
    SimResponse::ok(cd_doc(s, m)).with_header(header::ETAG, &s.media_etag(m))
}

// ----------------------------------------------------------------- server

/// Fleet-wide fault knobs and counters.
#[derive(Default)]
struct FleetFaults {
    latency_us: AtomicU64,
    jitter_us: AtomicU64,
    /// `f64` bits.
    rate_503: AtomicU64,
    /// This many requests from now answer 503 whatever the rate.
    next_503: AtomicU64,
    requests: AtomicU64,
    injected_503: AtomicU64,
}

impl FleetFaults {
    fn set_latency(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.store(us, Ordering::Relaxed);
    }
    fn set_jitter(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.jitter_us.store(us, Ordering::Relaxed);
    }
    /// The delay for one request: the latency plus a random part of the jitter.
    fn latency(&self) -> Duration {
        let base = self.latency_us.load(Ordering::Relaxed);
        let jitter = self.jitter_us.load(Ordering::Relaxed);
        let extra = if jitter > 0 {
            rand::thread_rng().gen_range(0..=jitter)
        } else {
            0
        };
        Duration::from_micros(base.saturating_add(extra))
    }
    fn set_rate(&self, rate: f64) {
        let rate = if rate.is_finite() {
            rate.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.rate_503.store(rate.to_bits(), Ordering::Relaxed);
    }
    fn rate(&self) -> f64 {
        f64::from_bits(self.rate_503.load(Ordering::Relaxed))
    }
    /// Whether this request answers 503: one of the next ones asked for, or
    /// drawn at the rate.
    fn draw_503(&self) -> bool {
        let queued = self
            .next_503
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        let hit = queued || {
            let rate = self.rate();
            rate > 0.0 && rand::thread_rng().gen::<f64>() < rate
        };
        if hit {
            self.injected_503.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }
}

struct Shared {
    sim: Arc<RedfishSim>,
    faults: Arc<FleetFaults>,
    stop: watch::Receiver<bool>,
}

/// A running simulated Redfish fleet. Dropping it stops the server.
pub struct RedfishFleet {
    addr: SocketAddr,
    tls: bool,
    cert_pem: Option<String>,
    sim: Arc<RedfishSim>,
    faults: Arc<FleetFaults>,
    handle: axum_server::Handle<SocketAddr>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    /// System i's network side.
    netboot: Vec<Arc<NetbootHost>>,
    /// Watches the systems' boots for `netboot`.
    watcher: Option<JoinHandle<()>>,
}

impl fmt::Debug for RedfishFleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedfishFleet")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field("systems", &self.sim.systems.len())
            .finish_non_exhaustive()
    }
}

impl RedfishFleet {
    /// Bind `cfg.listen` and serve `cfg.count` systems. Must run inside a
    /// tokio runtime.
    pub async fn start(cfg: RedfishFleetConfig) -> std::io::Result<RedfishFleet> {
        if cfg.count == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a Redfish fleet needs at least one system",
            ));
        }
        let listener = std::net::TcpListener::bind(cfg.listen).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("binding the Redfish simulator to {}: {e}", cfg.listen),
            )
        })?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;

        let sim = Arc::new(RedfishSim::new(&cfg));
        let http = pxe::http_client()?;
        let mac_base = cfg.mac_base.unwrap_or(DEFAULT_REDFISH_MAC_BASE);
        let mut netboot = Vec::with_capacity(cfg.count);
        for i in 0..cfg.count {
            let mac = mac_base.checked_add(i as u64).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "system {i} would need a MAC beyond ff:ff:ff:ff:ff:ff (base {mac_base})"
                    ),
                )
            })?;
            netboot.push(Arc::new(NetbootHost::new(
                mac,
                addr,
                addr.port(),
                cfg.netboot.clone(),
                http.clone(),
            )));
        }
        let watcher = tokio::spawn(watch_boots(sim.clone(), netboot.clone()));
        let faults = Arc::new(FleetFaults::default());
        faults.set_latency(cfg.latency);
        faults.set_jitter(cfg.jitter);
        faults.set_rate(cfg.error_503_rate);
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            sim: sim.clone(),
            faults: faults.clone(),
            stop: stop_rx,
        });
        let app = Router::new().fallback(serve_request).with_state(shared);
        let handle = axum_server::Handle::<SocketAddr>::new();

        let (task, cert_pem) = if cfg.tls {
            let (cert_pem, tls) = tls_config(addr).await?;
            let server = axum_server::from_tcp_rustls(listener, tls)?.handle(handle.clone());
            let task = tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::warn!("redfish sim {addr}: server stopped: {e}");
                }
            });
            (task, Some(cert_pem))
        } else {
            let server = axum_server::from_tcp(listener)?.handle(handle.clone());
            let task = tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::warn!("redfish sim {addr}: server stopped: {e}");
                }
            });
            (task, None)
        };
        tracing::info!(
            "redfish sim: {} systems at {}://{addr}",
            cfg.count,
            if cfg.tls { "https" } else { "http" }
        );
        Ok(RedfishFleet {
            addr,
            tls: cfg.tls,
            cert_pem,
            sim,
            faults,
            handle,
            stop,
            task: Some(task),
            netboot,
            watcher: Some(watcher),
        })
    }

    /// System i's network side (MAC, counters, settings).
    pub fn netboot(&self, i: usize) -> Option<&Arc<NetbootHost>> {
        self.netboot.get(i)
    }

    /// System i's PXE MAC, `aa:bb:cc:dd:ee:ff`.
    pub fn mac(&self, i: usize) -> Option<String> {
        self.netboot.get(i).map(|n| n.mac().to_string())
    }

    /// Every system's network side, in system order.
    pub fn netboot_hosts(&self) -> &[Arc<NetbootHost>] {
        &self.netboot
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr` or `https://addr`.
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// The self-signed certificate (PEM) when serving TLS.
    pub fn cert_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    /// Number of systems.
    pub fn len(&self) -> usize {
        self.sim.systems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sim.systems.is_empty()
    }

    /// System `i`.
    ///
    /// # Panics
    /// If `i >= len()`; see [`get_system`](Self::get_system).
    pub fn system(&self, i: usize) -> Arc<SimSystem> {
        self.sim.systems[i].clone()
    }

    /// System `i`, if there is one.
    pub fn get_system(&self, i: usize) -> Option<Arc<SimSystem>> {
        self.sim.systems.get(i).cloned()
    }

    pub fn systems(&self) -> &[Arc<SimSystem>] {
        &self.sim.systems
    }

    /// The service state (to drive [`RedfishSim::handle`] directly).
    pub fn sim(&self) -> &Arc<RedfishSim> {
        &self.sim
    }

    /// Requests received (all paths).
    pub fn requests(&self) -> u64 {
        self.faults.requests.load(Ordering::Relaxed)
    }

    /// 503s injected so far.
    pub fn injected_503(&self) -> u64 {
        self.faults.injected_503.load(Ordering::Relaxed)
    }

    pub fn sessions_created(&self) -> u64 {
        self.sim.sessions_created()
    }

    pub fn active_sessions(&self) -> usize {
        self.sim.active_sessions(Instant::now())
    }

    /// Drop every session.
    pub fn expire_sessions(&self) {
        self.sim.expire_sessions()
    }

    /// Change the latency added to every request.
    pub fn set_latency(&self, d: Duration) {
        self.faults.set_latency(d)
    }

    /// Change the random extra latency (up to `d` per request).
    pub fn set_jitter(&self, d: Duration) {
        self.faults.set_jitter(d)
    }

    /// Change the probability of a 503.
    pub fn set_error_503_rate(&self, rate: f64) {
        self.faults.set_rate(rate)
    }

    /// Answer the next `n` requests (to any path) with 503, whatever the
    /// rate: a fault a test can count on.
    pub fn fail_next_with_503(&self, n: u64) {
        self.faults.next_503.store(n, Ordering::Relaxed)
    }

    /// Stop serving and wait for the server task.
    pub async fn shutdown(mut self) {
        self.stop_netboot();
        let _ = self.stop.send(true);
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl RedfishFleet {
    fn stop_netboot(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        for n in &self.netboot {
            n.abort();
        }
    }
}

/// Every 100 ms, tell each system's network side about its boots and power
/// (landing transitions that are due, as a request would).
async fn watch_boots(sim: Arc<RedfishSim>, hosts: Vec<Arc<NetbootHost>>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (sys, host) in sim.systems.iter().zip(&hosts) {
            let (boots, target, mode, on) = sys.boot_state();
            let flags = redfish_boot_flags(target.as_deref(), &mode);
            host.observe(boots, flags.as_ref(), on);
        }
    }
}

impl Drop for RedfishFleet {
    fn drop(&mut self) {
        self.stop_netboot();
        let _ = self.stop.send(true);
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A self-signed certificate for the listen address (and localhost).
async fn tls_config(
    addr: SocketAddr,
) -> std::io::Result<(String, axum_server::tls_rustls::RustlsConfig)> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let ip = addr.ip();
    if !ip.is_unspecified() && ip != IpAddr::from([127, 0, 0, 1]) {
        names.push(ip.to_string());
    }
    let key = rcgen::generate_simple_self_signed(names)
        .map_err(|e| std::io::Error::other(format!("generating a certificate: {e}")))?;
    let cert_pem = key.cert.pem();
    let key_pem = Zeroizing::new(key.signing_key.serialize_pem());
    let (c, k) = (cert_pem.clone().into_bytes(), key_pem.as_bytes().to_vec());
    crate::util::install_crypto_provider();
    let cfg = axum_server::tls_rustls::RustlsConfig::from_pem(c, k)
        .await
        .map_err(|e| std::io::Error::other(format!("TLS configuration: {e}")))?;
    Ok((cert_pem, cfg))
}

async fn serve_request(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    shared.faults.requests.fetch_add(1, Ordering::Relaxed);
    let system = shared.sim.arrive(&path).cloned();

    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if system.as_ref().is_some_and(|s| s.is_unresponsive()) {
        let mut stop = shared.stop.clone();
        let _ = tokio::time::timeout(HANG, stop.wait_for(|s| *s)).await;
        return into_response(service_unavailable());
    }
    if shared.faults.draw_503() {
        return into_response(service_unavailable());
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return into_response(error(
                StatusCode::BAD_REQUEST,
                "GeneralError",
                format!("The request body could not be read: {e}"),
                &[],
            ))
        }
    };
    let sim_req = SimRequest {
        method: &parts.method,
        path: &path,
        headers: &parts.headers,
        body: &bytes,
    };
    into_response(shared.sim.handle(&sim_req, Instant::now()))
}

fn into_response(r: SimResponse) -> Response {
    let bytes = r.body_bytes();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = r.status;
    *resp.headers_mut() = r.headers;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(count: usize, delay_ms: u64) -> RedfishSim {
        let mut cfg = RedfishFleetConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            count,
            "admin",
            "secret",
        );
        cfg.power_delay = Duration::from_millis(delay_ms);
        cfg.session_timeout = Duration::from_secs(30);
        RedfishSim::new(&cfg)
    }

    fn basic() -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", BASE64_STANDARD.encode("admin:secret"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        h
    }

    fn call(
        s: &RedfishSim,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: &str,
        now: Instant,
    ) -> SimResponse {
        s.handle(
            &SimRequest {
                method: &method,
                path,
                headers,
                body: body.as_bytes(),
            },
            now,
        )
    }

    fn get(s: &RedfishSim, path: &str, now: Instant) -> SimResponse {
        call(s, Method::GET, path, &basic(), "", now)
    }

    const SYS0: &str = "/redfish/v1/Systems/sys-0000";
    const RESET0: &str = "/redfish/v1/Systems/sys-0000/Actions/ComputerSystem.Reset";

    #[test]
    fn ids_are_padded_and_routed() {
        let s = sim(3, 0);
        let now = Instant::now();
        assert_eq!(get(&s, SYS0, now).status, StatusCode::OK);
        assert_eq!(
            get(&s, "/redfish/v1/Systems/sys-0002/", now).status,
            StatusCode::OK
        );
        for bad in [
            "/redfish/v1/Systems/sys-0003",
            "/redfish/v1/Systems/sys-2",
            "/redfish/v1/Systems/sys-00001",
            "/redfish/v1/Systems/sys-+001",
            "/redfish/v1/Systems//sys-0000",
            "/redfish/v2/",
            "/",
            "",
        ] {
            let r = get(&s, bad, now);
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
            assert_eq!(r.message_id(), Some("Base.1.8.ResourceMissingAtURI"));
        }
        assert_eq!(
            s.system_index("/redfish/v1/Managers/bmc-0001/VirtualMedia/Cd"),
            Some(1)
        );
        assert_eq!(s.system_index("/redfish/v1/Systems"), None);
        let big = sim(12000, 0);
        assert_eq!(big.systems()[11999].id(), "sys-11999");
        assert_eq!(big.systems()[7].id(), "sys-00007");
    }

    #[test]
    fn auth_rules() {
        let s = sim(1, 0);
        let now = Instant::now();
        let none = HeaderMap::new();
        assert_eq!(
            call(&s, Method::GET, "/redfish/v1/", &none, "", now).status,
            StatusCode::OK
        );
        assert_eq!(
            call(&s, Method::GET, "/redfish", &none, "", now).status,
            StatusCode::OK
        );
        let r = call(&s, Method::GET, SYS0, &none, "", now);
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.message_id(), Some("Base.1.8.NoValidSession"));
        // Unknown paths do not leak without credentials.
        let r = call(&s, Method::GET, "/nope", &none, "", now);
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        let mut wrong = HeaderMap::new();
        let v = format!("Basic {}", BASE64_STANDARD.encode("admin:nope"));
        wrong.insert(header::AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        assert_eq!(
            call(&s, Method::GET, SYS0, &wrong, "", now).status,
            StatusCode::UNAUTHORIZED
        );
        for junk in ["Basic !!!", "Basic", "Bearer x", "Basic YWRtaW4="] {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(junk).unwrap());
            assert_eq!(
                call(&s, Method::GET, SYS0, &h, "", now).status,
                StatusCode::UNAUTHORIZED
            );
        }

        // Sessions: login, use, idle expiry, delete.
        let bad = call(
            &s,
            Method::POST,
            SESSIONS_PATH,
            &none,
            r#"{"UserName":"admin","Password":"x"}"#,
            now,
        );
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
        let ok = call(
            &s,
            Method::POST,
            SESSIONS_PATH,
            &none,
            r#"{"UserName":"admin","Password":"secret"}"#,
            now,
        );
        assert_eq!(ok.status, StatusCode::CREATED);
        let token = ok.header("x-auth-token").unwrap().to_owned();
        let loc = ok.header("location").unwrap().to_owned();
        assert_eq!(loc, "/redfish/v1/SessionService/Sessions/1");
        let mut th = HeaderMap::new();
        th.insert("x-auth-token", HeaderValue::from_str(&token).unwrap());
        let t1 = now + Duration::from_secs(20);
        assert_eq!(
            call(&s, Method::GET, SYS0, &th, "", t1).status,
            StatusCode::OK
        );
        // Idle time counts from the last use.
        let t2 = t1 + Duration::from_secs(29);
        assert_eq!(
            call(&s, Method::GET, SYS0, &th, "", t2).status,
            StatusCode::OK
        );
        let t3 = t2 + Duration::from_secs(30);
        assert_eq!(
            call(&s, Method::GET, SYS0, &th, "", t3).status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(s.active_sessions(t3), 0);

        let ok = call(
            &s,
            Method::POST,
            SESSIONS_PATH,
            &none,
            r#"{"UserName":"admin","Password":"secret"}"#,
            t3,
        );
        let token = ok.header("x-auth-token").unwrap().to_owned();
        let loc = ok.header("location").unwrap().to_owned();
        let mut th = HeaderMap::new();
        th.insert("x-auth-token", HeaderValue::from_str(&token).unwrap());
        // A bad token is not rescued by valid basic credentials.
        let mut both = basic();
        both.insert("x-auth-token", HeaderValue::from_static("nope"));
        assert_eq!(
            call(&s, Method::GET, SYS0, &both, "", t3).status,
            StatusCode::UNAUTHORIZED
        );
        let list = call(&s, Method::GET, SESSIONS_PATH, &th, "", t3);
        assert_eq!(list.body.unwrap()["Members@odata.count"], 1);
        assert_eq!(
            call(&s, Method::GET, &loc, &th, "", t3).status,
            StatusCode::OK
        );
        assert_eq!(
            call(&s, Method::DELETE, &loc, &th, "", t3).status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            call(&s, Method::GET, SYS0, &th, "", t3).status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&s, Method::DELETE, &loc, &basic(), "", t3).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(s.sessions_created(), 2);

        for body in [
            "",
            "{",
            "[]",
            r#"{"UserName":"admin"}"#,
            r#"{"UserName":1,"Password":"secret"}"#,
        ] {
            let r = call(&s, Method::POST, SESSIONS_PATH, &none, body, t3);
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        }
    }

    #[test]
    fn power_lands_after_the_delay() {
        let s = sim(1, 300);
        let sys = s.systems()[0].clone();
        let t0 = Instant::now();
        let on = call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"On"}"#,
            t0,
        );
        assert_eq!(on.status, StatusCode::NO_CONTENT);
        let doc = get(&s, SYS0, t0 + Duration::from_millis(299)).body.unwrap();
        assert_eq!(doc["PowerState"], "Off");
        let doc = get(&s, SYS0, t0 + Duration::from_millis(300)).body.unwrap();
        assert_eq!(doc["PowerState"], "On");
        assert_eq!(sys.with(t0 + Duration::from_millis(300), |m| m.boots), 1);

        // GracefulShutdown only when on; a later request replaces a pending one.
        let t1 = t0 + Duration::from_secs(1);
        call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"GracefulShutdown"}"#,
            t1,
        );
        call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"On"}"#,
            t1,
        );
        assert!(sys.with(t1 + Duration::from_secs(1), |m| m.on));
        call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"ForceOff"}"#,
            t1,
        );
        assert!(!sys.with(t1 + Duration::from_secs(1), |m| m.on));
        let t2 = t1 + Duration::from_secs(2);
        call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"GracefulShutdown"}"#,
            t2,
        );
        assert_eq!(sys.with(t2, |m| m.pending), None);

        // Restarts need power; PowerCycle works from both states.
        let r = call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"ForceRestart"}"#,
            t2,
        );
        assert_eq!(r.status, StatusCode::CONFLICT);
        call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"PowerCycle"}"#,
            t2,
        );
        assert!(sys.with(t2 + Duration::from_secs(1), |m| m.on));
        let t3 = t2 + Duration::from_secs(1);
        call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"PowerCycle"}"#,
            t3,
        );
        assert!(!sys.with(t3, |m| m.on));
        assert!(sys.with(t3 + Duration::from_secs(1), |m| m.on));
        let boots = sys.with(t3 + Duration::from_secs(1), |m| m.boots);
        let r = call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"GracefulRestart"}"#,
            t3 + Duration::from_secs(1),
        );
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(
            sys.with(t3 + Duration::from_secs(1), |m| (m.boots, m.resets)),
            (boots + 1, 1)
        );
    }

    #[test]
    fn reset_validation() {
        let s = sim(1, 0);
        let now = Instant::now();
        let r = call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"Explode"}"#,
            now,
        );
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r.message_id(),
            Some("Base.1.8.ActionParameterValueNotInList")
        );
        let info = &r.body.unwrap()["error"]["@Message.ExtendedInfo"][0];
        assert_eq!(info["MessageId"], "Base.1.8.ActionParameterValueNotInList");
        assert_eq!(info["MessageArgs"], json!(["Explode", "ResetType"]));
        for (body, id) in [
            ("", "ActionParameterMissing"),
            ("{}", "ActionParameterMissing"),
            (r#"{"ResetType":5}"#, "ActionParameterValueTypeError"),
            (
                r#"{"ResetType":"On","Force":true}"#,
                "ActionParameterUnknown",
            ),
            (
                r#"{"ResetType":"PushPowerButton"}"#,
                "ActionParameterValueNotInList",
            ),
            ("nope", "MalformedJSON"),
            ("[1]", "MalformedJSON"),
        ] {
            let r = call(&s, Method::POST, RESET0, &basic(), body, now);
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(
                r.message_id(),
                Some(format!("Base.1.8.{id}").as_str()),
                "{body}"
            );
        }
        // NMI counts whatever the power state.
        for _ in 0..3 {
            let r = call(
                &s,
                Method::POST,
                RESET0,
                &basic(),
                r#"{"ResetType":"Nmi"}"#,
                now,
            );
            assert_eq!(r.status, StatusCode::NO_CONTENT);
        }
        assert_eq!(s.systems()[0].nmi_count(), 3);
        let r = call(&s, Method::GET, RESET0, &basic(), "", now);
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.header("allow"), Some("POST"));
    }

    #[test]
    fn no_graceful_leaves_out_and_refuses_the_graceful_resets() {
        let mut cfg =
            RedfishFleetConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), 1, "admin", "secret");
        cfg.no_graceful = true;
        let s = RedfishSim::new(&cfg);
        let now = Instant::now();
        s.systems()[0].set_power(true);
        let doc = get(&s, SYS0, now).body.unwrap();
        let resets = doc["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"]
            .as_array()
            .unwrap()
            .clone();
        assert!(resets.contains(&json!("ForceRestart")) && resets.contains(&json!("On")));
        for t in ["GracefulShutdown", "GracefulRestart"] {
            assert!(!resets.contains(&json!(t)), "{t} offered");
            let r = call(
                &s,
                Method::POST,
                RESET0,
                &basic(),
                &format!(r#"{{"ResetType":"{t}"}}"#),
                now,
            );
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
            assert_eq!(
                r.message_id(),
                Some("Base.1.8.ActionParameterValueNotInList")
            );
        }
        assert!(s.systems()[0].power_on());
        assert_eq!(s.systems()[0].resets(), 0);
    }

    #[test]
    fn nmi_and_vendor_values_follow_the_config() {
        let mut cfg =
            RedfishFleetConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), 1, "admin", "secret");
        cfg.allow_nmi = false;
        cfg.unknown_enums = true;
        let s = RedfishSim::new(&cfg);
        let now = Instant::now();
        let doc = get(&s, SYS0, now).body.unwrap();
        let resets = &doc["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"];
        assert!(!resets.as_array().unwrap().contains(&json!("Nmi")));
        assert!(resets
            .as_array()
            .unwrap()
            .contains(&json!("PushPowerButton")));
        let targets = doc["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"]
            .as_array()
            .unwrap();
        assert!(targets.contains(&json!("SDCard")) && targets.contains(&json!("UefiTarget")));
        assert!(doc["Oem"]["Ironrack"].is_object());
        assert_eq!(doc["Status"]["Health"], "OK");
        assert_eq!(doc["PowerState"], "Off");
        let r = call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"Nmi"}"#,
            now,
        );
        assert_eq!(
            r.message_id(),
            Some("Base.1.8.ActionParameterValueNotInList")
        );
        call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"PushPowerButton"}"#,
            now,
        );
        assert!(s.systems()[0].power_on());
        let r = call(
            &s,
            Method::PATCH,
            SYS0,
            &basic(),
            r#"{"Boot":{"BootSourceOverrideTarget":"SDCard"}}"#,
            now,
        );
        assert_eq!(r.status, StatusCode::OK);

        let plain = sim(1, 0);
        let doc = get(&plain, SYS0, now).body.unwrap();
        assert!(doc.get("Oem").is_none());
        let r = call(
            &plain,
            Method::PATCH,
            SYS0,
            &basic(),
            r#"{"Boot":{"BootSourceOverrideTarget":"SDCard"}}"#,
            now,
        );
        assert_eq!(r.message_id(), Some("Base.1.8.PropertyValueNotInList"));
    }

    #[test]
    fn boot_patch_etag_and_once() {
        let s = sim(1, 100);
        let sys = s.systems()[0].clone();
        let now = Instant::now();
        let first = get(&s, SYS0, now);
        let etag = first.header("etag").unwrap().to_owned();
        assert_eq!(first.body.as_ref().unwrap()["@odata.etag"], json!(etag));

        let body = r#"{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"Legacy"}}"#;
        let mut h = basic();
        h.insert(header::IF_MATCH, HeaderValue::from_str(&etag).unwrap());
        let r = call(&s, Method::PATCH, SYS0, &h, body, now);
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.body.as_ref().unwrap()["Boot"]["BootSourceOverrideTarget"],
            "Pxe"
        );
        let new_tag = r.header("etag").unwrap().to_owned();
        assert_ne!(new_tag, etag);
        // The old tag is stale now; a weak form of the new one and * match.
        let r = call(&s, Method::PATCH, SYS0, &h, body, now);
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(r.message_id(), Some("Base.1.8.PreconditionFailed"));
        for tag in [
            format!("W/{new_tag}"),
            "*".to_owned(),
            format!("\"x\", {new_tag}"),
        ] {
            let mut h = basic();
            h.insert(header::IF_MATCH, HeaderValue::from_str(&tag).unwrap());
            assert_eq!(
                call(&s, Method::PATCH, SYS0, &h, body, now).status,
                StatusCode::OK,
                "{tag}"
            );
        }
        assert_eq!(sys.boot(), ("Pxe".into(), "Once".into(), "Legacy".into()));

        // Invalid patches change nothing.
        for (body, id) in [
            (
                r#"{"Boot":{"BootSourceOverrideTarget":"Floppy"}}"#,
                "PropertyValueNotInList",
            ),
            (
                r#"{"Boot":{"BootSourceOverrideEnabled":"Always"}}"#,
                "PropertyValueNotInList",
            ),
            (
                r#"{"Boot":{"BootSourceOverrideMode":"uefi"}}"#,
                "PropertyValueNotInList",
            ),
            (
                r#"{"Boot":{"BootSourceOverrideMode":"UEFI","BootSourceOverrideTarget":7}}"#,
                "PropertyValueTypeError",
            ),
            (r#"{"Boot":{"BootOrder":[]}}"#, "PropertyUnknown"),
            (r#"{"Boot":"Pxe"}"#, "PropertyValueTypeError"),
            (r#"{"PowerState":"On"}"#, "PropertyNotWritable"),
            (r#"{"AssetTag":"x"}"#, "PropertyUnknown"),
            ("{\"Boot\":", "MalformedJSON"),
            ("", "MalformedJSON"),
        ] {
            let r = call(&s, Method::PATCH, SYS0, &basic(), body, now);
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(
                r.message_id(),
                Some(format!("Base.1.8.{id}").as_str()),
                "{body}"
            );
        }
        assert_eq!(sys.boot(), ("Pxe".into(), "Once".into(), "Legacy".into()));

        // Booting consumes a one-time override.
        call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"On"}"#,
            now,
        );
        assert_eq!(sys.with(now, |m| m.boot_enabled.clone()), "Once");
        let later = now + Duration::from_millis(100);
        let doc = get(&s, SYS0, later).body.unwrap();
        assert_eq!(doc["PowerState"], "On");
        assert_eq!(doc["Boot"]["BootSourceOverrideEnabled"], "Disabled");
        assert_eq!(doc["Boot"]["BootSourceOverrideTarget"], "Pxe");
        assert_eq!(sys.last_boot_target().as_deref(), Some("Pxe"));

        // A continuous one stays.
        let body = r#"{"Boot":{"BootSourceOverrideTarget":"Hdd","BootSourceOverrideEnabled":"Continuous"}}"#;
        call(&s, Method::PATCH, SYS0, &basic(), body, later);
        call(
            &s,
            Method::POST,
            RESET0,
            &basic(),
            r#"{"ResetType":"ForceRestart"}"#,
            later,
        );
        assert_eq!(sys.with(later, |m| m.boot_enabled.clone()), "Continuous");
        assert_eq!(sys.last_boot_target().as_deref(), Some("Hdd"));
    }

    #[test]
    fn virtual_media() {
        let s = sim(2, 0);
        let now = Instant::now();
        let cd = "/redfish/v1/Managers/bmc-0001/VirtualMedia/Cd";
        let insert = format!("{cd}/Actions/VirtualMedia.InsertMedia");
        let eject = format!("{cd}/Actions/VirtualMedia.EjectMedia");
        let mgr = get(&s, "/redfish/v1/Managers/bmc-0001", now).body.unwrap();
        assert_eq!(
            mgr["VirtualMedia"]["@odata.id"],
            "/redfish/v1/Managers/bmc-0001/VirtualMedia"
        );
        let doc = get(&s, cd, now).body.unwrap();
        assert_eq!(doc["MediaTypes"], json!(["CD", "DVD"]));
        assert_eq!(doc["Inserted"], false);
        assert_eq!(doc["Image"], Value::Null);
        assert_eq!(
            doc["Actions"]["#VirtualMedia.InsertMedia"]["target"],
            json!(insert)
        );

        let r = call(
            &s,
            Method::POST,
            &insert,
            &basic(),
            r#"{"Image":"http://10.0.0.1/boot.iso","Inserted":true,"WriteProtected":true}"#,
            now,
        );
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let doc = get(&s, cd, now).body.unwrap();
        assert_eq!(doc["Image"], "http://10.0.0.1/boot.iso");
        assert_eq!(doc["ImageName"], "boot.iso");
        assert_eq!(doc["Inserted"], true);
        assert_eq!(
            s.systems()[1].virtual_media(),
            (Some("http://10.0.0.1/boot.iso".into()), true)
        );
        assert_eq!(s.systems()[0].virtual_media(), (None, false));
        let r = call(
            &s,
            Method::POST,
            &insert,
            &basic(),
            r#"{"Image":"http://10.0.0.1/other.iso"}"#,
            now,
        );
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.message_id(), Some("Base.1.8.ResourceInUse"));
        for (body, id) in [
            ("{}", "ActionParameterMissing"),
            (
                r#"{"Image":"not a url"}"#,
                "ActionParameterValueFormatError",
            ),
            (r#"{"Image":42}"#, "ActionParameterValueTypeError"),
            (
                r#"{"Image":"http://x/y","Inserted":"yes"}"#,
                "ActionParameterValueTypeError",
            ),
            (
                r#"{"Image":"http://x/y","Bogus":1}"#,
                "ActionParameterUnknown",
            ),
        ] {
            let r = call(&s, Method::POST, &insert, &basic(), body, now);
            assert_eq!(
                r.message_id(),
                Some(format!("Base.1.8.{id}").as_str()),
                "{body}"
            );
        }
        assert_eq!(
            call(&s, Method::POST, &eject, &basic(), "", now).status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            call(&s, Method::POST, &eject, &basic(), "{}", now).status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(s.systems()[1].virtual_media(), (None, false));

        // PATCH works too, with the CD's own ETag.
        let tag = get(&s, cd, now).header("etag").unwrap().to_owned();
        let mut h = basic();
        h.insert(header::IF_MATCH, HeaderValue::from_str(&tag).unwrap());
        let r = call(
            &s,
            Method::PATCH,
            cd,
            &h,
            r#"{"Image":"https://x/a.iso","Inserted":true}"#,
            now,
        );
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            call(&s, Method::PATCH, cd, &h, r#"{"Image":null}"#, now).status,
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(
            call(
                &s,
                Method::PATCH,
                cd,
                &basic(),
                r#"{"Image":null,"Inserted":false}"#,
                now
            )
            .status,
            StatusCode::OK
        );
        assert_eq!(s.systems()[1].virtual_media(), (None, false));
    }

    #[test]
    fn documents_have_the_redfish_shape() {
        let s = sim(3, 0);
        let now = Instant::now();
        let root = get(&s, "/redfish/v1/", now).body.unwrap();
        for k in ["Systems", "Managers", "SessionService"] {
            assert!(root[k]["@odata.id"].is_string(), "{k}");
        }
        assert_eq!(root["Links"]["Sessions"]["@odata.id"], SESSIONS_PATH);
        let systems = get(&s, SYSTEMS_PATH, now).body.unwrap();
        assert_eq!(systems["Members@odata.count"], 3);
        assert_eq!(
            systems["Members"][2]["@odata.id"],
            "/redfish/v1/Systems/sys-0002"
        );
        let doc = get(&s, "/redfish/v1/Systems/sys-0001", now).body.unwrap();
        assert_eq!(doc["Id"], "sys-0001");
        assert_eq!(doc["Manufacturer"], "ironrack");
        assert_eq!(doc["Model"], "sim");
        assert_eq!(
            doc["Links"]["ManagedBy"][0]["@odata.id"],
            "/redfish/v1/Managers/bmc-0001"
        );
        assert_eq!(
            doc["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"],
            json!(BOOT_TARGETS)
        );
        let mut resets = RESET_TYPES.to_vec();
        resets.push("Nmi");
        assert_eq!(
            doc["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"],
            json!(resets)
        );
        let managers = get(&s, MANAGERS_PATH, now).body.unwrap();
        assert_eq!(managers["Members@odata.count"], 3);
        let svc = get(&s, SESSION_SERVICE_PATH, now).body.unwrap();
        assert_eq!(svc["SessionTimeout"], 30);
        let head = call(&s, Method::HEAD, SYS0, &basic(), "", now);
        assert_eq!(head.status, StatusCode::OK);
        let r = call(&s, Method::DELETE, SYS0, &basic(), "", now);
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn garbage_never_panics() {
        let s = sim(2, 0);
        let now = Instant::now();
        let bodies: [&[u8]; 8] = [
            b"\xff\xfe\x00",
            b"{\"Boot\": {\"BootSourceOverrideTarget\": \"\\ud800\"}}",
            b"null",
            b"{\"a\":",
            &[b'['; 4096],
            b"{\"ResetType\": null}",
            b"{\"Boot\": null}",
            b"    ",
        ];
        let paths = [
            SYS0,
            RESET0,
            SESSIONS_PATH,
            "/redfish/v1/Managers/bmc-0000/VirtualMedia/Cd",
            "/redfish/v1/Managers/bmc-0000/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
            "/redfish/v1/Managers/bmc-0000/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia",
            "/redfish/v1/SessionService/Sessions/../../..",
            "/redfish/v1/Systems/sys-0000/\u{1F600}",
        ];
        for path in paths {
            for body in bodies {
                for method in [
                    Method::GET,
                    Method::POST,
                    Method::PATCH,
                    Method::DELETE,
                    Method::PUT,
                ] {
                    let r = s.handle(
                        &SimRequest {
                            method: &method,
                            path,
                            headers: &basic(),
                            body,
                        },
                        now,
                    );
                    assert!(
                        r.status.is_client_error() || r.status.is_success(),
                        "{method} {path}: {}",
                        r.status
                    );
                }
            }
        }
    }

    #[test]
    fn set_power_behind_the_back_boots() {
        let s = sim(1, 1000);
        let sys = s.systems()[0].clone();
        let tag = sys.etag();
        let body =
            r#"{"Boot":{"BootSourceOverrideTarget":"Cd","BootSourceOverrideEnabled":"Once"}}"#;
        call(&s, Method::PATCH, SYS0, &basic(), body, Instant::now());
        sys.set_power(true);
        assert!(sys.power_on());
        assert_eq!(sys.boot().1, "Disabled");
        assert_eq!(sys.boots(), 1);
        assert_ne!(sys.etag(), tag);
        sys.set_power(false);
        assert!(!sys.power_on());
    }

    #[test]
    fn if_match_parsing() {
        let mut h = HeaderMap::new();
        assert!(if_match_ok(&h, "\"a-1\""));
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"a-2\""));
        assert!(!if_match_ok(&h, "\"a-1\""));
        h.append(header::IF_MATCH, HeaderValue::from_static("W/\"a-1\""));
        assert!(if_match_ok(&h, "\"a-1\""));
        assert!(looks_like_url("nfs://host/share/x.iso"));
        assert!(!looks_like_url("://x"));
        assert!(!looks_like_url("http://"));
        assert!(!looks_like_url("http://a b"));
    }
}
