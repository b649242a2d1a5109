//! Consoles: a node's serial console (IPMI serial-over-LAN, or a local
//! serial line) bridged to TCP for many viewers at once, with a per-node log.
//!
//! - [`escape`]: the viewers' escape sequences (take write access, break…).
//! - [`log`]: the rotating console log and the replay tail.
//! - [`bridge`]: the TCP side: listener, viewers, write access, fan-out.
//! - [`line`]: what feeds a bridge: SOL with re-activation, or a serial port.

pub mod bridge;
pub mod escape;
pub mod line;
pub mod log;
pub mod manager;
