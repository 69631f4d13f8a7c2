//! The closed set of API errors: each variant has a status and a stable `code`; internal
//! causes are logged, never sent.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use suiftly_billing::SpendError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("authentication required")]
    Unauthorized,
    #[error("the account is suspended")]
    AccountSuspended,
    #[error("the account is closed")]
    AccountClosed,
    #[error("signature verification failed")]
    InvalidSignature,
    #[error("nonce is unknown, expired or already used")]
    InvalidNonce,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("route not found")]
    RouteNotFound,
    #[error("unknown service")]
    UnknownService,
    #[error("service {0} is not available")]
    ServiceNotAvailable(&'static str),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("request timed out")]
    Timeout,
    #[error(transparent)]
    Spend(#[from] SpendError),
    #[error("api key limit reached ({limit} active keys)")]
    KeyLimitReached { limit: u32 },
    #[error("monthly limit must be between {min_usd_cents} and {max_usd_cents} cents")]
    LimitOutOfRange {
        min_usd_cents: i64,
        max_usd_cents: i64,
    },
    #[error("escrow balance {balance_usd_cents} cents cannot cover {requested_usd_cents} cents")]
    InsufficientEscrowFunds {
        balance_usd_cents: i64,
        requested_usd_cents: i64,
    },
    #[error("idempotency key already used for a different request")]
    IdempotencyConflict,
    #[error("too many requests")]
    RateLimited,
    #[error("{limit} live streams are already open")]
    StreamLimitReached { limit: usize },
    #[error("service temporarily unavailable")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            InvalidRequest(_) => StatusCode::BAD_REQUEST,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Unauthorized | InvalidSignature | InvalidNonce => StatusCode::UNAUTHORIZED,
            AccountSuspended | AccountClosed => StatusCode::FORBIDDEN,
            NotFound(_) | RouteNotFound | UnknownService => StatusCode::NOT_FOUND,
            ServiceNotAvailable(_) | InvalidConfig(_) | LimitOutOfRange { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            KeyLimitReached { .. } | IdempotencyConflict => StatusCode::CONFLICT,
            Timeout => StatusCode::REQUEST_TIMEOUT,
            Spend(_) | InsufficientEscrowFunds { .. } => StatusCode::PAYMENT_REQUIRED,
            RateLimited | StreamLimitReached { .. } => StatusCode::TOO_MANY_REQUESTS,
            Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code (documented in docs/API.md and the OpenAPI document).
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidRequest(_) => "invalid_request",
            PayloadTooLarge => "payload_too_large",
            Unauthorized => "unauthorized",
            AccountSuspended => "account_suspended",
            AccountClosed => "account_closed",
            InvalidSignature => "invalid_signature",
            InvalidNonce => "invalid_nonce",
            NotFound(_) => "not_found",
            RouteNotFound => "route_not_found",
            UnknownService => "unknown_service",
            ServiceNotAvailable(_) => "service_not_available",
            InvalidConfig(_) => "invalid_config",
            Timeout => "request_timeout",
            Spend(SpendError::InsufficientBalance { .. }) => "insufficient_balance",
            Spend(SpendError::MonthlyLimitExceeded { .. }) => "monthly_limit_exceeded",
            KeyLimitReached { .. } => "api_key_limit_reached",
            LimitOutOfRange { .. } => "limit_out_of_range",
            InsufficientEscrowFunds { .. } => "insufficient_escrow_funds",
            IdempotencyConflict => "idempotency_conflict",
            RateLimited => "rate_limited",
            StreamLimitReached { .. } => "stream_limit_reached",
            Unavailable(_) => "unavailable",
            Internal(_) => "internal",
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::Spend(e) => Some(serde_json::to_value(e).expect("plain struct")),
            ApiError::KeyLimitReached { limit } => Some(json!({ "limit": limit })),
            ApiError::StreamLimitReached { limit } => Some(json!({ "limit": limit })),
            ApiError::LimitOutOfRange {
                min_usd_cents,
                max_usd_cents,
            } => Some(json!({ "min_usd_cents": min_usd_cents, "max_usd_cents": max_usd_cents })),
            ApiError::InsufficientEscrowFunds {
                balance_usd_cents,
                requested_usd_cents,
            } => Some(json!({
                "balance_usd_cents": balance_usd_cents,
                "requested_usd_cents": requested_usd_cents,
            })),
            _ => None,
        }
    }
}

impl ApiError {
    /// The JSON body sent for this error (also stored as the result of an idempotent request).
    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let Some(d) = self.details() {
            error["details"] = d;
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!(%cause, "internal error"),
            ApiError::Unavailable(cause) => tracing::warn!(%cause, "dependency unavailable"),
            _ => {}
        }
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rej: JsonRejection) -> ApiError {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::InvalidRequest(rej.body_text())
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> ApiError {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> ApiError {
        if e.is_closed() {
            ApiError::Unavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}
