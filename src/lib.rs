//! ironrack: a rack-local bare-metal agent.
//!
//! One room per concern: `ipmi` (wire codec, session), `sim` (the BMC fleet
//! simulator), `profiles` (hardware quirks), and the CLI glue in `cli`.

pub mod bmc;
pub mod cli;
pub mod ipmi;
pub mod profiles;
pub mod redfish;
pub mod sim;
pub mod util;
