//! kiosk-bus: the D-Bus contract between the kiosk's services.
//!
//! Why it exists: the kiosk services are separate processes (own user, own sandbox) and talk only
//! over D-Bus. This crate holds the names, the proxies other services and `kioskctl` call, the
//! value types on the wire, and the error names, so that a server and its clients cannot drift.
//! The servers implement the interfaces in their own crates (`kiosk-sync` serves
//! `org.kioskcall.Sync1`, `kiosk-media` `org.kioskcall.Media1`, `kiosk-ui` `org.kioskcall.Ui1`).
//!
//! Which bus: production uses the system bus with a policy file per service; development and
//! tests use a private `dbus-daemon` whose address is given with `--bus` or
//! `KIOSKCALL_DBUS_ADDRESS`. See [`BusAddress`].

use serde::{Deserialize, Serialize};
use zvariant::Type;

pub mod media;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod ui;

pub use media::Media1Proxy;
pub use sync::{Sync1Proxy, SyncStatus};
pub use ui::Ui1Proxy;

/// Which bus a service or client connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddress {
    System,
    Session,
    /// A D-Bus address such as `unix:path=/run/kioskcall/bus`.
    Address(String),
}

impl BusAddress {
    /// `system`, `session`, or a D-Bus address.
    pub fn parse(s: &str) -> BusAddress {
        match s.trim() {
            "system" => BusAddress::System,
            "session" => BusAddress::Session,
            other => BusAddress::Address(other.to_string()),
        }
    }

    /// A connection builder for this bus.
    pub fn builder(&self) -> zbus::Result<zbus::connection::Builder<'static>> {
        Ok(match self {
            BusAddress::System => zbus::connection::Builder::system()?,
            BusAddress::Session => zbus::connection::Builder::session()?,
            BusAddress::Address(a) => zbus::connection::Builder::address(a.as_str())?,
        })
    }

    /// Connects as a client.
    pub async fn connect(&self) -> zbus::Result<zbus::Connection> {
        self.builder()?.build().await
    }
}

/// The stop signal of a kiosk service: `true` once SIGTERM (systemd's stop) or SIGINT arrives.
/// Spawns the task that waits for them, so it must be called inside a tokio runtime.
pub fn stop_on_signals() -> tokio::sync::watch::Receiver<bool> {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping");
        let _ = stop_tx.send(true);
    });
    stop
}

impl std::fmt::Display for BusAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusAddress::System => f.write_str("system"),
            BusAddress::Session => f.write_str("session"),
            BusAddress::Address(a) => f.write_str(a),
        }
    }
}

/// Errors the kiosk services answer with, as D-Bus error names `org.kioskcall.Error.*`.
#[derive(Debug, Clone, PartialEq, zbus::DBusError)]
#[zbus(prefix = "org.kioskcall.Error")]
pub enum KioskError {
    /// A transport-level error from zbus.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// An argument was malformed (the message says which and why).
    InvalidArgument(String),
    /// The call does not fit the service's state (for example, enrolling twice).
    WrongState(String),
    /// The service tried and failed.
    Failed(String),
}

/// A key/value pair with a string value, for small readable maps on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Pair {
    pub key: String,
    pub value: String,
}
