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
