//! The local web app the kiosk browser shows: static assets compiled into the binary, the
//! view as JSON and as server-sent events, and the page's actions.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | `index.html` |
//! | `GET /app.js`, `/app.css` | the page's script and style |
//! | `GET /display.css` | `--mm` (CSS pixels per millimetre of this board's panel) and `--target` |
//! | `GET /i18n/{en,fr,ar}.json` | the page's words |
//! | `GET /api/view` | the view now ([`crate::journey::View`]) |
//! | `GET /api/events` | server-sent events: the view at once, then each change (`event: view`) |
//! | `POST /api/action` | a JSON [`crate::journey::Action`]; answers the view, 400 for a bad action, 409 for one that does not fit the screen |
//!
//! Every answer carries a strict Content-Security-Policy (`default-src 'self'`), `Cache-Control:
//! no-store` and no cookie. Requests must name this server in `Host` (a page elsewhere cannot
//! reach it through DNS rebinding), and actions must be JSON from this origin.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::Stream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::display::Display;
use crate::driver::Event;
use crate::journey::{Action, Refusal, View};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const I18N_EN: &str = include_str!("../assets/i18n/en.json");
const I18N_FR: &str = include_str!("../assets/i18n/fr.json");
const I18N_AR: &str = include_str!("../assets/i18n/ar.json");

/// The page's words, by language tag.
pub const I18N: [(&str, &str); 3] = [("en", I18N_EN), ("fr", I18N_FR), ("ar", I18N_AR)];

/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The largest action body.
const MAX_ACTION_BYTES: usize = 4096;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub events: mpsc::Sender<Event>,
    pub views: watch::Receiver<Arc<View>>,
    pub stop: watch::Receiver<bool>,
    pub display_css: Arc<str>,
    /// The `Host` values accepted (`127.0.0.1:8090`, `localhost:8090`, ...).
    pub hosts: Arc<[String]>,
}

/// `:root` variables for the board's display.
pub fn display_css(d: &Display) -> String {
    format!(
        "/* {board}: {w}x{h} px on {wmm}x{hmm} mm */\n:root {{\n  --mm: {mm:.4}px;\n  --target: {t}px;\n}}\n",
        board = d.board,
        w = d.width_px,
        h = d.height_px,
        wmm = d.width_mm,
        hmm = d.height_mm,
        mm = d.px_per_mm(),
        t = d.min_target_px(),
    )
}

/// The `Host` header values that name a server listening on `addr`.
pub fn hosts_for(addr: std::net::SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        addr.to_string(),
    ];
    if port == 80 {
        hosts.extend(["127.0.0.1", "localhost", "[::1]"].map(String::from));
    }
    hosts
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/index.html",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/display.css", get(display))
        .route("/i18n/{file}", get(i18n))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/view", get(view))
        .route("/api/events", get(events))
        .route("/api/action", post(action))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page") })
        .layer(DefaultBodyLimit::max(MAX_ACTION_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// Host check and the headers of every answer.
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let host_ok = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| st.hosts.iter().any(|a| a.eq_ignore_ascii_case(h)));
    let mut resp = if host_ok {
        next.run(req).await
    } else {
        error(
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers the kiosk's own browser on its loopback address only",
        )
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.remove(header::SET_COOKIE);
    resp
}

async fn display(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        st.display_css.to_string(),
    )
        .into_response()
}

async fn i18n(Path(file): Path<String>) -> Response {
    let lang = file.strip_suffix(".json").unwrap_or_default();
    match I18N.iter().find(|(l, _)| *l == lang) {
        Some((_, body)) => asset("application/json", body),
        None => error(StatusCode::NOT_FOUND, "no such language"),
    }
}

async fn current_view(st: &AppState) -> Result<View, Response> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || error(StatusCode::SERVICE_UNAVAILABLE, "kiosk-ui is stopping");
    st.events
        .send(Event::View(tx))
        .await
        .map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())
}

async fn view(State(st): State<AppState>) -> Response {
    match current_view(&st).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

async fn events(
    State(st): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut views = st.views.clone();
    views.mark_changed();
    let stream = futures_util::stream::unfold(
        (views, st.stop.clone()),
        |(mut views, mut stop)| async move {
            if *stop.borrow() {
                return None;
            }
            tokio::select! {
                r = views.changed() => r.ok()?,
                _ = stop.changed() => return None,
            }
            let view = views.borrow_and_update().clone();
            let event = SseEvent::default()
                .event("view")
                .json_data(&*view)
                .unwrap_or_else(|_| SseEvent::default().comment("unserializable view"));
            Some((Ok(event), (views, stop)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn origin_ok(st: &AppState, headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN).map(|o| o.to_str()) {
        None => true,
        Some(Ok(o)) => o
            .strip_prefix("http://")
            .is_some_and(|h| st.hosts.iter().any(|a| a.eq_ignore_ascii_case(h))),
        Some(Err(_)) => false,
    }
}

async fn action(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| {
            c.split(';')
                .next()
                .is_some_and(|m| m.trim() == "application/json")
        });
    if !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an action is a JSON object sent as application/json",
        );
    }
    if !origin_ok(&st, &headers) {
        return error(
            StatusCode::FORBIDDEN,
            "actions come from the kiosk's own page only",
        );
    }
    let action = match Action::from_json(&body) {
        Ok(a) => a,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("not an action: {e}; see GET / for the page that sends them"),
            )
        }
    };
    let (tx, rx) = oneshot::channel();
    if st.events.send(Event::Action(action, tx)).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "kiosk-ui is stopping");
    }
    match rx.await {
        Ok(Ok(())) => view(State(st)).await,
        Ok(Err(Refusal::BadInput(m))) => error(StatusCode::BAD_REQUEST, &m),
        Ok(Err(Refusal::NotNow(m))) => error(StatusCode::CONFLICT, &m),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "kiosk-ui is stopping"),
    }
}
