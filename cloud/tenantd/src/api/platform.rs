//! Platform routes: health, organizations.

use axum::extract::{RawPathParams, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::extract::{Body, Caller};
use super::{fields, json_with, AppState};
use crate::auth::password::Password;
use crate::error::ApiError;
use crate::store::{now_unix, By, NewUser};
use crate::tenancy::Role;

/// `GET /health`.
pub async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// `GET /platform/health`.
pub async fn platform_health(State(state): State<AppState>) -> Result<Response, ApiError> {
    let policy = state.sessions.clone();
    let h = state
        .store
        .run(move |db| db.platform_health(now_unix(), &policy))
        .await?;
    Ok(json_with(
        StatusCode::OK,
        json!({
            "orgs": h.orgs,
            "users": h.users,
            "active_sessions": h.active_sessions,
            "db_bytes": h.db_bytes,
            "uptime_s": state.started.elapsed().as_secs(),
            "version": env!("CARGO_PKG_VERSION"),
        }),
    ))
}

/// `GET /orgs`.
pub async fn list_orgs(State(state): State<AppState>) -> Result<Response, ApiError> {
    let orgs = state.store.run(|db| db.list_orgs()).await?;
    Ok(json_with(StatusCode::OK, json!({ "orgs": orgs })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrgInput {
    slug: String,
    name: String,
    admin_email: String,
    admin_name: String,
}

/// `POST /orgs`: the organization, its default settings and its first admin, whose generated
/// password is returned once and must be changed at first sign-in.
pub async fn create_org(
    State(state): State<AppState>,
    Caller(p): Caller,
    Body(input): Body<NewOrgInput>,
) -> Result<Response, ApiError> {
    let slug = fields::slug("slug", &input.slug)?;
    let name = fields::name("name", &input.name)?;
    let admin_email = fields::email("admin_email", &input.admin_email)?;
    let admin_name = fields::name("admin_name", &input.admin_name)?;
    let password = Password::generate();
    let pw = password.clone();
    let hash = state
        .hash_work(move |h| h.hash(&pw))
        .await?
        .map_err(ApiError::internal)?;
    let admin = NewUser {
        email: admin_email,
        name: admin_name,
        role: Role::OrgAdmin,
        password_hash: hash,
        must_change_password: true,
    };
    let by = By::new(p.label());
    let (org, user) = state
        .store
        .run(move |db| db.create_org(&by, &slug, &name, &admin))
        .await?;
    Ok(json_with(
        StatusCode::CREATED,
        json!({ "org": org, "admin": user, "admin_password": password.expose() }),
    ))
}

fn org_slug(params: &RawPathParams) -> Result<String, ApiError> {
    params
        .iter()
        .find(|(k, _)| *k == "org")
        .map(|(_, v)| v.to_string())
        .ok_or(ApiError::NotFound)
}

/// `GET /orgs/{org}`: super admins see any; members see their own (checked by the gate).
pub async fn get_org(
    State(state): State<AppState>,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let slug = org_slug(&params)?;
    let org = state.store.run(move |db| db.org_by_slug(&slug)).await?;
    Ok(json_with(StatusCode::OK, org))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgPatch {
    name: Option<String>,
    disabled: Option<bool>,
}

/// `PATCH /orgs/{org}`: disabling ends every session of the organization's users and stops its
/// API tokens working.
pub async fn update_org(
    State(state): State<AppState>,
    Caller(p): Caller,
    params: RawPathParams,
    Body(input): Body<OrgPatch>,
) -> Result<Response, ApiError> {
    let slug = org_slug(&params)?;
    let name = input
        .name
        .as_deref()
        .map(|n| fields::name("name", n))
        .transpose()?;
    let by = By::new(p.label());
    let org = state
        .store
        .run(move |db| db.update_org(&by, &slug, name.as_deref(), input.disabled))
        .await?;
    Ok(json_with(StatusCode::OK, org))
}
