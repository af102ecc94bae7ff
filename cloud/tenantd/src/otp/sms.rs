//! SMS: the gateway seam ([`SmsGateway`]), its two drivers, their configuration, and fail-over.
//!
//! - [`LogGateway`] (`log`, for development and tests): appends one JSON line per message to
//!   `DATA/sms/outbox.jsonl` (`{"at", "to", "text", "org", "purpose"}`), fsynced, so a developer
//!   or a test reads the code there. Nothing leaves the machine.
//! - [`HttpGateway`] (`http`): one POST to a provider, built from a template: the URL, a JSON
//!   or form body whose string values may hold `{to}`, `{text}`, `{sender}` and `{secret}`,
//!   headers (which may hold the same), basic or bearer authentication, a 2xx answer expected
//!   within 10 s, and the provider's message id read at a JSON pointer of the answer. An
//!   organization's `http` gateway may also take the provider's delivery receipts
//!   ([`super::receipts`]).
//!
//! [`GatewayConfig`] is what the platform default (`ServeConfig::sms_gateways`) and each
//! organization (`org_sms`, set with `PUT /api/v1/orgs/{org}/sms`) hold: gateways in fail-over
//! order, credentials included. [`SmsInput::apply`] checks an admin's input field by field and
//! keeps the secrets the input leaves out; [`GatewayConfig::view`] is what the API shows back,
//! never a credential (a receipt key only in its receipt URL's path, which the organization's
//! admins give their provider). [`send_in_order`] tries the gateways in order until one takes the message and
//! returns every attempt, for the delivery records.
//!
//! Errors never carry a number, a text or a secret: a provider's refusal is its host and HTTP
//! status, a failed request its host and cause (without the URL).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::receipts::{self, ReceiptConfig, ReceiptInput, ReceiptView};

/// At most this many gateways in a fail-over list.
pub const MAX_GATEWAYS: usize = 4;
/// How long a provider has to answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The `log` gateway's file, under the data dir.
pub const OUTBOX_PATH: &str = "sms/outbox.jsonl";
/// The largest provider answer read (for its message id).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What a message is for (the `sms_messages.purpose` column and the outbox's `purpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Code,
    Callback,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Code => "code",
            Purpose::Callback => "callback",
        }
    }
}

/// A message a gateway took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The provider's id for it, when it gave one.
    pub provider_id: Option<String>,
}

/// A gateway did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("write the SMS outbox {path}: {source}")]
    Outbox {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("request to {host} failed: {message}")]
    Request { host: String, message: String },
    #[error("{host} answered HTTP {status}")]
    Refused { host: String, status: u16 },
    #[error("the request template could not be filled: {0}")]
    Template(String),
}

/// What [`SmsGateway::send`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Delivery, SmsError>> + Send + 'a>>;

/// One way to send an SMS.
pub trait SmsGateway: Send + Sync + std::fmt::Debug {
    /// How delivery records name it: `log`, or `http:<name>`.
    fn name(&self) -> &str;

    /// Sends `text` to `to_e164`.
    fn send<'a>(&'a self, to_e164: &'a str, text: &'a str) -> SendFuture<'a>;
}

/// Serializes the `log` gateway's writers within the process.
static OUTBOX_LOCK: Mutex<()> = Mutex::new(());

/// The development gateway: one JSON line per message in `DATA/sms/outbox.jsonl`.
#[derive(Debug, Clone)]
pub struct LogGateway {
    path: PathBuf,
    org: String,
    purpose: Purpose,
}

impl LogGateway {
    /// Messages of organization `org_slug`, for `purpose`, into `data_dir`'s outbox.
    pub fn new(data_dir: &Path, org_slug: &str, purpose: Purpose) -> LogGateway {
        LogGateway {
            path: data_dir.join(OUTBOX_PATH),
            org: org_slug.to_string(),
            purpose,
        }
    }

    fn append(&self, line: &str) -> Result<(), SmsError> {
        let io = |source| SmsError::Outbox {
            path: self.path.clone(),
            source,
        };
        let _guard = OUTBOX_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(dir) = self.path.parent() {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(io)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                        .map_err(io)?;
                }
            }
        }
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&self.path).map_err(io)?;
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)
    }
}

impl SmsGateway for LogGateway {
    fn name(&self) -> &str {
        "log"
    }

    fn send<'a>(&'a self, to_e164: &'a str, text: &'a str) -> SendFuture<'a> {
        let mut line = serde_json::json!({
            "at": jiff::Timestamp::now().to_string(),
            "to": to_e164,
            "text": text,
            "org": self.org,
            "purpose": self.purpose.as_str(),
        })
        .to_string();
        line.push('\n');
        let this = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.append(&line))
                .await
                .map_err(|e| SmsError::Outbox {
                    path: self.path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })??;
            Ok(Delivery { provider_id: None })
        })
    }
}

/// How an `http` gateway's body is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// `application/json`: the template as it is, placeholders filled in its strings.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`: the template's keys and filled values.
    Form,
}

/// How an `http` gateway authenticates.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    Basic { username: String, password: String },
    Bearer { token: String },
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"(set)")
                .finish(),
            HttpAuth::Bearer { .. } => f.debug_struct("Bearer").field("token", &"(set)").finish(),
        }
    }
}

/// A provider's request, as configured.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGatewayConfig {
    /// 1 to 32 of `a-z`, `0-9`, `-`: how records name it (`http:<name>`).
    pub name: String,
    /// `https://…` (`{secret}` may be in it, filled URL-encoded).
    pub url: String,
    #[serde(default)]
    pub format: BodyFormat,
    /// The body template: a JSON object (a flat one of strings for `form`).
    pub body: Value,
    /// What fills `{sender}` (a sender id or number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Extra headers; values may hold placeholders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<HttpAuth>,
    /// What fills `{secret}` (an API key the provider wants in the body, a header or the URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Where the provider's message id is in its JSON answer (RFC 6901, `/messages/0/id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id_pointer: Option<String>,
    /// How the provider's delivery receipts are read, and their key (organizations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipts: Option<ReceiptConfig>,
}

impl std::fmt::Debug for HttpGatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGatewayConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("format", &self.format)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("auth", &self.auth)
            .field("secret", &self.secret.as_ref().map(|_| "(set)"))
            .field("receipts", &self.receipts)
            .finish_non_exhaustive()
    }
}

/// One gateway of a fail-over list, as stored (credentials included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GatewayConfig {
    /// The development outbox file.
    Log,
    /// A provider's HTTP API.
    Http(Box<HttpGatewayConfig>),
}

/// What the API shows of a gateway: never a credential (a receipt key only as the path of its
/// receipt URL, for the provider).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GatewayView {
    Log,
    Http(Box<HttpGatewayView>),
}

/// What the API shows of an `http` gateway.
#[derive(Debug, Clone, Serialize)]
pub struct HttpGatewayView {
    pub name: String,
    pub url: String,
    pub format: BodyFormat,
    pub body: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<HttpAuthView>,
    pub secret_set: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_id_pointer: Option<String>,
    /// With the receipt URL's path (the key is shown to the organization's admins, who give
    /// it to the provider).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipts: Option<ReceiptView>,
}

/// What the API shows of an authentication.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HttpAuthView {
    Basic {
        username: String,
        password_set: bool,
    },
    Bearer {
        token_set: bool,
    },
}

impl GatewayConfig {
    /// How delivery records name it.
    pub fn name(&self) -> String {
        match self {
            GatewayConfig::Log => "log".into(),
            GatewayConfig::Http(h) => format!("http:{}", h.name),
        }
    }

    /// What the API shows.
    pub fn view(&self) -> GatewayView {
        match self {
            GatewayConfig::Log => GatewayView::Log,
            GatewayConfig::Http(h) => GatewayView::Http(Box::new(HttpGatewayView {
                name: h.name.clone(),
                url: h.url.clone(),
                format: h.format,
                body: h.body.clone(),
                sender: h.sender.clone(),
                headers: h.headers.clone(),
                auth: h.auth.as_ref().map(|a| match a {
                    HttpAuth::Basic { username, password } => HttpAuthView::Basic {
                        username: username.clone(),
                        password_set: !password.is_empty(),
                    },
                    HttpAuth::Bearer { token } => HttpAuthView::Bearer {
                        token_set: !token.is_empty(),
                    },
                }),
                secret_set: h.secret.is_some(),
                provider_id_pointer: h.provider_id_pointer.clone(),
                receipts: h.receipts.as_ref().map(ReceiptConfig::view),
            })),
        }
    }

    /// The driver for one message of organization `org_slug`.
    pub fn gateway(&self, ctx: &GatewayContext<'_>) -> Box<dyn SmsGateway> {
        match self {
            GatewayConfig::Log => {
                Box::new(LogGateway::new(ctx.data_dir, ctx.org_slug, ctx.purpose))
            }
            GatewayConfig::Http(h) => Box::new(HttpGateway::new((**h).clone(), ctx.http.clone())),
        }
    }

    /// For the audit log: what changed, never a secret.
    pub fn audit_view(&self) -> Value {
        match self {
            GatewayConfig::Log => serde_json::json!({ "kind": "log" }),
            GatewayConfig::Http(h) => serde_json::json!({
                "kind": "http",
                "name": h.name,
                "host": reqwest::Url::parse(&fill(&h.url, &Vars::dummy(), Encode::Url))
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string)),
                "auth": h.auth.as_ref().map(|a| match a {
                    HttpAuth::Basic { .. } => "basic",
                    HttpAuth::Bearer { .. } => "bearer",
                }),
                "secret_set": h.secret.is_some(),
                "receipts": h.receipts.is_some(),
            }),
        }
    }

    /// The secrets, to tell whether a change touched them.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            GatewayConfig::Log => Vec::new(),
            GatewayConfig::Http(h) => {
                let mut s: Vec<&str> = h.secret.iter().map(String::as_str).collect();
                match &h.auth {
                    Some(HttpAuth::Basic { password, .. }) => s.push(password),
                    Some(HttpAuth::Bearer { token }) => s.push(token),
                    None => {}
                }
                if let Some(r) = &h.receipts {
                    s.push(&r.key);
                }
                s
            }
        }
    }
}

/// What drivers need besides their configuration.
#[derive(Debug, Clone, Copy)]
pub struct GatewayContext<'a> {
    pub data_dir: &'a Path,
    pub http: &'a reqwest::Client,
    pub org_slug: &'a str,
    pub purpose: Purpose,
}

/// The client `http` gateways share: public roots, no redirects, a 10 s time-out.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The values placeholders take.
#[derive(Debug, Clone, Copy)]
struct Vars<'a> {
    to: &'a str,
    text: &'a str,
    sender: &'a str,
    secret: &'a str,
}

impl Vars<'static> {
    /// Stand-ins, to check a template's shape.
    fn dummy() -> Vars<'static> {
        Vars {
            to: "+10000000000",
            text: "x",
            sender: "x",
            secret: "x",
        }
    }
}

/// The placeholders a template may hold.
const PLACEHOLDERS: [&str; 4] = ["to", "text", "sender", "secret"];

/// How a filled value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encode {
    /// As it is (JSON strings, form values and headers are encoded by their writer).
    Plain,
    /// Percent-encoded, for a URL.
    Url,
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `{name}` placeholders in `s` that are not known.
fn unknown_placeholders(s: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                let looks_like = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit());
                if looks_like && !PLACEHOLDERS.contains(&name) {
                    unknown.push(format!("{{{name}}}"));
                }
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    unknown
}

/// Fills placeholders in one pass, so a value that holds `{…}` is never filled again.
fn fill(template: &str, vars: &Vars<'_>, encode: Encode) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    'scan: while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        for name in PLACEHOLDERS {
            let token = format!("{{{name}}}");
            if after.starts_with(&token) {
                let value = match name {
                    "to" => vars.to,
                    "text" => vars.text,
                    "sender" => vars.sender,
                    _ => vars.secret,
                };
                match encode {
                    Encode::Plain => out.push_str(value),
                    Encode::Url => out.push_str(&percent_encode(value)),
                }
                rest = &after[token.len()..];
                continue 'scan;
            }
        }
        out.push('{');
        rest = &after[1..];
    }
    out.push_str(rest);
    out
}

/// Fills the strings of a JSON template.
fn fill_json(template: &Value, vars: &Vars<'_>) -> Value {
    match template {
        Value::String(s) => Value::String(fill(s, vars, Encode::Plain)),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_json(v, vars)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_json(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every string of a JSON template.
fn strings(template: &Value, out: &mut Vec<String>) {
    match template {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The production gateway: one POST to a provider's API.
#[derive(Debug, Clone)]
pub struct HttpGateway {
    config: HttpGatewayConfig,
    name: String,
    client: reqwest::Client,
}

impl HttpGateway {
    pub fn new(config: HttpGatewayConfig, client: reqwest::Client) -> HttpGateway {
        let name = format!("http:{}", config.name);
        HttpGateway {
            config,
            name,
            client,
        }
    }

    async fn post(&self, to_e164: &str, text: &str) -> Result<Delivery, SmsError> {
        let c = &self.config;
        let vars = Vars {
            to: to_e164,
            text,
            sender: c.sender.as_deref().unwrap_or(""),
            secret: c.secret.as_deref().unwrap_or(""),
        };
        let url = reqwest::Url::parse(&fill(&c.url, &vars, Encode::Url))
            .map_err(|e| SmsError::Template(format!("url: {e}")))?;
        let host = url.host_str().unwrap_or("(no host)").to_string();
        let mut request = self.client.post(url);
        for (name, value) in &c.headers {
            let value = reqwest::header::HeaderValue::from_str(&fill(value, &vars, Encode::Plain))
                .map_err(|_| SmsError::Template(format!("header {name}: not a header value")))?;
            request = request.header(name.as_str(), value);
        }
        request = match &c.auth {
            Some(HttpAuth::Basic { username, password }) => {
                request.basic_auth(username, Some(password))
            }
            Some(HttpAuth::Bearer { token }) => request.bearer_auth(token),
            None => request,
        };
        let body = fill_json(&c.body, &vars);
        request = match c.format {
            BodyFormat::Json => request.json(&body),
            BodyFormat::Form => {
                let Value::Object(map) = body else {
                    return Err(SmsError::Template("a form body is an object".into()));
                };
                let pairs: Vec<(String, String)> = map
                    .into_iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => (k, s),
                        other => (k, other.to_string()),
                    })
                    .collect();
                request.form(&pairs)
            }
        };
        let mut response = request
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| SmsError::Request {
                host: host.clone(),
                message: error_chain(&e.without_url()),
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(SmsError::Refused {
                host,
                status: status.as_u16(),
            });
        }
        let Some(pointer) = c.provider_id_pointer.as_deref() else {
            return Ok(Delivery { provider_id: None });
        };
        let mut answer = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if answer.len() + chunk.len() <= MAX_ANSWER_BYTES => {
                    answer.extend_from_slice(&chunk);
                }
                // Taken already (2xx); an answer too long or cut short only loses the id.
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => break,
            }
        }
        let provider_id = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| match v.pointer(pointer) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            })
            .map(|id| id.chars().take(receipts::MAX_PROVIDER_ID_CHARS).collect());
        Ok(Delivery { provider_id })
    }
}

impl SmsGateway for HttpGateway {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, to_e164: &'a str, text: &'a str) -> SendFuture<'a> {
        Box::pin(self.post(to_e164, text))
    }
}

/// An error with its causes.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One gateway's attempt at a message.
#[derive(Debug)]
pub struct Attempt {
    /// The gateway's name (`log`, `http:<name>`).
    pub gateway: String,
    pub outcome: Result<Delivery, SmsError>,
}

/// Tries `gateways` in order until one takes the message; returns every attempt (the last one
/// is the success, if any).
pub async fn send_in_order(
    gateways: &[Box<dyn SmsGateway>],
    to_e164: &str,
    text: &str,
) -> Vec<Attempt> {
    let mut attempts = Vec::with_capacity(gateways.len());
    for gateway in gateways {
        let outcome = gateway.send(to_e164, text).await;
        let taken = outcome.is_ok();
        attempts.push(Attempt {
            gateway: gateway.name().to_string(),
            outcome,
        });
        if taken {
            break;
        }
    }
    attempts
}

/// What a gateway list may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayRules {
    /// The `log` gateway and `http://` to a loopback address (development and tests). The
    /// platform default always may; organizations only when the operator allows it.
    pub allow_dev: bool,
}

/// A field of a gateway list that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayInvalid {
    pub field: &'static str,
    pub message: String,
}

/// The body of `PUT /orgs/{org}/sms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsInput {
    /// In fail-over order; empty: use the platform's gateways.
    pub gateways: Vec<GatewayInput>,
}

/// One gateway as an admin sends it: secrets may be left out to keep the stored ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GatewayInput {
    Log,
    Http(Box<HttpGatewayInput>),
}

/// An `http` gateway as an admin sends it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGatewayInput {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub format: BodyFormat,
    pub body: Value,
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub auth: Option<HttpAuthInput>,
    /// Absent: keep the stored one (same gateway name); empty: remove it.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub provider_id_pointer: Option<String>,
    /// Reading the provider's delivery receipts; absent: none (the key is dropped).
    #[serde(default)]
    pub receipts: Option<ReceiptInput>,
}

impl std::fmt::Debug for HttpGatewayInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGatewayInput")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// An authentication as an admin sends it; a password or token left out keeps the stored one
/// of the same gateway and type.
#[derive(Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuthInput {
    Basic {
        username: String,
        #[serde(default)]
        password: Option<String>,
    },
    Bearer {
        #[serde(default)]
        token: Option<String>,
    },
}

impl std::fmt::Debug for HttpAuthInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpAuthInput::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            HttpAuthInput::Bearer { .. } => f.debug_struct("Bearer").finish_non_exhaustive(),
        }
    }
}

const MAX_URL: usize = 2048;
const MAX_SECRET: usize = 2048;
const MAX_HEADERS: usize = 16;
const MAX_SENDER: usize = 32;
const MAX_BODY_TEMPLATE: usize = 8 * 1024;

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

impl SmsInput {
    /// Checks the input and merges it with `current` (for the kept secrets).
    pub fn apply(
        self,
        current: &[GatewayConfig],
        rules: GatewayRules,
    ) -> Result<Vec<GatewayConfig>, GatewayInvalid> {
        if self.gateways.len() > MAX_GATEWAYS {
            return Err(GatewayInvalid {
                field: "gateways",
                message: format!("at most {MAX_GATEWAYS} gateways"),
            });
        }
        let mut out = Vec::with_capacity(self.gateways.len());
        for (i, input) in self.gateways.into_iter().enumerate() {
            let config = match input {
                GatewayInput::Log => GatewayConfig::Log,
                GatewayInput::Http(h) => {
                    let kept = current.iter().find_map(|c| match c {
                        GatewayConfig::Http(old) if old.name == h.name => Some(&**old),
                        _ => None,
                    });
                    let merged = (*h).merge(kept).map_err(|(field, m)| GatewayInvalid {
                        field,
                        message: format!("gateway {}: {m}", i + 1),
                    })?;
                    GatewayConfig::Http(Box::new(merged))
                }
            };
            out.push(config);
        }
        check_list(&out, rules)?;
        Ok(out)
    }
}

impl HttpGatewayInput {
    fn merge(
        self,
        kept: Option<&HttpGatewayConfig>,
    ) -> Result<HttpGatewayConfig, (&'static str, String)> {
        let secret = match self.secret {
            None => kept.and_then(|k| k.secret.clone()),
            Some(s) if s.is_empty() => None,
            Some(s) => Some(s),
        };
        let auth = match self.auth {
            None => None,
            Some(HttpAuthInput::Basic { username, password }) => {
                let password = match password {
                    Some(p) => p,
                    None => match kept.and_then(|k| k.auth.as_ref()) {
                        Some(HttpAuth::Basic { password, .. }) => password.clone(),
                        _ => return Err(("auth", "basic authentication needs a password".into())),
                    },
                };
                Some(HttpAuth::Basic { username, password })
            }
            Some(HttpAuthInput::Bearer { token }) => {
                let token = match token {
                    Some(t) => t,
                    None => match kept.and_then(|k| k.auth.as_ref()) {
                        Some(HttpAuth::Bearer { token }) => token.clone(),
                        _ => return Err(("auth", "bearer authentication needs a token".into())),
                    },
                };
                Some(HttpAuth::Bearer { token })
            }
        };
        Ok(HttpGatewayConfig {
            name: self.name,
            url: self.url.trim().to_string(),
            format: self.format,
            body: self.body,
            sender: self.sender.filter(|s| !s.is_empty()),
            headers: self.headers,
            auth,
            secret,
            provider_id_pointer: self.provider_id_pointer.filter(|p| !p.is_empty()),
            receipts: self
                .receipts
                .map(|r| r.merge(kept.and_then(|k| k.receipts.as_ref()))),
        })
    }
}

/// Checks a whole list (the platform's at start, an organization's on `PUT`).
pub fn check_list(list: &[GatewayConfig], rules: GatewayRules) -> Result<(), GatewayInvalid> {
    if list.len() > MAX_GATEWAYS {
        return Err(GatewayInvalid {
            field: "gateways",
            message: format!("at most {MAX_GATEWAYS} gateways"),
        });
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, g) in list.iter().enumerate() {
        let bad = |field, m: String| GatewayInvalid {
            field,
            message: format!("gateway {}: {m}", i + 1),
        };
        match g {
            GatewayConfig::Log if !rules.allow_dev => {
                return Err(bad(
                    "kind",
                    "the log gateway writes messages to a file on the server and is for \
                     development only"
                        .into(),
                ))
            }
            GatewayConfig::Log => {
                if !names.insert("log".to_string()) {
                    return Err(bad("kind", "the log gateway is named twice".into()));
                }
            }
            GatewayConfig::Http(h) => {
                check_http(h, rules).map_err(|(field, m)| bad(field, m))?;
                if !names.insert(format!("http:{}", h.name)) {
                    return Err(bad("name", format!("the name {:?} is used twice", h.name)));
                }
            }
        }
    }
    Ok(())
}

fn check_http(h: &HttpGatewayConfig, rules: GatewayRules) -> Result<(), (&'static str, String)> {
    if !(1..=32).contains(&h.name.len())
        || !h
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(("name", "1 to 32 of a-z, 0-9 and -".into()));
    }
    check_url(&h.url, rules).map_err(|m| ("url", m))?;
    if let Some(s) = &h.secret {
        if s.len() > MAX_SECRET || !printable(s) {
            return Err((
                "secret",
                format!("at most {MAX_SECRET} bytes, no control characters"),
            ));
        }
    }
    match &h.auth {
        Some(HttpAuth::Basic { username, password }) => {
            if username.is_empty() || username.len() > 256 || !printable(username) {
                return Err(("auth", "the user name must have 1 to 256 characters".into()));
            }
            if username.contains(':') {
                return Err(("auth", "a basic user name cannot hold `:`".into()));
            }
            if password.is_empty() || password.len() > 256 || !printable(password) {
                return Err(("auth", "the password must have 1 to 256 characters".into()));
            }
        }
        Some(HttpAuth::Bearer { token })
            if token.is_empty() || token.len() > MAX_SECRET || !printable(token) =>
        {
            return Err((
                "auth",
                format!("the token must have 1 to {MAX_SECRET} characters"),
            ));
        }
        Some(HttpAuth::Bearer { .. }) | None => {}
    }
    if let Some(s) = &h.sender {
        if s.chars().count() > MAX_SENDER || !printable(s) {
            return Err((
                "sender",
                format!("at most {MAX_SENDER} characters, no control characters"),
            ));
        }
    }
    if let Some(p) = &h.provider_id_pointer {
        if !p.starts_with('/') || p.len() > 256 {
            return Err((
                "provider_id_pointer",
                "a JSON pointer such as /messages/0/id (starting with /, at most 256 bytes)".into(),
            ));
        }
    }
    if let Some(r) = &h.receipts {
        receipts::check(r)?;
    }
    if h.headers.len() > MAX_HEADERS {
        return Err(("headers", format!("at most {MAX_HEADERS} headers")));
    }
    let mut templates = vec![h.url.clone()];
    for (name, value) in &h.headers {
        let parsed = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ("headers", format!("{name:?} is not a header name")))?;
        if matches!(
            parsed.as_str(),
            "host" | "content-length" | "content-type" | "transfer-encoding" | "connection"
        ) || (h.auth.is_some() && parsed == reqwest::header::AUTHORIZATION)
        {
            return Err(("headers", format!("tenantd sets the {name} header itself")));
        }
        let filled = fill(value, &Vars::dummy(), Encode::Plain);
        if value.len() > MAX_SECRET || reqwest::header::HeaderValue::from_str(&filled).is_err() {
            return Err((
                "headers",
                format!("the value of {name} is not a header value"),
            ));
        }
        templates.push(value.clone());
    }
    if serde_json::to_string(&h.body).map_or(0, |s| s.len()) > MAX_BODY_TEMPLATE {
        return Err((
            "body",
            format!("the template is larger than {MAX_BODY_TEMPLATE} bytes"),
        ));
    }
    let mut body_strings = Vec::new();
    match (&h.format, &h.body) {
        (BodyFormat::Json, Value::Object(_) | Value::Array(_)) => {}
        (BodyFormat::Json, _) => {
            return Err((
                "body",
                "a JSON body template is an object or an array".into(),
            ))
        }
        (BodyFormat::Form, Value::Object(map)) => {
            if !map.values().all(|v| v.is_string()) {
                return Err((
                    "body",
                    "a form body template is an object of strings".into(),
                ));
            }
        }
        (BodyFormat::Form, _) => {
            return Err((
                "body",
                "a form body template is an object of strings".into(),
            ))
        }
    }
    strings(&h.body, &mut body_strings);
    for needed in ["{to}", "{text}"] {
        if !body_strings.iter().any(|s| s.contains(needed)) {
            return Err(("body", format!("the body template must hold {needed}")));
        }
    }
    templates.extend(body_strings);
    for t in &templates {
        if let Some(unknown) = unknown_placeholders(t).first() {
            return Err((
                "body",
                format!(
                    "unknown placeholder {unknown}: use {{to}}, {{text}}, {{sender}} or {{secret}}"
                ),
            ));
        }
        if t.contains("{secret}") && h.secret.is_none() {
            return Err((
                "secret",
                "the template uses {secret}, which is not set".into(),
            ));
        }
    }
    Ok(())
}

/// `https://` to any host; `http://` only to a loopback address, and only in development.
fn check_url(raw: &str, rules: GatewayRules) -> Result<(), String> {
    if raw.len() > MAX_URL {
        return Err(format!("at most {MAX_URL} bytes"));
    }
    let url = reqwest::Url::parse(&fill(raw, &Vars::dummy(), Encode::Url))
        .map_err(|e| format!("not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials do not belong in the URL: use auth or secret".into());
    }
    if url.fragment().is_some() {
        return Err("a fragment does not belong in the URL".into());
    }
    let host = url.host_str().ok_or("the URL names no host")?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if rules.allow_dev && is_loopback(host) => Ok(()),
        "http" if rules.allow_dev => Err("http:// only to a loopback address".into()),
        _ => Err("the URL must start with https://".into()),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEV: GatewayRules = GatewayRules { allow_dev: true };
    const PROD: GatewayRules = GatewayRules { allow_dev: false };

    fn input(v: Value) -> SmsInput {
        serde_json::from_value(v).unwrap()
    }

    fn provider() -> Value {
        json!({ "kind": "http", "name": "primary", "url": "https://sms.example.test/v1/send",
                "body": { "to": "{to}", "text": "{text}", "from": "{sender}" },
                "sender": "Shop", "auth": { "type": "basic", "username": "acct", "password": "pw1" },
                "provider_id_pointer": "/id" })
    }

    #[test]
    fn placeholders_are_filled_once() {
        let vars = Vars {
            to: "+33612345678",
            text: "code {secret}",
            sender: "S",
            secret: "k",
        };
        assert_eq!(
            fill(
                "{to}|{text}|{sender}|{secret}|{other}|{",
                &vars,
                Encode::Plain
            ),
            "+33612345678|code {secret}|S|k|{other}|{"
        );
        assert_eq!(
            fill("https://x.test/?key={secret}&to={to}", &vars, Encode::Url),
            "https://x.test/?key=k&to=%2B33612345678"
        );
        let body = fill_json(&json!({ "m": [{ "to": "{to}" }], "n": 1 }), &vars);
        assert_eq!(body, json!({ "m": [{ "to": "+33612345678" }], "n": 1 }));
    }

    #[test]
    fn an_http_gateway_is_checked_field_by_field() {
        let ok = input(json!({ "gateways": [provider()] }))
            .apply(&[], PROD)
            .unwrap();
        assert_eq!(ok.len(), 1);
        let refuse = |mut g: Value, patch: Value, rules| {
            for (k, v) in patch.as_object().unwrap() {
                g[k] = v.clone();
            }
            input(json!({ "gateways": [g] }))
                .apply(&[], rules)
                .unwrap_err()
        };
        let e = refuse(
            provider(),
            json!({ "url": "http://sms.example.test/" }),
            PROD,
        );
        assert_eq!(e.field, "url");
        assert!(e.message.contains("https://"), "{e:?}");
        let e = refuse(provider(), json!({ "url": "http://10.0.0.1/" }), DEV);
        assert!(e.message.contains("loopback"), "{e:?}");
        assert!(input(json!({ "gateways": [
            { "kind": "http", "name": "local", "url": "http://127.0.0.1:9/sms",
              "body": { "to": "{to}", "text": "{text}" } }] }))
        .apply(&[], DEV)
        .is_ok());
        let e = refuse(
            provider(),
            json!({ "url": "https://user:pw@sms.example.test/" }),
            PROD,
        );
        assert_eq!(e.field, "url");
        let e = refuse(provider(), json!({ "body": { "to": "{to}" } }), PROD);
        assert_eq!(e.field, "body");
        assert!(e.message.contains("{text}"), "{e:?}");
        let e = refuse(
            provider(),
            json!({ "body": { "to": "{to}", "text": "{text}", "k": "{key}" } }),
            PROD,
        );
        assert!(e.message.contains("{key}"), "{e:?}");
        let e = refuse(
            provider(),
            json!({ "body": { "to": "{to}", "text": "{text}", "k": "{secret}" } }),
            PROD,
        );
        assert_eq!(e.field, "secret");
        let e = refuse(provider(), json!({ "name": "Primary!" }), PROD);
        assert_eq!(e.field, "name");
        let e = refuse(
            provider(),
            json!({ "format": "form", "body": { "to": "{to}", "text": "{text}", "n": 1 } }),
            PROD,
        );
        assert_eq!(e.field, "body");
        let e = refuse(provider(), json!({ "headers": { "Host": "x" } }), PROD);
        assert_eq!(e.field, "headers");
        let e = refuse(provider(), json!({ "provider_id_pointer": "id" }), PROD);
        assert_eq!(e.field, "provider_id_pointer");
        let e = refuse(
            provider(),
            json!({ "auth": { "type": "basic", "username": "acct" } }),
            PROD,
        );
        assert_eq!(e.field, "auth");
        let e = input(json!({ "gateways": [{ "kind": "log" }] }))
            .apply(&[], PROD)
            .unwrap_err();
        assert_eq!(e.field, "kind");
        let e = input(json!({ "gateways": [provider(), provider()] }))
            .apply(&[], PROD)
            .unwrap_err();
        assert_eq!(e.field, "name");
        assert!(serde_json::from_value::<SmsInput>(
            json!({ "gateways": [{ "kind": "http", "name": "x", "url": "https://a.test",
                                   "body": {}, "surprise": 1 }] })
        )
        .is_err());
    }

    #[test]
    fn secrets_are_kept_when_left_out_and_never_shown() {
        let mut g = provider();
        g["secret"] = json!("api-key-1");
        g["headers"] = json!({ "X-Api-Key": "{secret}" });
        let stored = input(json!({ "gateways": [g] })).apply(&[], PROD).unwrap();
        // The same gateway again, secrets left out: they are kept.
        let mut again = provider();
        again["auth"] = json!({ "type": "basic", "username": "acct2" });
        again["headers"] = json!({ "X-Api-Key": "{secret}" });
        let next = input(json!({ "gateways": [again] }))
            .apply(&stored, PROD)
            .unwrap();
        let GatewayConfig::Http(h) = &next[0] else {
            panic!("http")
        };
        assert_eq!(h.secret.as_deref(), Some("api-key-1"));
        assert_eq!(
            h.auth,
            Some(HttpAuth::Basic {
                username: "acct2".into(),
                password: "pw1".into()
            })
        );
        let view = serde_json::to_value(next[0].view()).unwrap();
        assert_eq!(
            view["auth"],
            json!({ "type": "basic", "username": "acct2", "password_set": true })
        );
        assert_eq!(view["secret_set"], json!(true));
        let text = view.to_string();
        assert!(
            !text.contains("pw1") && !text.contains("api-key-1"),
            "{text}"
        );
        assert!(!format!("{:?}", next[0]).contains("pw1"));
        let audit = next[0].audit_view().to_string();
        assert!(
            audit.contains("sms.example.test") && !audit.contains("pw1"),
            "{audit}"
        );
        // An empty secret removes it; then {secret} has nothing to fill.
        let mut removed = provider();
        removed["secret"] = json!("");
        removed["headers"] = json!({ "X-Api-Key": "{secret}" });
        let e = input(json!({ "gateways": [removed] }))
            .apply(&next, PROD)
            .unwrap_err();
        assert_eq!(e.field, "secret");
        // A stored config reads back as it was written.
        let text = serde_json::to_string(&next).unwrap();
        let back: Vec<GatewayConfig> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, next);
    }

    #[test]
    fn receipts_keep_their_key_show_its_path_and_are_checked() {
        let mut g = provider();
        g["receipts"] = json!({ "format": "form", "provider_id": "MessageSid",
            "status": "MessageStatus", "delivered": ["delivered"], "undelivered": ["failed"] });
        let stored = input(json!({ "gateways": [g.clone()] }))
            .apply(&[], PROD)
            .unwrap();
        let GatewayConfig::Http(h) = &stored[0] else {
            panic!("http")
        };
        let key = h.receipts.as_ref().unwrap().key.clone();
        let view = serde_json::to_value(stored[0].view()).unwrap();
        assert_eq!(
            view["receipts"]["url_path"],
            format!("/api/v1/sms/receipts/{key}")
        );
        assert_eq!(view["receipts"]["provider_id"], "MessageSid");
        let audit = stored[0].audit_view();
        assert_eq!(audit["receipts"], json!(true));
        assert!(!audit.to_string().contains(&key));
        assert!(stored[0].secrets().contains(&key.as_str()));
        // Saved again: the same key; with new_key: another one; without receipts: none.
        let again = input(json!({ "gateways": [g.clone()] }))
            .apply(&stored, PROD)
            .unwrap();
        assert_eq!(again, stored);
        let mut fresh = g.clone();
        fresh["receipts"]["new_key"] = json!(true);
        let fresh = input(json!({ "gateways": [fresh] }))
            .apply(&stored, PROD)
            .unwrap();
        assert_ne!(fresh[0].secrets(), stored[0].secrets());
        let none = input(json!({ "gateways": [provider()] }))
            .apply(&stored, PROD)
            .unwrap();
        assert!(serde_json::to_value(none[0].view()).unwrap()["receipts"].is_null());
        // A bad setting names the field; unknown fields and a key of one's own are refused.
        let mut bad = g.clone();
        bad["receipts"]["provider_id"] = json!("");
        let e = input(json!({ "gateways": [bad] }))
            .apply(&[], PROD)
            .unwrap_err();
        assert_eq!(e.field, "receipts");
        assert!(e.message.starts_with("gateway 1: provider_id"), "{e:?}");
        let mut own_key = g;
        own_key["receipts"]["key"] = json!(key);
        assert!(serde_json::from_value::<SmsInput>(json!({ "gateways": [own_key] })).is_err());
    }

    #[tokio::test]
    async fn the_log_gateway_appends_one_line_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let g = LogGateway::new(dir.path(), "shop", Purpose::Code);
        g.send("+33612345678", "123456 is your Shop code.")
            .await
            .unwrap();
        g.send("+33612345679", "654321 is your Shop code.")
            .await
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join(OUTBOX_PATH)).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["to"], "+33612345678");
        assert_eq!(lines[0]["org"], "shop");
        assert_eq!(lines[0]["purpose"], "code");
        assert!(lines[1]["text"].as_str().unwrap().starts_with("654321"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(OUTBOX_PATH))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// A gateway that always fails, next to the real ones.
    #[derive(Debug)]
    struct Broken;

    impl SmsGateway for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn send<'a>(&'a self, _: &'a str, _: &'a str) -> SendFuture<'a> {
            Box::pin(async {
                Err(SmsError::Refused {
                    host: "broken.test".into(),
                    status: 503,
                })
            })
        }
    }

    #[tokio::test]
    async fn fail_over_tries_the_next_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let gateways: Vec<Box<dyn SmsGateway>> = vec![
            Box::new(Broken),
            Box::new(LogGateway::new(dir.path(), "shop", Purpose::Callback)),
            Box::new(Broken),
        ];
        let attempts = send_in_order(&gateways, "+33612345678", "hi").await;
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].gateway, "broken");
        assert!(attempts[0].outcome.is_err());
        assert_eq!(attempts[1].gateway, "log");
        assert!(attempts[1].outcome.is_ok());
        let none = send_in_order(&[Box::new(Broken) as Box<dyn SmsGateway>], "+1", "x").await;
        assert!(none.iter().all(|a| a.outcome.is_err()));
    }
}
