//! `outbox-kiosk`: a kiosk process made of kiosk-sync's outbox and link, for the SIGKILL test.
//! It connects with a device certificate, then accepts numbered events into the outbox as fast
//! as it can, printing `accepted <seq>` once each push has returned (the event is on disk),
//! until it is killed.
//!
//! Settings come from the environment: `KIOSK_DIR` (with `device.pem`, `device.key`,
//! `server-ca.pem`), `KIOSK_DEVICE_ID`, `KIOSK_PORT`, and `KIOSK_START` (the first number).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kiosk_protocol::event::{Event, EventBody};
use kiosk_protocol::topic::Up;
use kiosk_protocol::{DeviceId, Version};
use kiosk_sync::link::{Link, LinkSettings};
use kiosk_sync::outbox::{OutboxPolicy, Retention, SqliteOutbox};
use tokio::sync::{mpsc, watch};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let dir = PathBuf::from(env("KIOSK_DIR"));
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let settings = LinkSettings::new(
        DeviceId::parse(&env("KIOSK_DEVICE_ID")).unwrap(),
        "localhost",
        env("KIOSK_PORT").parse().unwrap(),
        &read("server-ca.pem"),
        &read("device.pem"),
        &read("device.key"),
    );
    let mut n: u64 = env("KIOSK_START").parse().unwrap();
    let outbox = Arc::new(Mutex::new(
        SqliteOutbox::open(&dir.join("outbox.sqlite3"), OutboxPolicy::default()).unwrap(),
    ));
    let (tx, _rx) = mpsc::channel(16);
    let (_stop_tx, stop) = watch::channel(false);
    let link = Link::start(settings, outbox.clone(), tx, stop).unwrap();
    let mut out = std::io::stdout().lock();
    loop {
        let seq = outbox
            .lock()
            .unwrap()
            .push(Up::Events, Retention::Keep, n as i64, |header| {
                serde_json::to_vec(&Event {
                    v: Version::CURRENT,
                    header,
                    body: EventBody::Diagnostic {
                        code: "numbered".into(),
                        detail: n.to_string(),
                    },
                })
            })
            .unwrap()
            .seq;
        writeln!(out, "accepted {seq}").unwrap();
        out.flush().unwrap();
        link.wake.notify_one();
        n += 1;
        tokio::task::yield_now().await;
    }
}
