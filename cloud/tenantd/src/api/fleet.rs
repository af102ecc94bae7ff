//! Fleet routes: claim batches (platform), enrollment tokens, devices, activation-code claims
//! and revocation (organization), and the CRLs (public).

use axum::extract::{RawPathParams, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::extract::{Body, Caller, Id, Scope};
use super::{fields, json_with, AppState};
use crate::error::ApiError;
use crate::fleet::pki::CLAIM_CERT_DAYS;
use crate::fleet::service;
use crate::store::{By, CrlCa, StoreError};

/// `GET /claim-batches`.
pub async fn list_claim_batches(State(state): State<AppState>) -> Result<Response, ApiError> {
    let batches = state.store.run(|db| db.list_claim_batches()).await?;
    Ok(json_with(StatusCode::OK, json!({ "batches": batches })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClaimBatch {
    name: String,
    #[serde(default)]
    note: String,
}

/// `POST /claim-batches`: the claim certificate and key for a batch of images, shown once,
/// with the CA that kiosks use to trust the broker.
pub async fn create_claim_batch(
    State(state): State<AppState>,
    Caller(p): Caller,
    Body(input): Body<NewClaimBatch>,
) -> Result<Response, ApiError> {
    let name = fields::slug("name", &input.name)?;
    let note = input.note.trim().to_string();
    if note.chars().count() > 200 || note.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "note",
            "the note has at most 200 printable characters",
        ));
    }
    let cn = format!("claim-{name}");
    let (issued, key_pem) = state
        .pki
        .claim
        .issue_with_key(&cn, CLAIM_CERT_DAYS)
        .map_err(ApiError::internal)?;
    let by = By::new(p.label());
    let (cn2, serial, not_after) = (cn.clone(), issued.serial.clone(), issued.not_after_unix);
    let batch = state
        .store
        .run(move |db| db.create_claim_batch(&by, &cn2, &note, &serial, not_after))
        .await?;
    // Kiosks trust the CA of the broker they dial: an external broker's (`--broker-ca`), or
    // the local CA, which signs the managed broker's certificate; make sure it exists even
    // when HTTPS uses an operator's certificate.
    let server_ca = match state.fleet.as_ref().and_then(|f| f.external()) {
        Some(external) => external.server_ca_pem.clone(),
        None => {
            let local = crate::tls::LocalCa::open(&state.data_dir.join("tls"))
                .map_err(ApiError::internal)?;
            std::fs::read_to_string(local.pem_path()).map_err(ApiError::internal)?
        }
    };
    Ok(json_with(
        StatusCode::CREATED,
        json!({ "batch": batch, "certificate_pem": issued.certificate_pem, "key_pem": key_pem,
                "server_ca_pem": server_ca }),
    ))
}

/// `GET /orgs/{org}/enrollment-tokens`.
pub async fn list_enrollment_tokens(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
) -> Result<Response, ApiError> {
    let list = state
        .store
        .run(move |db| db.list_enrollment_tokens(&scope))
        .await?;
    Ok(json_with(StatusCode::OK, json!({ "tokens": list })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnrollmentToken {
    site_id: i64,
    uses: Option<u32>,
    expires_in_hours: Option<u32>,
}

/// `POST /orgs/{org}/enrollment-tokens`: bound to a site of the organization; the secret is
/// in this answer only.
pub async fn create_enrollment_token(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Body(input): Body<NewEnrollmentToken>,
) -> Result<Response, ApiError> {
    let uses = input.uses.unwrap_or(1);
    if !(1..=10_000).contains(&uses) {
        return Err(ApiError::invalid("uses", "uses must be 1 to 10000"));
    }
    let hours = input.expires_in_hours.unwrap_or(72);
    if !(1..=720).contains(&hours) {
        return Err(ApiError::invalid(
            "expires_in_hours",
            "expiry must be 1 to 720 hours",
        ));
    }
    let (secret, prefix) = crate::fleet::new_enrollment_token();
    let by = By::new(p.label());
    let expires_at = by.now + i64::from(hours) * 3600;
    let (digest, site_id) = (secret.digest, input.site_id);
    let info = state
        .store
        .run(move |db| {
            db.create_enrollment_token(&scope, &by, site_id, &prefix, &digest, uses, expires_at)
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound => {
                ApiError::invalid("site_id", "no such site in this organization")
            }
            other => other.into(),
        })?;
    Ok(json_with(
        StatusCode::CREATED,
        json!({ "token": info, "secret": secret.secret }),
    ))
}

/// `DELETE /orgs/{org}/enrollment-tokens/{id}`.
pub async fn revoke_enrollment_token(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    let by = By::new(p.label());
    state
        .store
        .run(move |db| db.revoke_enrollment_token(&scope, &by, id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /orgs/{org}/devices`.
pub async fn list_devices(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
) -> Result<Response, ApiError> {
    let devices = state.store.run(move |db| db.list_devices(&scope)).await?;
    Ok(json_with(StatusCode::OK, json!({ "devices": devices })))
}

fn device_param(params: &RawPathParams) -> Result<String, ApiError> {
    params
        .iter()
        .find(|(k, _)| *k == "device")
        .map(|(_, v)| v.to_string())
        .filter(|d| kiosk_protocol::DeviceId::parse(d).is_ok())
        .ok_or(ApiError::NotFound)
}

/// `GET /orgs/{org}/devices/{device}`.
pub async fn get_device(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let id = device_param(&params)?;
    let device = state
        .store
        .run(move |db| db.get_device(&scope, &id))
        .await?;
    Ok(json_with(StatusCode::OK, device))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimInput {
    code: String,
    site_id: i64,
}

/// `POST /orgs/{org}/devices/claim`: enrolls the kiosk that shows this code into a site.
pub async fn claim_device(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    Body(input): Body<ClaimInput>,
) -> Result<Response, ApiError> {
    let by = By::new(p.label());
    let not_found = |e: StoreError| {
        match e {
        StoreError::NotFound => ApiError::invalid(
            "code",
            "no kiosk is waiting with this code in a site of this organization (check the code and site; codes expire after 30 minutes)",
        ),
        other => other.into(),
    }
    };
    let link = state.fleet.as_ref().map(|f| &f.link);
    let device = service::claim_activation(
        link,
        &state.store,
        state.pki.clone(),
        scope,
        by,
        &input.code,
        input.site_id,
    )
    .await
    .map_err(not_found)?;
    Ok(json_with(
        StatusCode::CREATED,
        json!({ "id": device.id, "site_id": device.site_id, "board": device.board,
                "hardware_serial": device.hardware_serial }),
    ))
}

/// `POST /orgs/{org}/devices/{device}/revoke`: the certificates go on the CRLs; the managed
/// broker restarts to load them, an external one is asked to cut the device off.
pub async fn revoke_device(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let id = device_param(&params)?;
    let by = By::new(p.label());
    let serials = match &state.fleet {
        Some(fleet) => fleet
            .revoke_device(scope, by, id)
            .await
            .map_err(|e| match e {
                crate::fleet::FleetError::Store(s) => ApiError::from(s),
                other => ApiError::internal(other),
            })?,
        // No broker: the CRLs are kept current all the same, for the next one.
        None => {
            let serials = state
                .store
                .run(move |db| db.revoke_device(&scope, &by, &id))
                .await?;
            if !serials.is_empty() {
                state.crls.refresh().await.map_err(ApiError::internal)?;
            }
            serials
        }
    };
    Ok(json_with(
        StatusCode::OK,
        json!({ "revoked_serials": serials }),
    ))
}

/// `GET /orgs/{org}/devices/{device}/config`.
pub async fn get_device_config(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let id = device_param(&params)?;
    let (device, history) = state
        .store
        .run(move |db| {
            Ok((
                db.get_device(&scope, &id)?,
                db.desired_history(&scope, &id, 20)?,
            ))
        })
        .await?;
    let settings = history
        .first()
        .and_then(|h| {
            serde_json::from_value::<kiosk_protocol::config::DesiredConfig>(h.config.clone()).ok()
        })
        .map(|c| crate::fleet::config::settings_of(&c))
        .unwrap_or_default();
    Ok(json_with(
        StatusCode::OK,
        json!({ "settings": settings, "history": history,
                "reported_version": device.reported_version, "reported_errors": device.reported_errors }),
    ))
}

/// `PUT /orgs/{org}/devices/{device}/config`: validated whole, stored as the next version, and
/// published retained so the kiosk gets it now or when it next connects.
pub async fn put_device_config(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    params: RawPathParams,
    Body(settings): Body<crate::fleet::config::DeviceSettings>,
) -> Result<Response, ApiError> {
    let id = device_param(&params)?;
    let (scope2, id2) = (scope.clone(), id.clone());
    let sources = state
        .store
        .run(move |db| db.config_sources(&scope2, &id2))
        .await?;
    let version = sources.latest_version + 1;
    let config =
        crate::fleet::config::compose(&sources, &settings, version as u64).map_err(|errors| {
            let field = errors.first().map(|e| e.field.clone()).unwrap_or_default();
            let message = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            ApiError::invalid(config_field(&field), message)
        })?;
    let body = serde_json::to_string(&config).map_err(ApiError::internal)?;
    let by = By::new(p.label());
    let (id2, body2) = (id.clone(), body.clone());
    state
        .store
        .run(move |db| db.put_desired(&scope, &by, &id2, version, &body2))
        .await?;
    publish_desired(&state, vec![service::Outgoing::desired(&id, body)]).await;
    Ok(json_with(
        StatusCode::OK,
        json!({ "version": version, "config": config }),
    ))
}

/// Publishes desired configs the store already holds (retained); one that cannot go out now is
/// published again when the link is back.
pub(super) async fn publish_desired(state: &AppState, messages: Vec<service::Outgoing>) {
    let Some(fleet) = &state.fleet else { return };
    for message in messages {
        if let Err(e) = fleet.link.publish(message).await {
            tracing::warn!(error = %e, "desired config stored; it is published again when the link is back");
        }
    }
}

/// The API's name for a config field (the stable list of input fields).
fn config_field(field: &str) -> &'static str {
    match field.split('.').next().unwrap_or_default() {
        "locale" => "languages",
        "ice_servers" => "ice_servers",
        "idle" => "idle",
        "telemetry_interval_s" => "telemetry_interval_s",
        "board_profile" => "board_profile",
        "site" => "site",
        _ => "settings",
    }
}

/// `GET /orgs/{org}/devices/{device}/commands`.
pub async fn list_device_commands(
    State(state): State<AppState>,
    Scope(scope, _): Scope,
    params: RawPathParams,
) -> Result<Response, ApiError> {
    let id = device_param(&params)?;
    let commands = state
        .store
        .run(move |db| db.list_commands(&scope, &id))
        .await?;
    Ok(json_with(StatusCode::OK, json!({ "commands": commands })))
}

#[derive(Debug, Deserialize)]
pub struct CommandInput {
    #[serde(flatten)]
    action: kiosk_protocol::command::Action,
    /// The device refuses the command if it arrives later than this (default one hour).
    expires_in_s: Option<u32>,
}

/// `POST /orgs/{org}/devices/{device}/commands`.
pub async fn send_device_command(
    State(state): State<AppState>,
    Scope(scope, p): Scope,
    params: RawPathParams,
    Body(input): Body<CommandInput>,
) -> Result<Response, ApiError> {
    use kiosk_protocol::command::{Action, Command};
    let id = device_param(&params)?;
    let ttl = input.expires_in_s.unwrap_or(3600);
    if !(10..=7 * 24 * 3600).contains(&ttl) {
        return Err(ApiError::invalid(
            "expires_in_s",
            "expiry must be 10 s to 7 days",
        ));
    }
    if let Action::Update {
        url,
        sha256,
        version,
        ..
    } = &input.action
    {
        if !url.starts_with("https://") {
            return Err(ApiError::invalid(
                "url",
                "updates are fetched over https://",
            ));
        }
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::invalid(
                "sha256",
                "the bundle's SHA-256 in hex (64 characters)",
            ));
        }
        if version.trim().is_empty() {
            return Err(ApiError::invalid(
                "version",
                "name the version being installed",
            ));
        }
    }
    let bytes: [u8; 8] = rand::random();
    let command_id = format!("cmd-{}", hex::encode(bytes));
    let by = By::new(p.label());
    let issued_at_ms = by.now * 1000;
    let command = Command {
        v: kiosk_protocol::Version::CURRENT,
        id: kiosk_protocol::MessageId::parse(&command_id).map_err(ApiError::internal)?,
        issued_at_ms,
        expires_at_ms: Some(issued_at_ms + i64::from(ttl) * 1000),
        action: input.action,
    };
    let body = serde_json::to_string(&command).map_err(ApiError::internal)?;
    let (id2, cid, body2) = (id.clone(), command_id.clone(), body.clone());
    state
        .store
        .run(move |db| db.create_command(&scope, &by, &id2, &cid, &body2))
        .await?;
    if let Some(fleet) = &state.fleet {
        let out = service::Outgoing {
            topic: format!("kiosk/v1/{id}/down/cmd"),
            payload: body.into_bytes(),
            retain: false,
        };
        if let Err(e) = fleet.link.publish(out).await {
            tracing::warn!(error = %e, "command stored; it is sent again when the link is back");
        }
    }
    Ok(json_with(
        StatusCode::CREATED,
        json!({ "id": command_id, "state": "sent", "command": command }),
    ))
}

/// A CRL as brokers fetch it: PEM (EMQX reads PEM when it refreshes its cache), never cached
/// by intermediaries, so a revocation is visible at the next fetch.
fn crl_response(pem: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        pem,
    )
        .into_response()
}

/// `GET /pki/v1/device.crl`: the device CA's current CRL.
pub async fn device_crl(State(state): State<AppState>) -> Response {
    crl_response(state.crls.published(CrlCa::Device))
}

/// `GET /pki/v1/claim.crl`: the claim CA's current CRL.
pub async fn claim_crl(State(state): State<AppState>) -> Response {
    crl_response(state.crls.published(CrlCa::Claim))
}
