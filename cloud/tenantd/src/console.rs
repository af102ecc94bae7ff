//! The web console: static assets compiled into the binary, served under `/console/`.
//!
//! No Node is needed to build or run it: plain HTML, CSS and JavaScript modules, embedded with
//! `include_str!`. Every answer carries a strict Content-Security-Policy (no inline script or
//! style, same-origin only) and an ETag so browsers revalidate cheaply.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// The console's Content-Security-Policy. `blob:` images are the call snapshots' thumbnails; the
/// call's videos play from `srcObject` (a MediaStream, not a URL), which needs no `media-src`;
/// `connect-src 'self'` covers the same-origin calls WebSocket (`wss:`) too.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'self'; object-src 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/console/index.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/console/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console/api.js"),
    },
    Asset {
        name: "ui.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console/ui.js"),
    },
    Asset {
        name: "pages.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console/pages.js"),
    },
    Asset {
        name: "sites.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console/sites.js"),
    },
    Asset {
        name: "calls.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console/calls.js"),
    },
    Asset {
        name: "call-view.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console/call-view.js"),
    },
    Asset {
        name: "records.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console/records.js"),
    },
    Asset {
        name: "callbacks.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console/callbacks.js"),
    },
    Asset {
        name: "devices.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console/devices.js"),
    },
    Asset {
        name: "sms.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console/sms.js"),
    },
    Asset {
        name: "erase.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console/erase.js"),
    },
];

fn etags() -> &'static Vec<String> {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                format!(
                    "\"{}\"",
                    &hex::encode(Sha256::digest(a.body.as_bytes()))[..16]
                )
            })
            .collect()
    })
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    response
}

/// `/`, `/console` and `/console/…`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/console/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers)
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_imported_module_is_embedded() {
        let index = ASSETS[0].body;
        assert!(index.contains("./app.js") && index.contains("./app.css"));
        for js in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for (at, _) in js.body.match_indices("from './") {
                let rest = &js.body[at + "from './".len()..];
                let file = &rest[..rest.find('\'').unwrap_or(rest.len())];
                assert!(
                    ASSETS.iter().any(|a| a.name == file),
                    "{} imports {file}, which is not embedded",
                    js.name
                );
            }
        }
    }
}
