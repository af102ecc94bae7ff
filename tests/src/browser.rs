//! A real headless Chromium driven through chromedriver (WebDriver), set up for calls: a fake
//! camera and microphone granted without a prompt, host candidates with their addresses (not
//! mDNS names, which the kiosk's ICE agent cannot resolve), and autoplay allowed.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver child process and the Chromium profile it uses, removed on drop.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    pub url: String,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver on a free port.
    pub async fn start() -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: run scripts/test, which installs chromium and chromium-driver"
            );
        }
        let port = crate::free_ports::<1>()[0];
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile: tempfile::tempdir().unwrap(),
        }
    }

    /// A Chromium window with a fake camera (Chromium's own moving test picture) and microphone.
    /// `extra` adds command-line switches (e.g. a Y4M file as the camera).
    pub async fn browser(&self, width: u32, height: u32, extra: &[String]) -> Client {
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            // Host candidates as addresses, not .local names.
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            // A hidden headless page must not throttle its timers and frames.
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--window-size={width},{height}"));
        args.push(format!("--user-data-dir={}", self.profile.path().display()));
        args.extend(extra.iter().cloned());
        let caps = json!({
            "browserName": "chrome",
            // tenantd's certificate comes from its own CA, which this throwaway profile does
            // not know; the page is still served over TLS.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session through chromedriver")
    }
}

/// Waits for an element and clicks it.
pub async fn click(c: &Client, css: &str, wait: Duration) {
    c.wait()
        .at_most(wait)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{css} could not be clicked: {e}"));
}

/// Waits for an element and types into it.
pub async fn fill(c: &Client, css: &str, value: &str, wait: Duration) {
    let el = c
        .wait()
        .at_most(wait)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"));
    el.clear().await.unwrap();
    el.send_keys(value).await.unwrap();
}

/// Runs an async script (its last argument is the callback) and returns its answer.
pub async fn run_async(c: &Client, script: &str) -> Value {
    c.execute_async(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Signs an agent in to the console at `base` and waits until the Calls page is connected and
/// the agent available.
pub async fn agent_available(c: &Client, base: &str, email: &str, password: &str) {
    let wait = Duration::from_secs(60);
    c.goto(&format!("{base}/console/")).await.unwrap();
    fill(c, "#login-email", email, wait).await;
    fill(c, "#login-password", password, wait).await;
    click(c, "#login-submit", wait).await;
    c.wait()
        .at_most(wait)
        .for_element(Locator::Css(
            "[data-testid=calls-connection][data-state=connected]",
        ))
        .await
        .expect("the Calls page connects its WebSocket");
    let switch = c
        .wait()
        .at_most(wait)
        .for_element(Locator::Css("[data-testid=calls-availability]"))
        .await
        .unwrap();
    if switch.attr("aria-checked").await.unwrap().as_deref() != Some("true") {
        switch.click().await.unwrap();
    }
    c.wait()
        .at_most(wait)
        .for_element(Locator::Css(
            "[data-testid=calls-availability][aria-checked=true]",
        ))
        .await
        .expect("available");
}
