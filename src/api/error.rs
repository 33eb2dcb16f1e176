//! The one error type every handler returns, rendered as
//! `{"error": {"code": "...", "message": "..."}}` with a fitting status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ingest::IngestError;
use crate::store::StoreError;
use crate::telemetry::names;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with `status`, a stable machine-readable `code` and a human message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 503 `overloaded` (answered with `Retry-After`): a bound on work in flight was
    /// reached and nothing was stored.
    pub fn overloaded(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
    }

    /// Adds fields next to `code` and `message`.
    pub fn with(mut self, extra: serde_json::Value) -> ApiError {
        self.extra = Some(extra);
        self
    }

    /// The same error answered with `status` (a provider's own "retry later" code).
    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The human message (for 5xx, the cause: log it, do not show it).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        if let StoreError::Overloaded { queued } = error {
            // Expected under a burst, and the client retries: not an error of ours.
            metrics::counter!(names::OVERLOADED, "reason" => "queue_full").increment(1);
            tracing::debug!(queued, "group commit queue full, request refused");
            return ApiError::overloaded(format!(
                "{queued} requests are waiting to be stored; nothing was stored, retry later"
            ));
        }
        if let StoreError::Degraded(reason) = &error {
            // Logged once, when the store failed; not once per refused request.
            tracing::debug!(reason, "storage degraded, request refused");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_degraded",
                "storage cannot write (see /healthz); nothing was stored, retry later",
            );
        }
        // Logged in full here; the client learns only that it should retry.
        tracing::error!(%error, "storage error");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "storage is unavailable; nothing was acknowledged, retry later",
        )
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> ApiError {
        match error {
            IngestError::Body {
                error,
                quarantine_id,
            } => ApiError::bad_request(error.code(), error.to_string())
                .with(json!({ "quarantine_id": quarantine_id })),
            IngestError::Store(error) => error.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(serde_json::Value::Object(extra)), Some(map)) =
            (self.extra, error.as_object_mut())
        {
            map.extend(extra);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        response
    }
}
