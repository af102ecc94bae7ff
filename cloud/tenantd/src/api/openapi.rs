//! The OpenAPI 3.1 document, generated from the route table so it cannot drift from the router.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::route_table;
use crate::error::ApiError;
use crate::tenancy::Access;

/// `GET /openapi.json`.
pub async fn document() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(|| build().to_string());
    let mut response = body.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The request body schema of a route, by reference to a component.
fn request_body(method: &Method, path: &str) -> Option<&'static str> {
    Some(match (method.as_str(), path) {
        ("POST", "/api/v1/auth/login") => "LoginInput",
        ("POST", "/api/v1/auth/password") => "PasswordInput",
        ("POST", "/api/v1/orgs") => "NewOrgInput",
        ("PATCH", "/api/v1/orgs/{org}") => "OrgPatch",
        ("POST", "/api/v1/orgs/{org}/users") => "NewUserInput",
        ("PATCH", "/api/v1/orgs/{org}/users/{id}") => "UserPatch",
        ("POST", "/api/v1/orgs/{org}/sites") | ("PUT", "/api/v1/orgs/{org}/sites/{id}") => {
            "SiteInput"
        }
        ("PUT", "/api/v1/orgs/{org}/settings") => "SettingsInput",
        ("POST", "/api/v1/orgs/{org}/api-tokens") => "NewTokenInput",
        ("POST", "/api/v1/claim-batches") => "NewClaimBatchInput",
        ("POST", "/api/v1/orgs/{org}/enrollment-tokens") => "NewEnrollmentTokenInput",
        ("POST", "/api/v1/orgs/{org}/devices/claim") => "ClaimDeviceInput",
        ("PUT", "/api/v1/orgs/{org}/devices/{device}/config") => "DeviceSettings",
        ("POST", "/api/v1/orgs/{org}/devices/{device}/commands") => "CommandInput",
        ("PUT", "/api/v1/orgs/{org}/ice") => "IceInput",
        ("POST", "/api/v1/orgs/{org}/calls/{call}/snapshots") => "Snapshot",
        ("PUT", "/api/v1/orgs/{org}/sms") => "SmsInput",
        ("POST", "/api/v1/orgs/{org}/customers/erase") => "EraseInput",
        ("POST", "/api/v1/sms/receipts/{key}") => "SmsReceipt",
        _ => return None,
    })
}

/// The media type of a route's successful answer, when it is not JSON.
fn success_media(path: &str) -> Option<&'static str> {
    if path.starts_with("/pki/") {
        Some("application/x-pem-file")
    } else if path.ends_with("/snapshots/{id}") {
        Some("image/*")
    } else if path.ends_with(".csv") {
        Some("text/csv")
    } else {
        None
    }
}

/// The query parameters of a route that takes some: (name, type, description).
fn query_params(path: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    const PAGE: [(&str, &str, &str); 2] = [
        ("limit", "integer", "at most this many rows"),
        ("offset", "integer", "skip this many rows"),
    ];
    const RECORDS: [(&str, &str, &str); 8] = [
        (
            "from",
            "string",
            "a date YYYY-MM-DD (UTC) or an RFC 3339 time; inclusive",
        ),
        (
            "to",
            "string",
            "a date (through its end, UTC) or an RFC 3339 time; exclusive",
        ),
        ("site", "integer", "a site id"),
        ("kiosk", "string", "a device id"),
        (
            "agent",
            "integer",
            "a user id (agents always see their own calls)",
        ),
        (
            "outcome",
            "string",
            "answered, abandoned, missed, declined, closed or failed",
        ),
        PAGE[0],
        PAGE[1],
    ];
    const CALLBACKS: [(&str, &str, &str); 3] = [
        ("state", "string", "open (default), done, cancelled or all"),
        PAGE[0],
        PAGE[1],
    ];
    if path.ends_with("/calls/records") || path.ends_with("/calls/records.csv") {
        &RECORDS
    } else if path.ends_with("/callbacks") {
        &CALLBACKS
    } else {
        &[]
    }
}

/// Request bodies that are not JSON: their media types.
fn raw_body(schema: &str) -> Option<&'static [&'static str]> {
    match schema {
        "Snapshot" => Some(&["image/jpeg", "image/png"][..]),
        "SmsReceipt" => Some(&["application/json", "application/x-www-form-urlencoded"][..]),
        _ => None,
    }
}

fn access_text(access: Access) -> String {
    let roles =
        |rs: &[crate::tenancy::Role]| rs.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
    match access {
        Access::Public => "public".into(),
        Access::Authenticated => "any signed-in user or API token".into(),
        Access::SessionUser => "a signed-in user (session cookie), not an API token".into(),
        Access::SuperAdmin => "super_admin".into(),
        Access::Org(rs) => format!("members of {{org}} with role {}", roles(rs)),
        Access::OrgOrSuperAdmin(rs) => {
            format!("super_admin, or members of {{org}} with role {}", roles(rs))
        }
        Access::OrgSession(rs) => format!(
            "signed-in members of {{org}} (session cookie, same origin; no API token) with role {}",
            roles(rs)
        ),
    }
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn components() -> Value {
    let role =
        json!({ "type": "string", "enum": ["super_admin", "org_admin", "agent", "customer"] });
    let staff_role = json!({ "type": "string", "enum": ["org_admin", "agent"] });
    let interval = json!({ "type": "object", "required": ["open", "close"],
        "properties": { "open": { "type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$" },
                        "close": { "type": "string", "pattern": "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$" } } });
    let day = json!({ "type": "array", "maxItems": 4, "items": interval });
    let languages = json!({ "type": "array", "maxItems": 16, "items": { "type": "string",
        "description": "a BCP 47 tag (fr, en-GB): the user takes calls in these languages; empty: any call" } });
    let mut week = Map::new();
    for d in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] {
        week.insert(d.into(), day.clone());
    }
    let site_input = json!({ "type": "object", "required": ["name", "timezone", "business_hours"],
        "additionalProperties": false,
        "properties": {
            "name": { "type": "string", "minLength": 1, "maxLength": 80 },
            "timezone": { "type": "string", "description": "IANA time zone, e.g. Europe/Paris" },
            "business_hours": { "type": "object", "additionalProperties": false,
                "required": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "properties": week },
            "holidays": { "type": "array", "items": { "type": "object", "required": ["date"],
                "properties": { "date": { "type": "string", "format": "date" }, "name": string() } } } } });
    json!({
        "securitySchemes": {
            "session": { "type": "apiKey", "in": "cookie", "name": "__Host-kc_session" },
            "apiToken": { "type": "http", "scheme": "bearer", "description": "kct_… API token" }
        },
        "schemas": {
            "Error": { "type": "object", "required": ["error"], "properties": { "error": {
                "type": "object", "required": ["code", "message"], "properties": {
                    "code": { "type": "string", "enum": ApiError::CODES },
                    "message": string(),
                    "field": { "type": "string", "description": "the input field at fault (invalid_input)" },
                    "retry_after_s": { "type": "integer", "description": "with too_many_attempts and rate_limited" } } } } },
            "Role": role,
            "Me": { "type": "object", "properties": {
                "kind": { "type": "string", "enum": ["user", "api_token"] }, "role": { "$ref": "#/components/schemas/Role" },
                "user": { "type": ["object", "null"] }, "token": { "type": ["object", "null"] },
                "org": { "type": ["object", "null"] } } },
            "Org": { "type": "object", "properties": { "id": { "type": "integer" }, "slug": string(),
                "name": string(), "disabled": { "type": "boolean" }, "created_at": time(), "users": { "type": "integer" } } },
            "User": { "type": "object", "properties": { "id": { "type": "integer" }, "email": string(),
                "name": string(), "role": { "$ref": "#/components/schemas/Role" }, "disabled": { "type": "boolean" },
                "must_change_password": { "type": "boolean" }, "created_at": time(), "last_sign_in_at": time(),
                "languages": { "type": "array", "items": string() } } },
            "SiteInput": site_input,
            "Settings": { "type": "object", "properties": {
                "recording": { "type": "string", "enum": ["off", "on_with_consent"] },
                "retention_days": { "type": "integer", "minimum": 1, "maximum": 3650 },
                "technicians_may_review_recordings": { "type": "boolean" },
                "queue_timeout_s": { "type": "integer", "minimum": 30, "maximum": 3600 },
                "updated_at": time() } },
            "LoginInput": { "type": "object", "required": ["email", "password"], "additionalProperties": false,
                "properties": { "email": string(), "password": string() } },
            "PasswordInput": { "type": "object", "required": ["current_password", "new_password"],
                "additionalProperties": false,
                "properties": { "current_password": string(),
                    "new_password": { "type": "string", "minLength": 8, "maxLength": 128 } } },
            "NewOrgInput": { "type": "object", "required": ["slug", "name", "admin_email", "admin_name"],
                "additionalProperties": false,
                "properties": { "slug": { "type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$" },
                    "name": string(), "admin_email": { "type": "string", "format": "email" }, "admin_name": string() } },
            "OrgPatch": { "type": "object", "additionalProperties": false,
                "properties": { "name": string(), "disabled": { "type": "boolean" } } },
            "NewUserInput": { "type": "object", "required": ["email", "name", "role"], "additionalProperties": false,
                "properties": { "email": { "type": "string", "format": "email" }, "name": string(),
                    "role": staff_role, "password": { "type": "string", "description": "omit to generate one" },
                    "languages": languages.clone() } },
            "UserPatch": { "type": "object", "additionalProperties": false,
                "properties": { "name": string(), "role": staff_role, "disabled": { "type": "boolean" },
                    "languages": languages } },
            "SettingsInput": { "type": "object", "additionalProperties": false,
                "required": ["recording", "retention_days", "technicians_may_review_recordings"],
                "properties": { "recording": { "type": "string", "enum": ["off", "on_with_consent"] },
                    "retention_days": { "type": "integer", "minimum": 1, "maximum": 3650 },
                    "technicians_may_review_recordings": { "type": "boolean" },
                    "queue_timeout_s": { "type": "integer", "minimum": 30, "maximum": 3600,
                        "description": "how long a call waits for an agent before it ends not_answered (180 by default); omit to keep it" } } },
            "NewClaimBatchInput": { "type": "object", "required": ["name"], "additionalProperties": false,
                "properties": { "name": { "type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$" },
                    "note": string() } },
            "NewEnrollmentTokenInput": { "type": "object", "required": ["site_id"], "additionalProperties": false,
                "properties": { "site_id": { "type": "integer" },
                    "uses": { "type": "integer", "minimum": 1, "maximum": 10000 },
                    "expires_in_hours": { "type": "integer", "minimum": 1, "maximum": 720 } } },
            "ClaimDeviceInput": { "type": "object", "required": ["code", "site_id"], "additionalProperties": false,
                "properties": { "code": { "type": "string", "description": "XXXX-XXXX as shown on the kiosk" },
                    "site_id": { "type": "integer" } } },
            "DeviceSettings": { "type": "object", "additionalProperties": false,
                "required": ["default_language", "languages", "idle_s", "warning_s", "telemetry_interval_s", "board_profile"],
                "properties": { "default_language": string(), "languages": { "type": "array", "items": string() },
                    "ice_servers": { "type": "array", "items": { "type": "object" } },
                    "idle_s": { "type": "integer", "minimum": 10, "maximum": 3600 },
                    "warning_s": { "type": "integer", "minimum": 20, "maximum": 300 },
                    "telemetry_interval_s": { "type": "integer", "minimum": 5, "maximum": 3600 },
                    "board_profile": string() } },
            "CommandInput": { "type": "object", "required": ["action"],
                "properties": { "action": { "type": "string",
                    "enum": ["reboot", "restart_service", "rotate_certificate", "factory_reset", "update"] },
                    "service": { "type": "string", "enum": ["kiosk-sync", "kiosk-media", "kiosk-ui", "kiosk-browser"] },
                    "url": string(), "sha256": string(), "version": string(), "size": { "type": "integer" },
                    "expires_in_s": { "type": "integer", "minimum": 10, "maximum": 604800 } } },
            "IceInput": { "type": "object", "additionalProperties": false,
                "properties": {
                    "stun_urls": { "type": "array", "maxItems": 8, "items": { "type": "string",
                        "description": "stun:host[:port] or stuns:host[:port]" } },
                    "turn_urls": { "type": "array", "maxItems": 8, "items": { "type": "string",
                        "description": "turn:host[:port][?transport=udp|tcp] or turns:…" } },
                    "turn_secret": { "type": "string", "description":
                        "the TURN server's static-auth-secret (16 to 256 characters); omit to keep it, empty to remove it; never shown again" },
                    "max_call_s": { "type": "integer", "minimum": 60, "maximum": 43200,
                        "description": "the longest call, in seconds (7200 by default)" } } },
            "Snapshot": { "type": "string", "format": "binary", "maxLength": 2097152,
                "description": "a JPEG or PNG image, at most 2 MiB" },
            "SmsInput": sms_input(),
            "SmsReceipt": { "type": "object", "description":
                "a provider's delivery receipt, JSON or a form as the gateway's receipts say \
                 (format, provider_id, status, error); at most 16 KiB" },
            "EraseInput": { "type": "object", "required": ["phone"], "additionalProperties": false,
                "properties": { "phone": { "type": "string",
                    "description": "the number with its country code, e.g. +33 6 12 34 56 78" } } },
            "NewTokenInput": { "type": "object", "required": ["name", "role"], "additionalProperties": false,
                "properties": { "name": string(), "role": staff_role,
                    "expires_in_days": { "type": "integer", "minimum": 1, "maximum": 3650 } } }
        }
    })
}

/// The body of `PUT /orgs/{org}/sms` (docs/operations.md has examples).
fn sms_input() -> Value {
    let secret = |what: &str| {
        json!({ "type": "string", "description": format!(
            "{what}; write-only (GET says whether it is set); omit to keep the stored one") })
    };
    let http = json!({ "type": "object", "required": ["kind", "name", "url", "body"],
        "additionalProperties": false,
        "properties": {
            "kind": { "const": "http" },
            "name": { "type": "string", "pattern": "^[a-z0-9-]{1,32}$" },
            "url": { "type": "string", "description":
                "https:// URL the message is POSTed to; may hold {secret}" },
            "format": { "type": "string", "enum": ["json", "form"], "default": "json" },
            "body": { "type": ["object", "array"], "description":
                "the body template; its strings may hold {to}, {text}, {sender}, {secret}, and must hold {to} and {text}" },
            "sender": { "type": "string", "maxLength": 32, "description": "fills {sender}" },
            "headers": { "type": "object", "maxProperties": 16,
                "additionalProperties": { "type": "string" } },
            "auth": { "oneOf": [
                { "type": "object", "required": ["type", "username"], "additionalProperties": false,
                  "properties": { "type": { "const": "basic" }, "username": string(),
                                  "password": secret("the basic password") } },
                { "type": "object", "required": ["type"], "additionalProperties": false,
                  "properties": { "type": { "const": "bearer" }, "token": secret("the bearer token") } } ] },
            "secret": secret("fills {secret}; empty removes it"),
            "provider_id_pointer": { "type": "string", "description":
                "JSON pointer to the provider's message id in its answer, e.g. /messages/0/id" },
            "receipts": { "type": "object", "required": ["provider_id", "status", "delivered"],
                "additionalProperties": false,
                "description": "read the provider's delivery receipts; GET shows url_path, the receipt URL's path with its key",
                "properties": {
                    "format": { "type": "string", "enum": ["json", "form"], "default": "json" },
                    "provider_id": { "type": "string", "description":
                        "where the provider's message id is: a JSON pointer (json) or a field name (form)" },
                    "status": { "type": "string", "description": "where the status is" },
                    "error": { "type": "string", "description": "where a reason is, kept with undelivered" },
                    "delivered": { "type": "array", "minItems": 1, "maxItems": 16, "items": string(),
                        "description": "status values that mean delivered (ASCII case ignored)" },
                    "undelivered": { "type": "array", "maxItems": 16, "items": string(),
                        "description": "status values that mean undelivered; any other status is ignored" },
                    "new_key": { "type": "boolean", "default": false,
                        "description": "make a new receipt key (the old URL stops working)" } } } } });
    json!({ "type": "object", "required": ["gateways"], "additionalProperties": false,
        "properties": { "gateways": { "type": "array", "maxItems": 4,
            "description": "in fail-over order; empty: use the platform's gateways",
            "items": { "oneOf": [
                { "type": "object", "required": ["kind"], "properties": { "kind": { "const": "log" } },
                  "description": "development only, when the operator allows it" },
                http ] } } } })
}

/// Builds the document.
pub fn build() -> Value {
    let mut paths = Map::new();
    for spec in route_table() {
        let mut op = json!({
            "summary": spec.summary,
            "x-access": access_text(spec.access),
            "responses": {
                spec.success.as_str(): { "description": spec.success.canonical_reason().unwrap_or("success") },
                "default": { "description": "error", "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
        if spec.access == Access::Public {
            op["security"] = json!([]);
        }
        if let Some(media) = success_media(spec.path) {
            op["responses"][spec.success.as_str()]["content"] =
                json!({ media: { "schema": { "type": "string" } } });
        }
        let mut params: Vec<Value> = ["org", "id", "device", "call", "key"]
            .iter()
            .filter(|p| spec.path.contains(&format!("{{{p}}}")))
            .map(|p| {
                json!({ "name": p, "in": "path", "required": true,
                        "schema": if *p == "id" { json!({ "type": "integer" }) } else { string() } })
            })
            .collect();
        params.extend(query_params(spec.path).iter().map(|(name, ty, what)| {
            json!({ "name": name, "in": "query", "required": false,
                    "schema": { "type": ty }, "description": what })
        }));
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if let Some(schema) = request_body(&spec.method, spec.path) {
            let reference = json!({ "$ref": format!("#/components/schemas/{schema}") });
            let content: Map<String, Value> = match raw_body(schema) {
                Some(types) => types
                    .iter()
                    .map(|t| (t.to_string(), json!({ "schema": reference.clone() })))
                    .collect(),
                None => Map::from_iter([(
                    "application/json".to_string(),
                    json!({ "schema": reference }),
                )]),
            };
            op["requestBody"] = json!({ "required": true, "content": content });
        }
        if spec.success == axum::http::StatusCode::SWITCHING_PROTOCOLS {
            op["description"] = json!(
                "A WebSocket (RFC 6455): send the upgrade headers. The \
                frames are JSON objects with a `type`, as docs/calls.md describes."
            );
        }
        let entry = paths
            .entry(spec.path.to_string())
            .or_insert_with(|| json!({}));
        entry[spec.method.as_str().to_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Kioskcall tenant API", "version": env!("CARGO_PKG_VERSION") },
        "security": [{ "session": [] }, { "apiToken": [] }],
        "paths": paths,
        "components": components(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_every_body_has_a_schema() {
        let doc = build();
        for spec in route_table() {
            let op = &doc["paths"][spec.path][spec.method.as_str().to_lowercase()];
            assert!(op.is_object(), "{} {} missing", spec.method, spec.path);
            // Actions named by their path take no body.
            let bodiless = [
                "/api/v1/auth/logout",
                "/api/v1/orgs/{org}/devices/{device}/revoke",
                "/api/v1/orgs/{org}/callbacks/{id}/done",
            ];
            let takes_body = matches!(spec.method, Method::POST | Method::PUT | Method::PATCH)
                && !bodiless.contains(&spec.path);
            assert_eq!(
                takes_body,
                request_body(&spec.method, spec.path).is_some(),
                "{} {}",
                spec.method,
                spec.path
            );
            if let Some(schema) = request_body(&spec.method, spec.path) {
                assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
            }
        }
    }
}
