//! The journey's edge: `up/journey` in, `down/journey` out (QoS 1, not retained).
//!
//! [`Journeys::handle_up_journey`] reads a message from an enrolled kiosk (the broker's ACL ties
//! the topic's device id to its certificate), checks it ([`JourneyUp::check`]) and the kiosk's
//! organization, and answers:
//!
//! | request | what happens | answer |
//! |---|---|---|
//! | `otp_request` | the number is normalized to E.164; the limits are checked; a code is stored (keyed hashes) and sent | `code_sent` once a gateway took it, `limited`, `invalid_phone`, `unavailable` |
//! | `otp_resend` | the same to the session's number, while its code lives | the same, or `code_dead` |
//! | `otp_verify` | the session's newest code is checked; a wrong one counts a try | `verified` with a customer token, `wrong_code`, `code_dead` |
//! | `callback` | the customer token must be this kiosk's; with `call`, the unanswered call it was used for; without, unused | `callback_booked` (a confirmation SMS follows), `unavailable` |
//! | `forget` | the session's live codes die; numbers no record needs are cleared | `forgotten` |
//!
//! A message id seen in the last 10 minutes gets the answer it had (or none while its SMS is
//! still being sent), with no second SMS and no second try counted.
//!
//! Numbers appear masked everywhere here (answers, logs, delivery records); the clear number
//! is kept only on the code row while the code lives, on the customer row while a callback may
//! be booked, and on the callback row.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kiosk_protocol::journey::{
    mask_phone, normalize_phone, DeadCode, JourneyAnswer, JourneyRequest, JourneyResult, JourneyUp,
    MAX_REQUEST_BYTES,
};
use kiosk_protocol::topic::{Down, Topic};
use kiosk_protocol::{DeviceId, Version};
use rand::Rng;
use tokio::sync::watch;

use super::key::OtpKey;
use super::receipts::ReceiptThrottle;
use super::rules::{self, CodeState, Issue, IssueFacts, Verify};
use super::sms::{self, GatewayConfig, GatewayContext, GatewayRules, Purpose, SmsGateway};
use super::texts::{self, Lang};
use super::{OtpError, OtpSettings, CUSTOMER_TOKEN_PREFIX};
use crate::fleet::service::{FleetLink, Outgoing};
use crate::store::otp::{
    CodeChange, CodeOwner, HistorySince, JourneyKiosk, NewCode, NewCustomer, NewSmsRecord, Pruned,
};
use crate::store::{customer_token_hash, SqliteStore, StoreError};

/// How long an answer is remembered for a repeated message id.
pub const RECENT_TTL_MS: i64 = 10 * 60 * 1000;
/// At most this many remembered answers per kiosk (the oldest go first).
pub const RECENT_PER_DEVICE: usize = 64;

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A new customer token: `kcu_` and 32 random bytes, base64url.
pub fn new_customer_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{CUSTOMER_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A new 6-digit code, uniform over 000000–999999 (the thread's generator is a CSPRNG seeded
/// from the operating system).
fn new_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// A message id's place in the recent-answers map.
#[derive(Debug, Clone)]
enum Seen {
    New,
    /// Being handled (its SMS is on its way): the repeat is dropped, the answer will come.
    Pending,
    Answered(Box<JourneyAnswer>),
}

#[derive(Debug)]
struct Remembered {
    message: String,
    at_ms: i64,
    answer: Option<JourneyAnswer>,
}

/// The answers of the last [`RECENT_TTL_MS`], per kiosk, by message id.
#[derive(Debug, Default)]
struct RecentAnswers {
    by_device: HashMap<String, VecDeque<Remembered>>,
}

impl RecentAnswers {
    fn begin(&mut self, device: &str, message: &str, now_ms: i64) -> Seen {
        let list = self.by_device.entry(device.to_string()).or_default();
        list.retain(|r| now_ms - r.at_ms < RECENT_TTL_MS);
        if let Some(r) = list.iter().find(|r| r.message == message) {
            return match &r.answer {
                Some(a) => Seen::Answered(Box::new(a.clone())),
                None => Seen::Pending,
            };
        }
        if list.len() >= RECENT_PER_DEVICE {
            list.pop_front();
        }
        list.push_back(Remembered {
            message: message.to_string(),
            at_ms: now_ms,
            answer: None,
        });
        Seen::New
    }

    fn finish(&mut self, device: &str, message: &str, answer: &JourneyAnswer) {
        if let Some(r) = self
            .by_device
            .get_mut(device)
            .and_then(|l| l.iter_mut().find(|r| r.message == message))
        {
            r.answer = Some(answer.clone());
        }
    }

    fn abandon(&mut self, device: &str, message: &str) {
        if let Some(list) = self.by_device.get_mut(device) {
            list.retain(|r| r.message != message);
        }
    }

    fn prune(&mut self, now_ms: i64) {
        self.by_device.retain(|_, list| {
            list.retain(|r| now_ms - r.at_ms < RECENT_TTL_MS);
            !list.is_empty()
        });
    }
}

/// An SMS to send.
struct SmsJob {
    org_id: i64,
    org_slug: String,
    purpose: Purpose,
    to_e164: String,
    phone_masked: String,
    text: String,
    gateways: Vec<GatewayConfig>,
}

impl std::fmt::Debug for SmsJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsJob")
            .field("org_id", &self.org_id)
            .field("purpose", &self.purpose)
            .field("phone_masked", &self.phone_masked)
            .finish_non_exhaustive()
    }
}

/// What one message leads to.
#[derive(Debug)]
enum Step {
    /// Nothing to answer (unreadable, or from a kiosk that is gone).
    Drop,
    Answer(JourneyResult),
    /// Send the code stored as row `code_id`; answer `sent` once a gateway took it (or delete
    /// the row and answer `unavailable`).
    SendCode {
        code_id: i64,
        sms: SmsJob,
        sent: JourneyResult,
    },
    /// Answer now, then send a confirmation.
    AnswerThenSend(JourneyResult, SmsJob),
}

#[derive(Debug)]
struct Inner {
    store: SqliteStore,
    key: OtpKey,
    settings: OtpSettings,
    platform_gateways: Vec<GatewayConfig>,
    data_dir: PathBuf,
    http: reqwest::Client,
    recent: Mutex<RecentAnswers>,
    receipts: Mutex<ReceiptThrottle>,
    link: OnceLock<FleetLink>,
}

/// The journey's service: shared by the fleet link (messages) and the API (erasure, gateways).
#[derive(Debug, Clone)]
pub struct Journeys {
    inner: Arc<Inner>,
}

fn unavailable(reason: impl Into<String>) -> JourneyResult {
    JourneyResult::Unavailable {
        reason: reason.into(),
    }
}

/// The answer's MQTT message.
pub fn outgoing(device: &DeviceId, answer: &JourneyAnswer) -> Outgoing {
    Outgoing {
        topic: Topic::Down(device.clone(), Down::Journey).name(),
        payload: serde_json::to_vec(answer).unwrap_or_default(),
        retain: false,
    }
}

/// Why a code that cannot be resent is dead.
fn dead_why(limits: &rules::Limits, code: &rules::StoredCode, now_ms: i64) -> DeadCode {
    match code.state {
        CodeState::Verified => DeadCode::Used,
        _ if code.tries >= limits.max_tries => DeadCode::TooManyTries,
        _ if now_ms >= code.expires_at_ms => DeadCode::Expired,
        _ => DeadCode::NoCode,
    }
}

impl Journeys {
    /// Reads or makes `DATA/otp.key`, checks the platform's gateways, and makes the HTTP
    /// client the `http` gateways share.
    pub fn open(
        data_dir: &Path,
        store: SqliteStore,
        settings: OtpSettings,
        platform_gateways: Vec<GatewayConfig>,
    ) -> Result<Journeys, OtpError> {
        if platform_gateways.is_empty() {
            return Err(OtpError::Gateways {
                field: "gateways",
                message: "at least one gateway".into(),
            });
        }
        sms::check_list(&platform_gateways, GatewayRules { allow_dev: true }).map_err(|e| {
            OtpError::Gateways {
                field: e.field,
                message: e.message,
            }
        })?;
        if let Some(i) = platform_gateways
            .iter()
            .position(|g| matches!(g, GatewayConfig::Http(h) if h.receipts.is_some()))
        {
            return Err(OtpError::Gateways {
                field: "receipts",
                message: format!(
                    "gateway {}: delivery receipts are read for organizations' own gateways \
                     only (PUT /api/v1/orgs/{{org}}/sms)",
                    i + 1
                ),
            });
        }
        if platform_gateways.contains(&GatewayConfig::Log) {
            tracing::warn!(
                file = %data_dir.join(sms::OUTBOX_PATH).display(),
                "SMS of organizations without gateways of their own go to the log gateway's \
                 file, not to phones (development only)"
            );
        }
        let key = OtpKey::load_or_create(data_dir)?;
        let http = sms::http_client().map_err(|e| OtpError::HttpClient(e.to_string()))?;
        let receipts = ReceiptThrottle::new(settings.receipts.clone());
        Ok(Journeys {
            inner: Arc::new(Inner {
                store,
                key,
                settings,
                platform_gateways,
                data_dir: data_dir.to_path_buf(),
                http,
                recent: Mutex::new(RecentAnswers::default()),
                receipts: Mutex::new(receipts),
                link: OnceLock::new(),
            }),
        })
    }

    /// The fleet link that carries answers sent after an SMS (none when no broker runs).
    pub fn set_link(&self, link: FleetLink) {
        let _ = self.inner.link.set(link);
    }

    pub fn settings(&self) -> &OtpSettings {
        &self.inner.settings
    }

    /// The keyed hash a number is stored under (erasure finds its rows by it).
    pub fn phone_hash(&self, e164: &str) -> [u8; 32] {
        self.inner.key.phone_hash(e164)
    }

    /// What an organization's gateway list may hold.
    pub fn org_gateway_rules(&self) -> GatewayRules {
        GatewayRules {
            allow_dev: self.inner.settings.org_dev_gateways,
        }
    }

    /// The receipt keys' throttle (see [`ReceiptThrottle`]); never held across an await.
    pub fn receipt_throttle(&self) -> std::sync::MutexGuard<'_, ReceiptThrottle> {
        self.inner
            .receipts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, RecentAnswers> {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `up/journey` from an enrolled device. Returns the answer to publish now, if any; an
    /// answer that waits for an SMS is published through the link by a task of its own.
    /// Unreadable messages, and messages of unknown or revoked kiosks, are dropped with a
    /// warning. A store error leaves the message unanswered (and not remembered), so its
    /// redelivery is handled again.
    pub fn handle_up_journey(
        &self,
        device: &DeviceId,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<Vec<Outgoing>, StoreError> {
        let id = device.as_str();
        let up: JourneyUp = match serde_json::from_slice(payload) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(device = id, error = %e, "unreadable journey message dropped");
                return Ok(Vec::new());
            }
        };
        let message = up.header.id.as_str().to_string();
        match self.recent().begin(id, &message, now_ms) {
            Seen::Answered(answer) => {
                tracing::debug!(device = id, %message, "repeated journey message answered again");
                return Ok(vec![outgoing(device, &answer)]);
            }
            Seen::Pending => {
                tracing::debug!(device = id, %message, "repeated journey message still in hand");
                return Ok(Vec::new());
            }
            Seen::New => {}
        }
        let step = match self.decide(device, &up, now_ms) {
            Ok(step) => step,
            Err(e) => {
                self.recent().abandon(id, &message);
                return Err(e);
            }
        };
        let answer = |result| JourneyAnswer {
            v: Version::CURRENT,
            request: up.request.clone(),
            result,
        };
        match step {
            Step::Drop => {
                self.recent().abandon(id, &message);
                Ok(Vec::new())
            }
            Step::Answer(result) => {
                let a = answer(result);
                self.recent().finish(id, &message, &a);
                Ok(vec![outgoing(device, &a)])
            }
            Step::AnswerThenSend(result, sms) => {
                let a = answer(result);
                self.recent().finish(id, &message, &a);
                let this = self.clone();
                if !self.spawn(async move {
                    this.send_sms(&sms).await;
                }) {
                    tracing::error!(device = id, "no runtime: confirmation SMS not sent");
                }
                Ok(vec![outgoing(device, &a)])
            }
            Step::SendCode { code_id, sms, sent } => {
                let this = self.clone();
                let device2 = device.clone();
                let request = up.request.clone();
                let message2 = message.clone();
                let spawned = self.spawn(async move {
                    let result = if this.send_sms(&sms).await {
                        sent
                    } else {
                        let deleted = this
                            .inner
                            .store
                            .run(move |db| db.delete_code(code_id))
                            .await;
                        if let Err(e) = deleted {
                            tracing::error!(error = %e, "could not delete an unsent code");
                        }
                        unavailable("no SMS gateway took the message")
                    };
                    let a = JourneyAnswer {
                        v: Version::CURRENT,
                        request,
                        result,
                    };
                    this.recent().finish(device2.as_str(), &message2, &a);
                    this.publish(&device2, &a).await;
                });
                if spawned {
                    Ok(Vec::new())
                } else {
                    self.recent().abandon(id, &message);
                    Ok(vec![outgoing(
                        device,
                        &answer(unavailable("the code could not be sent")),
                    )])
                }
            }
        }
    }

    /// Runs `task` on the runtime this is called from (the fleet worker's blocking thread).
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) -> bool {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(task);
                true
            }
            Err(_) => false,
        }
    }

    async fn publish(&self, device: &DeviceId, answer: &JourneyAnswer) {
        match self.inner.link.get() {
            Some(link) => {
                if let Err(e) = link.publish(outgoing(device, answer)).await {
                    tracing::warn!(device = device.as_str(), error = %e, "could not send a journey answer");
                }
            }
            None => tracing::warn!(
                device = device.as_str(),
                "no fleet link: journey answer not sent"
            ),
        }
    }

    /// What one message leads to; the store's writes are done when this returns.
    fn decide(&self, device: &DeviceId, up: &JourneyUp, now_ms: i64) -> Result<Step, StoreError> {
        let id = device.as_str();
        if let Err(e) = up.check() {
            tracing::warn!(device = id, error = %e, "journey message refused");
            if up.request.is_empty() || up.request.len() > MAX_REQUEST_BYTES {
                return Ok(Step::Drop);
            }
            return Ok(Step::Answer(unavailable(format!("bad message: {e}"))));
        }
        let store = &self.inner.store;
        let Some(kiosk) = store.blocking(|db| db.journey_kiosk(id))? else {
            tracing::warn!(
                device = id,
                "journey message from an unknown or revoked device dropped"
            );
            return Ok(Step::Drop);
        };
        let owner = CodeOwner {
            org_id: kiosk.org_id,
            device_id: id,
            request_id: &up.request,
        };
        if kiosk.org_disabled && !matches!(up.body, JourneyRequest::Forget) {
            return Ok(Step::Answer(unavailable("the organization is disabled")));
        }
        match &up.body {
            JourneyRequest::OtpRequest { phone, language } => match normalize_phone(phone) {
                Err(e) => Ok(Step::Answer(JourneyResult::InvalidPhone {
                    message: e.to_string(),
                })),
                Ok(e164) => self.issue(&kiosk, &owner, e164, language.clone(), now_ms),
            },
            JourneyRequest::OtpResend => {
                let limits = &self.inner.settings.limits;
                let row = store.blocking(|db| db.session_code(id, &up.request))?;
                match row {
                    None => Ok(Step::Answer(JourneyResult::CodeDead {
                        why: DeadCode::NoCode,
                    })),
                    Some(r) => match (&r.phone_e164, r.code.state) {
                        (Some(e164), CodeState::Live)
                            if now_ms < r.code.expires_at_ms && r.code.tries < limits.max_tries =>
                        {
                            self.issue(&kiosk, &owner, e164.clone(), r.language.clone(), now_ms)
                        }
                        _ => Ok(Step::Answer(JourneyResult::CodeDead {
                            why: dead_why(limits, &r.code, now_ms),
                        })),
                    },
                }
            }
            JourneyRequest::OtpVerify { code } => self.verify(&owner, code, now_ms),
            JourneyRequest::Callback { customer, call } => {
                self.callback(&kiosk, customer, call.as_ref().map(|c| c.as_str()), now_ms)
            }
            JourneyRequest::Forget => {
                let (codes, customers) = store.blocking(|db| db.forget_journey(id, &up.request))?;
                tracing::debug!(device = id, codes, customers, "journey forgotten");
                Ok(Step::Answer(JourneyResult::Forgotten))
            }
        }
    }

    /// The gateways of an organization: its own, or the platform's.
    fn gateways_for(&self, org_id: i64) -> Result<Vec<GatewayConfig>, StoreError> {
        Ok(self
            .inner
            .store
            .blocking(|db| db.org_sms(org_id))?
            .map(|o| o.gateways)
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| self.inner.platform_gateways.clone()))
    }

    /// A code to `e164` for this session, if the limits allow it.
    fn issue(
        &self,
        kiosk: &JourneyKiosk,
        owner: &CodeOwner<'_>,
        e164: String,
        language: Option<String>,
        now_ms: i64,
    ) -> Result<Step, StoreError> {
        let limits = &self.inner.settings.limits;
        let key = &self.inner.key;
        let phone_hash = key.phone_hash(&e164);
        let phone_masked = mask_phone(&e164);
        let code = new_code();
        let code_hash = key.code_hash(owner.device_id, owner.request_id, &phone_hash, &code);
        let since = HistorySince {
            kiosk_ms: now_ms - limits.kiosk.span_ms,
            org_ms: now_ms - limits.org.span_ms,
            phone_ms: now_ms - limits.phone_span_ms(),
        };
        let new = NewCode {
            phone_hash,
            phone_e164: e164.clone(),
            phone_masked: phone_masked.clone(),
            code_hash,
            language: language.clone(),
            created_at_ms: now_ms,
            expires_at_ms: now_ms + limits.code_ttl_ms,
        };
        let (decision, code_id) = self.inner.store.blocking(|db| {
            db.issue_code(owner, &phone_hash, since, |h| {
                let facts = IssueFacts {
                    session_last_ms: h.session_last_ms,
                    kiosk: &h.kiosk,
                    org: &h.org,
                    phone: &h.phone,
                };
                let decision = rules::decide_issue(limits, &facts, now_ms);
                let store = matches!(decision, Issue::Send { .. }).then_some(new);
                (decision, store)
            })
        })?;
        match (decision, code_id) {
            (
                Issue::Limited {
                    limit,
                    retry_after_s,
                },
                _,
            ) => {
                tracing::info!(
                    device = owner.device_id,
                    org = owner.org_id,
                    limit = limit.as_str(),
                    retry_after_s,
                    "code refused by a limit"
                );
                Ok(Step::Answer(JourneyResult::Limited { retry_after_s }))
            }
            (Issue::Send { .. }, Some(code_id)) => {
                let text = texts::code_text(
                    Lang::from_tag(language.as_deref()),
                    &code,
                    &kiosk.org_name,
                    limits.code_ttl_s(),
                );
                Ok(Step::SendCode {
                    code_id,
                    sms: SmsJob {
                        org_id: kiosk.org_id,
                        org_slug: kiosk.org_slug.clone(),
                        purpose: Purpose::Code,
                        to_e164: e164,
                        phone_masked: phone_masked.clone(),
                        text,
                        gateways: self.gateways_for(kiosk.org_id)?,
                    },
                    sent: JourneyResult::CodeSent {
                        masked_phone: phone_masked,
                        resend_after_s: limits.resend_after_s(),
                        expires_in_s: limits.code_ttl_s(),
                    },
                })
            }
            (Issue::Send { .. }, None) => Ok(Step::Answer(unavailable("the code was not stored"))),
        }
    }

    /// Checks a typed code; a right one makes the customer.
    fn verify(&self, owner: &CodeOwner<'_>, code: &str, now_ms: i64) -> Result<Step, StoreError> {
        let limits = &self.inner.settings.limits;
        let key = &self.inner.key;
        let result = self.inner.store.blocking(|db| {
            db.verify_code(owner, |row| {
                // The hash is computed for every row, so a dead code costs the same time.
                let matches = row.is_some_and(|r| {
                    key.code_matches(
                        owner.device_id,
                        owner.request_id,
                        &r.phone_hash,
                        code,
                        &r.code_hash,
                    )
                });
                match (
                    rules::decide_verify(limits, row.map(|r| &r.code), matches, now_ms),
                    row,
                ) {
                    (Verify::Verified, Some(r)) => {
                        let token = new_customer_token();
                        let customer = NewCustomer {
                            token_hash: customer_token_hash(&token),
                            phone_hash: r.phone_hash.clone(),
                            phone_masked: r.phone_masked.clone(),
                            phone_e164: r.phone_e164.clone(),
                            language: r.language.clone(),
                            verified_at_ms: now_ms,
                            expires_at_ms: now_ms + limits.customer_ttl_ms,
                        };
                        (
                            JourneyResult::Verified {
                                customer: token,
                                masked_phone: r.phone_masked.clone(),
                                expires_in_s: limits.customer_ttl_s(),
                            },
                            CodeChange::Verified(customer),
                        )
                    }
                    (
                        Verify::Wrong {
                            tries,
                            tries_left,
                            dead,
                        },
                        _,
                    ) => (
                        JourneyResult::WrongCode { tries_left },
                        CodeChange::Tries { tries, dead },
                    ),
                    (Verify::Dead { why, retire }, _) => (
                        JourneyResult::CodeDead { why },
                        if retire {
                            CodeChange::Retire
                        } else {
                            CodeChange::None
                        },
                    ),
                    (Verify::Verified, None) => (
                        JourneyResult::CodeDead {
                            why: DeadCode::NoCode,
                        },
                        CodeChange::None,
                    ),
                }
            })
        })?;
        match &result {
            JourneyResult::Verified { .. } => {
                tracing::info!(
                    device = owner.device_id,
                    org = owner.org_id,
                    "customer verified"
                );
            }
            JourneyResult::WrongCode { tries_left } => {
                tracing::info!(device = owner.device_id, tries_left, "wrong code");
            }
            _ => {}
        }
        Ok(Step::Answer(result))
    }

    /// Books a callback for the customer of `token`.
    fn callback(
        &self,
        kiosk: &JourneyKiosk,
        token: &str,
        call: Option<&str>,
        now_ms: i64,
    ) -> Result<Step, StoreError> {
        let limits = &self.inner.settings.limits;
        let token_hash = customer_token_hash(token);
        let booked = self.inner.store.blocking(|db| {
            db.book_callback(
                &kiosk.device_id,
                kiosk.site_id,
                &token_hash,
                call,
                now_ms,
                |customer, call, site| {
                    // A kiosk without a site is never closed, as when it places a call.
                    let closed_at = |at| site.is_some_and(|s| !s.open_at(at));
                    rules::decide_callback(limits, customer, call, closed_at, now_ms)
                },
            )
        })?;
        let booking = match booked {
            Ok(b) => b,
            Err(refusal) => {
                tracing::info!(device = %kiosk.device_id, reason = refusal.message(), "callback refused");
                return Ok(Step::Answer(unavailable(refusal.message())));
            }
        };
        let result = JourneyResult::CallbackBooked {
            masked_phone: booking.phone_masked.clone(),
        };
        if !booking.new {
            return Ok(Step::Answer(result));
        }
        tracing::info!(
            device = %kiosk.device_id,
            org = kiosk.org_id,
            reason = booking.reason.as_str(),
            "callback booked"
        );
        let text =
            texts::callback_text(Lang::from_tag(booking.language.as_deref()), &kiosk.org_name);
        Ok(Step::AnswerThenSend(
            result,
            SmsJob {
                org_id: kiosk.org_id,
                org_slug: kiosk.org_slug.clone(),
                purpose: Purpose::Callback,
                to_e164: booking.phone_e164,
                phone_masked: booking.phone_masked,
                text,
                gateways: self.gateways_for(kiosk.org_id)?,
            },
        ))
    }

    /// Sends an SMS through the gateways in order and records every attempt; `true` when one
    /// took it.
    async fn send_sms(&self, job: &SmsJob) -> bool {
        let ctx = GatewayContext {
            data_dir: &self.inner.data_dir,
            http: &self.inner.http,
            org_slug: &job.org_slug,
            purpose: job.purpose,
        };
        let gateways: Vec<Box<dyn SmsGateway>> =
            job.gateways.iter().map(|g| g.gateway(&ctx)).collect();
        let attempts = sms::send_in_order(&gateways, &job.to_e164, &job.text).await;
        let at_ms = now_ms();
        let mut records = Vec::with_capacity(attempts.len());
        let mut taken = false;
        for a in &attempts {
            match &a.outcome {
                Ok(d) => {
                    taken = true;
                    tracing::info!(org = job.org_id, purpose = job.purpose.as_str(), gateway = %a.gateway, "SMS sent");
                    records.push((a.gateway.clone(), "sent", d.provider_id.clone(), None));
                }
                Err(e) => {
                    tracing::warn!(org = job.org_id, purpose = job.purpose.as_str(), gateway = %a.gateway, error = %e, "SMS gateway failed");
                    records.push((a.gateway.clone(), "failed", None, Some(e.to_string())));
                }
            }
        }
        if !taken {
            tracing::error!(
                org = job.org_id,
                purpose = job.purpose.as_str(),
                "no SMS gateway took the message"
            );
        }
        let (org_id, purpose, masked) = (job.org_id, job.purpose, job.phone_masked.clone());
        let saved = self
            .inner
            .store
            .run(move |db| {
                records
                    .iter()
                    .try_for_each(|(gateway, status, provider_id, error)| {
                        db.record_sms(&NewSmsRecord {
                            org_id,
                            purpose: purpose.as_str(),
                            phone_masked: &masked,
                            gateway,
                            status,
                            provider_id: provider_id.as_deref(),
                            error: error.as_deref(),
                            at_ms,
                        })
                    })
            })
            .await;
        if let Err(e) = saved {
            tracing::error!(error = %e, "could not record SMS deliveries");
        }
        taken
    }

    /// The periodic clean-up at `now_ms` (see `store::otp`'s `prune_journeys`), and the
    /// recent-answers map.
    pub fn prune(&self, now_ms: i64) -> Result<Pruned, StoreError> {
        let s = &self.inner.settings;
        let l = &s.limits;
        let longest = l.phone_span_ms().max(l.kiosk.span_ms).max(l.org.span_ms);
        let keep_sms = i64::try_from(s.sms_records_keep.as_millis()).unwrap_or(i64::MAX);
        self.recent().prune(now_ms);
        self.inner.store.blocking(|db| {
            db.prune_journeys(
                now_ms,
                now_ms - longest,
                now_ms - l.callback_window_ms,
                now_ms.saturating_sub(keep_sms),
            )
        })
    }

    /// Runs [`Journeys::prune`] every `prune_every` until `stop` flips.
    pub fn spawn_pruner(&self, mut stop: watch::Receiver<bool>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(this.inner.settings.prune_every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = every.tick() => {}
                }
                let job = this.clone();
                match tokio::task::spawn_blocking(move || job.prune(now_ms())).await {
                    Ok(Ok(p)) if p != Pruned::default() => tracing::debug!(
                        codes_expired = p.codes_expired,
                        codes_deleted = p.codes_deleted,
                        customer_numbers = p.customer_numbers,
                        sms_records = p.sms_records,
                        "journey data pruned"
                    ),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "journey prune failed"),
                    Err(e) => tracing::error!(error = %e, "journey prune task failed"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(request: &str) -> JourneyAnswer {
        JourneyAnswer {
            v: Version::CURRENT,
            request: request.into(),
            result: JourneyResult::Forgotten,
        }
    }

    #[tokio::test]
    async fn the_platform_gateways_read_no_receipts() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let platform: Vec<GatewayConfig> = serde_json::from_value(serde_json::json!([
            { "kind": "log" },
            { "kind": "http", "name": "p", "url": "https://sms.example.test/send",
              "body": { "to": "{to}", "text": "{text}" },
              "receipts": { "provider_id": "/id", "status": "/status", "delivered": ["ok"],
                            "key": super::super::receipts::new_receipt_key() } }
        ]))
        .unwrap();
        let e = Journeys::open(dir.path(), store, OtpSettings::default(), platform).unwrap_err();
        assert!(
            matches!(&e, OtpError::Gateways { field: "receipts", message } if message.starts_with("gateway 2:")),
            "{e}"
        );
    }

    #[test]
    fn a_repeated_message_gets_its_answer_and_a_pending_one_none() {
        let mut r = RecentAnswers::default();
        assert!(matches!(r.begin("kiosk-a", "m-00000001", 0), Seen::New));
        assert!(matches!(
            r.begin("kiosk-a", "m-00000001", 10),
            Seen::Pending
        ));
        // Another kiosk's message of the same id is its own.
        assert!(matches!(r.begin("kiosk-b", "m-00000001", 10), Seen::New));
        r.finish("kiosk-a", "m-00000001", &answer("j1"));
        match r.begin("kiosk-a", "m-00000001", 20) {
            Seen::Answered(a) => assert_eq!(*a, answer("j1")),
            other => panic!("{other:?}"),
        }
        // Abandoned (a store error): handled again when it comes back.
        r.abandon("kiosk-b", "m-00000001");
        assert!(matches!(r.begin("kiosk-b", "m-00000001", 30), Seen::New));
        // Forgotten after ten minutes.
        assert!(matches!(
            r.begin("kiosk-a", "m-00000001", RECENT_TTL_MS),
            Seen::New
        ));
        r.prune(3 * RECENT_TTL_MS);
        assert!(r.by_device.is_empty());
    }

    #[test]
    fn a_kiosk_keeps_its_newest_answers_only() {
        let mut r = RecentAnswers::default();
        for i in 0..RECENT_PER_DEVICE + 1 {
            assert!(matches!(
                r.begin("kiosk-a", &format!("m-{i:08}"), i as i64),
                Seen::New
            ));
        }
        assert_eq!(r.by_device["kiosk-a"].len(), RECENT_PER_DEVICE);
        assert!(matches!(r.begin("kiosk-a", "m-00000000", 100), Seen::New));
        assert!(matches!(
            r.begin("kiosk-a", &format!("m-{RECENT_PER_DEVICE:08}"), 100),
            Seen::Pending
        ));
    }

    #[test]
    fn customer_tokens_and_codes_have_their_forms() {
        let t = new_customer_token();
        assert!(t.starts_with("kcu_") && t.len() == 47, "{t}");
        assert!(t.len() <= kiosk_protocol::journey::MAX_TOKEN_BYTES);
        assert_ne!(t, new_customer_token());
        for _ in 0..1000 {
            let c = new_code();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn a_code_that_cannot_be_resent_says_why() {
        let l = rules::Limits::default();
        let code = |state, tries, expires_at_ms| rules::StoredCode {
            created_at_ms: 0,
            expires_at_ms,
            tries,
            state,
        };
        assert_eq!(
            dead_why(&l, &code(CodeState::Verified, 0, 10), 1),
            DeadCode::Used
        );
        assert_eq!(
            dead_why(&l, &code(CodeState::Dead, 5, 10), 1),
            DeadCode::TooManyTries
        );
        assert_eq!(
            dead_why(&l, &code(CodeState::Live, 0, 10), 10),
            DeadCode::Expired
        );
        assert_eq!(
            dead_why(&l, &code(CodeState::Dead, 1, 10), 1),
            DeadCode::NoCode
        );
    }
}
