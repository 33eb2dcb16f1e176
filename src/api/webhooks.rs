//! `POST /webhooks/{source}`: where providers deliver events; `HEAD` on the same path
//! answers `200` for providers that probe the URL before using it (Mandrill).
//!
//! Order of checks: the source must exist (404), the body must fit its limit (413), the
//! request must pass every check of the source (401 with a reason code, nothing stored);
//! then the body is stored and ingested. The answer comes only after the events are on
//! disk. A storage failure answers with the provider's "retry later" status (503, or 429
//! for providers that drop events on a 5xx).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use jiff::Timestamp;
use serde_json::json;

use super::serve::BodyTimeout;
use super::{ApiError, AppState};
use crate::ingest::providers::Control;
use crate::ingest::sources::Source;
use crate::ingest::verify::{self, AuthError, Verified};
use crate::ingest::{IngestError, fields::clip};
use crate::store::sources::Subscription;
use crate::telemetry::names;

/// Receives one webhook request.
pub async fn receive(
    State(state): State<AppState>,
    Path(source_name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let source = find(&state, &source_name)?;
    let (parts, body) = request.into_parts();
    let retry_later = |error: ApiError| {
        if error.status() == StatusCode::SERVICE_UNAVAILABLE {
            error.with_status(source.provider.retry_status())
        } else {
            error
        }
    };
    // Held until the answer: bodies being read, verified and stored count against it.
    let (bytes, _reserved) = read_body(
        declared_length(&parts.headers),
        body,
        source.max_body_bytes,
        &state.body_budget,
    )
    .await
    .map_err(retry_later)?;
    let now = Timestamp::now();
    let checked = verify::Request {
        headers: &parts.headers,
        query: parts.uri.query(),
        body: &bytes,
        now,
    };
    let verified = authenticate(&source, &checked).await?;
    source.received(now, &state.store);
    if let Some(control) = source.provider.control(&bytes) {
        keep_all(verified);
        return Ok(handle_control(&state, &source, control).into_response());
    }
    match state.ingestor.ingest(source.clone(), bytes).await {
        Ok(report) => {
            keep_all(verified);
            Ok(Json(report).into_response())
        }
        // Dropping `verified` releases one-time tokens: the provider's retry is welcome.
        Err(IngestError::Store(error)) => {
            Err(ApiError::from(error).with_status(source.provider.retry_status()))
        }
        Err(error) => {
            // A body that can never be read: a retry of it would be refused the same way.
            keep_all(verified);
            Err(error.into())
        }
    }
}

/// Answers `HEAD /webhooks/{source}`: 200 for a configured source, so that providers
/// that check the URL when a webhook is added (Mandrill) accept it.
pub async fn probe(
    State(state): State<AppState>,
    Path(source_name): Path<String>,
) -> Result<StatusCode, ApiError> {
    find(&state, &source_name).map(|_| StatusCode::OK)
}

fn find(state: &AppState, name: &str) -> Result<Arc<Source>, ApiError> {
    state.ingestor.source(name).ok_or_else(|| {
        metrics::counter!(names::REJECTED, "reason" => "unknown_source").increment(1);
        ApiError::not_found(format!(
            "no source named `{}` is configured",
            clip(name, 64)
        ))
    })
}

/// Returns the request's `Content-Length`, if it sends a valid one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
}

/// Reads the body up to `limit` bytes, reserving each chunk from `budget` as it arrives
/// (a client that announces a megabyte and trickles a byte a second holds a few bytes of
/// it, not a megabyte). Larger bodies get 413 without being read further, bodies slower
/// than `server.body_timeout_secs` get 408, and a chunk that does not fit the budget
/// gets 503 at once.
async fn read_body(
    declared: Option<u64>,
    mut body: axum::body::Body,
    limit: usize,
    budget: &BodyBudget,
) -> Result<(Bytes, Reserved), ApiError> {
    let too_large = || {
        metrics::counter!(names::REJECTED, "reason" => "body_too_large").increment(1);
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let mut reserved = budget.reserve(0)?;
    // Grown as bytes arrive: a declared length is only a claim.
    let mut collected =
        Vec::with_capacity(declared.map_or(0, |length| length.min(64 * 1024) as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| match BodyTimeout::find(&error) {
            Some(timeout) => {
                metrics::counter!(names::REJECTED, "reason" => "body_timeout").increment(1);
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    timeout.to_string(),
                )
            }
            // The client went away or broke the framing.
            None => ApiError::bad_request(
                "body_read_failed",
                format!("could not read the body: {error}"),
            ),
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if collected.len() + chunk.len() > limit {
            return Err(too_large());
        }
        budget.grow(&mut reserved, chunk.len())?;
        collected.extend_from_slice(&chunk);
    }
    Ok((Bytes::from(collected), reserved))
}

/// Runs every check of `source`; the first failure refuses the request.
async fn authenticate(
    source: &Source,
    request: &verify::Request<'_>,
) -> Result<Vec<Verified>, ApiError> {
    let mut passed = Vec::with_capacity(source.checks.len());
    for check in &source.checks {
        if let Some(prepare) = check.prepare(request) {
            prepare.await;
        }
        match check.verify(request) {
            Ok(verified) => passed.push(verified),
            Err(error) => return Err(refuse(source, &error)),
        }
    }
    Ok(passed)
}

fn refuse(source: &Source, error: &AuthError) -> ApiError {
    metrics::counter!(
        names::AUTH_FAILURES,
        "source" => source.name.clone(),
        "reason" => error.code()
    )
    .increment(1);
    // The reason is safe to log: no secret or signature value is ever part of it.
    tracing::warn!(source = %source.name, reason = error.code(), %error, "webhook refused");
    ApiError::new(StatusCode::UNAUTHORIZED, error.code(), error.to_string())
}

fn keep_all(verified: Vec<Verified>) {
    for passed in verified {
        passed.keep();
    }
}

/// Carries out what a control request asks: SNS subscriptions are confirmed in the
/// background (the signature was verified, and the URL is checked again before it is
/// called); the answer says what was done.
fn handle_control(
    state: &AppState,
    source: &Arc<Source>,
    control: Control,
) -> Json<serde_json::Value> {
    match control {
        Control::SubscriptionConfirmation {
            topic_arn,
            subscribe_url,
        } => {
            tracing::info!(
                source = %source.name,
                topic = %topic_arn,
                url = %subscribe_url,
                "sns subscription confirmation received; confirming"
            );
            let record = |status: &str, error: Option<String>| Subscription {
                topic_arn: topic_arn.clone(),
                subscribe_url: subscribe_url.clone(),
                status: status.to_owned(),
                error,
                updated_at: Timestamp::now(),
            };
            source.set_subscription(record("confirming", None), &state.store);
            let (source, store, certificates) = (
                source.clone(),
                state.store.clone(),
                state.certificates.clone(),
            );
            let (url, topic) = (subscribe_url.clone(), topic_arn.clone());
            tokio::spawn(async move {
                let (status, error) = match certificates.confirm(&url).await {
                    Ok(()) => {
                        tracing::info!(source = %source.name, topic = %topic, "sns subscription confirmed");
                        ("confirmed", None)
                    }
                    Err(error) => {
                        tracing::warn!(
                            source = %source.name,
                            topic = %topic,
                            url = %url,
                            %error,
                            "cannot confirm the sns subscription; open the URL to confirm it by hand"
                        );
                        ("failed", Some(error))
                    }
                };
                let subscription = Subscription {
                    topic_arn: topic,
                    subscribe_url: url,
                    status: status.to_owned(),
                    error,
                    updated_at: Timestamp::now(),
                };
                source.set_subscription(subscription, &store);
            });
            Json(json!({
                "subscription": {
                    "topic_arn": topic_arn,
                    "subscribe_url": subscribe_url,
                    "status": "confirming"
                }
            }))
        }
        Control::UnsubscribeConfirmation { topic_arn } => {
            tracing::warn!(source = %source.name, topic = %topic_arn, "sns subscription deleted");
            let mut subscription = source
                .subscriptions()
                .into_iter()
                .find(|s| s.topic_arn == topic_arn)
                .unwrap_or(Subscription {
                    topic_arn: topic_arn.clone(),
                    subscribe_url: String::new(),
                    status: String::new(),
                    error: None,
                    updated_at: Timestamp::now(),
                });
            subscription.status = "unsubscribed".to_owned();
            subscription.updated_at = Timestamp::now();
            source.set_subscription(subscription, &state.store);
            Json(json!({ "subscription": { "topic_arn": topic_arn, "status": "unsubscribed" } }))
        }
    }
}

/// The bound on webhook body bytes in flight (`ingest.max_in_flight_bytes`): a request
/// reserves its body's bytes as they arrive and gives them back with its answer; a chunk
/// that does not fit is refused at once with 503, so a burst cannot grow memory without
/// bound, and slow clients hold only what they actually sent.
#[derive(Debug)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    limit: usize,
}

/// Bytes reserved from a [`BodyBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reserved {
    permit: OwnedSemaphorePermit,
    budget: Arc<Semaphore>,
    limit: usize,
}

impl BodyBudget {
    /// A budget of `limit` bytes (at most `u32::MAX` per request, well above any body
    /// limit).
    pub fn new(limit: usize) -> BodyBudget {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        metrics::gauge!(names::IN_FLIGHT_LIMIT).set(limit as f64);
        BodyBudget {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Reserves `bytes`, or refuses with 503 `overloaded` when they do not fit now.
    pub fn reserve(&self, bytes: usize) -> Result<Reserved, ApiError> {
        let permit = self.take(bytes)?;
        Ok(Reserved {
            permit,
            budget: self.permits.clone(),
            limit: self.limit,
        })
    }

    /// Adds `bytes` to `reserved`, or refuses with 503 `overloaded`.
    pub fn grow(&self, reserved: &mut Reserved, bytes: usize) -> Result<(), ApiError> {
        let more = self.take(bytes)?;
        reserved.permit.merge(more);
        Ok(())
    }

    fn take(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let wanted = u32::try_from(bytes).unwrap_or(u32::MAX);
        match self.permits.clone().try_acquire_many_owned(wanted) {
            Ok(permit) => {
                self.record();
                Ok(permit)
            }
            Err(_) => {
                metrics::counter!(names::OVERLOADED, "reason" => "bytes_in_flight").increment(1);
                Err(ApiError::overloaded(format!(
                    "{} bytes of bodies are being received (the bound is {}); nothing was \
                     stored, retry later",
                    self.in_flight(),
                    self.limit
                )))
            }
        }
    }

    /// Returns the bytes reserved now.
    pub fn in_flight(&self) -> usize {
        self.limit.saturating_sub(self.permits.available_permits())
    }

    fn record(&self) {
        metrics::gauge!(names::IN_FLIGHT_BYTES).set(self.in_flight() as f64);
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        // The permit goes back after this body, so count it as given back already.
        let reserved = self.permit.num_permits();
        let in_flight = self
            .limit
            .saturating_sub(self.budget.available_permits() + reserved);
        metrics::gauge!(names::IN_FLIGHT_BYTES).set(in_flight as f64);
    }
}
