//! The API's error type and its one mapping to HTTP.
//!
//! Every failure a request can meet ends up as an [`ApiError`]; [`ApiError::status`] and
//! [`ApiError::code`] are the single exhaustive boundary mapping to the outside world
//! (status code and stable machine-readable `code`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// A failed API request, named after what went wrong for the caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid session cookie or bearer token.
    #[error("sign in first")]
    Unauthenticated,
    /// Sign-in with an unknown email or a wrong password (indistinguishable on purpose).
    #[error("email or password is not correct")]
    InvalidCredentials,
    /// Signed in, but the role may not do this.
    #[error("your role may not do this")]
    Forbidden,
    /// The user must choose a new password before doing anything else.
    #[error("choose a new password first")]
    PasswordChangeRequired,
    /// Missing, or belonging to another organization (the two look the same).
    #[error("not found")]
    NotFound,
    /// The body is not JSON of the expected shape.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the service accepts.
    #[error("the request body is too large (at most {limit} bytes)")]
    TooLarge { limit: usize },
    /// A field holds a value outside what is allowed.
    #[error("{message}")]
    InvalidInput {
        field: &'static str,
        message: String,
    },
    /// A new password fails the password policy.
    #[error("{0}")]
    WeakPassword(String),
    /// The current password given to a password change is not the user's.
    #[error("the current password is not correct")]
    WrongCurrentPassword,
    /// The resource already exists (unique email, slug, name).
    #[error("{0}")]
    Conflict(String),
    /// Sign-in throttled for this account or address.
    #[error("too many sign-in attempts; try again in {retry_after_s} s")]
    TooManyAttempts { retry_after_s: u64 },
    /// Too many requests with one key (delivery receipts).
    #[error("too many requests; try again in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    /// Anything the caller cannot fix; details go to the log only.
    /// The cause is logged once and never sent to the caller.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError::InvalidInput {
            field,
            message: message.into(),
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }

    /// The HTTP status of each error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::PasswordChangeRequired => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::InvalidInput { .. }
            | ApiError::WeakPassword(_)
            | ApiError::WrongCurrentPassword => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyAttempts { .. } | ApiError::RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code of each error (documented in the OpenAPI document).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Forbidden => "forbidden",
            ApiError::PasswordChangeRequired => "password_change_required",
            ApiError::NotFound => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge { .. } => "payload_too_large",
            ApiError::InvalidInput { .. } => "invalid_input",
            ApiError::WeakPassword(_) => "weak_password",
            ApiError::WrongCurrentPassword => "wrong_current_password",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooManyAttempts { .. } => "too_many_attempts",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
        }
    }

    /// Every code, for the OpenAPI document.
    pub const CODES: [&'static str; 14] = [
        "unauthenticated",
        "invalid_credentials",
        "forbidden",
        "password_change_required",
        "not_found",
        "bad_request",
        "payload_too_large",
        "invalid_input",
        "weak_password",
        "wrong_current_password",
        "conflict",
        "too_many_attempts",
        "rate_limited",
        "internal",
    ];
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict(what) => ApiError::Conflict(what),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "request failed");
        }
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        match &self {
            ApiError::InvalidInput { field, .. } => error["field"] = json!(field),
            ApiError::TooManyAttempts { retry_after_s }
            | ApiError::RateLimited { retry_after_s } => {
                error["retry_after_s"] = json!(retry_after_s)
            }
            _ => {}
        }
        let mut response = (self.status(), axum::Json(json!({ "error": error }))).into_response();
        if let ApiError::TooManyAttempts { retry_after_s }
        | ApiError::RateLimited { retry_after_s } = self
        {
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
