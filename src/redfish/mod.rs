//! Redfish client (being written).
