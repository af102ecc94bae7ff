//! The stage of the call tests and the call benchmark: the real cloud and kiosk services.

use std::time::{Duration, Instant};

use kiosk_bus::{Media1Proxy, Sync1Proxy};
use serde_json::Value;

use crate::kiosk::{wait_status, Bus, KioskSync};
use crate::media::KioskMedia;
use crate::{Cloud, Shop};

const LONG: Duration = Duration::from_secs(60);

/// The whole kiosk for calls: a cloud, a shop with an agent, kiosk-sync enrolled and
/// connected, and kiosk-media on its test pattern, all on a private bus.
#[allow(missing_debug_implementations)]
pub struct CallStage {
    pub cloud: Cloud,
    pub shop: Shop,
    pub bus: Bus,
    pub kiosk: KioskSync,
    pub media: KioskMedia,
    pub conn: zbus::Connection,
}

impl CallStage {
    /// Starts it all; `agent` is the agent's (email, name, password), `media_settings`
    /// kiosk-media's configuration (its camera must be the test pattern).
    pub async fn start(agent: (&str, &str, &str), media_settings: &str) -> CallStage {
        Self::start_with(agent, media_settings, async |_: &Cloud, _: &Shop| {}).await
    }

    /// As [`CallStage::start`], with `prepare` run on the shop before the kiosk enrolls (its
    /// first desired config then has the site's hours and the organization's settings).
    pub async fn start_with(
        agent: (&str, &str, &str),
        media_settings: &str,
        prepare: impl AsyncFnOnce(&Cloud, &Shop),
    ) -> CallStage {
        let cloud = Cloud::start().await;
        let shop = Shop::create(&cloud).await;
        shop.staff(&cloud, agent.0, agent.1, "agent", agent.2).await;
        prepare(&cloud, &shop).await;
        let bus = Bus::start().unwrap();
        let mut kiosk = KioskSync::new(&shop.kiosk_files(&cloud), &bus, "backend = \"none\"");
        kiosk.start();
        let conn = bus.connect().await.unwrap();
        let sync = Sync1Proxy::new(&conn).await.unwrap();
        wait_status(&kiosk, &sync, LONG, "asking", |s| s.state != "unenrolled").await;
        let out = kiosk.kioskctl(&["enroll", &shop.enrollment_token(&cloud).await]);
        assert!(out.status.success(), "{out:?}");
        wait_status(&kiosk, &sync, LONG, "connected", |s| s.connected).await;
        let mut media = KioskMedia::new(&bus, media_settings);
        media.start();
        let stage = CallStage {
            cloud,
            shop,
            bus,
            kiosk,
            media,
            conn,
        };
        let camera = stage
            .eventually("kiosk-media on the bus", || async {
                stage.media_proxy().await.camera().await.ok()
            })
            .await;
        assert!(
            camera.starts_with("test-pattern"),
            "the test pattern is said plainly: {camera}"
        );
        stage
    }

    pub async fn media_proxy(&self) -> Media1Proxy<'static> {
        Media1Proxy::builder(&self.conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap()
    }

    pub async fn sync(&self) -> Sync1Proxy<'static> {
        Sync1Proxy::new(&self.conn).await.unwrap()
    }

    /// Polls `f` until it gives a value.
    pub async fn eventually<T, F, Fut>(&self, what: &str, f: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + LONG;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "never: {what}\n--- kiosk-sync ---\n{}\n--- kiosk-media ---\n{}",
                self.kiosk.log_text(),
                self.media.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The kiosk's statistics of the running call.
    pub async fn kiosk_stats(&self) -> Option<Value> {
        let s = self.media_proxy().await.stats().await.ok()?;
        serde_json::from_str(&s).ok()
    }

    /// Places a test call with kioskctl; returns the call id.
    pub fn place(&self) -> String {
        let out = self.kiosk.kioskctl(&["call", "test"]);
        assert!(out.status.success(), "{out:?}\n{}", self.kiosk.log_text());
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split_whitespace()
            .find(|w| w.starts_with("call-"))
            .unwrap_or_else(|| panic!("no call id in {text:?}"))
            .to_string()
    }
}
