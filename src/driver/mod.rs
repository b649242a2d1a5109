//! The Nova-side driver layer (to be written).
