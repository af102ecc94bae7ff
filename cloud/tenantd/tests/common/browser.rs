//! chromedriver and a headless Chromium for the console's browser tests: a throwaway profile,
//! the local CA's certificate accepted, a fake camera and microphone granted without a prompt,
//! and a phone's viewport emulated below 500 px.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use kioskcall_testkit::free_port;
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver child process, killed on drop.
pub struct Driver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn start_driver() -> Driver {
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
        profile: tempfile::tempdir().unwrap(),
    }
}

/// Chromium with a fake camera and microphone, permission granted without a prompt.
pub async fn browser(driver: &Driver, width: u32, height: u32) -> Client {
    let profile = driver.profile.path().display().to_string();
    let mut caps = json!({
        "browserName": "chrome",
        // tenantd's certificate comes from its own local CA, unknown to this throwaway profile.
        "acceptInsecureCerts": true,
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={profile}"),
            ]
        }
    });
    if width < 500 {
        // Headless windows are at least 500 px wide: emulate the phone's viewport instead.
        caps["goog:chromeOptions"]["mobileEmulation"] = json!({
            "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2.0, "touch": true }
        });
    }
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session through chromedriver")
}

/// How long a step waits for what it needs on the page.
pub const WAIT: Duration = Duration::from_secs(20);

/// Waits for an element, and panics naming the selector if it never comes.
pub async fn wait_css(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
}

/// Waits until the console shows `page` (`main[data-page]`).
pub async fn wait_page(c: &Client, page: &str) {
    wait_css(c, &format!("main[data-page=\"{page}\"]")).await;
}

/// Types `value` into the field, replacing what it held.
pub async fn fill(c: &Client, css: &str, value: &str) {
    let el = wait_css(c, css).await;
    el.clear().await.unwrap();
    el.send_keys(value).await.unwrap();
}

pub async fn click(c: &Client, css: &str) {
    wait_css(c, css).await.click().await.unwrap();
}

/// Picks the option of `select` with this value.
pub async fn choose(c: &Client, select: &str, value: &str) {
    click(c, &format!("{select} option[value=\"{value}\"]")).await;
}

/// Runs a script in the page and returns what it returns.
pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Runs an async script (its last argument is the callback) and returns what it passed on.
pub async fn js_async(c: &Client, script: &str) -> Value {
    c.execute_async(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Polls `script` (a JS expression) until `ok` holds for its value.
pub async fn until(c: &Client, what: &str, script: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let v = js(c, &format!("return {script};")).await;
        if ok(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: still {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the text of `css` contains `part`, and returns it.
pub async fn text_with(c: &Client, css: &str, part: &str) -> String {
    let script = format!(
        "(document.querySelector({}) || {{}}).textContent || ''",
        json!(css)
    );
    until(c, css, &script, |v| {
        v.as_str().is_some_and(|s| s.contains(part))
    })
    .await
    .as_str()
    .unwrap()
    .to_string()
}

/// Keeps a screenshot of the page as `{temp}/kioskcall-console-screens/{name}.png`.
pub async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let dir = std::env::temp_dir().join("kioskcall-console-screens");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}
