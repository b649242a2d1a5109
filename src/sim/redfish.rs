//! The Redfish side of the simulator (being written).
