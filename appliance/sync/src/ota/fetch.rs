//! The update procedure: check the request, stream the bundle into the update slot, complete
//! only when its size and SHA-256 match.
//!
//! Two halves meet through a bounded channel of chunks. The download runs on the tokio
//! runtime; one blocking task holds the backend's lock for the whole update, writes every
//! chunk and hashes it, and decides at the end between `complete` and `abort`. Whatever stops
//! the download (HTTP error, timeout, too many bytes, the future being dropped) drops the
//! channel, and the writer aborts: the partial file is gone and the slots untouched before
//! [`install`] returns.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use embedded_svc::io::Write as _;
use reqwest::Url;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{
    bounded, lock, FirmwareInfo, Installed, OtaError, OtaSlots, OtaUpdate, SlotState, UpdateRequest,
};

/// Chunks in flight between the download and the slot writer (reqwest hands out chunks of a
/// few KiB to a few tens of KiB).
const QUEUE_CHUNKS: usize = 16;

/// What the download hands to the slot writer.
#[derive(Debug)]
enum Feed {
    Data(Bytes),
    /// All bytes were sent: check them and complete.
    Finish,
}

/// What the bytes must be.
#[derive(Debug, Clone)]
struct Expected {
    /// The URL as shown in logs and errors.
    url: String,
    size: u64,
    sha256: [u8; 32],
}

/// Installs `request` into the update slot of `ota`: checks it, downloads it with `http`,
/// calls `progress(received, size)` as bytes arrive, and completes the update when the size
/// and SHA-256 match. On any failure the update is aborted before this returns.
pub async fn install<O, P>(
    ota: Arc<Mutex<O>>,
    request: &UpdateRequest,
    http: &reqwest::Client,
    progress: P,
) -> Result<Installed, OtaError>
where
    O: OtaSlots + Send + 'static,
    O::Error: Send + Sync + 'static,
    P: Fn(u64, u64) + Send,
{
    let settings = &request.settings;
    let url = check_url(&request.url, settings.allow_insecure_loopback)?;
    let expected = Expected {
        url: shown(&url),
        size: request.size,
        sha256: parse_sha256(&request.sha256)?,
    };
    if request.size == 0 {
        return Err(OtaError::InvalidRequest("the update's size is 0".into()));
    }
    if request.size > settings.max_size {
        return Err(OtaError::TooLarge {
            size: request.size,
            limit: settings.max_size,
        });
    }
    let firmware = firmware_info(&request.version, expected.sha256)?;

    let (ready_tx, ready_rx) = oneshot::channel();
    let (feed_tx, feed_rx) = mpsc::channel(QUEUE_CHUNKS);
    let writer = {
        let expected = expected.clone();
        tokio::task::spawn_blocking(move || {
            write_slot(&ota, &firmware, &expected, ready_tx, feed_rx)
        })
    };
    let slot = match ready_rx.await {
        Ok(slot) => slot,
        // The writer stopped before it could write: its error says why.
        Err(_) => {
            return Err(match join(writer).await {
                Err(e) => e,
                Ok(_) => OtaError::Worker("the slot writer stopped before it was ready".into()),
            })
        }
    };
    tracing::info!(
        slot,
        version = request.version,
        url = expected.url,
        size = request.size,
        "downloading update"
    );

    match download(http, url, request, &expected, &feed_tx, progress).await {
        Ok(()) => {
            // The writer may have stopped already (a failed write); `join` then says why.
            let _ = feed_tx.send(Feed::Finish).await;
            drop(feed_tx);
            let slot = join(writer).await?;
            tracing::info!(
                slot,
                version = request.version,
                bytes = request.size,
                "update installed; it runs after the next reboot"
            );
            Ok(Installed {
                slot,
                version: request.version.clone(),
                bytes: request.size,
                reboot_required: true,
            })
        }
        Err(stop) => {
            drop(feed_tx);
            let written = join(writer).await;
            tracing::warn!(slot, version = request.version, "update aborted");
            match (stop, written) {
                // The download stopped because the writer did: the writer's error is the cause.
                (Stop::WriterGone, Err(e)) => Err(e),
                (Stop::WriterGone, Ok(_)) => Err(OtaError::Cancelled),
                (Stop::Failed(e), _) => Err(e),
            }
        }
    }
}

/// Why the download stopped early.
#[derive(Debug)]
enum Stop {
    Failed(OtaError),
    /// The writer hung up (it failed to write).
    WriterGone,
}

impl From<OtaError> for Stop {
    fn from(e: OtaError) -> Self {
        Stop::Failed(e)
    }
}

async fn download(
    http: &reqwest::Client,
    url: Url,
    request: &UpdateRequest,
    expected: &Expected,
    feed: &mpsc::Sender<Feed>,
    progress: impl Fn(u64, u64) + Send,
) -> Result<(), Stop> {
    let settings = &request.settings;
    let limits = Limits {
        url: &expected.url,
        idle: settings.idle_timeout,
        total: settings.total_timeout,
        until: Instant::now() + settings.total_timeout,
    };
    let http_error = |source| OtaError::Http {
        url: expected.url.clone(),
        source,
    };

    let mut response = limits
        .wait(http.get(url).send())
        .await?
        .map_err(http_error)?;
    // A redirect must not lead somewhere a request could not have named.
    if let Err(e) = check_url(response.url().as_str(), settings.allow_insecure_loopback) {
        return Err(Stop::Failed(match e {
            OtaError::UrlRefused { url, reason } => OtaError::UrlRefused {
                url,
                reason: format!("redirected from {}: {reason}", expected.url),
            },
            other => other,
        }));
    }
    if !response.status().is_success() {
        return Err(Stop::Failed(OtaError::HttpStatus {
            url: expected.url.clone(),
            status: response.status().as_u16(),
        }));
    }
    let mismatch = |received| OtaError::SizeMismatch {
        url: expected.url.clone(),
        expected: expected.size,
        received,
    };
    if let Some(announced) = response.content_length() {
        if announced != expected.size {
            return Err(Stop::Failed(OtaError::LengthMismatch {
                url: expected.url.clone(),
                expected: expected.size,
                announced,
            }));
        }
    }
    let mut received = 0u64;
    progress(0, expected.size);
    while let Some(chunk) = limits.wait(response.chunk()).await?.map_err(http_error)? {
        received += chunk.len() as u64;
        if received > expected.size {
            return Err(Stop::Failed(mismatch(received)));
        }
        if feed.send(Feed::Data(chunk)).await.is_err() {
            return Err(Stop::WriterGone);
        }
        progress(received, expected.size);
    }
    if received != expected.size {
        return Err(Stop::Failed(mismatch(received)));
    }
    Ok(())
}

/// The download's time limits.
#[derive(Debug)]
struct Limits<'a> {
    url: &'a str,
    idle: std::time::Duration,
    total: std::time::Duration,
    until: Instant,
}

impl Limits<'_> {
    /// Awaits `what` for at most the idle timeout and what is left of the total.
    async fn wait<F: std::future::Future>(&self, what: F) -> Result<F::Output, OtaError> {
        let idle_until = Instant::now() + self.idle;
        tokio::time::timeout_at(idle_until.min(self.until), what)
            .await
            .map_err(|_| {
                if idle_until < self.until {
                    OtaError::Stalled {
                        url: self.url.to_string(),
                        idle: self.idle,
                    }
                } else {
                    OtaError::TooSlow {
                        url: self.url.to_string(),
                        total: self.total,
                    }
                }
            })
    }
}

/// The blocking half: holds the backend for the whole update, writes and hashes what the
/// download sends, and completes only when everything matches.
fn write_slot<O>(
    ota: &Mutex<O>,
    firmware: &FirmwareInfo,
    expected: &Expected,
    ready: oneshot::Sender<String>,
    mut feed: mpsc::Receiver<Feed>,
) -> Result<String, OtaError>
where
    O: OtaSlots,
    O::Error: Send + Sync + 'static,
{
    let mut slots = lock(ota)?;
    let running = slots
        .get_running_slot()
        .map_err(|e| OtaError::slot("read the running slot", "running", e))?;
    if running.state == SlotState::Unverified {
        return Err(OtaError::RunningUnconfirmed {
            slot: running.label.to_string(),
        });
    }
    let slot = slots
        .get_update_slot()
        .map_err(|e| OtaError::slot("read the update slot", "update", e))?
        .label
        .to_string();
    let available = slots
        .free_space()
        .map_err(|e| OtaError::slot("measure the free space", slot.as_str(), e))?;
    if available < expected.size {
        return Err(OtaError::NoSpace {
            slot,
            size: expected.size,
            available,
        });
    }
    let mut update = slots
        .initiate_update_of(firmware)
        .map_err(|e| OtaError::slot("start the update", slot.as_str(), e))?;
    if ready.send(slot.clone()).is_err() {
        abort(update, &slot);
        return Err(OtaError::Cancelled);
    }

    let mut hasher = Sha256::new();
    let mut written = 0u64;
    loop {
        match feed.blocking_recv() {
            Some(Feed::Data(chunk)) => {
                written += chunk.len() as u64;
                if written > expected.size {
                    abort(update, &slot);
                    return Err(OtaError::SizeMismatch {
                        url: expected.url.clone(),
                        expected: expected.size,
                        received: written,
                    });
                }
                hasher.update(&chunk);
                if let Err(e) = update.write_all(&chunk) {
                    let error = OtaError::slot("write the update", slot.as_str(), e);
                    abort(update, &slot);
                    return Err(error);
                }
            }
            Some(Feed::Finish) => break,
            None => {
                abort(update, &slot);
                return Err(OtaError::Cancelled);
            }
        }
    }
    if written != expected.size {
        abort(update, &slot);
        return Err(OtaError::SizeMismatch {
            url: expected.url.clone(),
            expected: expected.size,
            received: written,
        });
    }
    let actual: [u8; 32] = hasher.finalize().into();
    if actual != expected.sha256 {
        abort(update, &slot);
        return Err(OtaError::HashMismatch {
            url: expected.url.clone(),
            expected: hex::encode(expected.sha256),
            actual: hex::encode(actual),
        });
    }
    update
        .complete()
        .map_err(|e| OtaError::slot("complete the update", slot.as_str(), e))?;
    Ok(slot)
}

/// Aborts `update`; a failure to clean up is logged (the caller reports what went wrong first).
fn abort<U: OtaUpdate>(update: U, slot: &str) {
    if let Err(e) = update.abort() {
        tracing::warn!(slot, error = %e, "could not abort the update cleanly");
    }
}

async fn join(
    writer: tokio::task::JoinHandle<Result<String, OtaError>>,
) -> Result<String, OtaError> {
    writer
        .await
        .map_err(|e| OtaError::Worker(format!("slot writer: {e}")))?
}

/// The URL, if updates may come from it: `https://` with a host, or `http://` to the loopback
/// interface when `allow_insecure_loopback` is set.
fn check_url(raw: &str, allow_insecure_loopback: bool) -> Result<Url, OtaError> {
    let refused = |url: String, reason: &str| OtaError::UrlRefused {
        url,
        reason: reason.to_string(),
    };
    let url = Url::parse(raw).map_err(|e| refused(format!("{raw:?}"), &e.to_string()))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        "https" => Err(refused(shown(&url), "no host")),
        "http" if allow_insecure_loopback && loopback => Ok(url),
        "http" if loopback => Err(refused(
            shown(&url),
            "plain http to the loopback interface is allowed only in test settings",
        )),
        "http" => Err(refused(shown(&url), "plain http; updates come over https")),
        _ => Err(refused(shown(&url), "not an https URL")),
    }
}

/// The URL for logs and errors: without credentials or query (signed URLs carry their
/// signature there).
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

fn parse_sha256(hex_digest: &str) -> Result<[u8; 32], OtaError> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest).map_err(|e| {
        OtaError::InvalidRequest(format!(
            "sha256 {hex_digest:?} is not 64 hex characters: {e}"
        ))
    })?;
    Ok(digest)
}

/// What the slot records about the firmware: the announced version and the bundle's SHA-256
/// (as its signature field; the command carries no release date or description).
fn firmware_info(version: &str, sha256: [u8; 32]) -> Result<FirmwareInfo, OtaError> {
    if version.trim().is_empty() {
        return Err(OtaError::InvalidRequest(
            "the update's version is empty".into(),
        ));
    }
    let fitted = bounded::<24>(version);
    if fitted.len() != version.len() {
        return Err(OtaError::InvalidRequest(format!(
            "version {version:?} is longer than the 24 bytes a slot records"
        )));
    }
    Ok(FirmwareInfo {
        version: fitted,
        released: heapless::String::new(),
        description: None,
        signature: heapless::Vec::from_slice(&sha256).ok(),
        download_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_is_accepted_and_loopback_http_only_when_allowed() {
        assert!(check_url("https://updates.example/b.raucb", false).is_ok());
        for (url, allow) in [
            ("http://updates.example/b.raucb", true),
            ("http://127.0.0.1:8080/b.raucb", false),
            ("ftp://updates.example/b.raucb", true),
            ("file:///tmp/b.raucb", true),
            ("not a url", true),
        ] {
            assert!(
                matches!(check_url(url, allow), Err(OtaError::UrlRefused { .. })),
                "{url} accepted"
            );
        }
        for url in [
            "http://127.0.0.1:8080/b.raucb",
            "http://localhost/b.raucb",
            "http://[::1]:9/b.raucb",
        ] {
            assert!(check_url(url, true).is_ok(), "{url} refused");
        }
    }

    #[test]
    fn the_daemon_can_spawn_installs_and_verdicts_with_either_backend() {
        // Type-checked, never run: both futures may go to `tokio::spawn`.
        fn spawnable<T: Send + 'static>(_: T) {}
        fn spawn_both<O>(
            slots: Arc<Mutex<O>>,
            request: &'static UpdateRequest,
            http: &'static reqwest::Client,
            progress: std::sync::mpsc::Sender<u64>,
        ) where
            O: OtaSlots + Send + 'static,
            O::Error: Send + Sync + 'static,
        {
            let every = std::time::Duration::from_secs(1);
            let verdict =
                super::super::confirm_after_boot(slots.clone(), || async { true }, every, every);
            spawnable(verdict);
            spawnable(install(slots, request, http, move |received, _| {
                let _ = progress.send(received);
            }));
        }
        let _ = spawn_both::<super::super::DirSlots>;
        let _ = spawn_both::<super::super::RaucSlots>;
    }

    #[test]
    fn logs_and_errors_show_no_credentials_or_query() {
        let url =
            Url::parse("https://user:secret@updates.example/b.raucb?X-Signature=abc#x").unwrap();
        assert_eq!(shown(&url), "https://updates.example/b.raucb");
    }

    #[test]
    fn digests_and_versions_are_checked_before_anything_is_written() {
        assert!(parse_sha256(&"0f".repeat(32)).is_ok());
        assert!(parse_sha256("0f").is_err());
        assert!(parse_sha256(&"zz".repeat(32)).is_err());
        assert!(firmware_info("", [0; 32]).is_err());
        assert!(firmware_info(&"9".repeat(25), [0; 32]).is_err());
        let info = firmware_info("2.1.0", [7; 32]).unwrap();
        assert_eq!(info.version.as_str(), "2.1.0");
        assert_eq!(info.signature.as_deref(), Some(&[7u8; 32][..]));
    }
}
