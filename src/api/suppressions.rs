//! The suppression list over HTTP.
//!
//! - `GET /api/suppressions?reason=&source=&since=&q=&limit=&cursor=`: entries in force, in
//!   address order.
//! - `GET|PUT|DELETE /api/suppressions/{address}`: one entry; suppress by hand; lift.
//! - `POST /api/suppressions/check`: bulk check before sending, one point read per address.
//! - `GET /api/suppressions/export?format=csv|jsonl` and `POST /api/suppressions/import`.
//!
//! Addresses are normalized with [`EmailAddress::parse`] (display name dropped, domain
//! lower-cased, local part exact), the form the store keys entries by. Expired entries are
//! never reported as suppressed; they stay stored (with their history) until purged.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ApiError, ApiQuery, AppState, blocking};
use crate::event::{EmailAddress, EventId};
use crate::store::StoreError;
use crate::store::suppressions::{SuppressOutcome, SuppressRequest, Suppression};

/// Page size when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;
/// Largest page.
const MAX_LIMIT: usize = 1_000;
/// Most addresses in one `POST /api/suppressions/check`.
pub const MAX_CHECK_ADDRESSES: usize = 10_000;
/// Largest body of `POST /api/suppressions/check` (10 000 addresses of the longest
/// allowed length fit with room to spare).
const MAX_CHECK_BYTES: usize = 8 * 1024 * 1024;
/// Largest body of `POST /api/suppressions/import`.
pub const MAX_IMPORT_BYTES: usize = 50 * 1024 * 1024;
/// Largest body of `PUT` and `DELETE /api/suppressions/{address}`.
const MAX_SMALL_BODY_BYTES: usize = 64 * 1024;
/// Most rejected rows listed in an import answer (`rejected_count` has them all).
const MAX_REJECTED_LISTED: usize = 10_000;
/// Rule recorded for entries made through `PUT`.
const MANUAL: &str = "manual";
/// Rule and default reason of imported entries.
const IMPORT: &str = "import";

// ---------------------------------------------------------------------------------------
// Shared pieces.

/// The `{address}` path segment, normalized; a JSON 400 when it is not an address.
pub struct AddressParam(pub EmailAddress);

impl<S: Send + Sync> FromRequestParts<S> for AddressParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request("bad_address", rejection.body_text()))?;
        EmailAddress::parse(&text)
            .map(AddressParam)
            .map_err(|error| ApiError::bad_request("bad_address", format!("`{text}`: {error}")))
    }
}

/// An entry without its history, as listed and exported.
#[derive(Serialize)]
struct Listed<'a> {
    address: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<EventId>,
    rule: &'a str,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<Timestamp>,
}

impl<'a> From<&'a Suppression> for Listed<'a> {
    fn from(entry: &'a Suppression) -> Listed<'a> {
        Listed {
            address: &entry.address,
            reason: &entry.reason,
            source: entry.source.as_deref(),
            event_id: entry.event_id,
            rule: &entry.rule,
            created_at: entry.created_at,
            updated_at: entry.updated_at,
            expires_at: entry.expires_at,
        }
    }
}

/// Reads a request body of at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(error) => {
            // axum reports the limit only through the message of the wrapped error.
            let mut cause: Option<&dyn std::error::Error> = Some(&error);
            let mut over_limit = false;
            while let Some(current) = cause {
                over_limit |= current.to_string().contains("length limit exceeded");
                cause = current.source();
            }
            if over_limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body is larger than the limit of {limit} bytes"),
                ));
            }
            Err(ApiError::bad_request(
                "body_read_failed",
                format!("could not read the body: {error}"),
            ))
        }
    }
}

/// Reads a JSON body, answering a JSON 400 that shows the expected shape when it does not fit.
async fn json_body<T: serde::de::DeserializeOwned>(
    body: Body,
    limit: usize,
    shape: &str,
) -> Result<Option<T>, ApiError> {
    let bytes = read_body(body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|error| {
        ApiError::bad_request("bad_request_body", format!("expected {shape}: {error}"))
    })
}

/// Reads an RFC 3339 time (`2026-01-02T03:04:05Z`) or Unix seconds.
pub(crate) fn parse_time(name: &str, text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        if let Ok(at) = Timestamp::from_second(seconds) {
            return Ok(at);
        }
    }
    text.parse::<Timestamp>().map_err(|_| {
        format!("{name}: expected an RFC 3339 time such as 2026-01-02T03:04:05Z, got `{text}`")
    })
}

fn entry_json(entry: &Suppression) -> Value {
    serde_json::to_value(entry).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------
// GET /api/suppressions

/// Query string of `GET /api/suppressions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    reason: Option<String>,
    source: Option<String>,
    since: Option<String>,
    q: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Which entries a listing keeps.
struct Filter {
    /// Lower-cased substring of the reason.
    reason: Option<String>,
    /// Exact source.
    source: Option<String>,
    /// Earliest `created_at`.
    since: Option<Timestamp>,
    /// Lower-cased substring of the address.
    q: Option<String>,
}

impl Filter {
    fn keeps(&self, entry: &Suppression) -> bool {
        self.reason
            .as_ref()
            .is_none_or(|reason| entry.reason.to_lowercase().contains(reason))
            && self
                .source
                .as_ref()
                .is_none_or(|source| entry.source.as_ref() == Some(source))
            && self.since.is_none_or(|since| entry.created_at >= since)
            && self
                .q
                .as_ref()
                .is_none_or(|q| entry.address.to_lowercase().contains(q))
    }
}

/// The answer of `GET /api/suppressions`.
#[derive(Serialize)]
struct ListAnswer<'a> {
    suppressions: Vec<Listed<'a>>,
    next_cursor: Option<String>,
}

/// `GET /api/suppressions?reason=&source=&since=&q=&limit=&cursor=`: entries in force in
/// address order. `q` and `reason` are case-insensitive substrings, `source` exact, `since`
/// bounds `created_at`; `cursor` is the `next_cursor` of the previous page (its last address).
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let non_empty = |text: Option<String>| text.filter(|t| !t.trim().is_empty());
    let filter = Filter {
        reason: non_empty(params.reason).map(|t| t.trim().to_lowercase()),
        source: non_empty(params.source).map(|t| t.trim().to_owned()),
        since: non_empty(params.since)
            .map(|t| parse_time("since", &t).map_err(|m| ApiError::bad_request("bad_time", m)))
            .transpose()?,
        q: non_empty(params.q).map(|t| t.trim().to_lowercase()),
    };
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
            _ => {
                return Err(ApiError::bad_request(
                    "bad_limit",
                    format!("limit must be a number from 1 to {MAX_LIMIT}"),
                ));
            }
        },
    };
    let cursor = non_empty(params.cursor);
    let store = state.store.clone();
    let body = blocking(move || {
        let now = Timestamp::now();
        // One entry more than the page, to know whether another page follows.
        let mut page = Vec::with_capacity(limit + 1);
        store.scan_suppressions(cursor.as_deref(), |entry| {
            if entry.in_force(now) && filter.keeps(&entry) {
                page.push(entry);
            }
            page.len() <= limit
        })?;
        let next_cursor = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|entry| entry.address.clone())
        } else {
            None
        };
        let listed: Vec<Listed<'_>> = page.iter().map(Listed::from).collect();
        serde_json::to_vec(&ListAnswer {
            suppressions: listed,
            next_cursor,
        })
        .map_err(|error| StoreError::Commit(error.to_string()))
    })
    .await?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

// ---------------------------------------------------------------------------------------
// GET / PUT / DELETE /api/suppressions/{address}

/// `GET /api/suppressions/{address}`: the entry with its history when it is in force.
pub async fn one(
    State(state): State<AppState>,
    AddressParam(address): AddressParam,
) -> Result<Json<Value>, ApiError> {
    match state.store.suppression(address.as_str())? {
        Some(entry) if entry.in_force(Timestamp::now()) => Ok(Json(entry_json(&entry))),
        _ => Err(ApiError::not_found(format!("{address} is not suppressed"))),
    }
}

/// Body of `PUT /api/suppressions/{address}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    reason: String,
    expires_at: Option<String>,
    ttl_seconds: Option<u64>,
}

const PUT_SHAPE: &str =
    "{\"reason\": \"...\", \"expires_at\"?: RFC 3339, \"ttl_seconds\"?: number}";

/// `PUT /api/suppressions/{address}`: suppresses by hand (rule `manual`), permanently or
/// until `expires_at` / for `ttl_seconds`. An entry in force is extended or made permanent,
/// never shortened. Answers the entry with `outcome`; 201 when it was added.
pub async fn put(
    State(state): State<AppState>,
    AddressParam(address): AddressParam,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(body) = json_body::<PutBody>(body, MAX_SMALL_BODY_BYTES, PUT_SHAPE).await? else {
        return Err(ApiError::bad_request(
            "bad_request_body",
            format!("expected {PUT_SHAPE}"),
        ));
    };
    let now = Timestamp::now();
    let request = manual_request(
        &address,
        &body.reason,
        body.expires_at.as_deref(),
        body.ttl_seconds,
        now,
    )?;
    let (entry, outcome) = state.store.suppress(&request, now)?;
    state.store.flush().await?;
    let mut value = entry_json(&entry);
    if let Value::Object(map) = &mut value {
        map.insert("outcome".into(), json!(outcome));
    }
    let status = if outcome == SuppressOutcome::Added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(value)).into_response())
}

/// Checks a suppression by hand (reason, and `expires_at` or `ttl_seconds` or neither for
/// permanent) and turns it into a request of rule `manual`: shared by `PUT` and the console.
pub(crate) fn manual_request(
    address: &EmailAddress,
    reason: &str,
    expires_at: Option<&str>,
    ttl_seconds: Option<u64>,
    now: Timestamp,
) -> Result<SuppressRequest, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::bad_request(
            "bad_reason",
            "reason must not be empty",
        ));
    }
    let expires_at = match (expires_at, ttl_seconds) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "bad_expiry",
                "give expires_at or ttl_seconds, not both",
            ));
        }
        (Some(text), None) => {
            let at = parse_time("expires_at", text)
                .map_err(|message| ApiError::bad_request("bad_expiry", message))?;
            if at <= now {
                return Err(ApiError::bad_request(
                    "bad_expiry",
                    "expires_at is in the past",
                ));
            }
            Some(at)
        }
        (None, Some(ttl)) => {
            let at = i64::try_from(ttl)
                .ok()
                .filter(|ttl| *ttl > 0)
                .and_then(|ttl| now.checked_add(SignedDuration::from_secs(ttl)).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "bad_expiry",
                        "ttl_seconds must be a positive number of seconds within the calendar",
                    )
                })?;
            Some(at)
        }
        (None, None) => None,
    };
    Ok(SuppressRequest {
        address: address.as_str().to_owned(),
        reason: reason.to_owned(),
        source: None,
        event_id: None,
        rule: MANUAL.to_owned(),
        expires_at,
    })
}

/// Query string and body of `DELETE /api/suppressions/{address}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveParams {
    reason: Option<String>,
    by: Option<String>,
}

/// `DELETE /api/suppressions/{address}` with optional `reason` and `by` in the query string
/// or a JSON body: lifts the suppression, keeping the entry's history. 404 when the
/// address is not suppressed.
pub async fn remove(
    State(state): State<AppState>,
    AddressParam(address): AddressParam,
    ApiQuery(query): ApiQuery<RemoveParams>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = json_body::<RemoveParams>(
        body,
        MAX_SMALL_BODY_BYTES,
        "{\"reason\"?: \"...\", \"by\"?: \"...\"}",
    )
    .await?
    .unwrap_or_default();
    let pick = |body: Option<String>, query: Option<String>, default: &str| {
        body.or(query)
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    let reason = pick(body.reason, query.reason, "removed by hand");
    let by = pick(body.by, query.by, MANUAL);
    let Some(entry) = state
        .store
        .unsuppress(address.as_str(), &by, &reason, Timestamp::now())?
    else {
        return Err(ApiError::not_found(format!("{address} is not suppressed")));
    };
    state.store.flush().await?;
    Ok(Json(entry_json(&entry)))
}

// ---------------------------------------------------------------------------------------
// POST /api/suppressions/check

/// Body of `POST /api/suppressions/check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    addresses: Vec<String>,
}

/// One address of a check answer.
#[derive(Serialize)]
struct Checked {
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    normalized: Option<String>,
    suppressed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The answer of `POST /api/suppressions/check`.
#[derive(Serialize)]
struct CheckAnswer {
    results: Vec<Checked>,
    suppressed: usize,
}

/// Addresses per reading task at least: below this, one task is quicker than several.
const CHECK_CHUNK_MIN: usize = 256;

/// How many blocking tasks share the point reads of one check.
fn read_tasks(addresses: usize) -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    addresses.div_ceil(CHECK_CHUNK_MIN).clamp(1, cores)
}

/// Checks `addresses` one point read each.
fn check_chunk(
    store: &crate::store::Store,
    addresses: Vec<String>,
    now: Timestamp,
) -> Result<Vec<Checked>, StoreError> {
    let mut results = Vec::with_capacity(addresses.len());
    for given in addresses {
        let result = match EmailAddress::parse(&given) {
            Err(error) => Checked {
                address: given,
                normalized: None,
                suppressed: false,
                reason: None,
                expires_at: None,
                rule: None,
                error: Some(error.to_string()),
            },
            Ok(address) => {
                let status = store
                    .suppression_status(address.as_str())?
                    .filter(|status| status.in_force(now));
                let (reason, expires_at, rule) = match status {
                    Some(status) => (Some(status.reason), status.expires_at, Some(status.rule)),
                    None => (None, None, None),
                };
                Checked {
                    address: given,
                    normalized: Some(address.as_str().to_owned()),
                    suppressed: reason.is_some(),
                    reason,
                    expires_at,
                    rule,
                    error: None,
                }
            }
        };
        results.push(result);
    }
    Ok(results)
}

/// `POST /api/suppressions/check` with `{"addresses": [...]}` (at most 10 000): whether each
/// is suppressed now, with one point read per address (no scans), spread over a few
/// blocking tasks for large batches. Invalid addresses get an `error` in their result and
/// do not fail the request.
pub async fn check(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let shape = "{\"addresses\": [\"user@example.com\", ...]}";
    let Some(request) = json_body::<CheckRequest>(body, MAX_CHECK_BYTES, shape).await? else {
        return Err(ApiError::bad_request(
            "bad_request_body",
            format!("expected {shape}"),
        ));
    };
    let count = request.addresses.len();
    if count > MAX_CHECK_ADDRESSES {
        return Err(ApiError::bad_request(
            "too_many_addresses",
            format!("{count} addresses given; check at most {MAX_CHECK_ADDRESSES} per request"),
        )
        .with(json!({ "max_addresses": MAX_CHECK_ADDRESSES })));
    }
    let now = Timestamp::now();
    let chunk = count.div_ceil(read_tasks(count)).max(1);
    let mut addresses = request.addresses.into_iter();
    let mut tasks = Vec::new();
    loop {
        let part: Vec<String> = addresses.by_ref().take(chunk).collect();
        if part.is_empty() {
            break;
        }
        let store = state.store.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            check_chunk(&store, part, now)
        }));
    }
    let mut results = Vec::with_capacity(count);
    for task in tasks {
        results.extend(
            task.await
                .map_err(|error| StoreError::Commit(error.to_string()))??,
        );
    }
    let suppressed = results.iter().filter(|result| result.suppressed).count();
    let body = serde_json::to_vec(&CheckAnswer {
        results,
        suppressed,
    })
    .map_err(|error| StoreError::Commit(error.to_string()))?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

// ---------------------------------------------------------------------------------------
// GET /api/suppressions/export

/// Query string of `GET /api/suppressions/export`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    format: Option<String>,
}

/// Columns of the CSV export (and of a CSV import).
pub const CSV_HEADER: [&str; 5] = ["address", "reason", "source", "created_at", "expires_at"];

/// `GET /api/suppressions/export?format=csv|jsonl` (default csv): every entry in force, in
/// address order. CSV has the columns of [`CSV_HEADER`]; JSON lines hold the entries
/// without their history. Built off the runtime in one piece.
pub async fn export(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ExportParams>,
) -> Result<Response, ApiError> {
    let format = ExportFormat::parse(params.format.as_deref())?;
    let store = state.store.clone();
    let body = blocking(move || {
        let now = Timestamp::now();
        let mut writer = ExportWriter::new(format)?;
        let mut failure = None;
        store.scan_suppressions(None, |entry| {
            if !entry.in_force(now) {
                return true;
            }
            if let Err(error) = writer.push(&entry) {
                failure = Some(error);
                return false;
            }
            true
        })?;
        match failure {
            Some(error) => Err(error),
            None => writer.finish(),
        }
    })
    .await?;
    Ok(export_response(format, body))
}

/// The formats of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    /// The columns of [`CSV_HEADER`], with a header row.
    Csv,
    /// One JSON object per line: the entries without their history.
    Jsonl,
}

impl ExportFormat {
    /// Reads `format=`: `csv` (the default), `jsonl` or `ndjson`.
    pub(crate) fn parse(text: Option<&str>) -> Result<ExportFormat, ApiError> {
        match text.map(str::trim) {
            None | Some("" | "csv") => Ok(ExportFormat::Csv),
            Some("jsonl" | "ndjson") => Ok(ExportFormat::Jsonl),
            Some(_) => Err(ApiError::bad_request(
                "bad_format",
                "format must be csv or jsonl",
            )),
        }
    }
}

/// Builds the body of an export one entry at a time (the API's and the console's).
pub(crate) enum ExportWriter {
    /// CSV, header already written (boxed: the writer holds its buffers inline).
    Csv(Box<csv::Writer<Vec<u8>>>),
    /// JSON lines.
    Jsonl(Vec<u8>),
}

impl ExportWriter {
    /// Starts an export in `format`.
    pub(crate) fn new(format: ExportFormat) -> Result<ExportWriter, StoreError> {
        Ok(match format {
            ExportFormat::Jsonl => ExportWriter::Jsonl(Vec::new()),
            ExportFormat::Csv => {
                let mut writer = csv::Writer::from_writer(Vec::new());
                writer
                    .write_record(CSV_HEADER)
                    .map_err(|error| StoreError::Commit(error.to_string()))?;
                ExportWriter::Csv(Box::new(writer))
            }
        })
    }

    /// Appends one entry.
    pub(crate) fn push(&mut self, entry: &Suppression) -> Result<(), StoreError> {
        match self {
            ExportWriter::Jsonl(out) => {
                serde_json::to_writer(&mut *out, &Listed::from(entry))
                    .map_err(|error| StoreError::Commit(error.to_string()))?;
                out.push(b'\n');
            }
            ExportWriter::Csv(writer) => {
                let record = [
                    entry.address.as_str(),
                    entry.reason.as_str(),
                    entry.source.as_deref().unwrap_or_default(),
                    &entry.created_at.to_string(),
                    &entry
                        .expires_at
                        .map(|at| at.to_string())
                        .unwrap_or_default(),
                ];
                writer
                    .write_record(record)
                    .map_err(|error| StoreError::Commit(error.to_string()))?;
            }
        }
        Ok(())
    }

    /// Returns the finished body.
    pub(crate) fn finish(self) -> Result<Vec<u8>, StoreError> {
        match self {
            ExportWriter::Jsonl(out) => Ok(out),
            ExportWriter::Csv(writer) => writer
                .into_inner()
                .map_err(|error| StoreError::Commit(error.to_string())),
        }
    }
}

/// An export body as a download: its content type and file name.
pub(crate) fn export_response(format: ExportFormat, body: Vec<u8>) -> Response {
    let (content_type, name) = match format {
        ExportFormat::Jsonl => (
            "application/x-ndjson",
            "attachment; filename=\"suppressions.jsonl\"",
        ),
        ExportFormat::Csv => (
            "text/csv; charset=utf-8",
            "attachment; filename=\"suppressions.csv\"",
        ),
    };
    (
        [(CONTENT_TYPE, content_type), (CONTENT_DISPOSITION, name)],
        body,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// POST /api/suppressions/import

/// One row of an import, as text, with its 1-based line number.
#[derive(Debug, Default)]
struct ImportRow {
    line: usize,
    address: String,
    reason: Option<String>,
    source: Option<String>,
    created_at: Option<String>,
    expires_at: Option<String>,
}

/// A JSON line of an import (the entries of a JSONL export; other fields are ignored).
#[derive(Deserialize)]
struct JsonRow {
    address: String,
    reason: Option<String>,
    source: Option<String>,
    created_at: Option<String>,
    expires_at: Option<String>,
}

/// A row that could not be applied.
#[derive(Serialize)]
pub(crate) struct Rejected {
    /// 1-based line number in the file.
    pub(crate) line: usize,
    /// What was wrong with it.
    pub(crate) error: String,
}

/// What an import did.
#[derive(Serialize)]
pub(crate) struct ImportReport {
    /// Addresses newly suppressed.
    pub(crate) added: usize,
    /// Entries extended or made permanent.
    pub(crate) updated: usize,
    /// Entries already suppressed at least as long.
    pub(crate) unchanged: usize,
    /// The first rejected rows, by line.
    pub(crate) rejected: Vec<Rejected>,
    /// Every rejected row.
    pub(crate) rejected_count: usize,
    /// Most rows `rejected` lists.
    #[serde(skip)]
    listed: usize,
}

impl ImportReport {
    /// An empty report that lists at most `listed` rejected rows (it counts them all).
    fn new(listed: usize) -> Self {
        Self {
            added: 0,
            updated: 0,
            unchanged: 0,
            rejected: Vec::new(),
            rejected_count: 0,
            listed,
        }
    }

    /// Counts a rejected row and keeps its message while fewer than the listed maximum
    /// are kept: rows are rejected as they are read, in line order, so these are the
    /// first ones, and a file of junk costs a counter, not a string per line. The message
    /// is only formatted when it is kept.
    fn reject(&mut self, line: usize, error: impl std::fmt::Display) {
        self.rejected_count += 1;
        if self.rejected.len() < self.listed {
            self.rejected.push(Rejected {
                line,
                error: error.to_string(),
            });
        }
    }
}

/// `POST /api/suppressions/import`: a CSV with a header row naming at least `address`
/// (columns of [`CSV_HEADER`], any order, others ignored), JSON lines as exported, or one
/// address per line (blank lines and `#` comments skipped). Reason defaults to `import`,
/// the rule is `import`. Each row is checked whole and applied with one suppress, so a
/// row is applied entirely or not at all; bad rows are reported by 1-based line number.
pub async fn import(State(state): State<AppState>, body: Body) -> Result<Json<Value>, ApiError> {
    let bytes = read_body(body, MAX_IMPORT_BYTES).await?;
    let store = state.store.clone();
    let report = blocking(move || import_rows(&store, &bytes, MAX_REJECTED_LISTED)).await?;
    state.store.flush().await?;
    Ok(Json(json!(report)))
}

/// Applies an import body (any format [`import`] takes) row by row and reports what it
/// did, listing at most `listed` of the rejected rows (the first, by line; the count has
/// them all): shared by the API and the console. The caller flushes.
pub(crate) fn import_rows(
    store: &crate::store::Store,
    bytes: &[u8],
    listed: usize,
) -> Result<ImportReport, StoreError> {
    let now = Timestamp::now();
    let mut report = ImportReport::new(listed);
    let mut apply = |report: &mut ImportReport, row: ImportRow| -> Result<(), StoreError> {
        let line = row.line;
        match validate(row, now) {
            Err(error) => report.reject(line, error),
            Ok((request, created_at)) => match store.suppress_since(&request, created_at, now)?.1 {
                SuppressOutcome::Added => report.added += 1,
                SuppressOutcome::Extended | SuppressOutcome::Upgraded => {
                    report.updated += 1;
                }
                SuppressOutcome::Unchanged => report.unchanged += 1,
            },
        }
        Ok(())
    };
    read_rows(bytes, &mut report, &mut apply)?;
    // Already in line order as read; kept sorted should a reader report out of order.
    report.rejected.sort_by_key(|rejected| rejected.line);
    Ok(report)
}

/// Turns a row into a suppress request and the `created_at` to keep.
fn validate(
    row: ImportRow,
    now: Timestamp,
) -> Result<(SuppressRequest, Option<Timestamp>), String> {
    let address = EmailAddress::parse(&row.address)
        .map_err(|error| format!("`{}`: {error}", row.address.trim()))?;
    let present =
        |text: Option<String>| text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    let created_at = present(row.created_at)
        .map(|text| parse_time("created_at", &text))
        .transpose()?;
    let expires_at = present(row.expires_at)
        .map(|text| parse_time("expires_at", &text))
        .transpose()?;
    if expires_at.is_some_and(|at| at <= now) {
        return Err("expires_at is in the past".to_owned());
    }
    Ok((
        SuppressRequest {
            address: address.as_str().to_owned(),
            reason: present(row.reason).unwrap_or_else(|| IMPORT.to_owned()),
            source: present(row.source),
            event_id: None,
            rule: IMPORT.to_owned(),
            expires_at,
        },
        created_at,
    ))
}

/// The lines of `bytes` with their 1-based numbers, without line terminators.
fn numbered_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(index, line)| (index + 1, line.strip_suffix(b"\r").unwrap_or(line)))
}

fn is_skipped(line: &[u8]) -> bool {
    let trimmed = line.trim_ascii();
    trimmed.is_empty() || trimmed.starts_with(b"#")
}

/// Reads the rows of an import body, detecting its format from the first line that is
/// neither blank nor a comment, and hands each row to `apply`. Lines that cannot be read
/// as rows are rejected in `report` as they are met, so they are counted in line order
/// with the rows `apply` rejects and only the listed ones are kept.
fn read_rows(
    bytes: &[u8],
    report: &mut ImportReport,
    apply: &mut impl FnMut(&mut ImportReport, ImportRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let Some((_, first)) = numbered_lines(bytes).find(|(_, line)| !is_skipped(line)) else {
        return Ok(());
    };
    let first = first.trim_ascii();
    if first.starts_with(b"{") {
        for (line, text) in numbered_lines(bytes) {
            if is_skipped(text) {
                continue;
            }
            match serde_json::from_slice::<JsonRow>(text) {
                Ok(row) => apply(
                    report,
                    ImportRow {
                        line,
                        address: row.address,
                        reason: row.reason,
                        source: row.source,
                        created_at: row.created_at,
                        expires_at: row.expires_at,
                    },
                )?,
                Err(error) => report.reject(line, format_args!("not a JSON entry: {error}")),
            }
        }
    } else if csv_header(first).is_some() {
        read_csv(bytes, report, apply)?;
    } else {
        for (line, text) in numbered_lines(bytes) {
            if is_skipped(text) {
                continue;
            }
            match std::str::from_utf8(text) {
                Ok(text) => apply(
                    report,
                    ImportRow {
                        line,
                        address: text.trim().to_owned(),
                        ..ImportRow::default()
                    },
                )?,
                Err(_) => report.reject(line, "line is not valid UTF-8"),
            }
        }
    }
    Ok(())
}

/// Column positions of a CSV header: address, reason, source, created_at, expires_at.
type Columns = [Option<usize>; 5];

/// Returns the columns when `line` is a CSV header naming an `address` column.
fn csv_header(line: &[u8]) -> Option<Columns> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line);
    let record = reader.records().next()?.ok()?;
    columns_of(&record)
}

/// Returns the columns when `record` is a CSV header naming an `address` column.
fn columns_of(record: &csv::StringRecord) -> Option<Columns> {
    let mut columns: Columns = [None; 5];
    for (index, field) in record.iter().enumerate() {
        let name = field.trim().to_ascii_lowercase();
        if let Some(column) = CSV_HEADER.iter().position(|known| *known == name) {
            columns[column].get_or_insert(index);
        }
    }
    columns[0].map(|_| columns)
}

/// Reads the rows of a CSV import (its first row the header) into `apply`, rejecting
/// unreadable records in `report` as they are met.
fn read_csv(
    bytes: &[u8],
    report: &mut ImportReport,
    apply: &mut impl FnMut(&mut ImportReport, ImportRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let mut columns: Option<Columns> = None;
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line() as usize;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                let line = error.position().map_or(line, |p| p.line() as usize);
                match error.kind() {
                    csv::ErrorKind::Utf8 { .. } => report.reject(line, "line is not valid UTF-8"),
                    _ => report.reject(line, format_args!("not a CSV row: {error}")),
                }
                continue;
            }
        }
        let line = record.position().map_or(line, |p| p.line() as usize);
        if record.iter().all(|field| field.trim().is_empty()) {
            continue;
        }
        let Some(columns) = columns else {
            // The first row is the header (format detection found it there).
            columns = columns_of(&record);
            if columns.is_none() {
                report.reject(line, "the CSV header has no `address` column");
                return Ok(());
            }
            continue;
        };
        let field = |column: usize| {
            columns[column]
                .and_then(|index| record.get(index))
                .map(str::to_owned)
        };
        apply(
            report,
            ImportRow {
                line,
                address: field(0).unwrap_or_default(),
                reason: field(1),
                source: field(2),
                created_at: field(3),
                expires_at: field(4),
            },
        )?;
    }
    Ok(())
}
