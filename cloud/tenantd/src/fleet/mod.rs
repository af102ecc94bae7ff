//! The fleet: device identities and (next) the MQTT link to kiosks.
//!
//! Today: [`pki`], the three certificate authorities (device, claim, service) and their CRLs.

pub mod broker;
pub mod pki;
pub mod service;
