//! The Redfish implementation of the BMC trait (being written).
