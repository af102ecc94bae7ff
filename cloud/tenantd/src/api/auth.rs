//! Sign-in, sign-out, password change, and who-am-I.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};

use super::extract::{Body, Caller};
use super::{client_addr, AppState};
use crate::auth::password::{check_policy, Password};
use crate::auth::throttle::LoginThrottle;
use crate::auth::tokens::{self, SESSION_COOKIE};
use crate::error::ApiError;
use crate::store::By;
use crate::tenancy::{Actor, OrgRef, Principal, Role};

/// Passwords longer than this (bytes) are not even hashed.
const MAX_PASSWORD_BYTES: usize = 1024;

/// A password attempt reserved with the throttle; settled as a failure if dropped unsettled
/// (the client went away mid-check), so abandoning requests does not dodge the count.
struct Attempt {
    throttle: Arc<Mutex<LoginThrottle>>,
    email: String,
    addr: IpAddr,
    settled: bool,
}

impl Attempt {
    fn begin(state: &AppState, email: &str, addr: IpAddr) -> Result<Attempt, ApiError> {
        let reserved = state
            .throttle
            .lock()
            .map_err(|_| ApiError::internal("throttle lock poisoned"))?
            .begin(email, addr, Instant::now());
        match reserved {
            Ok(()) => Ok(Attempt {
                throttle: state.throttle.clone(),
                email: email.to_string(),
                addr,
                settled: false,
            }),
            Err(wait) => Err(ApiError::TooManyAttempts {
                retry_after_s: wait.as_secs().max(1),
            }),
        }
    }

    fn settle(mut self, success: bool) {
        self.finish(success);
    }

    fn finish(&mut self, success: bool) {
        if !self.settled {
            self.settled = true;
            if let Ok(mut t) = self.throttle.lock() {
                t.finish(&self.email, self.addr, Instant::now(), success);
            }
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.finish(false);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    email: String,
    password: Password,
}

/// The caller, as `GET /me` and sign-in describe it.
#[derive(Debug, Serialize)]
pub struct Me {
    kind: &'static str,
    role: Role,
    user: Option<MeUser>,
    token: Option<MeToken>,
    org: Option<OrgRef>,
}

#[derive(Debug, Serialize)]
struct MeUser {
    id: i64,
    email: String,
    name: String,
    must_change_password: bool,
}

#[derive(Debug, Serialize)]
struct MeToken {
    id: i64,
    name: String,
}

impl From<&Principal> for Me {
    fn from(p: &Principal) -> Self {
        let (kind, user, token) = match &p.actor {
            Actor::User {
                id,
                email,
                name,
                must_change_password,
                ..
            } => (
                "user",
                Some(MeUser {
                    id: *id,
                    email: email.clone(),
                    name: name.clone(),
                    must_change_password: *must_change_password,
                }),
                None,
            ),
            Actor::ApiToken { id, name } => (
                "api_token",
                None,
                Some(MeToken {
                    id: *id,
                    name: name.clone(),
                }),
            ),
        };
        Me {
            kind,
            role: p.role,
            user,
            token,
            org: p.org.clone(),
        }
    }
}

fn session_cookie(value: &str, max_age_zero: bool) -> HeaderValue {
    let mut cookie = format!("{SESSION_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if max_age_zero {
        cookie.push_str("; Max-Age=0");
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /auth/login`. Unknown emails, wrong passwords and disabled accounts all answer
/// `invalid_credentials` after the same argon2 work; failures are throttled per account and per
/// address with growing delays.
pub async fn login(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    Body(input): Body<LoginInput>,
) -> Result<Response, ApiError> {
    let addr = client_addr(connect.as_ref().map(|e| &e.0));
    let email = input.email.trim().to_string();
    let attempt = Attempt::begin(&state, &email, addr)?;
    let lookup = email.clone();
    let account = state.store.run(move |db| db.login_record(&lookup)).await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let password = input.password;
    let oversized = password.expose().len() > MAX_PASSWORD_BYTES;
    let matches = state
        .hash_work(move |h| {
            if oversized {
                // Burn the same time without hashing a huge input.
                h.verify(&Password::new(""), None)
            } else {
                h.verify(&password, stored.as_deref())
            }
        })
        .await?;
    let by = By::new(email.clone());
    let address = addr.to_string();
    match account {
        Some(account) if matches && !account.disabled => {
            let secret = tokens::new_session_token();
            let digest = secret.digest;
            let by = By::new(account.email.clone());
            let acc = account.clone();
            state
                .store
                .run(move |db| db.record_sign_in(&acc, &digest, &by, &address))
                .await?;
            attempt.settle(true);
            let policy = state.sessions.clone();
            let principal = state
                .store
                .run(move |db| db.principal_for_session(&digest, by_now(), &policy))
                .await?
                .ok_or_else(|| ApiError::internal("new session not found"))?;
            tracing::info!(user = account.user_id, "signed in");
            let mut response =
                axum::Json(serde_json::json!({ "me": Me::from(&principal) })).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&secret.secret, false));
            Ok(response)
        }
        account => {
            attempt.settle(false);
            if let Some(account) = account {
                // Recorded off the response path, so a known account answers as fast as an
                // unknown one.
                let store = state.store.clone();
                tokio::spawn(async move {
                    if let Err(e) = store
                        .run(move |db| db.record_failed_sign_in(&account, &by, &address))
                        .await
                    {
                        tracing::warn!(error = %e, "could not record a failed sign-in");
                    }
                });
            }
            Err(ApiError::InvalidCredentials)
        }
    }
}

fn by_now() -> i64 {
    crate::store::now_unix()
}

/// `POST /auth/logout`: ends this session and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    Caller(p): Caller,
) -> Result<Response, ApiError> {
    if let Actor::User { session, .. } = p.actor {
        state.store.run(move |db| db.end_session(&session)).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", true));
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordInput {
    current_password: Password,
    new_password: Password,
}

/// `POST /auth/password`: needs the current password; ends every other session of the user.
pub async fn change_password(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    Caller(p): Caller,
    Body(input): Body<PasswordInput>,
) -> Result<StatusCode, ApiError> {
    let Actor::User {
        id, email, session, ..
    } = p.actor.clone()
    else {
        return Err(ApiError::Forbidden);
    };
    check_policy(&input.new_password, Some(&email))
        .map_err(|v| ApiError::WeakPassword(v.to_string()))?;
    if input.new_password.expose() == input.current_password.expose() {
        return Err(ApiError::WeakPassword(
            "the new password must differ from the current one".into(),
        ));
    }
    // Guessing the current password through a stolen session is throttled like sign-in.
    let attempt = Attempt::begin(&state, &email, client_addr(connect.as_ref().map(|e| &e.0)))?;
    let stored = state.store.run(move |db| db.password_hash(id)).await?;
    let current = input.current_password;
    let new = input.new_password;
    let (matches, new_hash) = state
        .hash_work(move |h| {
            let ok = h.verify(&current, Some(&stored));
            (ok, if ok { Some(h.hash(&new)) } else { None })
        })
        .await?;
    attempt.settle(matches);
    if !matches {
        return Err(ApiError::WrongCurrentPassword);
    }
    let new_hash = new_hash
        .ok_or_else(|| ApiError::internal("hash missing"))?
        .map_err(ApiError::internal)?;
    let by = By::new(p.label());
    state
        .store
        .run(move |db| db.change_password(&by, id, &new_hash, Some(&session)))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /me`.
pub async fn me(Caller(p): Caller) -> axum::Json<Me> {
    axum::Json(Me::from(&p))
}
