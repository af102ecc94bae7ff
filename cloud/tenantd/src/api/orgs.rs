//! Organization routes: users, sites, settings, API tokens, audit log. Every handler gets its
//! [`Scope`] from the gate and passes it to the store.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::extract::{Body, Id, Query, Scope};
use super::{fields, json_with, AppState};
use crate::auth::password::{check_policy, Password};
use crate::auth::tokens;
use crate::error::ApiError;
use crate::fleet::desired::{refresh, Touched};
use crate::sites::SiteInput;
use crate::store::{By, NewUser, SettingsInput, UserPatch};
use crate::tenancy::Role;

/// `GET /orgs/{org}/users`.
pub async fn list_users(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
) -> Result<Response, ApiError> {
    let users = state.store.run(move |db| db.list_users(&scope)).await?;
    Ok(json_with(StatusCode::OK, json!({ "users": users })))
}

/// `GET /orgs/{org}/users/{id}`.
pub async fn get_user(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let user = state.store.run(move |db| db.get_user(&scope, id)).await?;
    Ok(json_with(StatusCode::OK, user))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserInput {
    email: String,
    name: String,
    role: Role,
    password: Option<Password>,
    /// The languages the user takes calls in (BCP 47).
    #[serde(default)]
    languages: Vec<String>,
}

/// `POST /orgs/{org}/users`: with the given password or a generated one, returned once; the
/// user chooses their own at first sign-in.
pub async fn create_user(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Body(input): Body<NewUserInput>,
) -> Result<Response, ApiError> {
    let email = fields::email("email", &input.email)?;
    let name = fields::name("name", &input.name)?;
    let role = fields::staff_role("role", input.role)?;
    let languages = crate::calls::routing::agent_languages(&input.languages)
        .map_err(|m| ApiError::invalid("languages", m))?;
    let password = match input.password {
        Some(pw) if !pw.expose().is_empty() => {
            check_policy(&pw, Some(&email)).map_err(|v| ApiError::WeakPassword(v.to_string()))?;
            pw
        }
        _ => Password::generate(),
    };
    let pw = password.clone();
    let hash = state
        .hash_work(move |h| h.hash(&pw))
        .await?
        .map_err(ApiError::internal)?;
    let new = NewUser {
        email,
        name,
        role,
        password_hash: hash,
        must_change_password: true,
    };
    let by = By::new(p.label());
    let user = state
        .store
        .run(move |db| {
            let user = db.create_user(&scope, &by, &new)?;
            if languages.is_empty() {
                return Ok(user);
            }
            let patch = UserPatch {
                languages: Some(languages),
                ..UserPatch::default()
            };
            db.update_user(&scope, &by, user.id, &patch)
        })
        .await?;
    Ok(json_with(
        StatusCode::CREATED,
        json!({ "user": user, "initial_password": password.expose() }),
    ))
}

/// `PATCH /orgs/{org}/users/{id}`: an admin cannot disable or demote themselves, and the
/// organization keeps at least one enabled admin.
pub async fn update_user(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Id(id): Id,
    Body(mut patch): Body<UserPatch>,
) -> Result<Response, ApiError> {
    if let Some(name) = &patch.name {
        patch.name = Some(fields::name("name", name)?);
    }
    if let Some(role) = patch.role {
        fields::staff_role("role", role)?;
    }
    if let Some(languages) = &patch.languages {
        patch.languages = Some(
            crate::calls::routing::agent_languages(languages)
                .map_err(|m| ApiError::invalid("languages", m))?,
        );
    }
    if p.user_id() == Some(id) {
        if patch.disabled == Some(true) {
            return Err(ApiError::invalid("disabled", "you cannot disable yourself"));
        }
        if patch.role.is_some_and(|r| r != p.role) {
            return Err(ApiError::invalid("role", "you cannot change your own role"));
        }
    }
    let by = By::new(p.label());
    let user = state
        .store
        .run(move |db| db.update_user(&scope, &by, id, &patch))
        .await?;
    Ok(json_with(StatusCode::OK, user))
}

/// `GET /orgs/{org}/sites`.
pub async fn list_sites(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
) -> Result<Response, ApiError> {
    let sites = state.store.run(move |db| db.list_sites(&scope)).await?;
    Ok(json_with(StatusCode::OK, json!({ "sites": sites })))
}

/// `POST /orgs/{org}/sites`.
pub async fn create_site(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Body(input): Body<SiteInput>,
) -> Result<Response, ApiError> {
    let spec = input.validate()?;
    let by = By::new(p.label());
    let site = state
        .store
        .run(move |db| db.save_site(&scope, &by, None, &spec))
        .await?;
    Ok(json_with(StatusCode::CREATED, site))
}

/// `GET /orgs/{org}/sites/{id}`.
pub async fn get_site(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let site = state.store.run(move |db| db.get_site(&scope, id)).await?;
    Ok(json_with(StatusCode::OK, site))
}

/// `PUT /orgs/{org}/sites/{id}`: its live kiosks get the next desired config at once.
pub async fn put_site(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Id(id): Id,
    Body(input): Body<SiteInput>,
) -> Result<Response, ApiError> {
    let spec = input.validate()?;
    let by = By::new(p.label());
    let (site, configs) = state
        .store
        .run(move |db| {
            let site = db.save_site(&scope, &by, Some(id), &spec)?;
            let configs = refresh(db, &scope, &by, &Touched::Site(id))?;
            Ok((site, configs))
        })
        .await?;
    super::fleet::publish_desired(&state, configs).await;
    Ok(json_with(StatusCode::OK, site))
}

/// `DELETE /orgs/{org}/sites/{id}`: refused while kiosks not revoked are in the site.
pub async fn delete_site(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    let by = By::new(p.label());
    state
        .store
        .run(move |db| db.delete_site(&scope, &by, id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /orgs/{org}/settings`.
pub async fn get_settings(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
) -> Result<Response, ApiError> {
    let settings = state.store.run(move |db| db.get_settings(&scope)).await?;
    Ok(json_with(StatusCode::OK, settings))
}

/// Longest retention an organization may set (ten years).
const MAX_RETENTION_DAYS: u32 = 3650;
/// The queue time-outs an organization may set, in seconds.
const QUEUE_TIMEOUT_S: std::ops::RangeInclusive<u32> = 30..=3600;

/// `PUT /orgs/{org}/settings`: every live kiosk whose config it changes gets the next one.
pub async fn put_settings(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Body(input): Body<SettingsInput>,
) -> Result<Response, ApiError> {
    if !(1..=MAX_RETENTION_DAYS).contains(&input.retention_days) {
        return Err(ApiError::invalid(
            "retention_days",
            format!("retention must be 1 to {MAX_RETENTION_DAYS} days"),
        ));
    }
    if input
        .queue_timeout_s
        .is_some_and(|t| !QUEUE_TIMEOUT_S.contains(&t))
    {
        return Err(ApiError::invalid(
            "queue_timeout_s",
            format!(
                "the queue time-out must be {} to {} seconds",
                QUEUE_TIMEOUT_S.start(),
                QUEUE_TIMEOUT_S.end()
            ),
        ));
    }
    let by = By::new(p.label());
    let (settings, configs) = state
        .store
        .run(move |db| {
            let settings = db.put_settings(&scope, &by, &input)?;
            let configs = refresh(db, &scope, &by, &Touched::Org)?;
            Ok((settings, configs))
        })
        .await?;
    super::fleet::publish_desired(&state, configs).await;
    Ok(json_with(StatusCode::OK, settings))
}

/// `GET /orgs/{org}/api-tokens`.
pub async fn list_tokens(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
) -> Result<Response, ApiError> {
    let list = state
        .store
        .run(move |db| db.list_api_tokens(&scope))
        .await?;
    Ok(json_with(StatusCode::OK, json!({ "tokens": list })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenInput {
    name: String,
    role: Role,
    expires_in_days: Option<u32>,
}

/// `POST /orgs/{org}/api-tokens`: the secret is in this answer and nowhere else.
pub async fn create_token(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Body(input): Body<NewTokenInput>,
) -> Result<Response, ApiError> {
    let name = fields::name("name", &input.name)?;
    let role = fields::staff_role("role", input.role)?;
    let by = By::new(p.label());
    let expires_at = match input.expires_in_days {
        None => None,
        Some(d) if (1..=MAX_RETENTION_DAYS).contains(&d) => Some(by.now + i64::from(d) * 86_400),
        Some(_) => {
            return Err(ApiError::invalid(
                "expires_in_days",
                format!("expiry must be 1 to {MAX_RETENTION_DAYS} days"),
            ))
        }
    };
    let secret = tokens::new_api_token();
    let prefix = tokens::display_prefix(&secret.secret);
    let digest = secret.digest;
    let info = state
        .store
        .run(move |db| db.create_api_token(&scope, &by, &name, role, &prefix, &digest, expires_at))
        .await?;
    Ok(json_with(
        StatusCode::CREATED,
        json!({ "token": info, "secret": secret.secret }),
    ))
}

/// `DELETE /orgs/{org}/api-tokens/{id}`.
pub async fn revoke_token(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    let by = By::new(p.label());
    state
        .store
        .run(move |db| db.revoke_api_token(&scope, &by, id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

/// `GET /orgs/{org}/audit?limit=&before=`.
pub async fn audit_page(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let entries = state
        .store
        .run(move |db| db.audit_page(&scope, q.before, limit))
        .await?;
    let next_before = match entries.last() {
        Some(last) if entries.len() == limit as usize && last.seq > 1 => Some(last.seq),
        _ => None,
    };
    Ok(json_with(
        StatusCode::OK,
        json!({ "entries": entries, "next_before": next_before }),
    ))
}

/// `GET /orgs/{org}/audit/verify`.
pub async fn audit_verify(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
) -> Result<Response, ApiError> {
    let chain = crate::audit::org_chain(scope.org_id());
    let report = state.store.run(move |db| db.verify_chain(&chain)).await?;
    Ok(json_with(
        StatusCode::OK,
        json!({ "ok": report.ok, "entries": report.entries,
                "first_bad_seq": report.first_bad_seq, "head": report.head }),
    ))
}
