//! Certificate renewal at two thirds of a device certificate's life.
//!
//! Device certificates live [`DEVICE_CERT_DAYS`](super::pki::DEVICE_CERT_DAYS) days. Once an
//! hour this job finds enrolled devices whose newest certificate is past two thirds of its life
//! and queues one `rotate_certificate` command for each (recorded and audited like an admin's,
//! as `system:certificate-renewal`). A device offline at that moment gets the command when it
//! reconnects (its session keeps it, and commands still waiting are sent again when tenantd
//! starts). The device answers with a CSR for a new key on `up/csr` (see `service::handle_renew`).

use std::time::Duration;

use kiosk_protocol::command::{Action, Command};
use kiosk_protocol::{MessageId, Version};
use tokio::sync::watch;

use super::service::{FleetLink, Outgoing};
use crate::store::{now_unix, SqliteStore, StoreError};

/// The part of a certificate's life after which it is renewed.
pub const RENEW_AT_FRACTION: f64 = 2.0 / 3.0;

/// How long a renewal command stays valid; once it has expired unanswered, the next run queues
/// another.
const COMMAND_TTL_S: i64 = 7 * 24 * 3600;

/// Queues renewal commands for every device due; returns `(device, command body)` to publish.
pub fn queue_due(store: &SqliteStore, now: i64) -> Result<Vec<(String, String)>, StoreError> {
    let due = store.blocking(|db| db.devices_due_renewal(RENEW_AT_FRACTION, now))?;
    let mut out = Vec::new();
    for (device, issued_at) in due {
        let bytes: [u8; 8] = rand::random();
        let id = format!("cmd-{}", hex::encode(bytes));
        let command = Command {
            v: Version::CURRENT,
            id: MessageId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            issued_at_ms: now * 1000,
            expires_at_ms: Some((now + COMMAND_TTL_S) * 1000),
            action: Action::RotateCertificate,
        };
        let body =
            serde_json::to_string(&command).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // Queued once per certificate, and again once an earlier command has expired unanswered
        // (an offline kiosk, a lost answer).
        let since = issued_at.max(now - COMMAND_TTL_S);
        if store.blocking(|db| db.create_renewal_command(&device, &id, &body, since, now))? {
            tracing::info!(device = %device, command = %id, "certificate renewal due; rotate command queued");
            out.push((device, body));
        }
    }
    Ok(out)
}

/// Runs [`queue_due`] a minute after start and then hourly, publishing the commands.
pub fn spawn(store: SqliteStore, link: FleetLink, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut wait = Duration::from_secs(60);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = Duration::from_secs(3600);
            let s = store.clone();
            let queued = match tokio::task::spawn_blocking(move || queue_due(&s, now_unix())).await
            {
                Ok(Ok(q)) => q,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "certificate renewal check failed");
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "certificate renewal check failed");
                    continue;
                }
            };
            for (device, body) in queued {
                let out = Outgoing {
                    topic: format!("kiosk/v1/{device}/down/cmd"),
                    payload: body.into_bytes(),
                    retain: false,
                };
                if let Err(e) = link.publish(out).await {
                    tracing::warn!(error = %e, device, "rotate command stored; it is sent again when the link is back");
                }
            }
        }
    });
}
