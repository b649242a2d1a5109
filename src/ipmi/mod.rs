//! IPMI 2.0 / RMCP+ over LAN ("lanplus").
//!
//! Sans-IO layering, in the style of quinn-proto:
//! - [`wire`]: RMCP, IPMI v1.5 and RMCP+ framing, IPMI messages, integrity and encryption;
//! - [`crypto`]: cipher suites, RAKP codes and key derivation;
//! - [`rakp`]: Open Session and RAKP 1-4 messages;
//! - [`cmd`]: typed commands (chassis, boot options, device id, session commands);
//! - [`session`]: the client session state machine (handshake, retransmit, keepalive, re-open);
//! - [`sol`]: Serial-over-LAN: the SOL payload codec and a symmetric sans-IO endpoint;
//! - [`client`]: the thin tokio layer that owns a UDP socket and drives a session.

pub mod client;
pub mod cmd;
pub mod crypto;
pub mod error;
pub mod rakp;
pub mod session;
pub mod sol;
pub mod wire;

pub use client::{IpmiClient, SolConsole, SolOptions};
pub use cmd::{BootDevice, BootFlags, ChassisControl, PowerState, Privilege};
pub use error::IpmiError;
pub use session::SessionConfig;
