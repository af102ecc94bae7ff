//! fleetctl: the fleet admin's command line over tenantd's REST API.
//!
//! Every command is one or two API calls made with an API token (`Authorization: Bearer`)
//! of an organization admin; the organization comes from the token (`GET /api/v1/me`) unless
//! `--org` names it. Output is a short human form, or the API's JSON with `--json`.
//! Errors print the API's stable code and message; the exit code is 1 for an API refusal, 2 for
//! bad usage, 3 when the service cannot be reached.

use serde_json::{json, Value};

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{0}")]
    Usage(String),
    #[error("read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { .. } => 1,
            CliError::Usage(_) | CliError::Read { .. } => 2,
            CliError::Unreachable { .. } => 3,
        }
    }
}

/// A client of one tenantd.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// `url` is the service's base URL; `ca_pem`, when given, is the only CA trusted (a
    /// tenantd local CA); otherwise the system's roots are used.
    pub fn new(url: &str, token: &str, ca_pem: Option<&[u8]>) -> Result<Api, CliError> {
        let mut builder = reqwest::Client::builder().https_only(true);
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| {
                CliError::Usage(format!("the CA file is not a PEM certificate: {e}"))
            })?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| CliError::Usage(format!("HTTP client: {e}")))?;
        if !token.starts_with("kct_") {
            return Err(CliError::Usage(
                "the API token (kct_…) comes from --token or FLEETCTL_TOKEN".into(),
            ));
        }
        Ok(Api {
            base: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        })
    }

    /// One call; the JSON answer (Null when empty) or the API's error.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|source| CliError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(CliError::Api {
                status,
                code: value["error"]["code"]
                    .as_str()
                    .unwrap_or("http_error")
                    .to_string(),
                message: value["error"]["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("HTTP {status}")),
            })
        }
    }

    /// The organization of the token, or the one given.
    pub async fn org(&self, given: Option<&str>) -> Result<String, CliError> {
        if let Some(o) = given {
            return Ok(o.to_string());
        }
        let me = self.call(reqwest::Method::GET, "/api/v1/me", None).await?;
        me["org"]["slug"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| CliError::Usage("this token has no organization; pass --org".into()))
    }
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    EnrollTokenCreate {
        site: i64,
        uses: u32,
        hours: u32,
    },
    EnrollTokenList,
    EnrollTokenRevoke {
        id: i64,
    },
    Claim {
        code: String,
        site: i64,
    },
    DevicesList,
    DevicesShow {
        device: String,
    },
    ConfigGet {
        device: String,
    },
    /// Changes to the current settings (`None` keeps a value).
    ConfigSet {
        device: String,
        changes: Value,
    },
    Cmd {
        device: String,
        command: Value,
    },
    CmdList {
        device: String,
    },
    Revoke {
        device: String,
    },
}

/// Runs a request; returns the JSON answer.
pub async fn run(api: &Api, org: &str, request: &Request) -> Result<Value, CliError> {
    use reqwest::Method as M;
    let o = format!("/api/v1/orgs/{org}");
    match request {
        Request::EnrollTokenCreate { site, uses, hours } => {
            api.call(
                M::POST,
                &format!("{o}/enrollment-tokens"),
                Some(json!({ "site_id": site, "uses": uses, "expires_in_hours": hours })),
            )
            .await
        }
        Request::EnrollTokenList => {
            api.call(M::GET, &format!("{o}/enrollment-tokens"), None)
                .await
        }
        Request::EnrollTokenRevoke { id } => {
            api.call(M::DELETE, &format!("{o}/enrollment-tokens/{id}"), None)
                .await
        }
        Request::Claim { code, site } => {
            api.call(
                M::POST,
                &format!("{o}/devices/claim"),
                Some(json!({ "code": code, "site_id": site })),
            )
            .await
        }
        Request::DevicesList => api.call(M::GET, &format!("{o}/devices"), None).await,
        Request::DevicesShow { device } => {
            api.call(M::GET, &format!("{o}/devices/{device}"), None)
                .await
        }
        Request::ConfigGet { device } => {
            api.call(M::GET, &format!("{o}/devices/{device}/config"), None)
                .await
        }
        Request::ConfigSet { device, changes } => {
            let current = api
                .call(M::GET, &format!("{o}/devices/{device}/config"), None)
                .await?;
            let mut settings = current["settings"].clone();
            if let (Some(target), Some(changes)) = (settings.as_object_mut(), changes.as_object()) {
                for (k, v) in changes {
                    if !v.is_null() {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
            api.call(
                M::PUT,
                &format!("{o}/devices/{device}/config"),
                Some(settings),
            )
            .await
        }
        Request::Cmd { device, command } => {
            api.call(
                M::POST,
                &format!("{o}/devices/{device}/commands"),
                Some(command.clone()),
            )
            .await
        }
        Request::CmdList { device } => {
            api.call(M::GET, &format!("{o}/devices/{device}/commands"), None)
                .await
        }
        Request::Revoke { device } => {
            api.call(M::POST, &format!("{o}/devices/{device}/revoke"), None)
                .await
        }
    }
}

/// The short human form of an answer.
pub fn human(request: &Request, answer: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    match request {
        Request::EnrollTokenCreate { .. } => format!(
            "enrollment token {} for site {} ({} uses, expires {})\nsecret (shown once): {}",
            s(&answer["token"]["id"]),
            s(&answer["token"]["site_id"]),
            s(&answer["token"]["uses_left"]),
            s(&answer["token"]["expires_at"]),
            s(&answer["secret"])
        ),
        Request::EnrollTokenList => rows(
            &answer["tokens"],
            &[
                "id",
                "prefix",
                "site_id",
                "uses_left",
                "expires_at",
                "revoked_at",
            ],
        ),
        Request::DevicesList => rows(
            &answer["devices"],
            &[
                "id",
                "site_id",
                "online",
                "last_seen_at",
                "reported_version",
                "revoked_at",
            ],
        ),
        Request::CmdList { .. } => rows(
            &answer["commands"],
            &["id", "state", "detail", "created_at"],
        ),
        Request::Claim { .. } => format!(
            "enrolled {} into site {}",
            s(&answer["id"]),
            s(&answer["site_id"])
        ),
        Request::ConfigSet { .. } => format!("config version {} sent", s(&answer["version"])),
        Request::Cmd { .. } => format!("command {} sent", s(&answer["id"])),
        Request::Revoke { .. } => format!(
            "revoked ({} certificate(s))",
            answer["revoked_serials"].as_array().map_or(0, Vec::len)
        ),
        Request::EnrollTokenRevoke { .. } => "revoked".into(),
        Request::DevicesShow { .. } | Request::ConfigGet { .. } => {
            serde_json::to_string_pretty(answer).unwrap_or_default()
        }
    }
}

fn rows(list: &Value, columns: &[&str]) -> String {
    let items = list.as_array().cloned().unwrap_or_default();
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let table: Vec<Vec<String>> = std::iter::once(columns.iter().map(|c| c.to_string()).collect())
        .chain(
            items
                .iter()
                .map(|i| columns.iter().map(|c| cell(&i[*c])).collect()),
        )
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    table
        .iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_show_missing_values() {
        let t = rows(
            &json!([{ "id": "kiosk-a", "online": true }, { "id": "kiosk-bb", "online": null }]),
            &["id", "online"],
        );
        assert_eq!(t, "id        online\nkiosk-a   true\nkiosk-bb  -");
    }

    #[test]
    fn exit_codes_by_kind() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        let api = CliError::Api {
            status: 404,
            code: "not_found".into(),
            message: "not found".into(),
        };
        assert_eq!(api.exit_code(), 1);
        assert_eq!(api.to_string(), "not_found: not found");
    }
}
