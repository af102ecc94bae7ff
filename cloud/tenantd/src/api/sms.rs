//! SMS and customer routes: the organization's SMS gateways (secrets write-only), its recent
//! delivery records, the providers' delivery receipts (public, by the gateway's receipt key),
//! and the erasure of a customer's number.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawPathParams, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Body, Query, Scope};
use super::{json_with, AppState};
use crate::error::ApiError;
use crate::otp::journey::now_ms;
use crate::otp::receipts::{self, ReceiptOutcome, MAX_RECEIPT_BYTES};
use crate::otp::sms::{GatewayConfig, SmsInput};
use crate::store::otp::{OrgSms, ReceiptApplied};
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

/// `GET /orgs/{org}/sms`: the organization's gateways (never a credential: `password_set`,
/// `token_set`, `secret_set` say whether one is stored; a gateway reading receipts shows its
/// receipt URL's path), or `"uses": "platform"`.
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

fn retry_after(wait: Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

/// `POST /sms/receipts/{key}` (public): a provider's delivery receipt for the organization
/// gateway whose receipt key is `key`. A key that is not a receipt key's shape, or that no
/// gateway has, is `404` (the answer of any unknown path; a key is found by its SHA-256, so
/// the time taken says no more). A key past its rate is `429` before the store is read. An
/// unreadable body is `400` saying why. Otherwise `204`, whether the receipt moved a record
/// on, repeated one, came late, or named a message with no record (nothing to retry).
pub async fn post_receipt(
    State(state): State<AppState>,
    params: RawPathParams,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = params
        .iter()
        .find(|(k, _)| *k == "key")
        .map(|(_, v)| v.to_string())
        .filter(|k| receipts::is_key_shaped(k))
        .ok_or(ApiError::NotFound)?;
    let digest = receipts::key_digest(&key);
    state
        .journeys
        .receipt_throttle()
        .check(&digest, Instant::now())
        .map_err(retry_after)?;
    let found = state
        .store
        .run(move |db| db.receipt_gateway(&digest))
        .await?
        .ok_or(ApiError::NotFound)?;
    state
        .journeys
        .receipt_throttle()
        .take(&digest, Instant::now())
        .map_err(retry_after)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge {
                limit: MAX_RECEIPT_BYTES,
            }
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let receipt = receipts::parse_receipt(&found.receipts, content_type, &body)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if receipt.outcome == ReceiptOutcome::Ignored {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let (org_id, gateway) = (found.org_id, found.gateway.clone());
    let outcome = receipt.outcome.clone();
    let applied = state
        .store
        .run(move |db| {
            db.apply_receipt(
                org_id,
                &gateway,
                &receipt.provider_id,
                now_ms(),
                |current| {
                    receipts::next_status(current, &outcome).map(|next| {
                        let error = match &outcome {
                            ReceiptOutcome::Undelivered { detail } => Some(detail.clone()),
                            _ => None,
                        };
                        (next, error)
                    })
                },
            )
        })
        .await?;
    match applied {
        ReceiptApplied::Updated { status } => {
            tracing::info!(org = org_id, gateway = %found.gateway, status, "SMS delivery receipt")
        }
        ReceiptApplied::NoRecord => tracing::debug!(
            org = org_id,
            gateway = %found.gateway,
            "SMS delivery receipt for no record"
        ),
        ReceiptApplied::Unchanged { .. } => {}
    }
    Ok(StatusCode::NO_CONTENT.into_response())
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
