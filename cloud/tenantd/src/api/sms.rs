//! SMS and customer routes: the organization's SMS gateways (secrets write-only), its recent
//! delivery records, and the erasure of a customer's number.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Body, Query, Scope};
use super::{json_with, AppState};
use crate::error::ApiError;
use crate::otp::sms::{GatewayConfig, SmsInput};
use crate::store::otp::OrgSms;
use crate::store::By;

/// The body of `GET` and `PUT /orgs/{org}/sms`.
fn sms_view(own: Option<&OrgSms>) -> Value {
    match own {
        Some(o) => json!({
            "uses": "organization",
            "gateways": o.gateways.iter().map(GatewayConfig::view).collect::<Vec<_>>(),
            "updated_at": o.updated_at,
        }),
        None => json!({ "uses": "platform", "gateways": [], "updated_at": null }),
    }
}

/// `GET /orgs/{org}/sms`: the organization's gateways (never a secret: `password_set`,
/// `token_set`, `secret_set` say whether one is stored), or `"uses": "platform"`.
pub async fn get_sms(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
) -> Result<Response, ApiError> {
    let org = scope.org_id();
    let own = state.store.run(move |db| db.org_sms(org)).await?;
    Ok(json_with(StatusCode::OK, sms_view(own.as_ref())))
}

/// `PUT /orgs/{org}/sms`: replaces the gateways (fail-over order); secrets left out are kept,
/// an empty list goes back to the platform's gateways.
pub async fn put_sms(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Body(input): Body<SmsInput>,
) -> Result<Response, ApiError> {
    let org = scope.org_id();
    let rules = state.journeys.org_gateway_rules();
    let by = By::new(p.label());
    let own = state
        .store
        .run(move |db| {
            let current = db.org_sms(org)?.map(|o| o.gateways).unwrap_or_default();
            let next = match input.apply(&current, rules) {
                Ok(next) => next,
                Err(e) => return Ok(Err(ApiError::invalid(e.field, e.message))),
            };
            db.put_org_sms(&scope, &by, &next)?;
            Ok(Ok(db.org_sms(org)?))
        })
        .await??;
    Ok(json_with(StatusCode::OK, sms_view(own.as_ref())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    limit: Option<u32>,
}

/// `GET /orgs/{org}/sms/messages?limit=`: the newest delivery records (masked numbers).
pub async fn list_sms_messages(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
    Query(q): Query<MessagesQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let messages = state
        .store
        .run(move |db| db.list_sms(&scope, limit))
        .await?;
    Ok(json_with(StatusCode::OK, json!({ "messages": messages })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseInput {
    phone: String,
}

impl std::fmt::Debug for EraseInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EraseInput").finish_non_exhaustive()
    }
}

/// `POST /orgs/{org}/customers/erase`: erases a number's data in the organization (codes,
/// customers, callbacks; its calls lose the number) and answers the counts. The audit entry
/// has the counts, never the number.
pub async fn erase_customer(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Body(input): Body<EraseInput>,
) -> Result<Response, ApiError> {
    let e164 = kiosk_protocol::journey::normalize_phone(&input.phone)
        .map_err(|e| ApiError::invalid("phone", e.to_string()))?;
    let hash = state.journeys.phone_hash(&e164);
    let by = By::new(p.label());
    let erased = state
        .store
        .run(move |db| db.erase_phone(&scope, &by, &hash))
        .await?;
    Ok(json_with(StatusCode::OK, json!({ "erased": erased })))
}
