//! Headless Chromium through chromedriver, driving a kiosk-ui page with touch actions: the
//! checks every screen gets (WCAG contrast, text size, 20 mm targets, a screenshot) and the
//! privacy check after a reset. Used by kiosk-ui's own browser tests and by the end-to-end
//! journey test in `tests/` (which includes this file), so it names nothing of either.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, PointerAction, TouchActions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long a page may take to show what a step expects.
pub const LONG: Duration = Duration::from_secs(20);

/// A free TCP port on the loopback interface, below the ephemeral range (chromedriver and
/// kiosk-ui bind it after it is chosen).
pub use kioskcall_testkit::free_port;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver child process and the Chromium profile it uses, removed on drop.
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

impl Driver {
    pub async fn start() -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
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

    /// A kiosk-like Chromium window of `width` x `height` CSS pixels with touch events on.
    pub async fn browser(&self, width: u32, height: u32) -> Client {
        let args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
            "--touch-events=enabled",
            "--force-device-scale-factor=1",
            "--hide-scrollbars",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", self.profile.path().display()),
        ])
        .collect();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session through chromedriver");
        c
    }
}

/// The page in a browser, with the checks every screen gets.
pub struct Page<'a> {
    pub c: Client,
    /// The page's address, e.g. `http://127.0.0.1:8090`.
    pub base: String,
    /// What to show when a step fails (the services' logs).
    pub logs: Box<dyn Fn() -> String + 'a>,
    pub name: String,
    pub shots: PathBuf,
    pub checked: Vec<String>,
}

/// Where screenshots go: `KIOSKCALL_SCREENSHOTS`, else the test target's temporary folder.
pub fn screenshots_dir() -> PathBuf {
    let dir = std::env::var_os("KIOSKCALL_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiosk-ui-screens"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const CONTRAST_JS: &str = r#"
const parse = (s) => { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return [0,0,0,0];
  const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
const lin = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
const lum = (c) => 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
const over = (top, under) => { const a = top[3]; return [top[0]*a + under[0]*(1-a), top[1]*a + under[1]*(1-a), top[2]*a + under[2]*(1-a), 1]; };
const background = (el) => { const layers = []; for (let e = el; e; e = e.parentElement) {
    const b = parse(getComputedStyle(e).backgroundColor); if (b[3] > 0) layers.push(b); if (b[3] >= 1) break; }
  let c = [255,255,255,1]; for (let i = layers.length - 1; i >= 0; i--) c = over(layers[i], c); return c; };
const out = [];
let n = 0;
for (const el of document.querySelectorAll('body *')) {
  if (!el.checkVisibility || !el.checkVisibility({opacityProperty: true, visibilityProperty: true})) continue;
  const own = Array.from(el.childNodes).filter((x) => x.nodeType === 3 && x.textContent.trim()).map((x) => x.textContent.trim()).join(' ');
  if (!own) continue;
  const r = el.getBoundingClientRect(); if (r.width === 0 || r.height === 0) continue;
  const st = getComputedStyle(el);
  const fg = over(parse(st.color), background(el));
  const bg = background(el);
  const l1 = lum(fg), l2 = lum(bg);
  const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  const size = parseFloat(st.fontSize); const bold = Number(st.fontWeight) >= 700;
  const large = size >= 24 || (bold && size >= 18.66);
  const need = large ? 3 : 4.5;
  n++;
  if (size < 18) out.push(`tiny text ${size}px: ${own.slice(0, 40)}`);
  if (ratio < need) out.push(`contrast ${ratio.toFixed(2)} < ${need}: ${own.slice(0, 40)} (${st.color} on ${bg})`);
}
return {checked: n, failures: out};
"#;

const TARGETS_JS: &str = r#"
const min = arguments[0];
const out = []; let n = 0;
for (const b of document.querySelectorAll('button')) {
  if (!b.checkVisibility || !b.checkVisibility({visibilityProperty: true})) continue;
  const r = b.getBoundingClientRect(); n++;
  if (r.width + 0.5 < min || r.height + 0.5 < min) out.push(`${b.dataset.testid || b.id || b.textContent.trim().slice(0,20)}: ${r.width.toFixed(1)}x${r.height.toFixed(1)} < ${min.toFixed(1)}`);
}
return {checked: n, failures: out};
"#;

impl<'a> Page<'a> {
    pub async fn open(
        driver: &Driver,
        base: &str,
        logs: impl Fn() -> String + 'a,
        name: &str,
        w: u32,
        h: u32,
    ) -> Page<'a> {
        let c = driver.browser(w, h).await;
        // The kiosk browser opens the page as its first and only history entry
        // (chromedriver's first page stays behind in the history of a `goto`; replacing it
        // leaves the page as the only entry.)
        c.execute(
            "location.replace(arguments[0])",
            vec![json!(format!("{base}/"))],
        )
        .await
        .unwrap();
        c.wait()
            .at_most(LONG)
            .for_element(Locator::Css("main#app"))
            .await
            .unwrap();
        let page = Page {
            c,
            base: base.to_string(),
            logs: Box::new(logs),
            name: name.to_string(),
            shots: screenshots_dir(),
            checked: Vec::new(),
        };
        // The window's own frame takes some room: grow the window until the page gets the
        // panel's size.
        let frame = page
            .js("return [outerWidth - innerWidth, outerHeight - innerHeight]")
            .await;
        let (dx, dy) = (frame[0].as_u64().unwrap(), frame[1].as_u64().unwrap());
        if dx > 0 || dy > 0 {
            page.c
                .set_window_size(w + dx as u32, h + dy as u32)
                .await
                .unwrap();
        }
        let size = page.js("return [innerWidth, innerHeight]").await;
        assert_eq!(size, json!([w, h]), "the viewport");
        page
    }

    pub async fn js(&self, script: &str) -> Value {
        self.c
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until the page shows `screen` (and has drawn it).
    pub async fn wait_screen(&self, screen: &str) {
        let css = format!("main[data-screen='{screen}'] #screen-{screen}:not([hidden])");
        if let Err(e) = self
            .c
            .wait()
            .at_most(LONG)
            .for_element(Locator::Css(&css))
            .await
        {
            let shown = self
                .js("return document.querySelector('main').dataset.screen")
                .await;
            panic!(
                "{}: the page shows {shown}, not {screen}: {e}\n{}",
                self.name,
                (self.logs)()
            );
        }
    }

    pub async fn find(&self, testid: &str) -> fantoccini::elements::Element {
        let css = format!("[data-testid='{testid}']");
        self.c
            .wait()
            .at_most(LONG)
            .for_element(Locator::Css(&css))
            .await
            .unwrap_or_else(|e| panic!("{}: {testid} did not appear: {e}", self.name))
    }

    /// A finger taps the element (W3C actions, pointer type touch).
    pub async fn tap(&self, testid: &str) {
        let el = self.find(testid).await;
        self.wait_enabled(testid).await;
        let finger = TouchActions::new("finger".into())
            .then(PointerAction::MoveToElement {
                element: el,
                duration: None,
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::Down { button: 0 })
            .then(PointerAction::Pause {
                duration: Duration::from_millis(40),
            })
            .then(PointerAction::Up { button: 0 });
        self.c
            .perform_actions(finger)
            .await
            .unwrap_or_else(|e| panic!("{}: tap on {testid}: {e}", self.name));
        self.c.release_actions().await.unwrap();
    }

    pub async fn wait_enabled(&self, testid: &str) {
        let css = format!("[data-testid='{testid}']:not(:disabled)");
        self.c
            .wait()
            .at_most(LONG)
            .for_element(Locator::Css(&css))
            .await
            .unwrap_or_else(|e| panic!("{}: {testid} stays disabled: {e}", self.name));
    }

    pub async fn text(&self, testid: &str) -> String {
        self.find(testid).await.text().await.unwrap()
    }

    /// Waits until the element's text contains `want`.
    pub async fn wait_text(&self, testid: &str, want: &str) {
        let start = Instant::now();
        loop {
            let t = self.text(testid).await;
            if t.contains(want) {
                return;
            }
            assert!(
                start.elapsed() < LONG,
                "{}: {testid} says {t:?}, not {want:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn body_text(&self) -> String {
        self.js("return document.body.innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Contrast, text size and target size of everything visible, and a screenshot.
    pub async fn check(&mut self, label: &str) {
        // Let transitions and the focus ring settle.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let contrast = self.js(CONTRAST_JS).await;
        let failures = contrast["failures"].as_array().unwrap();
        assert!(
            failures.is_empty(),
            "{} {label}: {}",
            self.name,
            serde_json::to_string_pretty(failures).unwrap()
        );
        assert!(
            contrast["checked"].as_u64().unwrap() > 0,
            "{label}: no text"
        );
        let view = self
            .c
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch('/api/view').then((r) => r.json()).then(done, (e) => done(String(e)));",
                vec![],
            )
            .await
            .unwrap();
        let px_per_mm = view["display"]["px_per_mm"].as_f64().unwrap();
        let min = 20.0 * px_per_mm;
        let targets = self.c.execute(TARGETS_JS, vec![json!(min)]).await.unwrap();
        let failures = targets["failures"].as_array().unwrap();
        assert!(
            failures.is_empty(),
            "{} {label}: buttons under 20 mm ({px_per_mm} px/mm): {}",
            self.name,
            serde_json::to_string_pretty(failures).unwrap()
        );
        let png = self.c.screenshot().await.unwrap();
        let file = self.shots.join(format!("{}-{label}.png", self.name));
        std::fs::write(&file, png).unwrap();
        self.checked.push(label.to_string());
    }

    /// Nothing of the last customer: no digits of the number or the code in the page, empty
    /// storage, no cookie, no IndexedDB database, one history entry.
    pub async fn assert_clean(&self, secrets: &[&str]) {
        let text = self.body_text().await;
        for s in secrets {
            assert!(
                !text.contains(s),
                "{}: {s:?} still on the page: {text}",
                self.name
            );
        }
        let html = self.js("return document.documentElement.outerHTML").await;
        for s in secrets {
            assert!(
                !html.as_str().unwrap().contains(s),
                "{}: {s:?} in the DOM",
                self.name
            );
        }
        let state = self
            .c
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                (async () => {
                  const dbs = indexedDB.databases ? await indexedDB.databases() : [];
                  done({local: localStorage.length, session: sessionStorage.length,
                        cookies: document.cookie, dbs: dbs.length, history: history.length});
                })();"#,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            state,
            json!({"local": 0, "session": 0, "cookies": "", "dbs": 0, "history": 1}),
            "{}",
            self.name
        );
    }

    pub async fn close(self) {
        let _ = self.c.close().await;
    }
}
