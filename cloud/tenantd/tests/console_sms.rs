//! The console's SMS and customer erasure pages in a real headless Chromium (through
//! chromedriver) against a real tenantd.
//!
//! - SMS: an org admin adds an `http` gateway with a bearer token and saves; after a reload the
//!   page says the token is set and holds no secret; an edit keeps the token; a bad URL is
//!   refused next to the URL field; going back to the platform's gateways asks first. No SMS is
//!   sent. Delivery records show whatever status the API gives.
//! - Erasure: a customer, a callback and a call record of a number (stored under the real OTP
//!   key, as the journey stores them) are erased from the page; the API then shows no callback
//!   and a call record without the number; the number is gone from the input, the URL and the
//!   console's output.
//! - Agents see neither page in the navigation and cannot open them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::browser::{
    browser, choose, click, fill, js, screenshot, start_driver, text_with, wait_css, wait_page,
};
use common::{TestCloud, STAFF_PASSWORD};
use fantoccini::Client;
use reqwest::Method;
use serde_json::{json, Value};
use tenantd::otp::sms::{GatewayConfig, HttpAuth};
use tenantd::tenancy::Role;

const TOKEN: &str = "tok-very-secret-4711";
const PHONE: &str = "+33 6 12 34 56 78";
const E164: &str = "+33612345678";

/// Page errors, CSP violations and everything written to the browser console from now on.
const WATCH: &str = r#"
window.__problems = [];
window.__console = [];
window.addEventListener('error', (e) => window.__problems.push('error: ' + e.message));
window.addEventListener('unhandledrejection', (e) => window.__problems.push('rejection: ' + (e.reason && e.reason.message || e.reason)));
document.addEventListener('securitypolicyviolation', (e) => window.__problems.push('csp: ' + e.violatedDirective + ' ' + e.blockedURI));
for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
  const real = console[level].bind(console);
  console[level] = (...args) => { window.__console.push(args.map(String).join(' ')); real(...args); };
}
"#;

/// Everything the page holds: its markup, every control's value, the URL and the console.
const PAGE_DUMP: &str = "return [document.documentElement.outerHTML, location.href, \
     ...[...document.querySelectorAll('input, textarea, select')].map((e) => e.value), \
     ...(window.__console || [])].join('\\n')";

/// Controls without an accessible name on the current page.
async fn unnamed_controls(c: &Client) -> Value {
    js(
        c,
        "return [...document.querySelectorAll('main button, main a[href], main input:not([type=hidden]), main select, main textarea')] \
           .filter((el) => !(el.getAttribute('aria-label') || (el.labels && el.labels.length) || el.textContent.trim())) \
           .map((el) => el.outerHTML)",
    )
    .await
}

async fn sign_in(c: &Client, base: &str, email: &str) {
    c.goto(&format!("{base}/console/")).await.unwrap();
    wait_page(c, "login").await;
    fill(c, "#login-email", email).await;
    fill(c, "#login-password", STAFF_PASSWORD).await;
    click(c, "#login-submit").await;
}

async fn nav_links(c: &Client) -> Vec<String> {
    let v = js(
        c,
        "return [...document.querySelectorAll('nav a')].map((a) => a.getAttribute('href'))",
    )
    .await;
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_sets_the_sms_gateways_and_goes_back_to_the_platform() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    let admin = cloud.staff(&org, "boss@shop.example", Role::OrgAdmin).await;
    // A delivery record with a status and fields this console version may not know.
    let now = jiff::Timestamp::now().as_millisecond();
    common::journey::open(&cloud)
        .execute(
            "INSERT INTO sms_messages (org_id, purpose, phone_masked, gateway, status,
                provider_id, error, created_at_ms, updated_at_ms)
             VALUES (?1, 'code', '+33•••••••78', 'http:old', 'delivered', 'prov-77', NULL, ?2, ?3)",
            rusqlite::params![org.id, now - 5_000, now],
        )
        .unwrap();

    let driver = start_driver().await;
    let c = browser(&driver, 1280, 900).await;
    sign_in(&c, &cloud.base, "boss@shop.example").await;
    wait_page(&c, "home").await;
    let links = nav_links(&c).await;
    assert!(
        links.contains(&"#/sms".to_string()) && links.contains(&"#/erase".to_string()),
        "{links:?}"
    );

    // The platform's gateways at first; the delivery record is listed as the API says.
    click(&c, "nav a[href=\"#/sms\"]").await;
    wait_page(&c, "sms").await;
    js(&c, WATCH).await;
    wait_css(&c, "#sms-uses[data-uses=\"platform\"]").await;
    let row = wait_css(&c, "#sms-messages tr[data-message]")
        .await
        .text()
        .await
        .unwrap();
    for part in ["Code", "+33•••••••78", "http:old", "delivered", "prov-77"] {
        assert!(row.contains(part), "{part} in {row}");
    }

    // Add an http gateway with a bearer token and save it.
    click(&c, "#sms-add-http").await;
    fill(&c, "#gw-0-name", "primary").await;
    fill(&c, "#gw-0-url", "https://sms.provider.test/v1/send").await;
    choose(&c, "#gw-0-auth", "bearer").await;
    fill(&c, "#gw-0-token", TOKEN).await;
    assert_eq!(unnamed_controls(&c).await, json!([]), "the gateway editor");
    click(&c, "#sms-save").await;
    text_with(&c, "#sms-status", "Gateways saved").await;
    wait_css(&c, "#sms-uses[data-uses=\"organization\"]").await;
    let (_, sms) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/sms", &admin, None)
        .await;
    assert_eq!(sms["uses"], "organization", "{sms}");
    assert_eq!(sms["gateways"][0]["name"], "primary");
    assert_eq!(
        sms["gateways"][0]["auth"],
        json!({ "type": "bearer", "token_set": true })
    );
    assert_eq!(
        sms["gateways"][0]["body"],
        json!({ "to": "{to}", "text": "{text}" })
    );

    // After a reload: "token set", and the token is nowhere in the page.
    c.refresh().await.unwrap();
    wait_page(&c, "sms").await;
    js(&c, WATCH).await;
    wait_css(&c, "#sms-uses[data-uses=\"organization\"]").await;
    text_with(&c, "#gw-0-auth-state", "token set").await;
    text_with(&c, "#gw-0-secret-state", "not set").await;
    let dump = js(&c, PAGE_DUMP).await;
    assert!(!dump.as_str().unwrap().contains(TOKEN), "the token leaked");

    // Edit, leaving the token empty: it is kept.
    click(&c, "[data-gateway=\"0\"] .gateway-edit").await;
    let token_value = js(&c, "return document.getElementById('gw-0-token').value").await;
    assert_eq!(token_value, json!(""));
    text_with(&c, "#gw-0-token-hint", "leave this empty to keep it").await;
    fill(&c, "#gw-0-sender", "Shop").await;
    click(&c, "#sms-save").await;
    text_with(&c, "#sms-status", "Gateways saved").await;
    let (_, sms) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/sms", &admin, None)
        .await;
    assert_eq!(sms["gateways"][0]["sender"], "Shop", "{sms}");
    assert_eq!(sms["gateways"][0]["auth"]["token_set"], true);
    let stored = cloud
        .store
        .blocking(|db| db.org_sms(org.id))
        .unwrap()
        .unwrap();
    let GatewayConfig::Http(h) = &stored.gateways[0] else {
        panic!("an http gateway")
    };
    assert_eq!(
        h.auth,
        Some(HttpAuth::Bearer {
            token: TOKEN.into()
        })
    );

    // Delivery receipts: a missing field is named next to its input; once saved, the receipt
    // URL is shown, and later saves from this page keep the receipts and their URL.
    click(&c, "[data-gateway=\"0\"] .gateway-edit").await;
    click(&c, "#gw-0-receipts-on").await;
    fill(&c, "#gw-0-receipts-status", "MessageStatus").await;
    assert_eq!(unnamed_controls(&c).await, json!([]), "the receipts editor");
    click(&c, "#sms-save").await;
    let message = text_with(&c, "#gw-0-receipts-provider-id-error", "provider_id").await;
    assert!(message.contains("gateway 1"), "{message}");
    fill(&c, "#gw-0-receipts-provider-id", "MessageSid").await;
    click(&c, "#sms-save").await;
    text_with(&c, "#sms-status", "Gateways saved").await;
    let (_, sms) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/sms", &admin, None)
        .await;
    let receipts = &sms["gateways"][0]["receipts"];
    assert_eq!(
        (
            receipts["format"].as_str(),
            receipts["provider_id"].as_str(),
            receipts["status"].as_str()
        ),
        (Some("form"), Some("MessageSid"), Some("MessageStatus")),
        "{sms}"
    );
    assert_eq!(receipts["delivered"], json!(["delivered"]));
    assert_eq!(receipts["undelivered"], json!(["undelivered", "failed"]));
    let path = receipts["url_path"].as_str().unwrap().to_string();
    assert!(path.starts_with("/api/v1/sms/receipts/kcr_"), "{path}");
    text_with(&c, "#gw-0-receipts-state", &format!("{}{path}", cloud.base)).await;
    click(&c, "[data-gateway=\"0\"] .gateway-edit").await;
    fill(&c, "#gw-0-sender", "Shop 2").await;
    click(&c, "#sms-save").await;
    text_with(&c, "#sms-status", "Gateways saved").await;
    let (_, sms) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/sms", &admin, None)
        .await;
    assert_eq!(sms["gateways"][0]["sender"], "Shop 2", "{sms}");
    assert_eq!(
        sms["gateways"][0]["receipts"]["url_path"],
        path.as_str(),
        "{sms}"
    );
    screenshot(&c, "sms-receipts").await;

    // A bad URL: the API's message next to the URL field, which has the focus.
    click(&c, "[data-gateway=\"0\"] .gateway-edit").await;
    fill(&c, "#gw-0-url", "http://sms.provider.test/v1/send").await;
    click(&c, "#sms-save").await;
    let message = text_with(&c, "#gw-0-url-error", "https://").await;
    assert!(message.contains("gateway 1"), "{message}");
    text_with(&c, "#sms-error", "https://").await;
    let focus = js(
        &c,
        "return [document.activeElement.id, document.activeElement.getAttribute('aria-invalid'), \
           document.activeElement.getAttribute('aria-describedby')]",
    )
    .await;
    assert_eq!(focus[0], "gw-0-url");
    assert_eq!(focus[1], "true");
    assert!(
        focus[2].as_str().unwrap().contains("gw-0-url-error"),
        "{focus}"
    );
    screenshot(&c, "sms-url-error").await;
    let (_, sms) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/sms", &admin, None)
        .await;
    assert_eq!(
        sms["gateways"][0]["url"], "https://sms.provider.test/v1/send",
        "nothing saved"
    );

    // Back to the platform's gateways: asked first; dismissing keeps the gateways.
    click(&c, "#sms-platform").await;
    c.dismiss_alert().await.unwrap();
    wait_css(&c, "#sms-uses[data-uses=\"organization\"]").await;
    click(&c, "#sms-platform").await;
    c.accept_alert().await.unwrap();
    wait_css(&c, "#sms-uses[data-uses=\"platform\"]").await;
    text_with(&c, "#sms-status", "platform").await;
    let (_, sms) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/sms", &admin, None)
        .await;
    assert_eq!(
        sms,
        json!({ "uses": "platform", "gateways": [], "updated_at": null })
    );

    // Nothing was sent: the one record is the one made above.
    let (_, messages) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/sms/messages", &admin, None)
        .await;
    assert_eq!(
        messages["messages"].as_array().unwrap().len(),
        1,
        "{messages}"
    );
    assert_eq!(js(&c, "return window.__problems").await, json!([]));
    let dump = js(&c, PAGE_DUMP).await;
    assert!(!dump.as_str().unwrap().contains(TOKEN), "the token leaked");
    c.close().await.unwrap();
}

/// A customer, a booked callback and an answered call of `e164`, stored under the cloud's real
/// OTP key as the journey stores them; returns the call's id.
fn add_customer_history(
    cloud: &TestCloud,
    org_id: i64,
    site: i64,
    device: &str,
    e164: &str,
) -> String {
    let key = tenantd::otp::key::OtpKey::load_or_create(&cloud.data_dir()).unwrap();
    let hash = key.phone_hash(e164).to_vec();
    let masked = kiosk_protocol::journey::mask_phone(e164);
    let now = jiff::Timestamp::now().as_millisecond();
    let conn = common::journey::open(cloud);
    conn.execute(
        "INSERT INTO customers (org_id, device_id, request_id, token_hash, phone_hash,
            phone_masked, phone_e164, language, verified_at_ms, expires_at_ms)
         VALUES (?1, ?2, 'req-erase', ?3, ?4, ?5, ?6, 'fr', ?7, ?8)",
        rusqlite::params![
            org_id,
            device,
            tenantd::store::customer_token_hash("kcu_erase-me").as_slice(),
            hash,
            masked,
            e164,
            now - 120_000,
            now + 600_000
        ],
    )
    .unwrap();
    let customer = conn.last_insert_rowid();
    let call = "call-erasefromconsole";
    conn.execute(
        "INSERT INTO calls (id, org_id, site_id, device_id, kind, request_id, state, placed_at_ms,
            accepted_at_ms, ended_at_ms, ended_by, end_reason, rev, customer_id, phone_masked,
            phone_hash, outcome, survey_score)
         VALUES (?1, ?2, ?3, ?4, 'customer', 'req-erase', 'ended', ?5, ?6, ?7, 'kiosk',
            'hangup', 1, ?8, ?9, ?10, 'answered', 3)",
        rusqlite::params![
            call,
            org_id,
            site,
            device,
            now - 90_000,
            now - 80_000,
            now - 20_000,
            customer,
            masked,
            hash
        ],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO callbacks (org_id, site_id, device_id, customer_id, call_id, reason,
            phone_e164, phone_hash, phone_masked, language, requested_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 'not_answered', ?6, ?7, ?8, 'fr', ?9)",
        rusqlite::params![
            org_id,
            site,
            device,
            customer,
            call,
            e164,
            hash,
            masked,
            now - 10_000
        ],
    )
    .unwrap();
    call.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_erases_a_customer_and_agents_see_neither_page() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    let admin = cloud.staff(&org, "boss@shop.example", Role::OrgAdmin).await;
    cloud.add_user(&org, "eve@shop.example", Role::Agent);
    let site = cloud.add_site(&org, "Lyon");
    let device = cloud.add_device(&org, site);
    let call = add_customer_history(&cloud, org.id, site, &device, E164);
    let (_, callbacks) = cloud
        .call(
            Method::GET,
            "/api/v1/orgs/shop/callbacks?state=all",
            &admin,
            None,
        )
        .await;
    assert_eq!(
        callbacks["callbacks"].as_array().unwrap().len(),
        1,
        "{callbacks}"
    );
    let record = |body: &Value| {
        body["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == call.as_str())
            .cloned()
            .expect("the call record")
    };
    let (_, records) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/calls/records", &admin, None)
        .await;
    assert_eq!(record(&records)["phone_masked"], "+33•••••••78");

    let driver = start_driver().await;
    let c = browser(&driver, 1280, 900).await;
    sign_in(&c, &cloud.base, "boss@shop.example").await;
    wait_page(&c, "home").await;
    click(&c, "nav a[href=\"#/erase\"]").await;
    wait_page(&c, "erase").await;
    js(&c, WATCH).await;
    text_with(&c, "#erase-what", "cannot be undone").await;
    assert_eq!(unnamed_controls(&c).await, json!([]), "the erasure page");

    // A number without its country code: refused on the field, and the input is emptied.
    fill(&c, "#erase-phone", "06 12 34 56 78").await;
    click(&c, "#erase-submit").await;
    c.accept_alert().await.unwrap();
    text_with(&c, "#erase-error", "country code").await;
    let state = js(
        &c,
        "const i = document.getElementById('erase-phone'); \
         return [i.value, i.getAttribute('aria-invalid'), document.activeElement === i]",
    )
    .await;
    assert_eq!(state, json!(["", "true", true]));

    // Dismissing the warning erases nothing.
    fill(&c, "#erase-phone", PHONE).await;
    click(&c, "#erase-submit").await;
    c.dismiss_alert().await.unwrap();
    let (_, callbacks) = cloud
        .call(
            Method::GET,
            "/api/v1/orgs/shop/callbacks?state=all",
            &admin,
            None,
        )
        .await;
    assert_eq!(callbacks["callbacks"].as_array().unwrap().len(), 1);

    // Confirmed: the counts the API answers, and the number is gone from the page.
    click(&c, "#erase-submit").await;
    c.accept_alert().await.unwrap();
    wait_css(&c, "#erase-result:not([hidden])").await;
    let counts = js(
        &c,
        "return Object.fromEntries([...document.querySelectorAll('#erase-result [data-count]')] \
           .map((e) => [e.dataset.count, e.textContent]))",
    )
    .await;
    assert_eq!(
        counts,
        json!({ "otp_codes": "0", "customers": "1", "callbacks": "1", "calls": "1" })
    );
    screenshot(&c, "erase-done").await;
    let dump = js(&c, PAGE_DUMP).await;
    let dump = dump.as_str().unwrap();
    for number in ["612345678", "6 12 34 56 78", "12 34 56 78"] {
        assert!(!dump.contains(number), "{number} lingers in the page");
    }
    let url = c.current_url().await.unwrap();
    assert!(url.as_str().ends_with("#/erase"), "{url}");
    assert_eq!(js(&c, "return window.__problems").await, json!([]));

    // The API agrees: no callback, and the call record without the number.
    let (_, callbacks) = cloud
        .call(
            Method::GET,
            "/api/v1/orgs/shop/callbacks?state=all",
            &admin,
            None,
        )
        .await;
    assert_eq!(callbacks["callbacks"], json!([]), "{callbacks}");
    let (_, records) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/calls/records", &admin, None)
        .await;
    let erased = record(&records);
    assert!(erased["phone_masked"].is_null(), "{erased}");
    assert_eq!(erased["survey_score"], 3);

    // An agent sees neither page in the navigation, and cannot open them.
    click(&c, "#signout").await;
    sign_in(&c, &cloud.base, "eve@shop.example").await;
    wait_page(&c, "calls").await;
    let links = nav_links(&c).await;
    assert!(
        !links.iter().any(|l| l == "#/sms" || l == "#/erase"),
        "{links:?}"
    );
    for page in ["sms", "erase"] {
        c.goto(&format!("{}/console/#/{page}", cloud.base))
            .await
            .unwrap();
        wait_page(&c, "forbidden").await;
    }
    c.close().await.unwrap();
}
