//! The A/B update cycle end to end with the directory slots: bundles served over real HTTP on
//! 127.0.0.1, reboots simulated with `DirSlots::boot`, verdicts given by `confirm_after_boot`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiosk_sync::ota::{
    confirm_after_boot, install, pending_verification, DirSlots, Installed, Ota, OtaError,
    SlotState, UpdateRequest, UpdateSettings, Verification,
};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// How the test server answers one path.
#[derive(Clone)]
enum Reply {
    /// 200 with a Content-Length.
    Body(Vec<u8>),
    /// 200 without a length: the body ends when the connection closes.
    UntilClose(Vec<u8>),
    /// This status, empty body.
    Status(u16),
    /// 200 announcing `len` bytes, sends `first` of them, then nothing more.
    Stall { len: usize, first: Vec<u8> },
}

/// A minimal HTTP/1.1 server on 127.0.0.1: one request per connection, then close.
struct Server {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl Server {
    async fn start(routes: Vec<(&'static str, Reply)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<BTreeMap<&'static str, Reply>> = Arc::new(routes.into_iter().collect());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let routes = routes.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let reply = routes.get(path.as_str()).cloned();
                    let _ = respond(&mut socket, reply.unwrap_or(Reply::Status(404))).await;
                });
            }
        });
        Server { addr, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn respond(socket: &mut tokio::net::TcpStream, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::Body(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await?;
            // In pieces, so the client sees several chunks.
            for piece in body.chunks(16 * 1024) {
                socket.write_all(piece).await?;
            }
        }
        Reply::UntilClose(body) => {
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                .await?;
            socket.write_all(&body).await?;
        }
        Reply::Status(status) => {
            let head =
                format!("HTTP/1.1 {status} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            socket.write_all(head.as_bytes()).await?;
        }
        Reply::Stall { len, first } => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(&first).await?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    socket.shutdown().await
}

/// A deterministic image of `len` bytes that differs per `seed`.
fn image(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[i % 4] ^ seed)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Fresh slots under a temporary root, booted once, and a server with one image at
/// `/kiosk.img`; the reboot hook counts its calls.
struct Fixture {
    root: tempfile::TempDir,
    server: Server,
    body: Vec<u8>,
    slots: Arc<Mutex<DirSlots>>,
    reboots: Arc<AtomicUsize>,
    http: reqwest::Client,
}

impl Fixture {
    async fn new(body: Vec<u8>, more_routes: Vec<(&'static str, Reply)>) -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let mut routes = vec![("/kiosk.img", Reply::Body(body.clone()))];
        routes.extend(more_routes);
        let server = Server::start(routes).await;
        assert_eq!(DirSlots::boot(root.path()).unwrap(), 'a');
        let reboots = Arc::new(AtomicUsize::new(0));
        let counter = reboots.clone();
        let reboot = Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let slots = DirSlots::open(root.path(), reboot).unwrap();
        Fixture {
            root,
            server,
            body,
            slots: Arc::new(Mutex::new(slots)),
            reboots,
            http: reqwest::Client::new(),
        }
    }

    /// A request for the body at `path`, as the test server's settings allow.
    fn request(&self, path: &str, version: &str) -> UpdateRequest {
        UpdateRequest {
            url: self.server.url(path),
            sha256: sha256_hex(&self.body),
            version: version.into(),
            size: self.body.len() as u64,
            settings: UpdateSettings {
                allow_insecure_loopback: true,
                ..UpdateSettings::default()
            },
        }
    }

    async fn install(&self, request: &UpdateRequest) -> Result<Installed, OtaError> {
        install(self.slots.clone(), request, &self.http, |_, _| {}).await
    }

    /// Tries to install what `path` serves, giving up after 300 ms without data; the error.
    async fn attempt(&self, path: &str) -> OtaError {
        let mut request = self.request(path, "5.0");
        request.settings.idle_timeout = Duration::from_millis(300);
        self.install(&request).await.unwrap_err()
    }

    /// Installs `/kiosk.img` as `version` and reboots into it.
    async fn install_and_reboot(&self, version: &str) -> char {
        self.install(&self.request("/kiosk.img", version))
            .await
            .unwrap();
        self.boot()
    }

    /// The verdict on the running slot, with a health check that always answers `healthy`.
    async fn verdict(&self, healthy: bool) -> Verification {
        let check_every = Duration::from_secs(5);
        let deadline = Duration::from_secs(600);
        confirm_after_boot(
            self.slots.clone(),
            || async move { healthy },
            check_every,
            deadline,
        )
        .await
        .unwrap()
    }

    /// A simulated reboot: the boot stage chooses the slot.
    fn boot(&self) -> char {
        DirSlots::boot(self.root.path()).unwrap()
    }

    fn reboots(&self) -> usize {
        self.reboots.load(Ordering::SeqCst)
    }

    fn pending(&self) -> bool {
        pending_verification(&*self.slots.lock().unwrap()).unwrap()
    }

    /// Running slot and state, update slot and state.
    fn state(&self) -> (String, SlotState, String, SlotState) {
        let slots = self.slots.lock().unwrap();
        let running = slots.get_running_slot().unwrap();
        let update = slots.get_update_slot().unwrap();
        (
            running.label.to_string(),
            running.state,
            update.label.to_string(),
            update.state,
        )
    }

    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        snapshot(self.root.path())
    }
}

/// Running the factory slot `a` again, with `b` invalid.
fn back_on_factory_slot() -> (String, SlotState, String, SlotState) {
    (
        "a".into(),
        SlotState::Factory,
        "b".into(),
        SlotState::Invalid,
    )
}

/// Every file under `root` with its content.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[tokio::test]
async fn an_update_is_tried_after_a_reboot_and_becomes_primary_when_healthy() {
    let f = Fixture::new(image(2, 300 * 1024 + 17), vec![]).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let progress = {
        let seen = seen.clone();
        move |received, total| seen.lock().unwrap().push((received, total))
    };
    let installed = install(
        f.slots.clone(),
        &f.request("/kiosk.img", "2.0"),
        &f.http,
        progress,
    )
    .await
    .unwrap();
    let size = f.body.len() as u64;
    assert_eq!(
        installed,
        Installed {
            slot: "b".into(),
            version: "2.0".into(),
            bytes: size,
            reboot_required: true
        }
    );
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 2, "progress reported {} times", seen.len());
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(seen.last(), Some(&(size, size)));

    assert_eq!(
        std::fs::read(f.root.path().join("slots/b/image")).unwrap(),
        f.body
    );
    let next = f.slots.lock().unwrap().get_boot_slot().unwrap();
    assert_eq!(next.label.as_str(), "b");
    assert_eq!(next.firmware.unwrap().version.as_str(), "2.0");
    assert!(!f.pending());

    // Reboot: the new slot is tried.
    assert_eq!(f.boot(), 'b');
    assert!(f.pending());
    let verdict = f.verdict(true).await;
    assert_eq!(
        verdict,
        Verification::Confirmed {
            slot: "b".into(),
            version: "2.0".into()
        }
    );
    assert_eq!(f.reboots(), 0);
    assert!(!f.pending());

    // It stays: the next boots start it as primary, and no verdict is asked for again.
    assert_eq!(f.boot(), 'b');
    assert_eq!(f.boot(), 'b');
    assert_eq!(f.state().1, SlotState::Valid);
    let again = f.verdict(false).await;
    assert_eq!(again, Verification::NotPending { slot: "b".into() });
}

#[tokio::test]
async fn an_unhealthy_update_is_rolled_back_and_the_kiosk_rebooted() {
    let f = Fixture::new(image(3, 64 * 1024), vec![]).await;
    assert_eq!(f.install_and_reboot("3.0").await, 'b');

    // Never healthy: checked every 10 s until the 5-minute deadline (in paused time).
    tokio::time::pause();
    let checks = Arc::new(AtomicUsize::new(0));
    let verdict = confirm_after_boot(
        f.slots.clone(),
        || {
            checks.fetch_add(1, Ordering::SeqCst);
            async { false }
        },
        Duration::from_secs(10),
        Duration::from_secs(300),
    )
    .await
    .unwrap();
    let Verification::RolledBack {
        slot,
        version,
        reboot,
    } = verdict
    else {
        panic!("not rolled back: {verdict:?}");
    };
    assert_eq!((slot.as_str(), version.as_str()), ("b", "3.0"));
    assert!(reboot.contains("rebooting into slot a"), "{reboot}");
    assert_eq!(f.reboots(), 1);
    let checked = checks.load(Ordering::SeqCst);
    assert!((30..=31).contains(&checked), "checked {checked} times");

    assert_eq!(f.boot(), 'a');
    assert_eq!(f.state(), back_on_factory_slot());
}

#[tokio::test]
async fn an_update_not_confirmed_falls_back_on_the_next_boot() {
    let f = Fixture::new(image(4, 10_000), vec![]).await;
    assert_eq!(f.install_and_reboot("4.0").await, 'b');
    // The kiosk hangs or loses power before any verdict, and boots again.
    assert_eq!(f.boot(), 'a');
    assert!(!f.pending());
    assert_eq!(f.state(), back_on_factory_slot());
    assert_eq!(f.boot(), 'a');
    assert_eq!(f.reboots(), 0);

    // The failed slot takes the next update.
    assert_eq!(f.install_and_reboot("4.1").await, 'b');
    assert_eq!(f.state().1, SlotState::Unverified);
}

#[tokio::test]
async fn a_corrupt_short_long_stalled_or_missing_download_leaves_the_slots_untouched() {
    let body = image(5, 200 * 1024);
    let mut corrupt = body.clone();
    corrupt[100_000] ^= 0xff;
    let routes = vec![
        ("/corrupt.img", Reply::Body(corrupt)),
        (
            "/short.img",
            Reply::UntilClose(body[..body.len() - 10].to_vec()),
        ),
        (
            "/long.img",
            Reply::UntilClose([&body[..], b"trailing"].concat()),
        ),
        ("/wrong-length.img", Reply::Body(body[..1000].to_vec())),
        ("/gone.img", Reply::Status(404)),
        (
            "/stalled.img",
            Reply::Stall {
                len: body.len(),
                first: body[..4096].to_vec(),
            },
        ),
    ];
    let f = Fixture::new(body, routes).await;
    let before = f.snapshot();
    let e = f.attempt("/corrupt.img").await;
    assert!(matches!(e, OtaError::HashMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&sha256_hex(&f.body)), "{e}");
    assert_eq!(f.snapshot(), before);

    let e = f.attempt("/short.img").await;
    let short = f.body.len() as u64 - 10;
    assert!(
        matches!(e, OtaError::SizeMismatch { received, .. } if received == short),
        "{e}"
    );
    assert_eq!(f.snapshot(), before);

    let e = f.attempt("/long.img").await;
    assert!(matches!(e, OtaError::SizeMismatch { .. }), "{e}");
    assert_eq!(f.snapshot(), before);

    let e = f.attempt("/wrong-length.img").await;
    assert!(
        matches!(
            e,
            OtaError::LengthMismatch {
                announced: 1000,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(f.snapshot(), before);

    let e = f.attempt("/gone.img").await;
    assert!(matches!(e, OtaError::HttpStatus { status: 404, .. }), "{e}");
    assert_eq!(f.snapshot(), before);

    let e = f.attempt("/stalled.img").await;
    assert!(matches!(e, OtaError::Stalled { .. }), "{e}");
    assert_eq!(f.snapshot(), before);

    // Nothing was tried: the next boot is the same slot.
    assert_eq!(f.boot(), 'a');
    assert_eq!(f.state().3, SlotState::Unknown);
}

#[tokio::test]
async fn unsafe_or_impossible_requests_are_refused_before_any_download() {
    let f = Fixture::new(image(6, 1000), vec![]).await;
    let before = f.snapshot();

    // Plain http, unless the test-only loopback setting is on.
    let mut plain = f.request("/kiosk.img", "6.0");
    plain.settings.allow_insecure_loopback = false;
    let e = f.install(&plain).await.unwrap_err();
    assert!(matches!(e, OtaError::UrlRefused { .. }), "{e}");

    // Over the configured limit.
    let mut large = f.request("/kiosk.img", "6.0");
    large.settings.max_size = 999;
    let e = f.install(&large).await.unwrap_err();
    let over = matches!(
        e,
        OtaError::TooLarge {
            size: 1000,
            limit: 999
        }
    );
    assert!(over, "{e}");

    // More than the disk holds.
    let mut huge = f.request("/kiosk.img", "6.0");
    huge.size = 1 << 60;
    huge.settings.max_size = u64::MAX;
    let e = f.install(&huge).await.unwrap_err();
    assert!(
        matches!(e, OtaError::NoSpace { ref slot, .. } if slot == "b"),
        "{e}"
    );

    // Not a digest.
    let mut bad_digest = f.request("/kiosk.img", "6.0");
    bad_digest.sha256 = "abc".into();
    let e = f.install(&bad_digest).await.unwrap_err();
    assert!(matches!(e, OtaError::InvalidRequest(_)), "{e}");

    assert_eq!(f.server.requests(), 0);
    assert_eq!(f.snapshot(), before);
}
