//! `POST /webhooks/{source}`: where providers deliver events.
//!
//! Order of checks: the source must exist (404), the request must carry its token when it
//! has one (401), the body must fit the limit (413); then the body is stored and ingested.
//! The answer comes only after the events are on disk.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;

use super::{ApiError, AppState};
use crate::ingest::IngestReport;
use crate::telemetry::names;

/// Receives one webhook request.
pub async fn receive(
    State(state): State<AppState>,
    Path(source_name): Path<String>,
    request: Request,
) -> Result<Json<IngestReport>, ApiError> {
    let Some(source) = state.ingestor.source(&source_name) else {
        metrics::counter!(names::REJECTED, "reason" => "unknown_source").increment(1);
        return Err(ApiError::not_found(format!(
            "no source named `{}` is configured",
            crate::ingest::fields::clip(&source_name, 64)
        )));
    };
    if let Some(token) = &source.token {
        if !token.matches_request(request.headers(), request.uri().query()) {
            metrics::counter!(names::REJECTED, "reason" => "unauthorized").increment(1);
            tracing::warn!(source = %source.name, "webhook with a missing or wrong token");
            return Err(ApiError::unauthorized(
                "missing or wrong token: send it as `Authorization: Bearer <token>`, as the \
                 basic-auth password, or as `?token=`",
            ));
        }
    }
    let limit = state.config.ingest.max_body_bytes;
    let too_large = || {
        metrics::counter!(names::REJECTED, "reason" => "body_too_large").increment(1);
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let body: Body = request.into_body();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(error) => {
            // Either the limit was hit mid-stream or the client went away.
            // axum reports the limit only through the message of the wrapped error.
            let mut cause: Option<&dyn std::error::Error> = Some(&error);
            let mut over_limit = false;
            while let Some(current) = cause {
                over_limit |= current.to_string().contains("length limit exceeded");
                cause = current.source();
            }
            if over_limit {
                return Err(too_large());
            }
            return Err(ApiError::bad_request(
                "body_read_failed",
                format!("could not read the body: {error}"),
            ));
        }
    };
    let report = state.ingestor.ingest(source, bytes).await?;
    Ok(Json(report))
}
