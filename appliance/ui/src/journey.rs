//! The customer journey as a pure state machine: screens, transitions and timers as plain
//! values in, decisions out. No socket, no clock, no D-Bus: [`Journey::handle`] takes an
//! [`Input`] and the time ([`Now`]) and returns the [`Command`]s for the edge to carry out
//! (D-Bus calls to kiosk-sync and kiosk-media); [`Journey::view`] is what the page shows;
//! [`Journey::next_deadline`] is when the edge must come back with [`Input::Tick`].
//!
//! The journey: attract (language choice, one call to action) → closed (if the site is closed
//! now: next opening and a callback offer) or phone → code → consent (only when the
//! organization records and this build has the notice) → queue → call → survey → thanks →
//! privacy reset. A call nobody answered leads to the callback offer. Gates come before all
//! of it: not enrolled (activation code or "being set up"), no configuration ("being set
//! up"), the cloud link down or kiosk-sync absent ("temporarily unavailable"); a gate that
//! closes during a session ends it.
//!
//! Privacy: the journey never holds a full phone number or code. The number and the code are
//! in a [`Command`] only, which the edge drops once the D-Bus call returns; the journey keeps
//! the masked number the cloud answers with. Every reset bumps the session epoch: answers of
//! an older session are ignored, and the page reloads itself when it sees a new session.

use kiosk_bus::sync::{consent, state, JourneyOutcome};
use kiosk_protocol::config::{DesiredConfig, Recording};
use kiosk_protocol::hours::Schedule;
use kiosk_protocol::journey::CODE_DIGITS;
use serde::{Deserialize, Serialize};

use crate::phone::{self, PhoneError};
use crate::text::{self, Language};

/// Milliseconds on a monotonic clock (the edge counts from its start).
pub type Millis = u64;

/// How long the thanks and booked screens stay before the privacy reset.
pub const THANKS_MS: Millis = 10_000;
/// Idle time-outs when the config has none (it always has once the kiosk runs a config).
pub const DEFAULT_IDLE_S: u32 = 60;
pub const DEFAULT_WARNING_S: u32 = 20;

/// The time, twice: monotonic for timers, wall clock for business hours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Now {
    pub mono: Millis,
    pub wall: jiff::Timestamp,
}

/// What kiosk-sync says about the kiosk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    /// kiosk-sync answers on the bus.
    pub present: bool,
    /// One of `kiosk_bus::sync::state`.
    pub state: String,
    pub activation_code: String,
    /// Connected to the cloud.
    pub connected: bool,
}

/// What the page asks for (`POST /api/action`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// The customer touched the screen (resets the idle timer, ends the warning).
    Touch,
    /// "I'm still here" on the idle warning.
    Extend,
    /// Switch the screens' language.
    Language {
        language: String,
    },
    /// The attract screen's call to action.
    Start,
    /// Closed now: ask to be called back.
    RequestCallback,
    /// The number as typed: `country` ISO 3166 alpha-2, `number` national digits.
    SubmitPhone {
        country: String,
        number: String,
    },
    ResendCode,
    SubmitCode {
        code: String,
    },
    /// Back from the code to the phone screen.
    ChangeNumber,
    /// The answer to the recording notice.
    Consent {
        granted: bool,
    },
    /// Leave the queue.
    CancelCall,
    Mute {
        muted: bool,
    },
    HangUp,
    /// 1 (unhappy) to 3 (happy).
    Survey {
        score: u8,
    },
    /// The callback offer after a call nobody answered.
    Callback {
        accept: bool,
    },
    /// Place the call again after it failed.
    TryAgain,
    /// Back one screen (phone → attract, code → phone, closed → attract).
    Back,
    /// Finished: privacy reset now.
    Done,
}

impl std::fmt::Debug for Action {
    /// The kind only: a number or a code never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Action({})", self.kind())
    }
}

impl Action {
    /// Reads an action from the page: a JSON object with a known `type` and exactly the
    /// fields of that type (serde alone lets extra fields through on actions without any).
    pub fn from_json(body: &[u8]) -> Result<Action, String> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let action: Action = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        let known = serde_json::to_value(&action).map_err(|e| e.to_string())?;
        if let (Some(given), Some(known)) = (value.as_object(), known.as_object()) {
            if let Some(extra) = given.keys().find(|k| !known.contains_key(*k)) {
                return Err(format!(
                    "unknown field `{extra}` for an action of type `{}`",
                    action.kind()
                ));
            }
        }
        Ok(action)
    }

    /// The action's `type`, for messages (never its values: a number or a code).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Touch => "touch",
            Action::Extend => "extend",
            Action::Language { .. } => "language",
            Action::Start => "start",
            Action::RequestCallback => "request_callback",
            Action::SubmitPhone { .. } => "submit_phone",
            Action::ResendCode => "resend_code",
            Action::SubmitCode { .. } => "submit_code",
            Action::ChangeNumber => "change_number",
            Action::Consent { .. } => "consent",
            Action::CancelCall => "cancel_call",
            Action::Mute { .. } => "mute",
            Action::HangUp => "hang_up",
            Action::Survey { .. } => "survey",
            Action::Callback { .. } => "callback",
            Action::TryAgain => "try_again",
            Action::Back => "back",
            Action::Done => "done",
        }
    }
}

/// A signal of `org.kioskcall.Sync1` that the journey follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncSignal {
    CallQueued {
        request: String,
        call: String,
    },
    QueueUpdate {
        call: String,
        position: u32,
        estimated_wait_s: u32,
    },
    CallAccepted {
        call: String,
    },
    CallEnded {
        call: String,
        request: String,
        reason: String,
    },
    CallbackOffered {
        call: String,
    },
}

/// The result of a [`Command`], from the edge. D-Bus failures are `Err` with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `RequestOtp` or `ResendOtp`.
    Otp(Result<JourneyOutcome, String>),
    Verify(Result<JourneyOutcome, String>),
    /// `PlaceCustomerCall`: the request id.
    Placed(Result<String, String>),
    Callback(Result<JourneyOutcome, String>),
    /// `SetMicrophoneMuted(muted)`.
    Muted {
        muted: bool,
        result: Result<(), String>,
    },
    /// Answers nothing on screen depends on (`EndCall`, `EndJourney`, `ReportEvent`).
    Done,
}

/// Everything the journey reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Action(Action),
    Link(Link),
    /// The config in force (validated), or none.
    Config(Option<Box<DesiredConfig>>),
    /// An answer to a command issued in session `epoch`.
    Answer {
        epoch: u64,
        answer: Answer,
    },
    Signal(SyncSignal),
    /// kiosk-media's `MicrophoneMuted` property.
    MediaMuted(bool),
    /// `Ui1.Reset()`.
    Reset,
    /// A deadline from [`Journey::next_deadline`] passed.
    Tick,
}

/// A D-Bus call for the edge to make. The number and the code live here only; `Debug` never
/// shows them.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    RequestOtp { phone: String, language: String },
    ResendOtp,
    VerifyOtp { code: String },
    PlaceCustomerCall { language: String, consent: String },
    RequestCallback { call: String },
    EndCall { call: String, reason: String },
    EndJourney,
    ReportSurvey { call: String, score: u8 },
    SetMicrophoneMuted(bool),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::RequestOtp { language, .. } => f
                .debug_struct("RequestOtp")
                .field("phone", &"<withheld>")
                .field("language", language)
                .finish(),
            Command::ResendOtp => f.write_str("ResendOtp"),
            Command::VerifyOtp { .. } => f
                .debug_struct("VerifyOtp")
                .field("code", &"<withheld>")
                .finish(),
            Command::PlaceCustomerCall { language, consent } => f
                .debug_struct("PlaceCustomerCall")
                .field("language", language)
                .field("consent", consent)
                .finish(),
            Command::RequestCallback { call } => f
                .debug_struct("RequestCallback")
                .field("call", call)
                .finish(),
            Command::EndCall { call, reason } => f
                .debug_struct("EndCall")
                .field("call", call)
                .field("reason", reason)
                .finish(),
            Command::EndJourney => f.write_str("EndJourney"),
            Command::ReportSurvey { call, score } => f
                .debug_struct("ReportSurvey")
                .field("call", call)
                .field("score", score)
                .finish(),
            Command::SetMicrophoneMuted(m) => write!(f, "SetMicrophoneMuted({m})"),
        }
    }
}

/// A command with the session it belongs to; its answer comes back with the same epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub epoch: u64,
    pub command: Command,
}

/// Why an action was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The action's values are wrong (HTTP 400).
    #[error("{0}")]
    BadInput(String),
    /// The action does not fit the screen shown (HTTP 409): a late tap, a double tap.
    #[error("{0}")]
    NotNow(String),
}

/// What went wrong, as the screen words it (the page has the words for each kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    InvalidPhone,
    Limited {
        retry_after_s: u32,
    },
    WrongCode {
        tries_left: u32,
    },
    /// `why`: `expired`, `used`, `too_many_tries`, `no_code`.
    CodeDead {
        why: String,
    },
    /// The cloud could not do it now.
    Unavailable,
    /// The kiosk has no link to the cloud.
    Offline,
    /// The call was refused (closed meanwhile, nobody available).
    Refused,
    /// The call broke off (media failure, link lost).
    CallCut,
    /// Muting did not work.
    MuteFailed,
}

/// What the customer is doing this for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Call,
    /// The site is closed: a callback.
    Callback,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Attract,
    Closed {
        opening: Option<jiff::Zoned>,
    },
    Phone {
        purpose: Purpose,
    },
    Code {
        purpose: Purpose,
        masked_phone: String,
        resend_at: Millis,
    },
    Consent {
        version: u32,
    },
    Queue {
        request: Option<String>,
        call: Option<String>,
        position: Option<u32>,
        estimated_wait_s: Option<u32>,
    },
    Call {
        call: String,
        started: Millis,
        muted: bool,
        recording: bool,
    },
    Survey {
        call: String,
    },
    Thanks,
    NoAnswer {
        call: String,
    },
    CallbackOffer {
        call: String,
    },
    Booked {
        masked_phone: String,
    },
    CallbackFailed,
    CallFailed {
        can_retry: bool,
    },
}

impl Step {
    fn name(&self) -> &'static str {
        use kiosk_bus::ui::screen;
        match self {
            Step::Attract => screen::ATTRACT,
            Step::Closed { .. } => screen::CLOSED,
            Step::Phone { .. } => screen::PHONE,
            Step::Code { .. } => screen::CODE,
            Step::Consent { .. } => screen::CONSENT,
            Step::Queue { .. } => screen::QUEUE,
            Step::Call { .. } => screen::CALL,
            Step::Survey { .. } => screen::SURVEY,
            Step::Thanks => screen::THANKS,
            Step::NoAnswer { .. } => screen::NO_ANSWER,
            Step::CallbackOffer { .. } => screen::CALLBACK_OFFER,
            Step::Booked { .. } => screen::BOOKED,
            Step::CallbackFailed => screen::CALLBACK_FAILED,
            Step::CallFailed { .. } => screen::CALL_FAILED,
        }
    }
}

/// The answer the journey waits for (the screen shows "one moment" meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Otp,
    Verify,
    Place,
    Callback,
}

/// What a gate shows instead of the journey.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Gate {
    Unavailable,
    Activation(String),
    Setup,
}

/// The display facts the page needs (from the board's `display.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DisplayInfo {
    pub px_per_mm: f64,
    pub min_target_px: f64,
}

/// Fixed facts from kiosk-ui's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub language: Language,
    /// ISO 3166 alpha-2.
    pub country: &'static str,
    pub display: DisplayInfo,
    /// Names this run of the service (sessions of different runs differ).
    pub boot: u64,
}

/// The journey.
#[derive(Debug, Clone)]
pub struct Journey {
    defaults: Defaults,
    config: Option<Box<DesiredConfig>>,
    link: Link,
    epoch: u64,
    language: Language,
    step: Step,
    problem: Option<Problem>,
    /// Counts problems, so the page can tell a new one from the same one again.
    problem_seq: u32,
    pending: Option<Pending>,
    last_activity: Millis,
    warning_since: Option<Millis>,
    auto_reset_at: Option<Millis>,
    /// The consent answer given for this session's call.
    consent: String,
    /// Counts handled inputs, so the page can tell a newer view from an older one.
    rev: u64,
}

impl Journey {
    pub fn new(defaults: Defaults) -> Journey {
        Journey {
            language: defaults.language,
            defaults,
            config: None,
            link: Link::default(),
            epoch: 1,
            step: Step::Attract,
            problem: None,
            problem_seq: 0,
            pending: None,
            last_activity: 0,
            warning_since: None,
            auto_reset_at: None,
            consent: consent::NOT_ASKED.into(),
            rev: 0,
        }
    }

    /// The session epoch (bumped by every privacy reset).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether anything of a customer is on screen or in flight (a reset has work to do).
    pub fn has_session(&self) -> bool {
        self.session_active()
    }

    /// The session's name for the page: it reloads when this changes.
    pub fn session(&self) -> String {
        format!("{:x}-{}", self.defaults.boot, self.epoch)
    }

    /// The screen shown, as `Ui1.Screen` spells it.
    pub fn screen(&self) -> &'static str {
        use kiosk_bus::ui::screen;
        match self.gate() {
            Some(Gate::Unavailable) => screen::UNAVAILABLE,
            Some(Gate::Activation(_)) => screen::ACTIVATION,
            Some(Gate::Setup) => screen::SETUP,
            None => self.step.name(),
        }
    }

    pub fn language(&self) -> Language {
        self.language
    }

    fn default_language(&self) -> Language {
        self.config
            .as_ref()
            .and_then(|c| Language::parse(&c.locale.default))
            .filter(|l| self.languages().contains(l))
            .unwrap_or(self.defaults.language)
    }

    /// The languages offered: the config's that this build speaks, else all of them.
    pub fn languages(&self) -> Vec<Language> {
        let offered: Vec<Language> = match &self.config {
            Some(c) => Language::ALL
                .into_iter()
                .filter(|l| {
                    c.locale
                        .available
                        .iter()
                        .any(|t| Language::parse(t) == Some(*l))
                })
                .collect(),
            None => Vec::new(),
        };
        if offered.is_empty() {
            Language::ALL.to_vec()
        } else {
            offered
        }
    }

    fn gate(&self) -> Option<Gate> {
        if !self.link.present {
            return Some(Gate::Unavailable);
        }
        match self.link.state.as_str() {
            state::ENROLLED => {}
            state::AWAITING_ACTIVATION if !self.link.activation_code.is_empty() => {
                return Some(Gate::Activation(self.link.activation_code.clone()))
            }
            _ => return Some(Gate::Setup),
        }
        if !self.link.connected {
            return Some(Gate::Unavailable);
        }
        if self.config.is_none() {
            return Some(Gate::Setup);
        }
        None
    }

    /// Whether anything of a customer is on screen or in flight.
    fn session_active(&self) -> bool {
        self.step != Step::Attract
            || self.language != self.default_language()
            || self.pending.is_some()
    }

    fn idle_ms(&self) -> (Millis, Millis) {
        let (idle, warning) = self
            .config
            .as_ref()
            .map(|c| (c.idle.idle_s, c.idle.warning_s))
            .unwrap_or((DEFAULT_IDLE_S, DEFAULT_WARNING_S));
        (
            Millis::from(idle) * 1000,
            Millis::from(warning.max(kiosk_protocol::config::MIN_WARNING_S)) * 1000,
        )
    }

    /// Whether the idle timer runs: a session is on screen and the customer is expected to
    /// act (not while waiting for the cloud, in the queue, in a call, or on a screen that
    /// resets by itself).
    fn idle_applies(&self) -> bool {
        self.gate().is_none()
            && self.session_active()
            && self.pending.is_none()
            && !matches!(
                self.step,
                Step::Queue { .. } | Step::Call { .. } | Step::Thanks | Step::Booked { .. }
            )
    }

    /// When the edge must send [`Input::Tick`], if ever (`now`: a deadline that only
    /// changes the view, such as "send a new code" turning on, counts until it passes).
    pub fn next_deadline(&self, now: Now) -> Option<Millis> {
        let mut deadlines = Vec::new();
        if let Some(at) = self.auto_reset_at {
            deadlines.push(at);
        }
        if self.idle_applies() {
            let (idle, warning) = self.idle_ms();
            match self.warning_since {
                None => deadlines.push(self.last_activity + idle),
                Some(w) => deadlines.push(w + warning),
            }
        }
        if let Step::Code { resend_at, .. } = self.step {
            if resend_at > now.mono {
                deadlines.push(resend_at);
            }
        }
        deadlines.into_iter().min()
    }

    fn goto(&mut self, step: Step, now: Now) {
        self.step = step;
        self.problem = None;
        self.last_activity = now.mono;
        self.warning_since = None;
        self.auto_reset_at = match self.step {
            Step::Thanks | Step::Booked { .. } => Some(now.mono + THANKS_MS),
            _ => None,
        };
    }

    fn set_problem(&mut self, p: Problem) {
        self.problem = Some(p);
        self.problem_seq += 1;
    }

    fn issue(&self, command: Command) -> Issued {
        Issued {
            epoch: self.epoch,
            command,
        }
    }

    /// The privacy reset: end any call, tell kiosk-sync the session is over, forget
    /// everything of the customer, start a new session on the attract screen.
    fn reset(&mut self, now: Now) -> Vec<Issued> {
        let mut out = Vec::new();
        match &self.step {
            Step::Queue { call, request, .. } => {
                let id = call.clone().or_else(|| request.clone()).unwrap_or_default();
                out.push(self.issue(Command::EndCall {
                    call: id,
                    reason: "cancelled".into(),
                }));
            }
            Step::Call { call, .. } => out.push(self.issue(Command::EndCall {
                call: call.clone(),
                reason: "hangup".into(),
            })),
            _ => {}
        }
        out.push(self.issue(Command::EndJourney));
        self.epoch += 1;
        self.language = self.default_language();
        self.pending = None;
        self.consent = consent::NOT_ASKED.into();
        self.goto(Step::Attract, now);
        out
    }

    fn recording_notice(&self) -> Option<u32> {
        let c = self.config.as_ref()?;
        (c.recording.mode == Recording::OnWithConsent).then_some(c.recording.consent_notice_version)
    }

    /// Places the verified customer's call with the consent answer given.
    fn place(&mut self, now: Now) -> Vec<Issued> {
        self.pending = Some(Pending::Place);
        self.goto(
            Step::Queue {
                request: None,
                call: None,
                position: None,
                estimated_wait_s: None,
            },
            now,
        );
        vec![self.issue(Command::PlaceCustomerCall {
            language: self.language.tag().into(),
            consent: self.consent.clone(),
        })]
    }

    /// After a verified code, for a call: the consent question, or the call at once.
    fn after_verified_call(&mut self, now: Now) -> Vec<Issued> {
        match self.recording_notice() {
            Some(v) if text::consent_notice(v, self.language).is_some() => {
                self.goto(Step::Consent { version: v }, now);
                Vec::new()
            }
            Some(_) => {
                // A notice this build does not have: never record without it being shown.
                self.consent = consent::DECLINED.into();
                self.place(now)
            }
            None => {
                self.consent = consent::NOT_ASKED.into();
                self.place(now)
            }
        }
    }

    fn open_now(&self, now: Now) -> Result<(), Option<jiff::Zoned>> {
        let Some(c) = &self.config else { return Ok(()) };
        // A time zone this kiosk does not know was refused when the config was checked;
        // should one slip through, the cloud still refuses calls outside hours.
        let Ok(s) = Schedule::new(&c.site.timezone, &c.site.business_hours, &c.site.holidays)
        else {
            return Ok(());
        };
        if s.is_open_at(now.wall) {
            Ok(())
        } else {
            Err(s.next_opening(now.wall))
        }
    }

    /// Reacts to one input.
    pub fn handle(&mut self, input: Input, now: Now) -> Result<Vec<Issued>, Refusal> {
        self.rev += 1;
        match input {
            Input::Action(a) => {
                if self.gate().is_some() {
                    return Err(Refusal::NotNow(format!(
                        "the {} screen takes no action",
                        self.screen()
                    )));
                }
                self.last_activity = now.mono;
                self.warning_since = None;
                self.action(a, now)
            }
            Input::Link(link) => {
                let was_gated = self.gate().is_some();
                self.link = link;
                Ok(self.after_gate_change(was_gated, now))
            }
            Input::Config(config) => {
                let was_gated = self.gate().is_some();
                let active = self.session_active();
                self.config = config;
                // A new config sets the idle screen's language; a customer keeps theirs while
                // it is still offered.
                if !active || !self.languages().contains(&self.language) {
                    self.language = self.default_language();
                }
                Ok(self.after_gate_change(was_gated, now))
            }
            Input::Answer { epoch, answer } => {
                if epoch != self.epoch {
                    return Ok(Vec::new());
                }
                Ok(self.answer(answer, now))
            }
            Input::Signal(s) => Ok(self.signal(s, now)),
            Input::MediaMuted(m) => {
                if let Step::Call { muted, .. } = &mut self.step {
                    *muted = m;
                }
                Ok(Vec::new())
            }
            Input::Reset => Ok(self.reset(now)),
            Input::Tick => Ok(self.tick(now)),
        }
    }

    fn after_gate_change(&mut self, was_gated: bool, now: Now) -> Vec<Issued> {
        let gated = self.gate().is_some();
        if gated && self.session_active() {
            // The kiosk cannot serve the customer now: end the session.
            return self.reset(now);
        }
        if was_gated && !gated {
            self.last_activity = now.mono;
            self.warning_since = None;
        }
        Vec::new()
    }

    fn tick(&mut self, now: Now) -> Vec<Issued> {
        if self.auto_reset_at.is_some_and(|at| now.mono >= at) {
            return self.reset(now);
        }
        if self.idle_applies() {
            let (idle, warning) = self.idle_ms();
            match self.warning_since {
                None if now.mono >= self.last_activity + idle => {
                    self.warning_since = Some(now.mono);
                }
                Some(w) if now.mono >= w + warning => return self.reset(now),
                _ => {}
            }
        }
        Vec::new()
    }

    fn not_now(&self, what: &str) -> Refusal {
        Refusal::NotNow(format!("{what} does not fit the {} screen", self.screen()))
    }

    fn action(&mut self, a: Action, now: Now) -> Result<Vec<Issued>, Refusal> {
        match a {
            Action::Touch | Action::Extend => return Ok(Vec::new()),
            Action::Done => return Ok(self.reset(now)),
            _ => {}
        }
        if matches!((&a, &self.step), (Action::CancelCall, Step::Queue { .. })) {
            // Leaving the queue is always possible, even before kiosk-sync has answered.
            return Ok(self.reset(now));
        }
        if self.pending.is_some() {
            return Err(Refusal::NotNow(
                "waiting for an answer; try again in a moment".into(),
            ));
        }
        match (a, self.step.clone()) {
            (Action::Language { language }, step) => {
                let lang = Language::parse(&language)
                    .filter(|l| self.languages().contains(l))
                    .ok_or_else(|| {
                        Refusal::BadInput(format!(
                            "language {language:?} is not offered: {}",
                            self.languages()
                                .iter()
                                .map(|l| l.tag())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                if matches!(step, Step::Call { .. } | Step::Queue { .. }) {
                    return Err(self.not_now("a language change"));
                }
                self.language = lang;
                Ok(Vec::new())
            }
            (Action::Start, Step::Attract) => {
                match self.open_now(now) {
                    Ok(()) => self.goto(
                        Step::Phone {
                            purpose: Purpose::Call,
                        },
                        now,
                    ),
                    Err(opening) => self.goto(Step::Closed { opening }, now),
                }
                Ok(Vec::new())
            }
            (Action::RequestCallback, Step::Closed { .. }) => {
                self.goto(
                    Step::Phone {
                        purpose: Purpose::Callback,
                    },
                    now,
                );
                Ok(Vec::new())
            }
            (Action::Back, Step::Closed { .. } | Step::Phone { .. }) => {
                self.goto(Step::Attract, now);
                Ok(Vec::new())
            }
            (Action::SubmitPhone { country, number }, Step::Phone { .. }) => {
                match phone::to_e164(&country, &number) {
                    Ok(e164) => {
                        self.problem = None;
                        self.pending = Some(Pending::Otp);
                        Ok(vec![self.issue(Command::RequestOtp {
                            phone: e164,
                            language: self.language.tag().into(),
                        })])
                    }
                    Err(PhoneError::Invalid(_)) => {
                        self.set_problem(Problem::InvalidPhone);
                        Ok(Vec::new())
                    }
                    Err(e @ (PhoneError::UnknownCountry(_) | PhoneError::NotDigits)) => {
                        Err(Refusal::BadInput(format!("number: {e}")))
                    }
                }
            }
            (Action::ResendCode, Step::Code { resend_at, .. }) => {
                if now.mono < resend_at {
                    return Err(Refusal::NotNow(format!(
                        "a new code can be sent in {} s",
                        (resend_at - now.mono).div_ceil(1000)
                    )));
                }
                self.problem = None;
                self.pending = Some(Pending::Otp);
                Ok(vec![self.issue(Command::ResendOtp)])
            }
            (Action::SubmitCode { code }, Step::Code { .. }) => {
                if code.len() != CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Refusal::BadInput(format!(
                        "code: exactly {CODE_DIGITS} digits"
                    )));
                }
                self.problem = None;
                self.pending = Some(Pending::Verify);
                Ok(vec![self.issue(Command::VerifyOtp { code })])
            }
            (Action::ChangeNumber | Action::Back, Step::Code { purpose, .. }) => {
                self.goto(Step::Phone { purpose }, now);
                Ok(Vec::new())
            }
            (Action::Consent { granted }, Step::Consent { .. }) => {
                self.consent = if granted {
                    consent::GRANTED
                } else {
                    consent::DECLINED
                }
                .into();
                Ok(self.place(now))
            }
            (Action::Mute { muted }, Step::Call { .. }) => {
                Ok(vec![self.issue(Command::SetMicrophoneMuted(muted))])
            }
            (Action::HangUp, Step::Call { call, .. }) => {
                let out = vec![self.issue(Command::EndCall {
                    call: call.clone(),
                    reason: "hangup".into(),
                })];
                self.goto(Step::Survey { call }, now);
                Ok(out)
            }
            (Action::Survey { score }, Step::Survey { call }) => {
                if !(1..=3).contains(&score) {
                    return Err(Refusal::BadInput(format!(
                        "score: {score}; 1 (unhappy) to 3 (happy)"
                    )));
                }
                let out = vec![self.issue(Command::ReportSurvey { call, score })];
                self.goto(Step::Thanks, now);
                Ok(out)
            }
            (Action::Callback { accept }, Step::CallbackOffer { call }) => {
                if !accept {
                    return Ok(self.reset(now));
                }
                self.pending = Some(Pending::Callback);
                Ok(vec![self.issue(Command::RequestCallback { call })])
            }
            (Action::TryAgain, Step::CallFailed { can_retry: true }) => Ok(self.place(now)),
            (a, _) => Err(self.not_now(a.kind())),
        }
    }

    fn outcome_problem(o: &JourneyOutcome) -> Problem {
        match o {
            JourneyOutcome::Limited { retry_after_s } => Problem::Limited {
                retry_after_s: *retry_after_s,
            },
            JourneyOutcome::InvalidPhone { .. } => Problem::InvalidPhone,
            JourneyOutcome::WrongCode { tries_left } => Problem::WrongCode {
                tries_left: *tries_left,
            },
            JourneyOutcome::CodeDead { why } => Problem::CodeDead { why: why.clone() },
            JourneyOutcome::Offline => Problem::Offline,
            JourneyOutcome::Unavailable { .. }
            | JourneyOutcome::CodeSent { .. }
            | JourneyOutcome::Verified { .. }
            | JourneyOutcome::CallbackBooked { .. } => Problem::Unavailable,
        }
    }

    fn answer(&mut self, answer: Answer, now: Now) -> Vec<Issued> {
        match (answer, self.pending) {
            (Answer::Otp(r), Some(Pending::Otp)) => {
                self.pending = None;
                match (r, self.step.clone()) {
                    (
                        Ok(JourneyOutcome::CodeSent {
                            masked_phone,
                            resend_after_s,
                            ..
                        }),
                        Step::Phone { purpose } | Step::Code { purpose, .. },
                    ) => self.goto(
                        Step::Code {
                            purpose,
                            masked_phone,
                            resend_at: now.mono + Millis::from(resend_after_s) * 1000,
                        },
                        now,
                    ),
                    (Ok(o), _) => self.set_problem(Self::outcome_problem(&o)),
                    (Err(_), _) => self.set_problem(Problem::Unavailable),
                }
                Vec::new()
            }
            (Answer::Verify(r), Some(Pending::Verify)) => {
                self.pending = None;
                let Step::Code { purpose, .. } = self.step else {
                    return Vec::new();
                };
                match r {
                    Ok(JourneyOutcome::Verified { .. }) => match purpose {
                        Purpose::Call => self.after_verified_call(now),
                        Purpose::Callback => {
                            self.pending = Some(Pending::Callback);
                            vec![self.issue(Command::RequestCallback {
                                call: String::new(),
                            })]
                        }
                    },
                    Ok(o) => {
                        self.set_problem(Self::outcome_problem(&o));
                        Vec::new()
                    }
                    Err(_) => {
                        self.set_problem(Problem::Unavailable);
                        Vec::new()
                    }
                }
            }
            (Answer::Placed(r), Some(Pending::Place)) => {
                self.pending = None;
                match r {
                    Ok(req) => {
                        if let Step::Queue { request, .. } = &mut self.step {
                            *request = Some(req);
                        }
                    }
                    Err(_) => {
                        self.goto(Step::CallFailed { can_retry: true }, now);
                        self.set_problem(Problem::Refused);
                    }
                }
                Vec::new()
            }
            (Answer::Callback(r), Some(Pending::Callback)) => {
                self.pending = None;
                match r {
                    Ok(JourneyOutcome::CallbackBooked { masked_phone }) => {
                        self.goto(Step::Booked { masked_phone }, now)
                    }
                    Ok(o) => {
                        self.goto(Step::CallbackFailed, now);
                        self.set_problem(match o {
                            JourneyOutcome::Offline => Problem::Offline,
                            _ => Problem::Unavailable,
                        });
                    }
                    Err(_) => {
                        self.goto(Step::CallbackFailed, now);
                        self.set_problem(Problem::Unavailable);
                    }
                }
                Vec::new()
            }
            (Answer::Muted { muted: m, result }, _) => {
                if let Step::Call { muted, .. } = &mut self.step {
                    match result {
                        Ok(()) => {
                            *muted = m;
                            if self.problem == Some(Problem::MuteFailed) {
                                self.problem = None;
                            }
                        }
                        Err(_) => self.set_problem(Problem::MuteFailed),
                    }
                }
                Vec::new()
            }
            // An answer nothing waits for (a late one after a gate closed, or a `Done`).
            _ => Vec::new(),
        }
    }

    fn signal(&mut self, s: SyncSignal, now: Now) -> Vec<Issued> {
        let ours = |mine: &Option<String>, theirs: &str| {
            mine.as_deref().is_none_or(|m| m == theirs) && !theirs.is_empty()
        };
        match (s, self.step.clone()) {
            (
                SyncSignal::CallQueued {
                    request: r,
                    call: c,
                },
                Step::Queue { request, call, .. },
            ) if ours(&request, &r) && call.is_none() => {
                if let Step::Queue { request, call, .. } = &mut self.step {
                    *request = Some(r);
                    *call = Some(c);
                }
            }
            (
                SyncSignal::QueueUpdate {
                    call: c,
                    position: p,
                    estimated_wait_s: w,
                },
                Step::Queue { call, .. },
            ) if ours(&call, &c) => {
                if let Step::Queue {
                    call,
                    position,
                    estimated_wait_s,
                    ..
                } = &mut self.step
                {
                    *call = Some(c);
                    *position = Some(p);
                    *estimated_wait_s = (w > 0).then_some(w);
                }
            }
            (SyncSignal::CallAccepted { call: c }, Step::Queue { call, .. }) if ours(&call, &c) => {
                self.pending = None;
                let recording = self.consent == consent::GRANTED;
                self.goto(
                    Step::Call {
                        call: c,
                        started: now.mono,
                        muted: false,
                        recording,
                    },
                    now,
                );
            }
            (
                SyncSignal::CallEnded {
                    call: c,
                    request: r,
                    reason,
                },
                Step::Queue { call, request, .. },
            ) if (!c.is_empty() && call.as_deref() == Some(c.as_str()))
                || (!r.is_empty() && request.as_deref() == Some(r.as_str()))
                || (call.is_none()
                    && request.is_none()
                    && self.pending == Some(Pending::Place)) =>
            {
                self.pending = None;
                let id = if c.is_empty() {
                    call.unwrap_or_default()
                } else {
                    c
                };
                match reason.as_str() {
                    "not_answered" => self.goto(Step::NoAnswer { call: id }, now),
                    "kiosk_offline" => {
                        self.goto(Step::CallFailed { can_retry: false }, now);
                        self.set_problem(Problem::Offline);
                    }
                    _ => {
                        self.goto(Step::CallFailed { can_retry: true }, now);
                        self.set_problem(Problem::Refused);
                    }
                }
            }
            (
                SyncSignal::CallEnded {
                    call: c, reason, ..
                },
                Step::Call { call, .. },
            ) if c == call || c.is_empty() => match reason.as_str() {
                "media_failed" | "kiosk_offline" | "agent_disconnected" | "protocol_error" => {
                    self.goto(Step::CallFailed { can_retry: false }, now);
                    self.set_problem(Problem::CallCut);
                }
                _ => self.goto(Step::Survey { call }, now),
            },
            (SyncSignal::CallbackOffered { call: c }, Step::NoAnswer { call })
                if c == call || call.is_empty() =>
            {
                self.goto(Step::CallbackOffer { call: c }, now);
            }
            (SyncSignal::CallbackOffered { call: c }, Step::Queue { call, .. })
                if call.as_deref() == Some(c.as_str()) =>
            {
                self.pending = None;
                self.goto(Step::CallbackOffer { call: c }, now);
            }
            _ => {}
        }
        Vec::new()
    }

    /// What the page shows now.
    pub fn view(&self, now: Now) -> View {
        let secs_until = |at: Millis| at.saturating_sub(now.mono).div_ceil(1000);
        let mut v = View {
            session: self.session(),
            rev: self.rev,
            screen: self.screen(),
            language: self.language.tag(),
            dir: self.language.dir(),
            languages: self.languages().iter().map(|l| l.tag()).collect(),
            busy: self.pending.is_some(),
            display: self.defaults.display,
            warning: None,
            problem: None,
            activation: None,
            closed: None,
            phone: None,
            code: None,
            consent: None,
            queue: None,
            call: None,
            booked: None,
            auto_reset_s: self.auto_reset_at.map(secs_until),
            can_retry: None,
        };
        match self.gate() {
            Some(Gate::Activation(code)) => {
                v.activation = Some(ActivationView { code });
                return v;
            }
            Some(_) => return v,
            None => {}
        }
        if let (true, Some(w)) = (self.idle_applies(), self.warning_since) {
            v.warning = Some(WarningView {
                seconds_left: secs_until(w + self.idle_ms().1),
            });
        }
        v.problem = self.problem.clone().map(|problem| ProblemView {
            problem,
            seq: self.problem_seq,
        });
        match &self.step {
            Step::Attract | Step::Survey { .. } | Step::Thanks | Step::NoAnswer { .. } => {}
            Step::CallbackOffer { .. } | Step::CallbackFailed => {}
            Step::Closed { opening } => {
                v.closed = Some(ClosedView {
                    next_opening: opening
                        .as_ref()
                        .map(|z| text::opening_time(z, now.wall, self.language)),
                    next_opening_at: opening.as_ref().map(|z| z.to_string()),
                })
            }
            Step::Phone { purpose } => {
                let country = self
                    .config
                    .as_ref()
                    .and_then(|c| phone::country_of_zone(&c.site.timezone))
                    .map(|c| c.iso)
                    .unwrap_or(self.defaults.country);
                v.phone = Some(PhoneView {
                    purpose: *purpose,
                    country,
                    countries: phone::COUNTRIES
                        .iter()
                        .map(|c| CountryView {
                            iso: c.iso,
                            code: c.code,
                        })
                        .collect(),
                })
            }
            Step::Code {
                purpose,
                masked_phone,
                resend_at,
            } => {
                v.code = Some(CodeView {
                    purpose: *purpose,
                    masked_phone: masked_phone.clone(),
                    length: CODE_DIGITS,
                    resend_in_s: secs_until(*resend_at),
                })
            }
            Step::Consent { version } => {
                v.consent = Some(ConsentView {
                    version: *version,
                    notice: text::consent_notice(*version, self.language).unwrap_or_default(),
                })
            }
            Step::Queue {
                position,
                estimated_wait_s,
                call,
                ..
            } => {
                v.queue = Some(QueueView {
                    queued: call.is_some(),
                    position: *position,
                    estimated_wait_s: *estimated_wait_s,
                })
            }
            Step::Call {
                started,
                muted,
                recording,
                ..
            } => {
                v.call = Some(CallView {
                    elapsed_s: now.mono.saturating_sub(*started) / 1000,
                    muted: *muted,
                    recording: *recording,
                })
            }
            Step::Booked { masked_phone } => {
                v.booked = Some(BookedView {
                    masked_phone: masked_phone.clone(),
                })
            }
            Step::CallFailed { can_retry } => v.can_retry = Some(*can_retry),
        }
        v
    }
}

/// The page's whole view (`GET /api/view`, and each event of `GET /api/events`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    /// Changes with every privacy reset; the page reloads when it does.
    pub session: String,
    /// Grows with every input the journey handled: a view with a smaller `rev` is older.
    pub rev: u64,
    /// One of `kiosk_bus::ui::screen`.
    pub screen: &'static str,
    pub language: &'static str,
    /// `ltr` or `rtl`.
    pub dir: &'static str,
    pub languages: Vec<&'static str>,
    /// Waiting for the cloud's answer: buttons are off, "one moment" is shown.
    pub busy: bool,
    pub display: DisplayInfo,
    /// The idle warning, when it counts down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<WarningView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<ProblemView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<ActivationView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed: Option<ClosedView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<CallView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub booked: Option<BookedView>,
    /// Seconds before the screen resets by itself (thanks, booked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_reset_s: Option<u64>,
    /// On `call_failed`: whether "try again" is offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_retry: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WarningView {
    pub seconds_left: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProblemView {
    #[serde(flatten)]
    pub problem: Problem,
    pub seq: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivationView {
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClosedView {
    /// In words, in the site's time zone and the screen's language; `None`: no opening
    /// in sight.
    pub next_opening: Option<String>,
    /// RFC 9557 (`2026-11-23T09:00:00+01:00[Europe/Paris]`).
    pub next_opening_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountryView {
    pub iso: &'static str,
    pub code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhoneView {
    pub purpose: Purpose,
    /// The country picked at first.
    pub country: &'static str,
    pub countries: Vec<CountryView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodeView {
    pub purpose: Purpose,
    pub masked_phone: String,
    pub length: usize,
    /// 0: "send a new code" is on.
    pub resend_in_s: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsentView {
    pub version: u32,
    pub notice: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueView {
    /// The cloud has queued the call (agents are ringing).
    pub queued: bool,
    /// 1 is next.
    pub position: Option<u32>,
    pub estimated_wait_s: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallView {
    pub elapsed_s: u64,
    pub muted: bool,
    pub recording: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BookedView {
    pub masked_phone: String,
}

#[cfg(test)]
mod tests;
