//! The `org.kioskcall.Ui1` D-Bus service (the contract is in `kiosk-bus`): the screen shown,
//! its language, and `Reset()`, a privacy reset now.

use kiosk_bus::ui::PATH;
use kiosk_bus::KioskError;
use tokio::sync::mpsc;

use crate::driver::{Event, SharedPublished};
use crate::journey::Input;

/// The D-Bus object.
#[derive(Debug, Clone)]
pub struct UiService {
    pub published: SharedPublished,
    pub events: mpsc::Sender<Event>,
}

#[zbus::interface(name = "org.kioskcall.Ui1")]
impl UiService {
    /// A privacy reset now.
    async fn reset(&self) -> Result<(), KioskError> {
        tracing::info!("Ui1.Reset");
        self.events
            .send(Event::Input(Input::Reset))
            .await
            .map_err(|_| KioskError::Failed("kiosk-ui is stopping".into()))
    }

    #[zbus(property)]
    async fn screen(&self) -> String {
        self.published
            .lock()
            .map(|p| p.screen.clone())
            .unwrap_or_default()
    }

    #[zbus(property)]
    async fn language(&self) -> String {
        self.published
            .lock()
            .map(|p| p.language.clone())
            .unwrap_or_default()
    }
}

/// Emits `PropertiesChanged` for what changed.
pub async fn emit_changes(conn: &zbus::Connection, screen: bool, language: bool) {
    let Ok(iface) = conn.object_server().interface::<_, UiService>(PATH).await else {
        return;
    };
    let emitter = iface.signal_emitter();
    let svc = iface.get().await;
    if screen {
        let _ = svc.screen_changed(emitter).await;
    }
    if language {
        let _ = svc.language_changed(emitter).await;
    }
}
