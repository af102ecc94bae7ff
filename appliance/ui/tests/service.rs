//! kiosk-ui as a program on a private D-Bus, without a browser: its HTTP API, its headers,
//! bad input, `Ui1`, the logs, `--check`, and a clean stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{config, eventually, Hours, Kiosk, LONG};
use serde_json::{json, Value};

async fn post(k: &Kiosk, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/action", k.url))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_takes_actions_and_refuses_bad_ones_clearly() {
    let mut k = Kiosk::start("qemu", config(1, Hours::Always, false, 60)).await;
    let page = reqwest::get(format!("{}/", k.url)).await.unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["cache-control"], "no-store");
    assert!(h.get("set-cookie").is_none());
    assert!(page.text().await.unwrap().contains("/app.js"));
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
        ("/display.css", "text/css"),
        ("/i18n/ar.json", "application/json"),
    ] {
        let r = reqwest::get(format!("{}{path}", k.url)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }
    let css = reqwest::get(format!("{}/display.css", k.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        css.contains("--mm: 4.0") && css.contains("--target: 81px"),
        "{css}"
    );
    assert_eq!(
        reqwest::get(format!("{}/i18n/de.json", k.url))
            .await
            .unwrap()
            .status(),
        404
    );

    // Another Host (a page elsewhere through DNS rebinding) gets nothing.
    let r = reqwest::Client::new()
        .get(format!("{}/api/view", k.url))
        .header("host", "kiosk.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);

    // Bad input: 400 with words, the service goes on.
    for (body, words) in [
        ("not json", "not an action"),
        ("{}", "missing field `type`"),
        (r#"{"type":"fly"}"#, "unknown variant"),
        (r#"{"type":"start","extra":1}"#, "unknown field"),
        (r#"{"type":"survey","score":"three"}"#, "invalid type"),
    ] {
        let (status, v) = post(&k, body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(words), "{body}: {v}");
    }
    let (status, v) = post(&k, r#"{"type":"language","language":"de"}"#).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("en, fr, ar"), "{v}");
    // Not JSON by its content type: refused before reading.
    let r = reqwest::Client::new()
        .post(format!("{}/api/action", k.url))
        .header("content-type", "text/plain")
        .body(r#"{"type":"start"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // From another origin: refused.
    let r = reqwest::Client::new()
        .post(format!("{}/api/action", k.url))
        .header("content-type", "application/json")
        .header("origin", "http://evil.example")
        .body(r#"{"type":"start"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Too big.
    let big = format!(r#"{{"type":"touch","x":"{}"}}"#, "a".repeat(10_000));
    assert_eq!(post(&k, &big).await.0, 413);
    // Does not fit the screen: 409.
    let (status, v) = post(&k, r#"{"type":"hang_up"}"#).await;
    assert_eq!(status, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("attract"), "{v}");

    // The journey through the API; an action answers the new view.
    let (status, v) = post(&k, r#"{"type":"start"}"#).await;
    assert_eq!((status, v["screen"].as_str()), (200, Some("phone")), "{v}");
    assert_eq!(v["phone"]["country"], "FR");
    let (_, v) = post(
        &k,
        r#"{"type":"submit_phone","country":"FR","number":"0612345678"}"#,
    )
    .await;
    assert!(v["busy"] == json!(true) || v["screen"] == "code", "{v}");
    k.wait_screen("code").await;
    assert_eq!(k.log_of_sync().phones, vec!["+33612345678".to_string()]);
    assert_eq!(k.log_of_sync().languages, vec!["en".to_string()]);
    // Resend only after the cooldown.
    assert_eq!(post(&k, r#"{"type":"resend_code"}"#).await.0, 409);
    post(&k, r#"{"type":"submit_code","code":"654321"}"#).await;
    eventually(LONG, "wrong code", || async {
        k.view().await["problem"]["kind"] == "wrong_code"
    })
    .await;
    assert_eq!(k.view().await["problem"]["tries_left"], 4);
    post(&k, r#"{"type":"submit_code","code":"123456"}"#).await;
    k.wait_screen("queue").await;
    assert_eq!(
        k.log_of_sync().places,
        vec![("en".to_string(), String::new())]
    );

    // Ui1: the screen and language, and a reset.
    let conn = k.bus.connect().await.unwrap();
    let ui = kiosk_bus::Ui1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    assert_eq!(ui.screen().await.unwrap(), "queue");
    assert_eq!(ui.language().await.unwrap(), "en");
    let session = k.view().await["session"].clone();
    ui.reset().await.unwrap();
    k.wait_screen("attract").await;
    assert_ne!(k.view().await["session"], session);
    eventually(LONG, "EndCall and EndJourney", || async {
        let log = k.log_of_sync();
        log.end_journeys >= 1 && log.end_calls == vec![("req-1".into(), "cancelled".into())]
    })
    .await;
    assert_eq!(ui.screen().await.unwrap(), "attract");

    // The logs name what happened, never the number or the code.
    let logs = k.logs();
    assert!(
        logs.contains("RequestOtp") && logs.contains("VerifyOtp"),
        "{logs}"
    );
    for secret in ["612345678", "654321", "123456"] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }

    let (status, took) = k.terminate().await;
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_session_ends_the_journey_and_stops_cleanly() {
    let mut k = Kiosk::start("rpi4", config(1, Hours::Always, false, 60)).await;
    // An open page keeps an event stream: the stop must not wait for it.
    let mut events = reqwest::get(format!("{}/api/events", k.url)).await.unwrap();
    let first = events.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: view"));
    post(&k, r#"{"type":"start"}"#).await;
    k.wait_screen("phone").await;
    let css = reqwest::get(format!("{}/display.css", k.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(css.contains("--target: 137px"), "{css}");
    let (status, took) = k.terminate().await;
    assert!(status.success(), "{status:?}\n{}", k.logs());
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(k.log_of_sync().end_journeys, 1, "{}", k.logs());
    assert!(k.logs().contains("stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_bad_configs() {
    let bin = env!("CARGO_BIN_EXE_kiosk-ui");
    let dir = tempfile::tempdir().unwrap();
    let boards = common::boards_dir();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "version = 1\nboard = \"rpi4\"\nboards_dir = \"{}\"\n",
            boards.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["--check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("rpi4") && said.contains("137 px"), "{said}");
    for (text, words) in [
        ("listen = \"0.0.0.0:8090\"\n", "not a loopback address"),
        ("version = 3\n", "version"),
        ("default_language = \"de\"\n", "default_language"),
        ("speed = 1\n", "unknown field"),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let out = std::process::Command::new(bin)
            .args(["--check", "--config"])
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{text}: {err}");
    }
    // A board whose display data is broken is refused, never replaced.
    let broken = dir.path().join("boards/broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("display.toml"), "version = 1\nwidth_mm = 0\n").unwrap();
    let conf = dir.path().join("broken.toml");
    std::fs::write(
        &conf,
        format!(
            "board = \"broken\"\nboards_dir = \"{}\"\n",
            dir.path().join("boards").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["--check", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("display.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_follow_kiosk_sync() {
    let k = Kiosk::start("qemu", config(1, Hours::Always, false, 60)).await;
    k.set_link("enrolled", "", false).await;
    k.wait_screen("unavailable").await;
    k.set_link("awaiting-activation", "K7Q-4MX", false).await;
    k.wait_screen("activation").await;
    assert_eq!(k.view().await["activation"]["code"], "K7Q-4MX");
    k.set_link("enrolling", "", false).await;
    k.wait_screen("setup").await;
    k.set_link("enrolled", "", true).await;
    k.wait_screen("attract").await;
    // kiosk-sync leaves the bus: unavailable, and back when it returns.
    k.services
        .release_name(kiosk_bus::sync::NAME)
        .await
        .unwrap();
    k.wait_screen("unavailable").await;
    k.services
        .request_name(kiosk_bus::sync::NAME)
        .await
        .unwrap();
    k.wait_screen("attract").await;
    // A new config: its default language.
    let mut c: Value = serde_json::from_str(&config(2, Hours::Always, false, 60)).unwrap();
    c["locale"]["default"] = json!("fr");
    k.set_config(c.to_string()).await;
    eventually(LONG, "French by default", || async {
        k.view().await["language"] == "fr"
    })
    .await;
}
