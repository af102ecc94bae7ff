//! The console driven in a real headless Chromium (through chromedriver) against a real
//! tenantd: sign-in, an admin page that creates a user, the forced first password change, and
//! the settings page. `scripts/test` installs Debian's chromium and chromium-driver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::browser::{browser, click, fill, screenshot, start_driver, wait_page, WAIT};
use common::{TestCloud, STAFF_PASSWORD};
use fantoccini::{Client, Locator};
use reqwest::Method;
use serde_json::json;
use tenantd::tenancy::Role;

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn sign_in(c: &Client, email: &str, password: &str) {
    wait_page(c, "login").await;
    fill(c, "#login-email", email).await;
    fill(c, "#login-password", password).await;
    click(c, "#login-submit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_signs_in_and_creates_a_user_who_then_sets_a_password() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    cloud.add_user(&org, "boss@shop.example", Role::OrgAdmin);
    let driver = start_driver().await;
    let c = browser(&driver, 1280, 900).await;

    c.goto(&format!("{}/", cloud.base)).await.unwrap();
    // A wrong password shows the error on the page.
    sign_in(&c, "boss@shop.example", "not the password").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//*[@id='login-error' and contains(., 'not correct')]",
        ))
        .await
        .unwrap();
    fill(&c, "#login-password", STAFF_PASSWORD).await;
    click(&c, "#login-submit").await;
    wait_page(&c, "home").await;
    assert!(text(&c, "#whoami").await.contains("boss@shop.example"));
    // The session cookie is HttpOnly: page scripts cannot read it.
    let visible = c.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(visible, json!(""));

    click(&c, "a[href=\"#/users\"]").await;
    wait_page(&c, "users").await;
    fill(&c, "#user-email", "newbie@shop.example").await;
    fill(&c, "#user-name", "New Agent").await;
    c.find(Locator::Css("#user-role option[value=\"agent\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&c, "#user-create").await;
    let secret = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#initial-password"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(secret.len() >= 16, "one-time password shown: {secret:?}");
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(
            "#users-table tr[data-email=\"newbie@shop.example\"]",
        ))
        .await
        .unwrap();
    screenshot(&c, "users").await;

    // The service has the user, with the role chosen on the page.
    let admin_api = cloud.login("boss@shop.example", STAFF_PASSWORD).await;
    let (_, users) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/users", &admin_api, None)
        .await;
    let created = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "newbie@shop.example")
        .expect("created through the console");
    assert_eq!(created["role"], "agent");

    // Settings page: a change is saved and reads back.
    click(&c, "a[href=\"#/settings\"]").await;
    wait_page(&c, "settings").await;
    fill(&c, "#settings-retention", "45").await;
    click(&c, "#settings-save").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//*[@id='settings-saved' and normalize-space(.) != '']",
        ))
        .await
        .unwrap();
    let (_, settings) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/settings", &admin_api, None)
        .await;
    assert_eq!(settings["retention_days"], 45);

    // Sign out, then the new user signs in and must choose a password first.
    click(&c, "#signout").await;
    sign_in(&c, "newbie@shop.example", &secret).await;
    wait_page(&c, "password").await;
    fill(&c, "#pw-current", &secret).await;
    fill(&c, "#pw-new", "my own new secret").await;
    fill(&c, "#pw-confirm", "my own new secret").await;
    click(&c, "#pw-submit").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//*[@id='pw-done' and normalize-space(.) != '']",
        ))
        .await
        .unwrap();
    cloud
        .login("newbie@shop.example", "my own new secret")
        .await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_works_on_a_phone_sized_screen() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    cloud.add_user(&org, "boss@shop.example", Role::OrgAdmin);
    let driver = start_driver().await;
    let c = browser(&driver, 390, 844).await;
    c.goto(&format!("{}/console/", cloud.base)).await.unwrap();
    sign_in(&c, "boss@shop.example", STAFF_PASSWORD).await;
    wait_page(&c, "home").await;
    c.goto(&format!("{}/console/#/sites", cloud.base))
        .await
        .unwrap();
    wait_page(&c, "sites").await;
    // Nothing overflows the narrow viewport sideways.
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal overflow {overflow}"
    );
    screenshot(&c, "sites-phone").await;
    c.close().await.unwrap();
}

/// The fleet pages: the device list, claiming a kiosk by its activation code, an enrollment
/// token, one device's config and commands, and revoking it. Revoking asks with the browser's
/// own `confirm()` (as every destructive action in the console does); the test accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_claims_configures_commands_and_revokes_devices() {
    let cloud = TestCloud::start().await;
    let root = cloud.login_root().await;
    let org = cloud.create_org(&root, "shop").await;
    let admin_api = cloud.staff(&org, "boss@shop.example", Role::OrgAdmin).await;
    let site = cloud.add_site(&org, "Lyon");
    let enrolled = cloud.add_device(&org, site);
    let code = cloud.add_activation_code();
    let driver = start_driver().await;
    let c = browser(&driver, 1280, 900).await;
    c.goto(&format!("{}/console/", cloud.base)).await.unwrap();
    sign_in(&c, "boss@shop.example", STAFF_PASSWORD).await;
    wait_page(&c, "home").await;

    // The list shows the enrolled device with its site and status.
    click(&c, "nav a[href=\"#/devices\"]").await;
    wait_page(&c, "devices").await;
    let row = format!("#devices-table tr[data-device=\"{enrolled}\"]");
    let row_text = text(&c, &row).await;
    assert!(
        row_text.contains("Lyon") && row_text.contains("Offline"),
        "{row_text}"
    );

    // An enrollment token is shown once.
    fill(&c, "#etoken-uses", "5").await;
    click(&c, "#etoken-create").await;
    let secret = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#etoken-secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(secret.starts_with("ket_"), "{secret}");
    let token_row = text(&c, "#etokens-table tbody tr").await;
    assert!(
        token_row.contains("Lyon") && token_row.contains('5'),
        "{token_row}"
    );

    // A wrong code is refused on the form; the right one (case does not matter) enrolls the
    // waiting kiosk, which then appears in the list.
    fill(&c, "#claim-code", "AAAA-AAAA").await;
    click(&c, "#claim-submit").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//*[@id='claim-error' and contains(., 'no kiosk is waiting')]",
        ))
        .await
        .unwrap();
    fill(&c, "#claim-code", &code.to_lowercase()).await;
    c.find(Locator::Css(&format!(
        "#claim-site option[value=\"{site}\"]"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    click(&c, "#claim-submit").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//*[@id='claim-done' and contains(., 'is enrolled in Lyon')]",
        ))
        .await
        .unwrap();
    let (_, listed) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/devices", &admin_api, None)
        .await;
    let claimed = listed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] != enrolled.as_str())
        .expect("the claimed kiosk")["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!(
            "#devices-table tr[data-device=\"{claimed}\"]"
        )))
        .await
        .unwrap();

    // The device page: a config out of range is refused with the server's message, a good one
    // is saved as version 1.
    click(&c, &format!("{row} a")).await;
    wait_page(&c, "device").await;
    fill(&c, "#config-idle", "5").await;
    click(&c, "#config-save").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//*[@id='config-error' and contains(., '10 to 3600')]",
        ))
        .await
        .unwrap();
    fill(&c, "#config-idle", "90").await;
    click(&c, "#config-save").await;
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//*[@id='config-saved' and contains(., 'version 1')]",
        ))
        .await
        .unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#config-history tr[data-version=\"1\"]"))
        .await
        .unwrap();

    // A command: restart kiosk-media, listed as sent.
    c.find(Locator::Css(
        "#cmd-action option[value=\"restart_service\"]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    c.find(Locator::Css("#cmd-service option[value=\"kiosk-media\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&c, "#cmd-send").await;
    let command_row = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//table[@id='commands-table']//tr[@data-command and contains(., 'Restart kiosk-media')]",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(command_row.to_lowercase().contains("sent"), "{command_row}");
    c.execute(
        "document.getElementById('commands-table').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    screenshot(&c, "device").await;

    // Revoke (accepting the confirm()): the page turns read-only, and the list says so.
    click(&c, "#device-revoke").await;
    c.accept_alert().await.unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#device-revoked"))
        .await
        .unwrap();
    for gone in ["#device-revoke", "#config-form", "#cmd-form"] {
        assert!(
            c.find_all(Locator::Css(gone)).await.unwrap().is_empty(),
            "{gone} on a revoked device"
        );
    }
    click(&c, "nav a[href=\"#/devices\"]").await;
    wait_page(&c, "devices").await;
    let row_text = text(&c, &row).await;
    assert!(row_text.contains("Revoked"), "{row_text}");

    // The service agrees.
    let (status, listed) = cloud
        .call(Method::GET, "/api/v1/orgs/shop/devices", &admin_api, None)
        .await;
    assert_eq!(status, 200, "{listed}");
    let devices = listed["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{listed}");
    let by_id = |id: &str| devices.iter().find(|d| d["id"] == id).unwrap().clone();
    assert!(by_id(&enrolled)["revoked_at"].is_string());
    let fresh = by_id(&claimed);
    assert!(fresh["revoked_at"].is_null());
    assert_eq!(fresh["site_id"], site);
    assert_eq!(fresh["enrolled_via"], "activation_code");
    // The claim gave it its first config, on the board it reported.
    let (_, first) = cloud
        .call(
            Method::GET,
            &format!("/api/v1/orgs/shop/devices/{claimed}/config"),
            &admin_api,
            None,
        )
        .await;
    assert_eq!(first["history"][0]["version"], 1, "{first}");
    assert_eq!(first["settings"]["board_profile"], "qemu");
    let (_, config) = cloud
        .call(
            Method::GET,
            &format!("/api/v1/orgs/shop/devices/{enrolled}/config"),
            &admin_api,
            None,
        )
        .await;
    assert_eq!(config["settings"]["idle_s"], 90, "{config}");
    let (_, commands) = cloud
        .call(
            Method::GET,
            &format!("/api/v1/orgs/shop/devices/{enrolled}/commands"),
            &admin_api,
            None,
        )
        .await;
    let sent = &commands["commands"][0];
    assert_eq!(sent["command"]["action"], "restart_service");
    assert_eq!(sent["command"]["service"], "kiosk-media");
    assert_eq!(sent["state"], "sent");
    let (_, tokens) = cloud
        .call(
            Method::GET,
            "/api/v1/orgs/shop/enrollment-tokens",
            &admin_api,
            None,
        )
        .await;
    assert!(tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["uses_left"] == 5 && t["site_id"] == site));
    c.close().await.unwrap();
}
