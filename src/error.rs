//! The one error type at the HTTP edge: every failure becomes `application/problem+json`
//! (RFC 9457) with a stable `code`. A 500 says nothing internal; its cause is logged.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("payment declined: {0}")]
    PaymentDeclined(String),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A WebSocket route asked for without the upgrade handshake.
    #[error("upgrade required")]
    UpgradeRequired,
    #[error("insufficient stock")]
    InsufficientStock { item_id: String, field: String },
    #[error("invalid transition: {0}")]
    InvalidTransition(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("idempotency key reused with another request")]
    IdempotencyKeyReused,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal: {0:#}")]
    Internal(anyhow::Error),
}

/// The problem document. Field names follow RFC 9457 plus `code` and `errors`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::PaymentDeclined(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            ApiError::InsufficientStock { .. }
            | ApiError::InvalidTransition(_)
            | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::PaymentDeclined(_) => "payment_declined",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::UpgradeRequired => "upgrade_required",
            ApiError::InsufficientStock { .. } => "insufficient_stock",
            ApiError::InvalidTransition(_) => "invalid_transition",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::Validation(_) => "validation_failed",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "The body is not valid JSON",
            ApiError::Unauthorized(_) => "Authentication required",
            ApiError::PaymentDeclined(_) => "Payment declined",
            ApiError::Forbidden(_) => "Not allowed",
            ApiError::NotFound => "Not found",
            ApiError::MethodNotAllowed => "Method not allowed",
            ApiError::UpgradeRequired => "Upgrade required",
            ApiError::InsufficientStock { .. } => "Insufficient stock",
            ApiError::InvalidTransition(_) => "Invalid status transition",
            ApiError::Conflict(_) => "Conflict",
            ApiError::PayloadTooLarge => "Payload too large",
            ApiError::Validation(_) => "Validation failed",
            ApiError::IdempotencyKeyReused => "Idempotency key reused",
            ApiError::RateLimited { .. } => "Too many requests",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::Internal(_) => "Internal error",
        }
    }

    pub fn problem(&self) -> Problem {
        let detail = match self {
            ApiError::InvalidJson(m) => m.clone(),
            ApiError::Unauthorized(m) | ApiError::Forbidden(m) => (*m).to_owned(),
            ApiError::PaymentDeclined(m)
            | ApiError::InvalidTransition(m)
            | ApiError::Conflict(m)
            | ApiError::Unavailable(m) => m.clone(),
            ApiError::NotFound => "no such resource".to_owned(),
            ApiError::MethodNotAllowed => "this resource does not support that method".to_owned(),
            ApiError::UpgradeRequired => {
                "this route speaks WebSocket: send the upgrade handshake".to_owned()
            }
            ApiError::InsufficientStock { item_id, .. } => {
                format!("not enough stock for item {item_id}")
            }
            ApiError::PayloadTooLarge => "the request body is larger than 1 MiB".to_owned(),
            ApiError::Validation(errs) => errs
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            ApiError::IdempotencyKeyReused => {
                "this Idempotency-Key was used with a different request".to_owned()
            }
            ApiError::RateLimited { retry_after_secs } => {
                format!("too many requests; retry in {retry_after_secs} s")
            }
            // Never the cause: it may hold SQL or paths. The cause is logged instead.
            ApiError::Internal(_) => "an internal error occurred".to_owned(),
        };
        let errors = match self {
            ApiError::Validation(errs) => errs.clone(),
            ApiError::InsufficientStock { item_id, field } => {
                vec![FieldError::new(
                    field.clone(),
                    format!("not enough stock for item {item_id}"),
                )]
            }
            _ => Vec::new(),
        };
        let item_id = match self {
            ApiError::InsufficientStock { item_id, .. } => Some(item_id.clone()),
            _ => None,
        };
        let code = self.code();
        Problem {
            kind: format!("https://ordo.dev/problems/{}", code.replace('_', "-")),
            title: self.title(),
            status: self.status().as_u16(),
            detail,
            code,
            errors,
            item_id,
        }
    }
}

/// Carried in the response extensions so the logging middleware can log the cause of a 500.
#[derive(Clone)]
pub struct InternalCause(pub std::sync::Arc<String>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::RateLimited { retry_after_secs } = &self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let ApiError::Unavailable(_) = &self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::Internal(e) = &self {
            res.extensions_mut()
                .insert(InternalCause(std::sync::Arc::new(format!("{e:#}"))));
        }
        res
    }
}

impl From<crate::storage::Error> for ApiError {
    fn from(e: crate::storage::Error) -> Self {
        use crate::storage::Error as E;
        match e {
            // The constraint's name is the schema's business, not the client's: it is logged.
            E::Unique(c) => {
                tracing::info!(constraint = %c, "unique constraint refused a write");
                ApiError::Conflict("it already exists".to_owned())
            }
            E::ForeignKey => ApiError::validation("id", "refers to something that does not exist"),
            E::Check => ApiError::validation("body", "violates a rule of the data model"),
            E::Database(sqlx::Error::PoolTimedOut) => {
                ApiError::Unavailable("the database is busy; retry shortly".to_owned())
            }
            e if e.is_unreachable() => {
                tracing::warn!(error = %e, "the database cannot be reached");
                ApiError::Unavailable("the database cannot be reached; retry shortly".to_owned())
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_reveal_nothing() {
        let e = ApiError::internal(anyhow::anyhow!("SELECT * FROM users failed at /src/x.rs"));
        let p = e.problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("SELECT"));
        assert_eq!(p.code, "internal");
    }

    #[test]
    fn a_conflict_never_names_a_constraint() {
        let e = ApiError::from(crate::storage::Error::Unique("users_email_key".into()));
        let p = e.problem();
        assert_eq!((p.status, p.code), (409, "conflict"));
        assert!(!p.detail.contains("users_email_key"), "{}", p.detail);
        let e = ApiError::from(crate::storage::Error::Corrupt("order x: status".into()));
        assert_eq!(e.problem().status, 500);
        assert!(!e.problem().detail.contains("order x"));
    }

    #[test]
    fn every_code_has_its_status() {
        let cases = [
            (ApiError::InvalidJson(String::new()), 400, "invalid_json"),
            (ApiError::NotFound, 404, "not_found"),
            (ApiError::PayloadTooLarge, 413, "payload_too_large"),
            (
                ApiError::IdempotencyKeyReused,
                422,
                "idempotency_key_reused",
            ),
            (
                ApiError::RateLimited {
                    retry_after_secs: 1,
                },
                429,
                "rate_limited",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.code(), code);
        }
    }
}
