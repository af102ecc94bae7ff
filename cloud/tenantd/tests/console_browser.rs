//! The console driven in a real headless Chromium (through chromedriver) against a real
//! tenantd: sign-in, an admin page that creates a user, the forced first password change, and
//! the settings page. `scripts/test` installs Debian's chromium and chromium-driver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestCloud, STAFF_PASSWORD};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::json;
use tenantd::tenancy::Role;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(20);

/// A chromedriver child process, killed on drop.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver() -> Driver {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: run scripts/test, which installs chromium and chromium-driver"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver {
        child,
        url,
        _profile: tempfile::tempdir().unwrap(),
    }
}

async fn browser(driver: &Driver, width: u32, height: u32) -> Client {
    let profile = driver._profile.path().display().to_string();
    let caps = json!({
        "browserName": "chrome",
        // tenantd's certificate comes from its own local CA, which this throwaway profile
        // does not know; the page is still served over TLS.
        "acceptInsecureCerts": true,
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={profile}"),
            ]
        }
    });
    let mut caps = caps;
    if width < 500 {
        // Headless windows are at least 500 px wide: emulate the phone's viewport instead.
        caps["goog:chromeOptions"]["mobileEmulation"] = json!({
            "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2.0, "touch": true }
        });
    }
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session through chromedriver")
}

async fn wait_page(c: &Client, page: &str) {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!("main[data-page=\"{page}\"]")))
        .await
        .unwrap_or_else(|e| panic!("page {page} did not render: {e}"));
}

async fn fill(c: &Client, css: &str, value: &str) {
    let el = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap();
    el.clear().await.unwrap();
    el.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

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

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let dir = std::env::temp_dir().join("kioskcall-console-screens");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
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
