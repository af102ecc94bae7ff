//! The customer journey in a real headless Chromium, driven with touch (W3C pointer actions of
//! type touch), against the kiosk-ui program on a private D-Bus with a scripted kiosk-sync and
//! kiosk-media. Every screen is checked for contrast (WCAG 2.2 AA), text size and 20 mm touch
//! targets at the board's pixels per millimetre, and saved as a PNG (see
//! `common::screenshots_dir`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{config, eventually, Driver, Hours, Kiosk, Page, LONG};
use fantoccini::key::Key;
use serde_json::json;

const NUMBER: &str = "0612345678";
const SECRETS: [&str; 4] = ["612345678", "0612345678", "123456", "000000"];

async fn type_number(p: &Page<'_>, prefix: &str, digits: &str) {
    for d in digits.chars() {
        p.tap(&format!("{prefix}-key-{d}")).await;
    }
}

/// Where an element's box starts and ends, in CSS pixels from the left.
async fn x_span(p: &Page<'_>, testid: &str) -> (f64, f64) {
    let (x, _, w, _) = p.find(testid).await.rectangle().await.unwrap();
    (x, x + w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_journey_by_touch_on_the_big_screen() {
    let k = Kiosk::start("qemu", config(1, Hours::Always, true, 60)).await;
    let driver = Driver::start().await;
    let mut p = Page::open(&driver, &k.url, || k.logs(), "1920x1080", 1920, 1080).await;
    eprintln!("screenshots: {}", p.shots.display());

    // Attract.
    p.wait_screen("attract").await;
    assert_eq!(p.js("return document.documentElement.dir").await, "ltr");
    p.check("attract").await;

    // Arabic: right to left, and the layout mirrors.
    p.tap("lang-ar").await;
    eventually(LONG, "dir=rtl", || async {
        p.js("return document.documentElement.dir").await == "rtl"
    })
    .await;
    assert_eq!(p.js("return document.documentElement.lang").await, "ar");
    p.check("attract-ar").await;
    p.tap("start").await;
    p.wait_screen("phone").await;
    let width = 1920.0;
    let (back_start, _) = x_span(&p, "phone-back").await;
    let (_, submit_end) = x_span(&p, "phone-submit").await;
    assert!(
        back_start > submit_end,
        "in Arabic, back is on the right of submit"
    );
    let (_, keypad_end) = x_span(&p, "phone-keypad").await;
    assert!(
        keypad_end < width / 2.0,
        "in Arabic, the keypad is on the left"
    );
    // The keypad itself keeps 1 2 3 from left to right.
    let (one, _) = x_span(&p, "phone-key-1").await;
    let (three, _) = x_span(&p, "phone-key-3").await;
    assert!(one < three);
    type_number(&p, "phone", "06").await;
    // Numbers stay left to right inside Arabic text.
    assert_eq!(
        p.js("return getComputedStyle(document.querySelector('#phone-echo bdi')).direction")
            .await,
        "ltr"
    );
    p.check("phone-ar").await;
    p.tap("phone-back").await;
    p.wait_screen("attract").await;
    p.tap("lang-en").await;
    eventually(LONG, "dir=ltr", || async {
        p.js("return document.documentElement.dir").await == "ltr"
    })
    .await;

    // Phone: country picker, keypad, masked echo.
    p.tap("start").await;
    p.wait_screen("phone").await;
    // Typed digits were left behind with the Arabic screen.
    assert!(p.text("phone-echo").await.contains("Type your number"));
    let (back_start, _) = x_span(&p, "phone-back").await;
    let (_, keypad_end) = x_span(&p, "phone-keypad").await;
    assert!(
        back_start < width / 2.0 && keypad_end > width / 2.0,
        "English: back left, keypad right"
    );
    assert_eq!(
        p.js("return document.querySelectorAll('input, textarea, form, [contenteditable]').length")
            .await,
        0
    );
    p.tap("phone-country").await;
    p.find("country-picker").await;
    p.check("country-picker").await;
    p.tap("country-GB").await;
    p.wait_text("phone-country", "+44").await;
    p.tap("phone-country").await;
    p.tap("country-FR").await;
    p.wait_text("phone-country", "+33").await;
    type_number(&p, "phone", NUMBER).await;
    let echo = p.text("phone-echo").await;
    assert!(echo.contains("+33") && echo.ends_with("78"), "{echo}");
    assert!(!echo.contains("6123456"), "the echo is masked: {echo}");
    p.check("phone").await;
    p.tap("phone-submit").await;

    // Code: wrong, then right; paste does nothing.
    p.wait_screen("code").await;
    assert_eq!(k.log_of_sync().phones, vec!["+33612345678".to_string()]);
    assert!(p.text("code-sent").await.contains("+33•••••••78"));
    assert!(p.text("code-resend").await.contains("New code in"));
    assert_eq!(
        p.find("code-resend")
            .await
            .attr("disabled")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    p.js(r#"const dt = new DataTransfer(); dt.setData('text/plain', '123456');
        document.activeElement.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true}));
        document.body.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));"#)
        .await;
    assert_eq!(
        p.text("code-echo").await.trim(),
        "",
        "nothing pasted or dropped"
    );
    type_number(&p, "code", "000000").await;
    p.tap("code-submit").await;
    p.wait_text("code-problem", "Tries left: 4").await;
    assert_eq!(
        p.text("code-echo").await.trim(),
        "",
        "a wrong code is cleared"
    );
    p.check("code-wrong").await;
    type_number(&p, "code", "123456").await;
    p.tap("code-submit").await;

    // Consent (the organization records with notice 1).
    p.wait_screen("consent").await;
    assert!(p
        .text("consent-notice")
        .await
        .contains("records video calls"));
    p.check("consent").await;
    p.tap("consent-yes").await;

    // Queue with position updates.
    p.wait_screen("queue").await;
    eventually(LONG, "the call placed", || async {
        !k.log_of_sync().places.is_empty()
    })
    .await;
    assert_eq!(
        k.log_of_sync().places,
        vec![("en".to_string(), "granted".to_string())]
    );
    k.call_queued("req-1", "call-1").await;
    p.wait_text("queue-position", "experts are being called")
        .await;
    k.queue_update("call-1", 3, 240).await;
    p.wait_text("queue-position", "number 3").await;
    p.wait_text("queue-wait", "about 4 min").await;
    p.check("queue").await;
    k.queue_update("call-1", 1, 30).await;
    p.wait_text("queue-position", "next").await;
    p.wait_text("queue-wait", "less than a minute").await;

    // The call: timer, recording indicator, mute reaches kiosk-media.
    k.call_accepted("call-1").await;
    p.wait_screen("call").await;
    assert!(p.find("call-recording").await.is_displayed().await.unwrap());
    let t0 = p.text("call-timer").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let t1 = p.text("call-timer").await;
    assert!(t0.starts_with("00:0") && t1 > t0, "{t0} → {t1}");
    p.tap("call-mute").await;
    eventually(LONG, "mute at kiosk-media", || async {
        *k.media.lock().unwrap() == vec![true]
    })
    .await;
    eventually(LONG, "mute shown", || async {
        p.find("call-mute")
            .await
            .attr("aria-pressed")
            .await
            .unwrap()
            .as_deref()
            == Some("true")
    })
    .await;
    assert!(p
        .text("call-muted-note")
        .await
        .contains("microphone is off"));
    p.check("call").await;
    p.tap("call-mute").await;
    eventually(LONG, "unmute at kiosk-media", || async {
        *k.media.lock().unwrap() == vec![true, false]
    })
    .await;
    p.tap("call-hangup").await;

    // Survey, thanks, reset.
    p.wait_screen("survey").await;
    eventually(LONG, "EndCall", || async {
        k.log_of_sync().end_calls == vec![("call-1".to_string(), "hangup".to_string())]
    })
    .await;
    p.check("survey").await;
    p.tap("survey-3").await;
    p.wait_screen("thanks").await;
    eventually(LONG, "the survey event", || async {
        !k.log_of_sync().events.is_empty()
    })
    .await;
    let (kind, body) = k.log_of_sync().events[0].clone();
    assert_eq!(kind, "survey");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"call": "call-1", "score": 3})
    );
    p.check("thanks").await;
    let session = k.view().await["session"].clone();
    p.tap("thanks-done").await;
    eventually(LONG, "a new session", || async {
        k.view().await["session"] != session
    })
    .await;
    eventually(LONG, "the page reloaded", || async {
        p.js("return performance.getEntriesByType('navigation')[0].type")
            .await
            == "navigate"
            && p.js("return document.querySelector('main').dataset.screen")
                .await
                == "attract"
    })
    .await;
    p.wait_screen("attract").await;
    assert!(k.log_of_sync().end_journeys >= 1);
    p.assert_clean(&SECRETS).await;

    // A reset from Ui1 in the middle of a session.
    p.tap("start").await;
    p.wait_screen("phone").await;
    type_number(&p, "phone", "0699").await;
    let conn = k.bus.connect().await.unwrap();
    let ui = kiosk_bus::Ui1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    assert_eq!(ui.screen().await.unwrap(), "phone");
    ui.reset().await.unwrap();
    p.wait_screen("attract").await;
    eventually(LONG, "the page reloaded", || async {
        !p.body_text().await.contains("•")
    })
    .await;
    p.assert_clean(&["0699", "99"]).await;

    let logs = k.logs();
    for s in SECRETS {
        assert!(!logs.contains(s), "{s} in the logs");
    }
    eprintln!("checked {:?}", p.checked);
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_callback_no_answer_unavailable_activation_on_the_small_screen() {
    let k = Kiosk::start("rpi4", config(1, Hours::ClosedTwoDays, false, 60)).await;
    let driver = Driver::start().await;
    let mut p = Page::open(&driver, &k.url, || k.logs(), "1024x600", 1024, 600).await;
    eprintln!("screenshots: {}", p.shots.display());
    p.wait_screen("attract").await;
    p.check("attract").await;

    // Closed now: the next opening, before any number; then a callback booked by SMS.
    p.tap("start").await;
    p.wait_screen("closed").await;
    let next = p.text("closed-next-opening").await;
    assert!(
        next.starts_with("We open again ") && next.contains("at 09:00"),
        "{next}"
    );
    p.check("closed").await;
    p.tap("closed-callback").await;
    p.wait_screen("phone").await;
    assert!(p.text("phone-title").await.contains("callback"));
    type_number(&p, "phone", NUMBER).await;
    p.check("phone").await;
    p.tap("phone-submit").await;
    p.wait_screen("code").await;
    type_number(&p, "code", "123456").await;
    p.check("code").await;
    p.tap("code-submit").await;
    p.wait_screen("booked").await;
    assert_eq!(k.log_of_sync().callbacks, vec![String::new()]);
    assert!(p.text("booked-text").await.contains("+33•••••••78"));
    p.check("booked").await;
    p.tap("booked-done").await;
    p.wait_screen("attract").await;
    p.assert_clean(&SECRETS).await;

    // Open again; nobody answers; the callback offer.
    k.set_config(config(2, Hours::Always, false, 60)).await;
    eventually(LONG, "the new config", || async {
        k.view().await["rev"].as_u64().unwrap() > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.tap("start").await;
    p.wait_screen("phone").await;
    type_number(&p, "phone", NUMBER).await;
    p.tap("phone-submit").await;
    p.wait_screen("code").await;
    type_number(&p, "code", "123456").await;
    p.tap("code-submit").await;
    p.wait_screen("queue").await;
    eventually(LONG, "the call placed", || async {
        k.log_of_sync().places.len() == 1
    })
    .await;
    assert_eq!(k.log_of_sync().places[0], ("en".to_string(), String::new()));
    k.call_queued("req-1", "call-9").await;
    p.wait_text("queue-position", "experts are being called")
        .await;
    p.check("queue").await;
    k.call_ended("call-9", "req-1", "not_answered").await;
    p.wait_screen("no_answer").await;
    p.check("no-answer").await;
    k.callback_offered("call-9").await;
    p.wait_screen("callback_offer").await;
    p.check("callback-offer").await;
    p.tap("callback-yes").await;
    p.wait_screen("booked").await;
    assert_eq!(
        k.log_of_sync().callbacks,
        vec![String::new(), "call-9".to_string()]
    );
    p.tap("booked-done").await;
    p.wait_screen("attract").await;

    // Error answers in words, with a way forward: a limit on codes (the number typed stays),
    // then a refused call.
    k.sync
        .lock()
        .unwrap()
        .otp_answers
        .push_back(kiosk_bus::sync::JourneyOutcome::Limited { retry_after_s: 600 });
    p.tap("start").await;
    p.wait_screen("phone").await;
    type_number(&p, "phone", NUMBER).await;
    p.tap("phone-submit").await;
    p.wait_text("phone-problem", "try again in 10 min").await;
    assert!(p.text("phone-echo").await.ends_with("78"), "nothing lost");
    p.check("phone-limited").await;
    p.tap("phone-submit").await;
    p.wait_screen("code").await;
    type_number(&p, "code", "123456").await;
    p.tap("code-submit").await;
    p.wait_screen("queue").await;
    eventually(LONG, "the call placed", || async {
        k.log_of_sync().places.len() == 2
    })
    .await;
    k.call_ended("", "req-2", "refused: closed").await;
    p.wait_screen("call_failed").await;
    p.wait_text("call-failed-problem", "try again").await;
    p.check("call-failed").await;
    p.tap("call-failed-done").await;
    p.wait_screen("attract").await;

    // The cloud link goes down: temporarily unavailable; kiosk-sync gone: the same.
    k.set_link("enrolled", "", false).await;
    p.wait_screen("unavailable").await;
    p.check("unavailable").await;
    k.set_link("awaiting-activation", "K7Q-4MX", false).await;
    p.wait_screen("activation").await;
    assert_eq!(p.text("activation-code").await, "K7Q-4MX");
    p.check("activation").await;
    k.set_link("enrolling", "", false).await;
    p.wait_screen("setup").await;
    p.check("setup").await;
    k.set_link("enrolled", "", true).await;
    p.wait_screen("attract").await;
    eprintln!("checked {:?}", p.checked);
    p.close().await;
}

async fn focus_testid(p: &Page<'_>) -> String {
    p.js("return document.activeElement && document.activeElement.dataset.testid || ''")
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portrait_screens_and_a_keyboard_only_walk() {
    let k = Kiosk::start("rpi4", config(1, Hours::Always, true, 60)).await;
    let driver = Driver::start().await;
    let mut p = Page::open(&driver, &k.url, || k.logs(), "600x1024", 600, 1024).await;
    eprintln!("screenshots: {}", p.shots.display());
    p.wait_screen("attract").await;
    p.check("attract").await;

    // Keyboard only: Tab to the call to action, Enter; digits typed; Enter submits.
    let mut tabs = 0;
    while focus_testid(&p).await != "start" {
        p.c.active_element()
            .await
            .unwrap()
            .send_keys(&Key::Tab.to_string())
            .await
            .unwrap();
        tabs += 1;
        assert!(tabs < 10, "Tab never reaches the call to action");
    }
    let visible_focus = p
        .js("return getComputedStyle(document.activeElement).outlineStyle + ' ' + getComputedStyle(document.activeElement).outlineWidth")
        .await;
    assert_eq!(visible_focus, "solid 4px", "a visible focus ring");
    p.check("attract-focus").await;
    p.c.active_element()
        .await
        .unwrap()
        .send_keys(&Key::Enter.to_string())
        .await
        .unwrap();
    p.wait_screen("phone").await;
    p.c.active_element()
        .await
        .unwrap()
        .send_keys(NUMBER)
        .await
        .unwrap();
    eventually(LONG, "the typed number", || async {
        p.text("phone-echo").await.ends_with("78")
    })
    .await;
    p.check("phone").await;
    p.c.active_element()
        .await
        .unwrap()
        .send_keys(&Key::Enter.to_string())
        .await
        .unwrap();
    p.wait_screen("code").await;
    p.c.active_element()
        .await
        .unwrap()
        .send_keys("12345")
        .await
        .unwrap();
    // Backspace deletes; Enter does nothing with five digits.
    p.c.active_element()
        .await
        .unwrap()
        .send_keys(&Key::Backspace.to_string())
        .await
        .unwrap();
    eventually(LONG, "four digits", || async {
        p.text("code-echo").await.split_whitespace().count() == 4
    })
    .await;
    p.c.active_element()
        .await
        .unwrap()
        .send_keys("56")
        .await
        .unwrap();
    p.check("code").await;
    p.c.active_element()
        .await
        .unwrap()
        .send_keys(&Key::Enter.to_string())
        .await
        .unwrap();
    p.wait_screen("consent").await;
    p.check("consent").await;
    // Tab to "no", Enter: still a call, without recording.
    let mut tabs = 0;
    while focus_testid(&p).await != "consent-no" {
        p.c.active_element()
            .await
            .unwrap()
            .send_keys(&Key::Tab.to_string())
            .await
            .unwrap();
        tabs += 1;
        assert!(tabs < 10, "Tab never reaches no");
    }
    p.c.active_element()
        .await
        .unwrap()
        .send_keys(&Key::Enter.to_string())
        .await
        .unwrap();
    p.wait_screen("queue").await;
    eventually(LONG, "declined", || async {
        k.log_of_sync().places == vec![("en".to_string(), "declined".to_string())]
    })
    .await;
    k.call_queued("req-1", "c1").await;
    k.queue_update("c1", 2, 90).await;
    p.wait_text("queue-position", "number 2").await;
    p.check("queue").await;
    k.call_accepted("c1").await;
    p.wait_screen("call").await;
    assert!(
        !p.find("call-recording").await.is_displayed().await.unwrap(),
        "no recording"
    );
    p.check("call").await;
    k.call_ended("c1", "req-1", "hangup").await;
    p.wait_screen("survey").await;
    p.check("survey").await;
    p.tap("survey-skip").await;
    p.wait_screen("attract").await;
    assert!(
        k.log_of_sync().events.is_empty(),
        "a skipped survey sends nothing"
    );
    eventually(LONG, "the page reloaded", || async {
        p.js("return document.querySelector('main').dataset.screen")
            .await
            == "attract"
    })
    .await;
    p.assert_clean(&SECRETS).await;
    eprintln!("checked {:?}", p.checked);
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_warning_extends_then_resets() {
    // The shortest idle a config allows: 10 s, then a 20 s warning.
    let k = Kiosk::start("qemu", config(1, Hours::Always, false, 10)).await;
    let driver = Driver::start().await;
    let mut p = Page::open(&driver, &k.url, || k.logs(), "idle-1024x600", 1024, 600).await;
    p.wait_screen("attract").await;
    p.tap("start").await;
    p.wait_screen("phone").await;
    type_number(&p, "phone", "0612").await;
    let warning =
        p.c.wait()
            .at_most(Duration::from_secs(15))
            .for_element(fantoccini::Locator::Css("#idle-warning:not([hidden])"))
            .await;
    assert!(warning.is_ok(), "the idle warning shows");
    let left: u64 = p
        .text("idle-countdown")
        .await
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .next()
        .unwrap();
    assert!((18..=20).contains(&left), "{left}");
    p.check("idle-warning").await;
    p.tap("idle-extend").await;
    eventually(LONG, "the warning gone", || async {
        p.js("return document.getElementById('idle-warning').hidden")
            .await
            == true
    })
    .await;
    assert_eq!(k.screen().await, "phone");
    assert!(
        p.text("phone-echo").await.ends_with("12"),
        "nothing lost by extending"
    );
    // Left alone: the warning again, then the reset.
    p.c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(fantoccini::Locator::Css("#idle-warning:not([hidden])"))
        .await
        .unwrap();
    let session = k.view().await["session"].clone();
    eventually(Duration::from_secs(25), "the idle reset", || async {
        k.view().await["session"] != session
    })
    .await;
    p.wait_screen("attract").await;
    eventually(LONG, "the page reloaded", || async {
        !p.body_text().await.contains("•")
    })
    .await;
    assert!(k.log_of_sync().end_journeys >= 1);
    p.assert_clean(&["0612"]).await;
    p.close().await;
}
