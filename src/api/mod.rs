//! The Ironic-compatible REST API (to be written).
