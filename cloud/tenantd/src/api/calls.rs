//! Call routes: the agents' WebSocket, the ICE settings, the call list and snapshots.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::extract::{Body, Id, Query, Scope};
use super::{json_with, AppState};
use crate::calls::ice::IceInput;
use crate::calls::registry::{AgentRef, CallState};
use crate::calls::ws::{self, SocketAgent};
use crate::error::ApiError;
use crate::store::By;
use crate::tenancy::{Actor, Principal, Role};

/// Largest snapshot accepted.
pub const MAX_SNAPSHOT_BYTES: usize = 2 * 1024 * 1024;
/// How long after a call ends its agent may still store snapshots of it.
pub const SNAPSHOT_AFTER_END_MS: i64 = 10 * 60 * 1000;

/// The `{call}` of a call path; anything that is not a call id is simply not found.
#[derive(Debug, Clone)]
pub struct CallPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CallPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        params
            .iter()
            .find(|(k, _)| *k == "call")
            .and_then(|(_, v)| kiosk_protocol::call::CallId::parse(v).ok())
            .map(|c| CallPath(c.as_str().to_string()))
            .ok_or(ApiError::NotFound)
    }
}

/// Whose rows a caller sees: `None` for all of the organization's (admins), the user's own
/// for agents. Agent API tokens have no calls of their own.
pub(super) fn own_rows(p: &Principal) -> Result<Option<i64>, ApiError> {
    match (p.role, &p.actor) {
        (Role::OrgAdmin, _) => Ok(None),
        (_, Actor::User { id, .. }) => Ok(Some(*id)),
        (_, Actor::ApiToken { .. }) => Err(ApiError::Forbidden),
    }
}

/// `GET /orgs/{org}/calls/ws`: upgrades to the agents' WebSocket.
pub async fn calls_ws(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Actor::User {
        id, name, session, ..
    } = &p.actor
    else {
        return Err(ApiError::Forbidden);
    };
    let user_id = *id;
    let lookup = scope.clone();
    // The languages the agent takes calls in, as they are when the socket opens.
    let languages = state
        .store
        .run(move |db| db.get_user(&lookup, user_id))
        .await?
        .languages;
    let who = SocketAgent {
        agent: AgentRef {
            user_id,
            org_id: scope.org_id(),
            name: name.clone(),
            languages,
        },
        session: *session,
        sessions: state.sessions.clone(),
    };
    let hub = state.calls.clone();
    Ok(upgrade
        .max_message_size(ws::MAX_READ_BYTES)
        .max_frame_size(ws::MAX_READ_BYTES)
        .on_upgrade(move |socket| ws::serve(hub, who, socket)))
}

/// `GET /orgs/{org}/ice`.
pub async fn get_ice(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
) -> Result<Response, ApiError> {
    let org = scope.org_id();
    let ice = state.store.run(move |db| db.ice_settings(org)).await?;
    Ok(json_with(StatusCode::OK, ice.view()))
}

/// `PUT /orgs/{org}/ice`.
pub async fn put_ice(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Body(input): Body<IceInput>,
) -> Result<Response, ApiError> {
    let org = scope.org_id();
    let by = By::new(p.label());
    let view = state
        .store
        .run(move |db| {
            let current = db.ice_settings(org)?;
            let next = match input.apply(&current) {
                Ok(next) => next,
                Err(e) => return Ok(Err(ApiError::invalid(e.field, e.message))),
            };
            db.put_ice_settings(&scope, &by, &next)?;
            Ok(Ok(next.view()))
        })
        .await??;
    Ok(json_with(StatusCode::OK, view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<u32>,
    offset: Option<u32>,
}

/// `GET /orgs/{org}/calls?limit=&offset=`.
pub async fn list_calls(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let agent = own_rows(&p)?;
    let limit = page.limit.unwrap_or(50).clamp(1, 200);
    let offset = page.offset.unwrap_or(0);
    let calls = state
        .store
        .run(move |db| db.list_calls(&scope, agent, limit, offset))
        .await?;
    Ok(json_with(StatusCode::OK, json!({ "calls": calls })))
}

/// The media type of an image by its first bytes: JPEG or PNG only.
pub fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else {
        None
    }
}

/// `POST /orgs/{org}/calls/{call}/snapshots`: by the agent who accepted the call, while it
/// runs or within ten minutes after it ended.
pub async fn post_snapshot(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    CallPath(call): CallPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let user = p.user_id().ok_or(ApiError::Forbidden)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge {
                limit: MAX_SNAPSHOT_BYTES,
            }
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if body.len() > MAX_SNAPSHOT_BYTES {
        return Err(ApiError::TooLarge {
            limit: MAX_SNAPSHOT_BYTES,
        });
    }
    let media = image_type(&body);
    if media.is_none() || media != Some(declared.as_str()) {
        return Err(ApiError::invalid(
            "body",
            "send a JPEG (image/jpeg) or PNG (image/png) image with its Content-Type",
        ));
    }
    let media = media.unwrap_or_default();
    let by = By::new(p.label());
    let now = crate::calls::now_ms();
    let info = state
        .store
        .run(move |db| {
            let record = db.get_call(&scope, &call)?;
            let recent_enough = match record.state {
                CallState::Accepted => true,
                CallState::Ended => record
                    .ended_at_ms
                    .is_some_and(|t| now - t <= SNAPSHOT_AFTER_END_MS),
                CallState::Ringing | CallState::Refused => false,
            };
            if record.agent_id != Some(user) || !recent_enough {
                return Ok(Err(ApiError::Forbidden));
            }
            Ok(Ok(db.add_snapshot(&scope, &by, &call, user, media, &body)?))
        })
        .await??;
    Ok(json_with(StatusCode::CREATED, info))
}

/// `GET /orgs/{org}/calls/{call}/snapshots`.
pub async fn list_snapshots(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    CallPath(call): CallPath,
) -> Result<Response, ApiError> {
    let agent = own_rows(&p)?;
    let snapshots = state
        .store
        .run(move |db| {
            db.get_call(&scope, &call)?;
            db.list_snapshots(&scope, &call, agent)
        })
        .await?;
    Ok(json_with(StatusCode::OK, json!({ "snapshots": snapshots })))
}

/// `GET /orgs/{org}/calls/{call}/snapshots/{id}`: the image.
pub async fn get_snapshot(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    CallPath(call): CallPath,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let agent = own_rows(&p)?;
    let (info, image) = state
        .store
        .run(move |db| db.get_snapshot(&scope, &call, id))
        .await?;
    // Another agent's snapshot looks like a missing one.
    if agent.is_some_and(|a| a != info.agent_id) {
        return Err(ApiError::NotFound);
    }
    let mut response = image.into_response();
    let media = HeaderValue::from_str(&info.media_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    response.headers_mut().insert(header::CONTENT_TYPE, media);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_known_by_their_magic_bytes() {
        assert_eq!(image_type(b"\xFF\xD8\xFF\xE0rest"), Some("image/jpeg"));
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(image_type(b"GIF89a"), None);
        assert_eq!(image_type(b""), None);
    }
}
