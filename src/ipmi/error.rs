//! Errors a caller of the IPMI client can see.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpmiError {
    /// The BMC did not answer within the bound (unreachable, dead, or lossy beyond retries).
    #[error("BMC did not answer within {0:?} (unreachable?)")]
    Timeout(Duration),
    /// RAKP failed: wrong user name, password or K_G.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// No cipher suite both sides accept.
    #[error("no common cipher suite: BMC offers {offered:?}, we accept {accepted:?}")]
    NoCommonCipherSuite { offered: Vec<u8>, accepted: Vec<u8> },
    /// The BMC refused the session (an RMCP+ status code).
    #[error("BMC refused the session at {stage}: {name} ({code:#04x})")]
    SessionRefused {
        stage: &'static str,
        code: u8,
        name: &'static str,
    },
    /// The BMC answered a command with a non-zero completion code.
    #[error("BMC rejected {command}: {name} ({code:#04x})")]
    Completion {
        command: &'static str,
        code: u8,
        name: &'static str,
    },
    /// Bad configuration (user name or password too long, unknown suite ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The BMC answered with something we cannot use.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The client was shut down.
    #[error("session closed")]
    Closed,
}

impl IpmiError {
    /// A short stable label for metrics and JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            IpmiError::Timeout(_) => "timeout",
            IpmiError::AuthFailed(_) => "auth_failed",
            IpmiError::NoCommonCipherSuite { .. } => "no_cipher_suite",
            IpmiError::SessionRefused { .. } => "session_refused",
            IpmiError::Completion { .. } => "rejected",
            IpmiError::Config(_) => "config",
            IpmiError::Protocol(_) => "protocol",
            IpmiError::Closed => "closed",
        }
    }
}
