//! kiosk-sync: the kiosk's one link to the cloud.
//!
//! Why it exists: only this service holds the device key and talks to the cloud; the other
//! kiosk services reach the cloud through it over D-Bus. MQTT (rumqttc) keeps in-flight
//! messages only in memory, so durability is this crate's job: every device→cloud message goes
//! through the [`outbox::SqliteOutbox`] first and leaves it only when the broker acknowledged it.
//!
//! Main types today: [`outbox::SqliteOutbox`] (the durable, ordered, bounded queue),
//! [`backoff::Backoff`] (full-jitter reconnect delays), [`link::Link`] (the MQTT driver),
//! [`enroll`] (device key, CSR, provisioning), [`desired`] (deciding, keeping and reporting
//! the desired config) and [`ota`] (over-the-air updates into the other A/B slot through the
//! `embedded-svc` OTA traits: download, verify, install, confirm or roll back after the
//! reboot).
//!
//! Threads and tasks: the link runs one tokio task that owns the rumqttc event loop; outbox
//! reads and writes are short SQLite calls made from that task and from producers through a
//! mutex (never held across an await). OTA calls into its blocking slot backend only from
//! tokio's blocking pool. The daemon that ties these together, commands (systemd/logind over
//! zbus) and the `org.kioskcall.Sync1` D-Bus service ([`service`]) carry out what the pure
//! cores decide: [`calls::CallTracker`] (one call at a time) and [`journey::JourneyDesk`] (the
//! customer's session and its token, which never leaves kiosk-sync).

pub mod backoff;
pub mod calls;
pub mod daemon;
pub mod desired;
pub mod enroll;
pub mod identity;
pub mod journey;
pub mod link;
pub mod ota;
pub mod outbox;
pub mod service;
pub mod settings;
pub mod system;
pub mod telemetry;
pub mod updates;
