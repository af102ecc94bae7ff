//! kiosk-ui: the kiosk's touch screen, a local web app and the customer journey behind it.
//!
//! Why it exists: a customer at the kiosk needs screens that lead from "Talk to an expert" to
//! a video call (phone number, one-time code, recording consent, queue, call, survey) and
//! that leave nothing of them behind for the next customer. The kiosk browser (Cog/WPE or
//! Chromium in kiosk mode) shows `http://127.0.0.1:8090/` full screen; this service serves
//! that page, runs the journey, and talks to the other services over D-Bus: kiosk-sync
//! (`org.kioskcall.Sync1`: enrollment state, cloud link, config, one-time codes, calls,
//! callbacks, events) and kiosk-media (`org.kioskcall.Media1`: mute). It serves
//! `org.kioskcall.Ui1` (screen, language, `Reset()`). It holds no secret: the cloud checks
//! codes, kiosk-sync keeps the customer token.
//!
//! Main parts:
//! - [`journey`]: the pure state machine ([`journey::Journey`]): screens, transitions and
//!   timers as plain values in, D-Bus commands and the page's [`journey::View`] out.
//! - [`driver`]: the thin edge: the task that owns the journey, the executor of its commands
//!   on D-Bus, the followers of kiosk-sync and kiosk-media.
//! - [`http`]: the axum app on 127.0.0.1: the embedded page (`assets/`: HTML, CSS, script
//!   and the words in English, French and Arabic; no build step, no Node), `/api/view`,
//!   `/api/events` (server-sent events), `/api/action`.
//! - [`service`]: the `org.kioskcall.Ui1` object.
//! - [`settings`]: `/etc/kioskcall/ui.toml`; [`display`]: the board's panel size
//!   (`hardware/boards/<board>/display.toml`), for 20 mm touch targets; [`phone`]: countries
//!   and E.164; [`text`]: languages, consent notices, opening times.
//!
//! Threads and tasks: one small tokio runtime (two workers) runs the HTTP server, the journey
//! loop, the executor and the followers. The journey is owned by one task; everything else
//! talks to it through a channel, so no lock is held across `.await` (the only lock guards
//! the two `Ui1` property strings).
//!
//! Privacy: the phone number and the code are typed into the page's memory only, sent once
//! in an action, and live here only in the command that carries them to kiosk-sync (then
//! overwritten). Logs never show them. Every session ends with a privacy reset
//! (`Sync1.EndJourney`, a new session epoch, and the page reloading itself with
//! `location.replace`), after the survey, on idle, on `Ui1.Reset()`, when the service stops.
//!
//! Limits: the page leaves the video area empty; kiosk-media draws the agent's video with the
//! board's own sink over it (see `docs/kiosk-ui.md`). The country list is a fixed table of
//! about forty countries. Only the consent notices built in (version 1) can be shown; another
//! version places calls without recording.

use std::sync::{Arc, Mutex};

use kiosk_bus::ui::{NAME, PATH};
use kiosk_bus::{BusAddress, Media1Proxy, Sync1Proxy};
use tokio::sync::{mpsc, watch};

pub mod display;
pub mod driver;
pub mod http;
pub mod journey;
pub mod phone;
pub mod service;
pub mod settings;
pub mod text;

use display::Display;
use driver::{Driver, Event, Published};
use journey::{Defaults, DisplayInfo, Journey};
use settings::Settings;

/// How long a D-Bus call may take before the journey hears it failed.
pub const METHOD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// kiosk-ui could not run.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error(transparent)]
    Display(#[from] display::DisplayError),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("D-Bus ({bus}): {source}")]
    Bus {
        bus: String,
        source: Box<zbus::Error>,
    },
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
}

/// The display the settings name. A board without a `display.toml` gets the development
/// display (said in the log); a file that exists but cannot be used is an error.
pub fn load_display(settings: &Settings) -> Result<Display, UiError> {
    let file = settings
        .boards_dir
        .join(&settings.board)
        .join(display::DISPLAY_FILE);
    if settings.board != "development" && !file.exists() {
        tracing::warn!(
            board = %settings.board,
            file = %file.display(),
            "no display data for this board; sizing targets for the development display"
        );
        return Ok(Display::development());
    }
    Ok(Display::load(&settings.boards_dir, &settings.board)?)
}

/// A number naming this run of the service (sessions of two runs never share a name).
fn boot_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// Runs the service until `stop` turns true; ends any customer session on the way out.
pub async fn run(
    settings: Settings,
    bus: BusAddress,
    stop: watch::Receiver<bool>,
) -> Result<(), UiError> {
    let panel = load_display(&settings)?;
    tracing::info!(
        board = %panel.board,
        px_per_mm = panel.px_per_mm(),
        min_target_px = panel.min_target_px(),
        "display"
    );
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| UiError::Listen {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| UiError::Listen {
        addr: settings.listen,
        source,
    })?;

    let (events_tx, events_rx) = mpsc::channel::<Event>(256);
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let published = Arc::new(Mutex::new(Published::default()));
    let bus_err = |source: zbus::Error| UiError::Bus {
        bus: bus.to_string(),
        source: Box::new(source),
    };
    let conn = bus
        .builder()
        .and_then(|b| b.name(NAME))
        .and_then(|b| {
            b.serve_at(
                PATH,
                service::UiService {
                    published: published.clone(),
                    events: events_tx.clone(),
                },
            )
        })
        .map_err(bus_err)?
        .method_timeout(METHOD_TIMEOUT)
        .build()
        .await
        .map_err(bus_err)?;
    tracing::info!(bus = %bus, name = NAME, "serving on D-Bus");
    let sync = Sync1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(bus_err)?;
    let media = Media1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(bus_err)?;

    let journey = Journey::new(Defaults {
        language: settings.default_language,
        country: settings.default_country,
        display: DisplayInfo {
            px_per_mm: (panel.px_per_mm() * 1000.0).round() / 1000.0,
            min_target_px: panel.min_target_px(),
        },
        boot: boot_id(),
    });
    let start = tokio::time::Instant::now();
    let (views_tx, views_rx) = watch::channel(Arc::new(journey.view(driver::now(start))));
    let driver = Driver {
        journey,
        events: events_rx,
        commands: commands_tx.clone(),
        views: views_tx,
        published,
        conn: Some(conn.clone()),
        start,
    };
    let driver_task = tokio::spawn(driver.run(stop.clone()));
    let executor = tokio::spawn(driver::execute(
        sync.clone(),
        media.clone(),
        commands_rx,
        events_tx.clone(),
    ));
    let sync_follower = tokio::spawn({
        let (conn, events) = (conn.clone(), events_tx.clone());
        async move {
            if let Err(e) = driver::follow_sync(conn, sync, events).await {
                tracing::error!(error = %e, "following kiosk-sync failed");
            }
        }
    });
    let media_follower = tokio::spawn({
        let (conn, events) = (conn.clone(), events_tx.clone());
        async move {
            if let Err(e) = driver::follow_media(conn, events).await {
                tracing::warn!(error = %e, "following kiosk-media failed");
            }
        }
    });

    let app = http::router(http::AppState {
        events: events_tx,
        views: views_rx,
        stop: stop.clone(),
        display_css: http::display_css(&panel).into(),
        hosts: http::hosts_for(addr).into(),
    });
    tracing::info!(url = %format!("http://{addr}/"), "serving the kiosk page");
    let mut shutdown = stop.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;

    // The journey's last word: the reset of a session still open.
    let last = driver_task.await.unwrap_or_default();
    for c in last {
        let _ = commands_tx.send(c);
    }
    drop(commands_tx);
    sync_follower.abort();
    media_follower.abort();
    if tokio::time::timeout(driver::STOP_GRACE, executor)
        .await
        .is_err()
    {
        tracing::warn!("the last D-Bus calls did not finish in time");
    }
    tracing::info!("stopped");
    served.map_err(UiError::Serve)
}
