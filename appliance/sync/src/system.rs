//! The system services kiosk-sync asks to reboot the kiosk or restart a service: logind and
//! systemd, over D-Bus (the bus kiosk-sync is on; the system bus in production, where the
//! policy file lets the kiosk-sync user call exactly these two methods).

/// `org.freedesktop.systemd1.Manager`, the one method used.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait Systemd {
    /// Restarts a unit; `mode` is `replace` here. Returns the job's object path.
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<zvariant::OwnedObjectPath>;
}

/// `org.freedesktop.login1.Manager`, the one method used.
#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1"
)]
pub trait Login {
    /// Reboots; `interactive` false (no polkit prompt on a kiosk).
    fn reboot(&self, interactive: bool) -> zbus::Result<()>;
}

/// Restarts `unit` through systemd.
pub async fn restart_unit(conn: &zbus::Connection, unit: &str) -> zbus::Result<String> {
    let job = SystemdProxy::new(conn)
        .await?
        .restart_unit(unit, "replace")
        .await?;
    Ok(job.to_string())
}

/// Reboots through logind.
pub async fn reboot(conn: &zbus::Connection) -> zbus::Result<()> {
    LoginProxy::new(conn).await?.reboot(false).await
}
