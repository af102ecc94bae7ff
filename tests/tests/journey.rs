//! The customer's whole journey at the kiosk, nothing faked but the camera and microphone:
//! tenantd with its managed mosquitto and SQLite file (the `log` SMS gateway), the real
//! kiosk-sync, kiosk-media and kiosk-ui binaries on a private D-Bus, the kiosk's touch screen in
//! one headless Chromium driven by touch, and the agent in another (the console's Calls page).
//!
//! The customer taps through attract → phone → code (read from the SMS gateway's file) →
//! consent → queue; the agent answers; the call runs (video both ways); the customer hangs up
//! and gives the survey; and afterwards nothing of the customer is left in the page or its
//! storage. The cloud's call record says it all once. Screenshots of each screen are kept
//! (`KIOSKCALL_SCREENSHOTS`, else the test target's temporary folder).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../appliance/ui/tests/common/browser.rs"]
mod touch;

use std::time::Duration;

use kioskcall_e2e::browser::{agent_available, click, Driver};
use kioskcall_e2e::stage::CallStage;
use kioskcall_e2e::ui::KioskUi;
use kioskcall_e2e::{Cloud, Shop};
use reqwest::Method;
use serde_json::{json, Value};
use touch::Page;

const LONG: Duration = Duration::from_secs(60);
const AGENT_EMAIL: &str = "ana@shop.example";
const AGENT_PASSWORD: &str = "a private shop secret";
/// The customer's number as typed on the keypad (France, with its trunk 0) and in E.164.
const TYPED: &str = "0612345678";
const E164: &str = "+33612345678";

const MEDIA_SETTINGS: &str = r#"version = 1
board = "development"
camera = "test-pattern"
remote_video = "count"
preview = "none"
audio_input = "test-tone"
audio_output = "fakesink"
"#;

/// Opens the shop around the clock and turns recording (with consent) on, before the kiosk
/// enrolls.
async fn open_and_record(cloud: &Cloud, shop: &Shop) {
    let all = json!([{ "open": "00:00", "close": "24:00" }]);
    let (status, body) = shop
        .api(
            cloud,
            Method::PUT,
            &format!("/api/v1/orgs/shop/sites/{}", shop.site_id),
            Some(json!({ "name": "Lyon", "timezone": "Europe/Paris", "business_hours": {
                "mon": all, "tue": all, "wed": all, "thu": all, "fri": all, "sat": all, "sun": all } })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = shop
        .api(
            cloud,
            Method::PUT,
            "/api/v1/orgs/shop/settings",
            Some(
                json!({ "recording": "on_with_consent", "retention_days": 90,
                         "technicians_may_review_recordings": false }),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// The code in the newest SMS to `E164` in the `log` gateway's file.
fn code_from_sms(stage: &CallStage) -> Option<String> {
    let file = stage.cloud.data_dir().join("sms/outbox.jsonl");
    let text = std::fs::read_to_string(file).ok()?;
    let line = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| m["to"] == E164)?;
    let words = line["text"].as_str()?.to_string();
    words
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_walks_the_journey_to_an_agent_and_leaves_nothing_behind() {
    let stage = CallStage::start_with(
        (AGENT_EMAIL, "Ana", AGENT_PASSWORD),
        MEDIA_SETTINGS,
        open_and_record,
    )
    .await;
    // Enrollment gave the kiosk its first desired config: kiosk-ui opens on the attract screen.
    let mut ui = KioskUi::new(&stage.bus, "qemu");
    ui.start();

    // The agent is available in the console.
    let agent_driver = Driver::start().await;
    let agent = agent_driver.browser(1280, 800, &[]).await;
    agent_available(&agent, &stage.cloud.base, AGENT_EMAIL, AGENT_PASSWORD).await;

    // The kiosk's screen, by touch.
    let kiosk_driver = touch::Driver::start().await;
    let logs = || {
        format!(
            "--- kiosk-ui ---\n{}\n--- kiosk-sync ---\n{}",
            ui.log_text(),
            stage.kiosk.log_text()
        )
    };
    let mut p = Page::open(&kiosk_driver, &ui.url, logs, "journey", 1920, 1080).await;
    p.wait_screen("attract").await;
    p.check("attract").await;
    p.tap("start").await;

    p.wait_screen("phone").await;
    for d in TYPED.chars() {
        p.tap(&format!("phone-key-{d}")).await;
    }
    p.check("phone").await;
    p.tap("phone-submit").await;

    p.wait_screen("code").await;
    p.check("code").await;
    let code = stage
        .eventually("the code in the SMS gateway's file", || async {
            code_from_sms(&stage)
        })
        .await;
    for d in code.chars() {
        p.tap(&format!("code-key-{d}")).await;
    }
    p.tap("code-submit").await;

    p.wait_screen("consent").await;
    p.check("consent").await;
    p.tap("consent-yes").await;

    p.wait_screen("queue").await;
    p.check("queue").await;
    click(
        &agent,
        "[data-testid=ringing-call] [data-testid=call-accept]",
        LONG,
    )
    .await;

    p.wait_screen("call").await;
    let frames = stage
        .eventually("the kiosk decodes the agent's video", || async {
            let s = stage.kiosk_stats().await?;
            let n = s["frames_decoded"].as_u64()?;
            (n >= 30).then_some(n)
        })
        .await;
    println!("in the call: the kiosk decoded {frames} frames of the agent");
    assert!(
        p.find("call-recording").await.is_displayed().await.unwrap(),
        "the recording indicator shows: the customer said yes"
    );
    p.check("call").await;
    p.tap("call-hangup").await;

    p.wait_screen("survey").await;
    p.check("survey").await;
    p.tap("survey-3").await;
    p.wait_screen("thanks").await;
    p.check("thanks").await;
    p.tap("thanks-done").await;

    // The privacy reset: the next customer finds nothing of this one.
    p.wait_screen("attract").await;
    p.assert_clean(&["612345678", "12 34 56 78", &code]).await;
    println!("screenshots of every screen: {}", p.shots.display());

    // The cloud's record of the call: once, with the survey and the consent.
    let record = stage
        .eventually("the call record with its survey", || async {
            let (status, body) = stage
                .shop
                .api(
                    &stage.cloud,
                    Method::GET,
                    "/api/v1/orgs/shop/calls/records",
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let records = body["records"].as_array()?.clone();
            let r = records.into_iter().find(|r| r["kind"] == "customer")?;
            (r["survey_score"] == 3).then_some(r)
        })
        .await;
    assert_eq!(record["outcome"], "answered", "{record}");
    assert_eq!(record["phone_masked"], "+33•••••••78", "{record}");
    assert_eq!(record["recorded"], true, "{record}");
    assert!(record["consent_id"].as_str().is_some(), "{record}");
    assert!(record["verified_at"].is_string() && record["answered_at"].is_string());
    assert!(
        !record.to_string().contains("612345678"),
        "no full number: {record}"
    );
    p.close().await;
    agent.close().await.unwrap();
    assert!(ui.stop().expect("kiosk-ui ran").success());
}
