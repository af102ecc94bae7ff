//! The REST API under `/api/v1`.
//!
//! [`route_table`] is the single list of routes: each [`RouteSpec`] names its method, path,
//! [`Access`] rule and handler. The router is built from it (with [`gate`] in front of every
//! handler), the OpenAPI document is generated from it, and the access-matrix test walks it, so
//! a route cannot exist without a rule, a document entry and a test. Besides `/api/v1`, the
//! table holds the public CRLs under `/pki/v1`.

mod auth;
mod calls;
mod extract;
mod fields;
mod fleet;
mod openapi;
mod orgs;
mod platform;
mod records;
mod sms;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams, Request, State};
use axum::handler::Handler;
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use tokio::sync::Semaphore;

use crate::auth::password::PasswordHasher;
use crate::auth::throttle::LoginThrottle;
use crate::auth::tokens::{self, SessionPolicy, API_TOKEN_PREFIX, SESSION_COOKIE};
use crate::error::ApiError;
use crate::store::{now_unix, SqliteStore};
use crate::tenancy::{authorize, Access, Principal, Role};

pub use extract::{Caller, Scope};

/// Checks an email address the way the API does (for the command line).
pub fn validate_email(raw: &str) -> Result<String, String> {
    fields::email("email", raw).map_err(|e| e.to_string())
}

/// Checks a display name the way the API does (for the command line).
pub fn validate_name(raw: &str) -> Result<String, String> {
    fields::name("name", raw).map_err(|e| e.to_string())
}

/// Shared state of every request.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: SqliteStore,
    pub hasher: Arc<PasswordHasher>,
    /// Bounds concurrent argon2 work (each takes ~19 MiB and a core for tens of ms).
    pub hashing: Arc<Semaphore>,
    pub throttle: Arc<Mutex<LoginThrottle>>,
    pub sessions: SessionPolicy,
    pub started: Instant,
    /// The fleet (broker and MQTT link), when `serve` runs one.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// The fleet's CAs (present even when no broker runs).
    pub pki: Arc<crate::fleet::pki::FleetPki>,
    /// The CRLs, kept current and served in every broker mode.
    pub crls: Arc<crate::fleet::crl::CrlPublisher>,
    /// The data directory.
    pub data_dir: std::path::PathBuf,
    /// Live calls: the registry shared with the fleet link.
    pub calls: crate::calls::CallHub,
    /// One-time codes and SMS: the keyed hashes (erasure) and the gateways' rules.
    pub journeys: crate::otp::Journeys,
}

impl AppState {
    /// Runs argon2 work on the blocking pool, a bounded number at a time.
    pub async fn hash_work<T: Send + 'static>(
        &self,
        f: impl FnOnce(&PasswordHasher) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        // The permit moves into the blocking task, so it is held until the hash is done even
        // if the request that asked for it goes away.
        let permit = self
            .hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        let hasher = self.hasher.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&hasher)
        })
        .await
        .map_err(ApiError::internal)
    }
}

/// One API route.
#[derive(Debug)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    /// The status of a successful answer.
    pub success: StatusCode,
    /// The largest body accepted, when not [`crate::MAX_BODY`].
    pub body_limit: Option<usize>,
    handler: MethodRouter<AppState>,
}

impl RouteSpec {
    fn with_body_limit(mut self, limit: usize) -> Self {
        self.body_limit = Some(limit);
        self
    }
}

fn route<H, T>(
    method: Method,
    path: &'static str,
    access: Access,
    success: StatusCode,
    summary: &'static str,
    handler: H,
) -> RouteSpec
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = match method {
        Method::GET => MethodFilter::GET,
        Method::POST => MethodFilter::POST,
        Method::PUT => MethodFilter::PUT,
        Method::PATCH => MethodFilter::PATCH,
        Method::DELETE => MethodFilter::DELETE,
        // A start-up invariant: the route table below uses only the methods above.
        other => unreachable!("route table method {other} is not supported"),
    };
    RouteSpec {
        method,
        path,
        access,
        summary,
        success,
        body_limit: None,
        handler: on(filter, handler),
    }
}

const ADMIN: &[Role] = &[Role::OrgAdmin];
const STAFF: &[Role] = &[Role::OrgAdmin, Role::Agent];

/// Every route of the API.
pub fn route_table() -> Vec<RouteSpec> {
    use Access::*;
    use Method as M;
    const OK: StatusCode = StatusCode::OK;
    const CREATED: StatusCode = StatusCode::CREATED;
    const NONE: StatusCode = StatusCode::NO_CONTENT;
    vec![
        route(
            M::GET,
            "/api/v1/health",
            Public,
            OK,
            "Liveness",
            platform::health,
        ),
        route(
            M::GET,
            "/api/v1/openapi.json",
            Public,
            OK,
            "This API's OpenAPI document",
            openapi::document,
        ),
        route(
            M::GET,
            "/pki/v1/device.crl",
            Public,
            OK,
            "The device CA's current CRL (PEM), for brokers",
            fleet::device_crl,
        ),
        route(
            M::GET,
            "/pki/v1/claim.crl",
            Public,
            OK,
            "The claim CA's current CRL (PEM), for brokers",
            fleet::claim_crl,
        ),
        route(
            M::POST,
            "/api/v1/auth/login",
            Public,
            OK,
            "Sign in with email and password; sets the session cookie",
            auth::login,
        ),
        route(
            M::POST,
            "/api/v1/auth/logout",
            SessionUser,
            NONE,
            "End this session",
            auth::logout,
        ),
        route(
            M::POST,
            "/api/v1/auth/password",
            SessionUser,
            NONE,
            "Change the password; ends the user's other sessions",
            auth::change_password,
        ),
        route(
            M::GET,
            "/api/v1/me",
            Authenticated,
            OK,
            "The caller: user or API token, role, organization",
            auth::me,
        ),
        route(
            M::GET,
            "/api/v1/platform/health",
            SuperAdmin,
            OK,
            "Platform figures",
            platform::platform_health,
        ),
        route(
            M::GET,
            "/api/v1/orgs",
            SuperAdmin,
            OK,
            "List organizations",
            platform::list_orgs,
        ),
        route(
            M::POST,
            "/api/v1/orgs",
            SuperAdmin,
            CREATED,
            "Create an organization and its first admin",
            platform::create_org,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}",
            OrgOrSuperAdmin(STAFF),
            OK,
            "One organization",
            platform::get_org,
        ),
        route(
            M::PATCH,
            "/api/v1/orgs/{org}",
            SuperAdmin,
            OK,
            "Rename, disable or enable an organization",
            platform::update_org,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/users",
            Org(ADMIN),
            OK,
            "List the organization's users",
            orgs::list_users,
        ),
        route(
            M::POST,
            "/api/v1/orgs/{org}/users",
            Org(ADMIN),
            CREATED,
            "Create a user with a role",
            orgs::create_user,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/users/{id}",
            Org(ADMIN),
            OK,
            "One user",
            orgs::get_user,
        ),
        route(
            M::PATCH,
            "/api/v1/orgs/{org}/users/{id}",
            Org(ADMIN),
            OK,
            "Rename, change role, disable or enable a user",
            orgs::update_user,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/sites",
            Org(ADMIN),
            OK,
            "List sites",
            orgs::list_sites,
        ),
        route(
            M::POST,
            "/api/v1/orgs/{org}/sites",
            Org(ADMIN),
            CREATED,
            "Create a site",
            orgs::create_site,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/sites/{id}",
            Org(ADMIN),
            OK,
            "One site",
            orgs::get_site,
        ),
        route(
            M::PUT,
            "/api/v1/orgs/{org}/sites/{id}",
            Org(ADMIN),
            OK,
            "Replace a site",
            orgs::put_site,
        ),
        route(
            M::DELETE,
            "/api/v1/orgs/{org}/sites/{id}",
            Org(ADMIN),
            NONE,
            "Delete a site",
            orgs::delete_site,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/settings",
            Org(ADMIN),
            OK,
            "The organization's settings",
            orgs::get_settings,
        ),
        route(
            M::PUT,
            "/api/v1/orgs/{org}/settings",
            Org(ADMIN),
            OK,
            "Replace the organization's settings",
            orgs::put_settings,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/api-tokens",
            Org(ADMIN),
            OK,
            "List API tokens",
            orgs::list_tokens,
        ),
        route(
            M::POST,
            "/api/v1/orgs/{org}/api-tokens",
            Org(ADMIN),
            CREATED,
            "Create an API token (secret shown once)",
            orgs::create_token,
        ),
        route(
            M::DELETE,
            "/api/v1/orgs/{org}/api-tokens/{id}",
            Org(ADMIN),
            NONE,
            "Revoke an API token",
            orgs::revoke_token,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/audit",
            Org(ADMIN),
            OK,
            "Read the audit log, newest first",
            orgs::audit_page,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/audit/verify",
            Org(ADMIN),
            OK,
            "Verify the audit log's hash chain",
            orgs::audit_verify,
        ),
        route(
            M::GET,
            "/api/v1/claim-batches",
            SuperAdmin,
            OK,
            "List claim batches",
            fleet::list_claim_batches,
        ),
        route(
            M::POST,
            "/api/v1/claim-batches",
            SuperAdmin,
            CREATED,
            "Make a claim certificate for a batch of images (key shown once)",
            fleet::create_claim_batch,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/enrollment-tokens",
            Org(ADMIN),
            OK,
            "List enrollment tokens",
            fleet::list_enrollment_tokens,
        ),
        route(
            M::POST,
            "/api/v1/orgs/{org}/enrollment-tokens",
            Org(ADMIN),
            CREATED,
            "Create an enrollment token for a site (secret shown once)",
            fleet::create_enrollment_token,
        ),
        route(
            M::DELETE,
            "/api/v1/orgs/{org}/enrollment-tokens/{id}",
            Org(ADMIN),
            NONE,
            "Revoke an enrollment token",
            fleet::revoke_enrollment_token,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/devices",
            Org(ADMIN),
            OK,
            "List devices with presence and health",
            fleet::list_devices,
        ),
        route(
            M::POST,
            "/api/v1/orgs/{org}/devices/claim",
            Org(ADMIN),
            CREATED,
            "Enroll the kiosk showing an activation code into a site",
            fleet::claim_device,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/devices/{device}",
            Org(ADMIN),
            OK,
            "One device",
            fleet::get_device,
        ),
        route(
            M::POST,
            "/api/v1/orgs/{org}/devices/{device}/revoke",
            Org(ADMIN),
            OK,
            "Revoke a device (cut off within seconds)",
            fleet::revoke_device,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/devices/{device}/config",
            Org(ADMIN),
            OK,
            "The device's settings, desired config history and what it reported",
            fleet::get_device_config,
        ),
        route(
            M::PUT,
            "/api/v1/orgs/{org}/devices/{device}/config",
            Org(ADMIN),
            OK,
            "Set the device's settings: a new desired config version, sent retained",
            fleet::put_device_config,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/devices/{device}/commands",
            Org(ADMIN),
            OK,
            "The device's commands and their results",
            fleet::list_device_commands,
        ),
        route(
            M::POST,
            "/api/v1/orgs/{org}/devices/{device}/commands",
            Org(ADMIN),
            CREATED,
            "Send a command: reboot, restart_service, rotate_certificate, factory_reset, update",
            fleet::send_device_command,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/ice",
            Org(ADMIN),
            OK,
            "The organization's ICE settings (STUN/TURN URLs, whether a TURN secret is set, longest call)",
            calls::get_ice,
        ),
        route(
            M::PUT,
            "/api/v1/orgs/{org}/ice",
            Org(ADMIN),
            OK,
            "Replace the ICE settings (the TURN secret is write-only)",
            calls::put_ice,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/calls",
            Org(STAFF),
            OK,
            "Calls, newest first: admins see the organization's, agents their own",
            calls::list_calls,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/calls/records",
            Org(STAFF),
            OK,
            "Call records (finished calls) with filters from, to, site, kiosk, agent, outcome, \
             paging and totals: admins see the organization's, agents their own",
            records::list_records,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/calls/records.csv",
            Org(STAFF),
            OK,
            "The call records the same filters select, as a CSV file",
            records::records_csv,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/callbacks",
            Org(STAFF),
            OK,
            "Callbacks the organization owes (state=open by default; the full number while open)",
            records::list_callbacks,
        ),
        route(
            M::POST,
            "/api/v1/orgs/{org}/callbacks/{id}/done",
            Org(STAFF),
            OK,
            "Mark a callback done",
            records::complete_callback,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/calls/ws",
            OrgSession(STAFF),
            StatusCode::SWITCHING_PROTOCOLS,
            "The agents' call WebSocket (signed-in session only; see docs/calls.md)",
            calls::calls_ws,
        ),
        route(
            M::POST,
            "/api/v1/orgs/{org}/calls/{call}/snapshots",
            Org(STAFF),
            CREATED,
            "Store a snapshot (JPEG or PNG, at most 2 MiB) of a call the caller accepted",
            calls::post_snapshot,
        )
        .with_body_limit(calls::MAX_SNAPSHOT_BYTES),
        route(
            M::GET,
            "/api/v1/orgs/{org}/calls/{call}/snapshots",
            Org(STAFF),
            OK,
            "A call's snapshots: admins see all, agents those they took",
            calls::list_snapshots,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/calls/{call}/snapshots/{id}",
            Org(STAFF),
            OK,
            "One snapshot's image (admins, and the agent who took it)",
            calls::get_snapshot,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/sms",
            Org(ADMIN),
            OK,
            "The organization's SMS gateways (secrets are write-only), or the platform's",
            sms::get_sms,
        ),
        route(
            M::PUT,
            "/api/v1/orgs/{org}/sms",
            Org(ADMIN),
            OK,
            "Replace the SMS gateways, in fail-over order (secrets left out are kept)",
            sms::put_sms,
        ),
        route(
            M::GET,
            "/api/v1/orgs/{org}/sms/messages",
            Org(ADMIN),
            OK,
            "Recent SMS delivery records, newest first (numbers masked)",
            sms::list_sms_messages,
        ),
        route(
            M::POST,
            "/api/v1/sms/receipts/{key}",
            Public,
            NONE,
            "A provider's delivery receipt for an organization's http gateway, by the gateway's \
             receipt key (JSON or a form, at most 16 KiB)",
            sms::post_receipt,
        )
        .with_body_limit(crate::otp::receipts::MAX_RECEIPT_BYTES),
        route(
            M::POST,
            "/api/v1/orgs/{org}/customers/erase",
            Org(ADMIN),
            OK,
            "Erase a phone number's data in the organization; answers what was erased",
            sms::erase_customer,
        ),
    ]
}

/// The API router, with the gate in front of every route.
pub fn router(state: AppState) -> Router<AppState> {
    let mut router = Router::new();
    for spec in route_table() {
        let mut handler = spec.handler;
        if let Some(limit) = spec.body_limit {
            handler = handler.layer(axum::extract::DefaultBodyLimit::max(limit));
        }
        let gated = handler.layer(middleware::from_fn_with_state(
            (state.clone(), spec.access),
            gate,
        ));
        router = router.route(spec.path, gated);
    }
    router
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(serde_json::json!({
                    "error": { "code": "method_not_allowed", "message": "method not allowed" }
                })),
            )
        })
}

/// Resolves the caller and applies the route's access rule; the handler then finds an
/// [`crate::tenancy::Authorized`] in the request extensions.
async fn gate(
    State((state, access)): State<(AppState, Access)>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let org_in_path = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find(|(k, _)| *k == "org")
                .map(|(_, v)| v.to_string())
        });
    let principal = if access == Access::Public {
        None
    } else {
        match credential(&parts.headers)? {
            None => None,
            Some(c) => {
                if matches!(c, Credential::Cookie(_)) {
                    reject_cross_site(&parts)?;
                    if matches!(access, Access::OrgSession(_)) {
                        reject_foreign_upgrade(&parts)?;
                    }
                }
                resolve(&state, c).await?
            }
        }
    };
    let authorized = authorize(access, principal, org_in_path.as_deref())?;
    let mut request = Request::from_parts(parts, body);
    request.extensions_mut().insert(authorized);
    Ok(next.run(request).await)
}

/// A credential presented by the client.
#[derive(Debug, Clone)]
enum Credential {
    Cookie(String),
    Bearer(String),
}

/// The presented credential. An `Authorization` header wins over a cookie, and a malformed
/// one is refused outright rather than ignored in favour of the cookie.
fn credential(headers: &axum::http::HeaderMap) -> Result<Option<Credential>, ApiError> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let value = auth.to_str().unwrap_or_default();
        return match value.strip_prefix("Bearer ").map(str::trim) {
            Some(token) if token.starts_with(API_TOKEN_PREFIX) => {
                Ok(Some(Credential::Bearer(token.to_string())))
            }
            _ => Err(ApiError::Unauthenticated),
        };
    }
    Ok(session_cookie(headers).map(Credential::Cookie))
}

/// The session cookie's value, if present.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

async fn resolve(state: &AppState, credential: Credential) -> Result<Option<Principal>, ApiError> {
    let now = now_unix();
    let principal = match credential {
        Credential::Cookie(secret) => {
            let digest = tokens::digest(&secret);
            let policy = state.sessions.clone();
            state
                .store
                .run(move |db| db.principal_for_session(&digest, now, &policy))
                .await?
        }
        Credential::Bearer(secret) => {
            let digest = tokens::digest(&secret);
            let p = state
                .store
                .run(move |db| db.principal_for_api_token(&digest, now))
                .await?;
            // A bearer token that does not work is an error, not an anonymous request.
            if p.is_none() {
                return Err(ApiError::Unauthenticated);
            }
            p
        }
    };
    Ok(principal)
}

/// Cookie-authenticated changes must come from our own pages: SameSite=Strict already keeps
/// the cookie off cross-site requests; this refuses what a browser marks as cross-site anyway.
fn reject_cross_site(parts: &axum::http::request::Parts) -> Result<(), ApiError> {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        return Ok(());
    }
    let site = parts
        .headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("same-origin");
    if matches!(site, "same-origin" | "none") {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// A WebSocket is opened with a GET, which [`reject_cross_site`] lets through: for session
/// routes the browser's `Sec-Fetch-Site` must say same-origin and the `Origin`, when sent, must
/// be this host, so another site's page cannot open an agent's socket with its cookie.
fn reject_foreign_upgrade(parts: &axum::http::request::Parts) -> Result<(), ApiError> {
    let site = parts
        .headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("same-origin");
    if !matches!(site, "same-origin" | "none") {
        return Err(ApiError::Forbidden);
    }
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    match (origin.to_str().ok(), host) {
        (Some(origin), Some(host)) if origin == format!("https://{host}") => Ok(()),
        _ => Err(ApiError::Forbidden),
    }
}

/// The client's address, for throttling and the audit log.
pub fn client_addr(connect: Option<&ConnectInfo<SocketAddr>>) -> std::net::IpAddr {
    connect
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
}

/// Logs one line per request: method, route template (never the raw path or query, which may
/// carry ids or secrets), status and duration.
pub async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let route = route.as_deref().unwrap_or("(unmatched)");
    if status >= 500 {
        tracing::warn!(target: "tenantd::access", %method, route, status, ms, "request");
    } else {
        tracing::info!(target: "tenantd::access", %method, route, status, ms, "request");
    }
    response
}

/// Adds the security headers every response carries.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let is_api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        header::HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    if is_api {
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    response
}

/// A JSON body with a status.
pub fn json_with(status: StatusCode, value: impl serde::Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}
