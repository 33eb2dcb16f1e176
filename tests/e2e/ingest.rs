//! The ingest pipeline and the read API end to end: durability across restarts (graceful
//! and `kill -9`), deduplication of retries, what happens to bad and hostile input,
//! authentication, and the filters and pagination of `GET /api/events`.

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use jiff::Timestamp;
use mailwarden::config::{Secret, SourceConfig};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, all_fixtures, http_client, read_fixture, spawn_app, spawn_app_with, start_server,
};

// ---------------------------------------------------------------------------------------
// Helpers.

/// Every fixture that is valid JSON (the `broken_*` ones reproduce documentation errors).
fn good_fixtures() -> Vec<String> {
    all_fixtures()
        .into_iter()
        .filter(|fixture| !fixture.starts_with("sendpulse/broken_"))
        .collect()
}

/// The source a fixture is posted to: its provider, a source under its own name by default.
fn source_of(fixture: &str) -> &str {
    fixture.split('/').next().expect("provider directory")
}

/// The JSON elements of a request body: the items of an array, or the object itself.
fn elements_of(body: &[u8]) -> Vec<Value> {
    match serde_json::from_slice(body).expect("JSON body") {
        Value::Array(items) => items,
        other => vec![other],
    }
}

/// Returns the ids of an ingest answer.
fn ids_of(report: &Value) -> Vec<String> {
    report["event_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no event_ids in {report}"))
        .iter()
        .map(|id| id.as_str().expect("ids are strings").to_owned())
        .collect()
}

/// Numeric value of an `evt_…` id, for ordering.
fn id_number(id: &str) -> u64 {
    id.strip_prefix("evt_")
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("`{id}` is not an event id"))
}

/// An event as stored, without the rule evaluation status that the API adds to it (it
/// changes on its own as the rules runner catches up).
fn stored_part(mut event: Value) -> Value {
    if let Some(map) = event.as_object_mut() {
        map.remove("evaluation");
    }
    event
}

/// Posts every good fixture to its source; returns the ids stored, in order, with the
/// fixture and element position each came from.
async fn post_all(app: &TestApp) -> Vec<(String, String, usize)> {
    let mut stored = Vec::new();
    for fixture in good_fixtures() {
        let (status, report) = app.post_fixture(source_of(&fixture), &fixture).await;
        assert_eq!(status, 200, "{fixture}: {report}");
        assert_eq!(report["quarantined"], 0, "{fixture}: {report}");
        for (index, id) in ids_of(&report).into_iter().enumerate() {
            stored.push((id, fixture.clone(), index));
        }
    }
    stored
}

/// Every event matching `query`, following `next_cursor` with pages of `limit`.
async fn all_events(app: &TestApp, query: &str, limit: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut path = format!("/api/events?limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{path}: {page}");
        let items = page["events"].as_array().expect("events array");
        assert!(items.len() <= limit, "{path}: {} events", items.len());
        events.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(page["next_cursor"].is_null(), "{page}");
                return events;
            }
        }
    }
    panic!("pagination of `{query}` does not end");
}

/// Ids of `events`, in order.
fn event_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|event| event["id"].as_str().expect("event id").to_owned())
        .collect()
}

/// Every event id stored, newest first.
async fn stored_ids(app: &TestApp) -> Vec<String> {
    event_ids(&all_events(app, "", 1000).await)
}

/// Every quarantine entry, newest first.
async fn quarantine(app: &TestApp) -> Vec<Value> {
    let (status, page) = app.get("/api/quarantine?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["entries"].as_array().expect("entries").clone()
}

/// Sends a GET with optional extra headers; returns status, headers and body text.
async fn get_with(
    app: &TestApp,
    path: &str,
    authorization: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = app.client.get(app.url(path));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("request is sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

/// Posts `body` to `/webhooks/{path}` (path may hold a query) with an optional
/// `Authorization` header; returns status and JSON answer.
async fn post_with(
    app: &TestApp,
    path: &str,
    authorization: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/webhooks/{path}")))
        .header("content-type", "application/json")
        .body(body);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("request is sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

/// Asserts that an answer is a JSON error with `code` and returns its message.
fn error_message(status: u16, answer: &Value, expected_status: u16, code: &str) -> String {
    assert_eq!(status, expected_status, "{answer}");
    assert_eq!(answer["error"]["code"], code, "{answer}");
    answer["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {answer}"))
        .to_owned()
}

/// Posts a body that must be refused as a whole with `status` and `code`; checks it was
/// kept in quarantine (for 400s) and that no stored event was lost or added. Returns the
/// error message.
async fn assert_refused(
    app: &TestApp,
    source: &str,
    body: impl Into<reqwest::Body>,
    status: u16,
    code: &str,
) -> String {
    let events_before = stored_ids(app).await;
    let quarantine_before = quarantine(app).await.len();
    let (got, answer) = app.post(source, body).await;
    let message = error_message(got, &answer, status, code);
    let entries = quarantine(app).await;
    if status == 400 {
        let id = answer["error"]["quarantine_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no quarantine_id in {answer}"));
        assert_eq!(entries.len(), quarantine_before + 1, "{entries:#?}");
        let entry = entries
            .iter()
            .find(|entry| entry["id"] == id)
            .unwrap_or_else(|| panic!("quarantine entry {id} not listed: {entries:#?}"));
        assert_eq!(entry["source"], source, "{entry}");
        assert_eq!(entry["error"], message.as_str(), "{entry}");
        assert!(entry["body_id"].is_string(), "{entry}");
        assert!(entry.get("index").is_none(), "{entry}");
        assert!(entry.get("element").is_none(), "{entry}");
    } else {
        assert_eq!(entries.len(), quarantine_before, "{entries:#?}");
    }
    assert_eq!(
        stored_ids(app).await,
        events_before,
        "stored events changed"
    );
    message
}

/// Rewrites JSON text with other whitespace between tokens (never inside strings): none
/// at all, or a line break and indentation after every `{`, `[` and `,`.
fn reformat(json: &str, spaced: bool) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            c if c.is_whitespace() => {}
            '{' | '[' | ',' if spaced => {
                out.push(c);
                out.push_str("\r\n\t  ");
            }
            ':' if spaced => out.push_str(" :\t"),
            _ => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Durability and deduplication.

#[tokio::test]
async fn restart_keeps_every_event() {
    let mut app = spawn_app().await;
    let posted = post_all(&app).await;
    assert!(posted.len() >= 30, "{} events", posted.len());
    let mut before = Vec::new();
    for (id, fixture, _) in &posted {
        let (status, event) = app.get(&format!("/api/events/{id}")).await;
        assert_eq!(status, 200, "{fixture} {id}: {event}");
        before.push(stored_part(event));
    }
    let listed_before = stored_ids(&app).await;
    assert_eq!(listed_before.len(), posted.len());
    let data_dir = app.data_dir();

    app.restart().await;

    assert_eq!(app.data_dir(), data_dir);
    assert!(app.data_dir().is_dir() && app.rules_dir().is_dir());
    for ((id, fixture, _), expected) in posted.iter().zip(&before) {
        let (status, event) = app.get(&format!("/api/events/{id}")).await;
        assert_eq!(status, 200, "{fixture} {id} after restart: {event}");
        assert_eq!(&stored_part(event), expected, "{fixture} {id} changed");
    }
    assert_eq!(stored_ids(&app).await, listed_before);

    // Dedup keys survive too, and new ids keep increasing.
    for fixture in good_fixtures() {
        let (status, report) = app.post_fixture(source_of(&fixture), &fixture).await;
        assert_eq!(status, 200, "{fixture}: {report}");
        assert_eq!(report["accepted"], 0, "{fixture} after restart: {report}");
    }
    let (status, report) = app
        .post(
            "sendpulse",
            r#"[{"event":"opened","timestamp":1700000000,"recipient":"new@example.com"}]"#,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let new_id = &ids_of(&report)[0];
    let newest_before = listed_before.iter().map(|id| id_number(id)).max().unwrap();
    assert!(
        id_number(new_id) > newest_before,
        "{new_id} reuses an old id"
    );
}

#[tokio::test]
async fn reposted_batches_add_nothing() {
    let app = spawn_app().await;
    let mut total = 0;
    for fixture in good_fixtures() {
        let source = source_of(&fixture);
        let (status, first) = app.post_fixture(source, &fixture).await;
        assert_eq!(status, 200, "{fixture}: {first}");
        let accepted = first["accepted"].as_u64().expect("accepted");
        assert!(accepted > 0, "{fixture}: {first}");
        total += accepted as usize;
        // A body may repeat an event itself (Mandrill's captured request does): every
        // event of it is a duplicate the second time.
        let events = accepted + first["duplicates"].as_u64().expect("duplicates");

        let (status, again) = app.post_fixture(source, &fixture).await;
        assert_eq!(status, 200, "{fixture}: {again}");
        assert_eq!(again["accepted"], 0, "{fixture} re-posted: {again}");
        assert_eq!(again["duplicates"], events, "{fixture} re-posted: {again}");
        assert_eq!(
            again["event_ids"],
            json!([]),
            "{fixture} re-posted: {again}"
        );

        // A retry serialized with other whitespace is still the same events.
        let text = String::from_utf8(read_fixture(&fixture)).expect("UTF-8 fixture");
        for spaced in [false, true] {
            let body = reformat(&text, spaced);
            assert_ne!(body, text);
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap(),
                serde_json::from_str::<Value>(&text).unwrap()
            );
            let (status, retry) = app.post_as(source, &fixture, body.into_bytes()).await;
            assert_eq!(status, 200, "{fixture}: {retry}");
            assert_eq!(retry["accepted"], 0, "{fixture} re-indented: {retry}");
            assert_eq!(
                retry["duplicates"], events,
                "{fixture} re-indented: {retry}"
            );
        }
    }
    assert_eq!(stored_ids(&app).await.len(), total);

    // A changed value is a different event.
    let (status, report) = app
        .post(
            "sendpulse",
            reformat(
                &String::from_utf8(read_fixture("sendpulse/opened.json")).unwrap(),
                false,
            )
            .replace("1490962764", "1490962765"),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
}

#[tokio::test]
async fn the_same_batch_posted_concurrently_is_stored_once() {
    let app = spawn_app().await;
    let body = read_fixture("sendpulse/bulk_events.json");
    let posts = (0..8).map(|_| app.post("sendpulse", body.clone()));
    let reports = futures_join_all(posts).await;
    let mut accepted = 0;
    for (status, report) in &reports {
        assert_eq!(*status, 200, "{report}");
        let new = report["accepted"].as_u64().unwrap();
        assert_eq!(new + report["duplicates"].as_u64().unwrap(), 4, "{report}");
        accepted += new;
    }
    assert_eq!(accepted, 4);
    assert_eq!(stored_ids(&app).await.len(), 4);
}

/// Awaits every future, concurrently, on the test's runtime.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

// ---------------------------------------------------------------------------------------
// Bodies refused as a whole.

#[tokio::test]
async fn malformed_json_is_refused_with_its_position_and_kept() {
    let app = spawn_app().await;
    let (status, report) = app
        .post_fixture("sendpulse", "sendpulse/delivered.json")
        .await;
    assert_eq!(status, 200, "{report}");

    // The documentation's batch sample ends with `},\n]`.
    let message = assert_refused(
        &app,
        "sendpulse",
        read_fixture("sendpulse/broken_trailing_comma.json"),
        400,
        "malformed_json",
    )
    .await;
    assert!(message.contains("line 26, column 1"), "{message}");

    // ...and its hard bounce sample with one `]` too many, on line 12.
    let message = assert_refused(
        &app,
        "sendpulse",
        read_fixture("sendpulse/broken_stray_bracket.json"),
        400,
        "malformed_json",
    )
    .await;
    assert!(message.contains("line 12, column 1"), "{message}");

    for body in [
        "{",
        "[{\"event\": \"delivered\"",
        "{'event': 'x'}",
        "nope",
        "[1 2]",
    ] {
        assert_refused(&app, "opptima", body, 400, "malformed_json").await;
    }
    assert_eq!(stored_ids(&app).await.len(), 1);
}

#[tokio::test]
async fn top_level_scalars_are_refused() {
    let app = spawn_app().await;
    let (status, report) = app
        .post_fixture("opptima", "opptima/smtp_bounce.json")
        .await;
    assert_eq!(status, 200, "{report}");
    for (body, found) in [
        ("42", "a number"),
        ("-1.5e3", "a number"),
        ("\"x\"", "a string"),
        ("null", "null"),
        ("true", "a boolean"),
        (" \n false \n", "a boolean"),
    ] {
        for source in ["opptima", "sendpulse", "leadconnector"] {
            let message = assert_refused(&app, source, body, 400, "unexpected_json_type").await;
            assert!(message.ends_with(found), "{body}: {message}");
        }
    }
    assert_eq!(stored_ids(&app).await.len(), 1);
}

#[tokio::test]
async fn empty_bodies_are_refused() {
    let app = spawn_app().await;
    let (status, report) = app.post_fixture("sendpulse", "sendpulse/opened.json").await;
    assert_eq!(status, 200, "{report}");
    for body in ["", " ", "\r\n\t ", "\u{feff}"] {
        assert_refused(&app, "sendpulse", body, 400, "empty_body").await;
    }
    // An empty batch is no error: nothing to store.
    let (status, report) = app.post("sendpulse", "[]").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(stored_ids(&app).await.len(), 1);
}

#[tokio::test]
async fn bodies_that_are_not_utf8_are_refused() {
    let app = spawn_app().await;
    let (status, report) = app.post_fixture("sendpulse", "sendpulse/opened.json").await;
    assert_eq!(status, 200, "{report}");
    let latin1 = b"[{\"event\":\"opened\",\"recipient\":\"jos\xe9@example.com\"}]".to_vec();
    let message = assert_refused(&app, "sendpulse", latin1, 400, "invalid_utf8").await;
    assert!(message.contains("offset 35"), "{message}");
    let utf16 = "[{}]"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect::<Vec<u8>>();
    assert_refused(&app, "sendpulse", utf16, 400, "malformed_json").await;
    assert_refused(&app, "opptima", vec![0xff, 0xfe, 0x00], 400, "invalid_utf8").await;

    // A UTF-8 byte order mark is tolerated.
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend(read_fixture("sendpulse/clicked.json"));
    let (status, report) = app.post("sendpulse", with_bom).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(stored_ids(&app).await.len(), 2);
}

/// A JSON body of exactly `size` bytes: one valid event padded with spaces.
fn body_of_size(size: usize) -> Vec<u8> {
    let event = br#"[{"event":"opened","timestamp":1700000000,"recipient":"big@example.com"}]"#;
    let mut body = event.to_vec();
    body.resize(size, b' ');
    body
}

/// Sends `body` with chunked transfer encoding (no `Content-Length`) over a plain socket
/// and returns the status code of the answer.
fn post_chunked(address: SocketAddr, path: &str, body: &[u8]) -> u16 {
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let mut request = head.into_bytes();
    for chunk in body.chunks(512) {
        request.extend(format!("{:x}\r\n", chunk.len()).bytes());
        request.extend(chunk);
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");
    // The server may answer and close before reading everything.
    let _ = stream.write_all(&request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"))
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let app = spawn_app_with(|config| config.ingest.max_body_bytes = 2048).await;
    let (status, report) = app.post_fixture("sendpulse", "sendpulse/opened.json").await;
    assert_eq!(status, 200, "{report}");
    let message =
        assert_refused(&app, "sendpulse", body_of_size(4096), 413, "body_too_large").await;
    assert!(message.contains("2048"), "{message}");
    assert_refused(&app, "sendpulse", body_of_size(2049), 413, "body_too_large").await;

    // Without Content-Length the limit applies while reading.
    let address = app.address;
    let status = tokio::task::spawn_blocking(move || {
        post_chunked(address, "/webhooks/sendpulse", &body_of_size(4096))
    })
    .await
    .unwrap();
    assert_eq!(status, 413);

    // Exactly at the limit is fine, chunked or not.
    let (status, report) = app.post("sendpulse", body_of_size(2048)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
    let status = tokio::task::spawn_blocking(move || {
        post_chunked(address, "/webhooks/sendpulse", &body_of_size(2048))
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(stored_ids(&app).await.len(), 2);
}

#[tokio::test]
async fn unknown_sources_are_404() {
    let app = spawn_app().await;
    let body = read_fixture("sendpulse/opened.json");
    for source in ["mailchimp", "SendPulse", "sendpulse%00", &"x".repeat(300)] {
        let (status, answer) = app.post(source, body.clone()).await;
        let message = error_message(status, &answer, 404, "not_found");
        assert!(message.len() < 200, "{message}");
    }
    assert!(quarantine(&app).await.is_empty());
    assert!(stored_ids(&app).await.is_empty());
}

// ---------------------------------------------------------------------------------------
// Elements refused one by one, and strange content.

#[tokio::test]
async fn bad_elements_are_quarantined_and_the_rest_stored() {
    let app = spawn_app().await;
    let (status, report) = app.post_fixture("sendpulse", "sendpulse/opened.json").await;
    assert_eq!(status, 200, "{report}");
    let earlier = ids_of(&report);

    let body = json!([
        {"event": "delivered", "timestamp": 1700000000, "recipient": "good1@example.com"},
        42,
        {"timestamp": 1700000001, "recipient": "noname@example.com"},
        {"event": "delivered", "timestamp": 1700000002, "recipient": "not-an-address"},
        "x",
        null,
        [{"event": "opened"}],
        {"event": "opened", "timestamp": 1700000003, "email": "Good2@Example.COM"},
        {"event": "opened", "timestamp": 1700000004},
    ]);
    let elements = body.as_array().unwrap().clone();
    let (status, report) = app.post("sendpulse", body.to_string()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(report["quarantined"], 7, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    let errors = report["errors"].as_array().expect("errors");
    let expected: [(usize, &str); 7] = [
        (1, "expected an event object, found a number"),
        (2, "missing event name (`event`)"),
        (
            3,
            "no valid recipient address: `recipient`: `not-an-address`",
        ),
        (4, "expected an event object, found a string"),
        (5, "expected an event object, found null"),
        (6, "expected an event object, found an array"),
        (
            8,
            "no valid recipient address: none of `recipient`, `email` is present",
        ),
    ];
    assert_eq!(errors.len(), expected.len(), "{report}");
    for (error, (index, text)) in errors.iter().zip(expected) {
        assert_eq!(error["index"], index, "{error}");
        let message = error["error"].as_str().unwrap();
        assert!(message.starts_with(text), "{index}: {message}");
    }
    let ids = ids_of(&report);
    let mut recipients = Vec::new();
    for id in &ids {
        let (status, event) = app.get(&format!("/api/events/{id}")).await;
        assert_eq!(status, 200, "{event}");
        recipients.push(event["recipient"].clone());
    }
    assert_eq!(
        recipients,
        [json!("good1@example.com"), json!("Good2@example.com")]
    );

    // Each bad element is in quarantine with its position and its own JSON.
    let entries = quarantine(&app).await;
    assert_eq!(entries.len(), 7, "{entries:#?}");
    let body_ids: HashSet<&str> = entries
        .iter()
        .filter_map(|e| e["body_id"].as_str())
        .collect();
    assert_eq!(body_ids.len(), 1, "one request body: {entries:#?}");
    for (index, text) in expected {
        let entry = entries
            .iter()
            .find(|entry| entry["index"] == index)
            .unwrap_or_else(|| panic!("no quarantine entry for element {index}"));
        assert_eq!(entry["source"], "sendpulse");
        assert!(
            entry["error"].as_str().unwrap().starts_with(text),
            "{entry}"
        );
        assert_eq!(entry["element"], elements[index], "{entry}");
    }

    // Whole-object bodies of the other providers: the one element is quarantined, 200.
    for (source, body, text) in [
        (
            "opptima",
            json!({"type": "SMTP", "to": "a@example.com"}),
            "missing event name (`event`)",
        ),
        (
            "opptima",
            json!({"event": "delivered", "to": "a@@"}),
            "no valid recipient address",
        ),
        (
            "leadconnector",
            json!({"type": "LCEmailStats"}),
            "missing `webhookPayload`",
        ),
        (
            "leadconnector",
            json!({"webhookPayload": "delivered"}),
            "`webhookPayload` is not an object",
        ),
        (
            "leadconnector",
            json!({"webhookPayload": {"recipient": "a@example.com"}}),
            "missing event name (`webhookPayload.event`)",
        ),
    ] {
        let (status, report) = app.post(source, body.to_string()).await;
        assert_eq!(status, 200, "{source} {body}: {report}");
        assert_eq!(report["accepted"], 0, "{report}");
        assert_eq!(report["quarantined"], 1, "{report}");
        assert_eq!(report["errors"][0]["index"], 0, "{report}");
        let message = report["errors"][0]["error"].as_str().unwrap();
        assert!(message.starts_with(text), "{source} {body}: {message}");
    }
    assert_eq!(quarantine(&app).await.len(), 12);

    // Nothing stored earlier was lost.
    let all = stored_ids(&app).await;
    assert_eq!(all.len(), 3);
    assert!(all.contains(&earlier[0]));
}

#[tokio::test]
async fn unknown_event_names_are_stored_as_other_with_a_warning() {
    let app = spawn_app().await;
    for (source, body, name) in [
        (
            "sendpulse",
            json!([{"event": "bounce_later", "timestamp": 1700000000, "recipient": "a@example.com"}]),
            "bounce_later",
        ),
        (
            "opptima",
            json!({"type": "SMTP", "event": "reenviado", "to": "a@example.com", "timestamp": "2024-01-01 10:00:00"}),
            "reenviado",
        ),
        (
            "leadconnector",
            json!({"type": "LCEmailStats", "webhookPayload": {"event": "stored", "id": "x1", "timestamp": 1700000000, "recipient": "a@example.com"}}),
            "stored",
        ),
    ] {
        let (status, report) = app.post(source, body.to_string()).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["accepted"], 1, "{report}");
        assert_eq!(report["warnings"], 1, "{report}");
        let (status, event) = app
            .get(&format!("/api/events/{}", ids_of(&report)[0]))
            .await;
        assert_eq!(status, 200, "{event}");
        assert_eq!(event["kind"], "other", "{event}");
        assert_eq!(event["provider_event"], name, "{event}");
        assert_eq!(
            event["warnings"],
            json!([format!("unknown event `{name}`; stored as `other`")]),
            "{event}"
        );
    }
    let others = app.events("kind=other").await;
    assert_eq!(others.len(), 3);
}

#[tokio::test]
async fn mixed_string_and_integer_codes_are_numbers() {
    let app = spawn_app().await;
    let (status, report) = app
        .post_fixture("sendpulse", "sendpulse/mixed_codes.json")
        .await;
    assert_eq!(status, 200, "{report}");
    let mut codes = Vec::new();
    for id in ids_of(&report) {
        let (status, event) = app.get(&format!("/api/events/{id}")).await;
        assert_eq!(status, 200, "{event}");
        assert!(
            event["smtp_code"].is_u64(),
            "smtp_code is not a number: {event}"
        );
        codes.push(event["smtp_code"].as_u64().unwrap());
    }
    assert_eq!(codes, [250, 550, 421]);
    // The list answer says the same.
    let listed: Vec<Value> = app
        .events("")
        .await
        .iter()
        .map(|event| event["smtp_code"].clone())
        .collect();
    assert_eq!(listed, [json!(421), json!(550), json!(250)]);
}

/// Posts `body` to `source` and, when it is accepted, reads every event back; asserts that
/// nothing answers with a server error. Returns the status and the events read.
async fn post_hostile(app: &TestApp, source: &str, body: Vec<u8>) -> (u16, Value, Vec<Value>) {
    let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
    let response = app.post_raw(source, body).await;
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert!(status < 500, "{source} {shown}: {status} {text}");
    let answer: Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{source} {shown}: answer is not JSON ({error}): {text}"));
    let mut events = Vec::new();
    if status == 200 {
        for id in ids_of(&answer) {
            let (status, _, text) = get_with(app, &format!("/api/events/{id}"), None).await;
            assert_eq!(status, 200, "reading {id} of {source} {shown}: {text}");
            let event: Value = serde_json::from_str(&text).expect("event JSON");
            assert!(event.is_object(), "{id} of {source} {shown}: {text}");
            events.push(event);
        }
    }
    (status, answer, events)
}

/// Nesting of `depth` arrays around an empty one: `[[...[]...]]`.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn hostile_input_never_causes_a_server_error() {
    let app = spawn_app().await;
    let sp = |fields: Value| {
        let mut event =
            json!({"event": "opened", "timestamp": 1700000000, "recipient": "h@example.com"});
        event
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        json!([event]).to_string().into_bytes()
    };

    // Very long strings: normalized fields are clipped, `raw` keeps everything.
    let long = "x".repeat(1_000_000);
    let (_, _, events) = post_hostile(&app, "sendpulse", sp(json!({"subject": long}))).await;
    assert_eq!(events[0]["subject"].as_str().unwrap().chars().count(), 2000);
    assert_eq!(
        events[0]["raw"]["subject"].as_str().unwrap().len(),
        1_000_000
    );
    let long_name = "é".repeat(10_000);
    let (_, _, events) = post_hostile(&app, "sendpulse", sp(json!({"event": long_name}))).await;
    assert_eq!(events[0]["kind"], "other");
    assert_eq!(
        events[0]["provider_event"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        200
    );
    assert!(events[0]["warnings"][0].as_str().unwrap().len() < 300);
    let (status, _, _) = post_hostile(
        &app,
        "sendpulse",
        sp(json!({"recipient": format!("{}@example.com", "a".repeat(5000))})),
    )
    .await;
    assert_eq!(status, 200);

    // Control characters (escaped, as JSON requires) and every kind of Unicode.
    let controls = "a\u{0}b\u{7}c\u{1b}[31md\u{7f}e\u{2028}f\u{feff}";
    let (_, _, events) = post_hostile(
        &app,
        "sendpulse",
        sp(json!({"subject": controls, "sender": controls})),
    )
    .await;
    assert_eq!(events[0]["subject"], controls);
    let unicode = "¡Hola! 你好 🎉 مرحبا e\u{301} \u{202e}txt.exe";
    let (_, _, events) = post_hostile(
        &app,
        "opptima",
        json!({"event": "open", "email": "José@Bücher.DE", "subject": unicode, "timestamp": "2024-01-01 10:00:00"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(events[0]["recipient"], "José@bücher.de");
    assert_eq!(events[0]["subject"], unicode);
    let (status, _, _) = post_hostile(
        &app,
        "sendpulse",
        sp(json!({"recipient": "a\u{0}b@example.com"})),
    )
    .await;
    assert_eq!(status, 200);
    // A lone surrogate escape is valid JSON syntax but no Unicode text (see also
    // `single_event_answer_keeps_raw_json_exact`).
    for text in [
        r#"[{"event":"\udfff","timestamp":1700000000,"recipient":"h@example.com"}]"#,
        r#"[{"event":"opened","timestamp":1700000000,"recipient":"h\ud800@example.com"}]"#,
        r#"[{"event":"opened","timestamp":1700000000,"recipient":"h@example.com","\ud800":1}]"#,
    ] {
        post_hostile(&app, "sendpulse", text.as_bytes().to_vec()).await;
    }
    // A raw control character inside a string is not JSON.
    let (status, answer, _) = post_hostile(
        &app,
        "sendpulse",
        b"[{\"event\":\"opened\",\"recipient\":\"h@example.com\",\"subject\":\"a\x01b\"}]".to_vec(),
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (400, &json!("malformed_json"))
    );

    // Nesting within the limit (64 levels for the whole body): kept as metadata.
    let deep: Value = serde_json::from_str(&nested(50)).unwrap();
    let (_, _, events) = post_hostile(&app, "sendpulse", sp(json!({"deep": deep}))).await;
    assert_eq!(events[0]["metadata"]["deep"], deep);
    let objects = format!("{}1{}", "{\"a\":".repeat(50), "}".repeat(50));
    let (_, _, events) = post_hostile(
        &app,
        "sendpulse",
        sp(json!({"deep": serde_json::from_str::<Value>(&objects).unwrap()})),
    )
    .await;
    assert!(events[0]["metadata"]["deep"]["a"]["a"].is_object());
    // Deeper: refused as a whole, with a reason, and kept in quarantine.
    let too_deep: Value = serde_json::from_str(&nested(100)).unwrap();
    let (status, answer, _) = post_hostile(&app, "sendpulse", sp(json!({"deep": too_deep}))).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (400, &json!("json_too_deep"))
    );
    // Far deeper than any parser's limit: no server error either way (a separate service,
    // as this test's client could not parse the event lists holding it).
    let deep_app = spawn_app().await;
    let body = format!(
        r#"[{{"event":"opened","timestamp":1700000000,"recipient":"h@example.com","deep":{}}}]"#,
        nested(100_000)
    );
    let (status, answer) = deep_app.post("sendpulse", body).await;
    assert!(status < 500, "{answer}");
    for id in answer["event_ids"].as_array().into_iter().flatten() {
        let (status, _, text) = get_with(
            &deep_app,
            &format!("/api/events/{}", id.as_str().unwrap()),
            None,
        )
        .await;
        assert!(status < 500, "{text}");
    }

    // Numbers beyond 64 bits keep every digit; beyond f64 they do not break anything.
    let (_, _, events) = post_hostile(
        &app,
        "sendpulse",
        br#"[{"event":"opened","timestamp":1700000000,"recipient":"n@example.com","message_id":123456789012345678901234567890}]"#.to_vec(),
    )
    .await;
    assert_eq!(events[0]["message_id"], "123456789012345678901234567890");
    for text in [
        r#"[{"event":"opened","timestamp":-1,"recipient":"n@example.com","smtp_server_response_code":99999999999999999999}]"#,
        r#"[{"event":"opened","timestamp":1700000000.999999999999,"recipient":"n@example.com","x":-0.0}]"#,
    ] {
        post_hostile(&app, "sendpulse", text.as_bytes().to_vec()).await;
    }

    // Wrong types everywhere become warnings, never failures.
    let (_, _, events) = post_hostile(
        &app,
        "sendpulse",
        sp(json!({
            "timestamp": {"t": 1},
            "subject": ["a"],
            "message_id": {"id": 1},
            "smtp_server_response_code": "abc",
            "smtp_server_response_subcode": 5,
            "smtp_server_response": [],
            "link_url": true,
        })),
    )
    .await;
    assert_eq!(events[0]["time_quality"], "missing");
    assert!(
        events[0]["warnings"].as_array().unwrap().len() >= 3,
        "{}",
        events[0]
    );
    let (_, _, events) = post_hostile(
        &app,
        "sendpulse",
        sp(json!({"timestamp": "yesterday", "recipient": "a@example.com, not an address; b@example.com"})),
    )
    .await;
    let recipients: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["recipient"].as_str())
        .collect();
    assert_eq!(
        recipients,
        BTreeSet::from(["a@example.com", "b@example.com"])
    );
    let (_, _, events) = post_hostile(
        &app,
        "sendpulse",
        sp(json!({"timestamp": 4_102_444_800_u64})),
    )
    .await;
    assert!(
        events[0]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("after received_at"),
        "{}",
        events[0]
    );
    post_hostile(
        &app,
        "leadconnector",
        json!({"type": 5, "locationId": [1], "webhookPayload": {
            "event": "failed", "id": {"x": 1}, "timestamp": "soon", "recipient": ["x@example.com", 7],
            "message": "text", "delivery-status": {"code": "abc", "enhanced-code": 5.1},
            "client-info": [], "tags": "one", "campaigns": {"id": 1}, "severity": 1, "reason": null
        }})
        .to_string()
        .into_bytes(),
    )
    .await;
    post_hostile(
        &app,
        "opptima",
        json!({"event": "bounce", "to": "x@example.com", "timestamp": "2024-02-30 25:61:00",
               "status": {"a": 1}, "response": 12345, "relid": [1], "destination": {}})
        .to_string()
        .into_bytes(),
    )
    .await;
    // Repeated keys: the last one counts.
    post_hostile(
        &app,
        "sendpulse",
        br#"[{"event":"opened","event":"clicked","timestamp":1700000000,"recipient":"d@example.com","recipient":"e@example.com"}]"#.to_vec(),
    )
    .await;

    // The read API copes with whatever was stored.
    let listed = all_events(&app, "", 7).await;
    assert!(listed.len() >= 15, "{} events", listed.len());
}

#[tokio::test]
async fn bodies_nested_too_deep_are_refused_so_stored_events_stay_readable() {
    // serde_json reads at most 127 levels. A field of 126 levels would fit as a value of
    // its own, but the stored event adds levels around it (`{"metadata": {"deep": ...}}`)
    // and could no longer be decoded, so bodies deeper than 64 levels are refused (400,
    // quarantined) for every provider, and anything accepted reads back.
    let deep = nested(126);
    for (source, body) in [
        (
            "sendpulse",
            format!(
                r#"[{{"event":"opened","timestamp":1700000000,"recipient":"deep@example.com","deep":{deep}}}]"#
            ),
        ),
        (
            "opptima",
            format!(
                r#"{{"event":"open","email":"deep@example.com","timestamp":"2024-01-01 10:00:00","deep":{deep}}}"#
            ),
        ),
        (
            "leadconnector",
            format!(
                r#"{{"type":"LCEmailStats","webhookPayload":{{"event":"opened","id":"d1","timestamp":1700000000,"recipient":"deep@example.com","deep":{deep}}}}}"#
            ),
        ),
    ] {
        let app = spawn_app().await;
        let (status, report) = app.post(source, body.clone()).await;
        assert_eq!(status, 400, "{source}: {report}");
        assert_eq!(
            report["error"]["code"], "json_too_deep",
            "{source}: {report}"
        );
        let quarantine_id = report["error"]["quarantine_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, _, text) = get_with(&app, "/api/quarantine", None).await;
        assert!(text.contains(&quarantine_id), "{text}");
        // Just inside the limit: stored and readable both ways.
        let shallow = body.replace(&deep, &nested(56));
        let (status, report) = app.post(source, shallow).await;
        assert_eq!(status, 200, "{source}: {report}");
        let id = &ids_of(&report)[0];
        let (status, _, text) = get_with(&app, &format!("/api/events/{id}"), None).await;
        assert_eq!(status, 200, "GET /api/events/{id} ({source}): {text}");
        let (status, _, text) = get_with(&app, "/api/events", None).await;
        assert_eq!(status, 200, "GET /api/events ({source}): {text}");
    }
}

#[tokio::test]
async fn single_event_answer_keeps_raw_json_exact() {
    let app = spawn_app().await;
    for (element, exact) in [
        // A lone surrogate, as JavaScript senders produce when they cut an emoji in half.
        (
            r#"{"event":"opened","timestamp":1700000000,"recipient":"s@example.com","subject":"cut \ud83d"}"#,
            r#""subject":"cut \ud83d""#,
        ),
        // A number JSON allows but f64 cannot hold.
        (
            r#"{"event":"opened","timestamp":1700000000,"recipient":"f@example.com","x":1e400}"#,
            r#""x":1e400"#,
        ),
        // An identifier beyond 64 bits: `raw` keeps it byte for byte, never through f64.
        (
            r#"{"event":"opened","timestamp":1700000000,"recipient":"n@example.com","message_id":123456789012345678901234567890}"#,
            r#""message_id":123456789012345678901234567890"#,
        ),
    ] {
        let (status, report) = app.post("sendpulse", format!("[{element}]")).await;
        assert_eq!(status, 200, "{report}");
        let id = &ids_of(&report)[0];
        let (status, _, text) = get_with(&app, &format!("/api/events/{id}"), None).await;
        assert_eq!(status, 200, "{text}");
        assert!(
            text.contains(exact),
            "GET /api/events/{id} of {element}: {text}"
        );
        // The list answer keeps it.
        let (_, _, listed) = get_with(
            &app,
            &format!("/api/events?cursor={}&limit=1", id_number(id) + 1),
            None,
        )
        .await;
        assert!(
            listed.contains(exact),
            "GET /api/events of {element}: {listed}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Authentication.

#[tokio::test]
async fn source_tokens_are_required_where_configured() {
    let app = spawn_app_with(|config| {
        config.sources.insert(
            "sp".into(),
            SourceConfig {
                token: Some(Secret::new("s3cret")),
                ..SourceConfig::new("sendpulse")
            },
        );
    })
    .await;
    let fixture = |name: &str| read_fixture(&format!("sendpulse/{name}.json"));
    let basic = |user: &str, password: &str| {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    };

    for (path, authorization, code) in [
        ("sp", None, "missing_token"),
        ("sp", Some("Bearer wrong"), "bad_token"),
        ("sp", Some("Bearer s3cre"), "bad_token"),
        ("sp", Some("Bearer s3cret2"), "bad_token"),
        ("sp", Some("s3cret"), "bad_token"),
        (
            "sp",
            Some(basic("sendpulse", "wrong").as_str()),
            "bad_token",
        ),
        ("sp", Some(basic("s3cret", "").as_str()), "bad_token"),
        ("sp?token=wrong", None, "bad_token"),
        ("sp?token=", None, "bad_token"),
        ("sp?tok=s3cret", None, "missing_token"),
    ] {
        let (status, answer) = post_with(&app, path, authorization, fixture("opened")).await;
        error_message(status, &answer, 401, code);
    }
    // The answer says how to authenticate.
    let response = app.post_raw("sp", fixture("opened")).await;
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    // Refused requests leave no trace.
    assert!(quarantine(&app).await.is_empty());
    assert!(stored_ids(&app).await.is_empty());

    for (path, authorization, body) in [
        ("sp", Some("Bearer s3cret".to_owned()), fixture("opened")),
        ("sp", Some(basic("sendpulse", "s3cret")), fixture("clicked")),
        ("sp", Some(basic("", "s3cret")), fixture("delivered")),
        ("sp?token=s3cret", None, fixture("spam_by_user")),
        ("sp?a=1&token=s3cr%65t", None, fixture("resubscribed")),
    ] {
        let (status, report) = post_with(&app, path, authorization.as_deref(), body).await;
        assert_eq!(status, 200, "{path} {authorization:?}: {report}");
        assert_eq!(report["accepted"], 1, "{report}");
    }
    let events = app.events("").await;
    assert_eq!(events.len(), 5);
    assert!(
        events
            .iter()
            .all(|event| event["source"] == "sp" && event["provider"] == "sendpulse")
    );

    // Configured sources replace the default ones.
    let (status, answer) = app.post_fixture("sendpulse", "sendpulse/opened.json").await;
    error_message(status, &answer, 404, "not_found");
}

#[tokio::test]
async fn the_admin_token_protects_the_api_only() {
    let app = spawn_app_with(|config| config.admin_token = Some(Secret::new("4dm1n-t0ken"))).await;
    // Webhooks without a source token stay open.
    let (status, report) = app.post_fixture("sendpulse", "sendpulse/opened.json").await;
    assert_eq!(status, 200, "{report}");
    let id = ids_of(&report)[0].clone();

    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:4dm1n-t0ken")
    );
    for path in [
        "/api/events",
        &format!("/api/events/{id}"),
        "/api/quarantine",
        "/api/outbox/hosts",
        "/api/events?limit=abc",
    ] {
        for authorization in [
            None,
            Some("Bearer wrong"),
            Some("4dm1n-t0ken"),
            Some(basic.as_str()),
        ] {
            let (status, headers, text) = get_with(&app, path, authorization).await;
            assert_eq!(status, 401, "{path} {authorization:?}: {text}");
            let answer: Value = serde_json::from_str(&text).expect("JSON error");
            assert_eq!(answer["error"]["code"], "unauthorized");
            assert_eq!(headers["www-authenticate"], "Bearer");
            assert!(!text.contains("opened"), "{text}");
        }
        let separator = if path.contains('?') { '&' } else { '?' };
        let with_query = format!("{path}{separator}token=4dm1n-t0ken");
        let (status, _, _) = get_with(&app, &with_query, None).await;
        assert_eq!(status, 401, "{with_query}");
    }
    for path in [
        "/api/events",
        &format!("/api/events/{id}"),
        "/api/quarantine",
        "/api/outbox/hosts",
    ] {
        let (status, _, text) = get_with(&app, path, Some("Bearer 4dm1n-t0ken")).await;
        assert_eq!(status, 200, "{path}: {text}");
    }
    let (_, _, text) = get_with(&app, "/api/events", Some("bearer 4dm1n-t0ken")).await;
    assert!(text.contains(&id), "{text}");

    let (status, _, text) = get_with(&app, "/healthz", None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["status"],
        "ok"
    );
    let (status, _, _) = get_with(&app, "/metrics", None).await;
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------------------------------
// The read API.

#[tokio::test]
async fn events_can_be_filtered_by_recipient_kind_and_source() {
    let app = spawn_app().await;
    let posted = post_all(&app).await;
    let all = all_events(&app, "", 1000).await;
    assert_eq!(all.len(), posted.len());

    let expect = |keep: &dyn Fn(&Value) -> bool| -> Vec<String> {
        event_ids(
            &all.iter()
                .filter(|event| keep(event))
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "recipient=test@testdomain.com",
            expect(&|e| e["recipient"] == "test@testdomain.com"),
        ),
        // The domain is compared lower-cased, as stored; the local part as sent.
        (
            "recipient=test@TestDomain.COM",
            expect(&|e| e["recipient"] == "test@testdomain.com"),
        ),
        (
            "recipient=Ana.Perez@ejemplo.com.co",
            expect(&|e| e["recipient"] == "Ana.Perez@ejemplo.com.co"),
        ),
        (
            "recipient=%3Cexample%40example.com%3E",
            expect(&|e| e["recipient"] == "example@example.com"),
        ),
        ("recipient=nobody@nowhere.example", vec![]),
        ("kind=bounce", expect(&|e| e["kind"] == "bounce")),
        ("kind=other", expect(&|e| e["kind"] == "other")),
        ("kind=autoreply", expect(&|e| e["kind"] == "autoreply")),
        (
            "kind=subscribe&source=sendgrid",
            expect(&|e| e["kind"] == "subscribe" && e["source"] == "sendgrid"),
        ),
        ("source=opptima", expect(&|e| e["source"] == "opptima")),
        (
            "source=leadconnector",
            expect(&|e| e["source"] == "leadconnector"),
        ),
        ("source=nope", vec![]),
        (
            "kind=bounce&source=sendpulse",
            expect(&|e| e["kind"] == "bounce" && e["source"] == "sendpulse"),
        ),
        (
            "recipient=example@example.com&kind=bounce",
            expect(&|e| e["recipient"] == "example@example.com" && e["kind"] == "bounce"),
        ),
        (
            "recipient=test@example.com&source=leadconnector&kind=open",
            expect(&|e| {
                e["recipient"] == "test@example.com"
                    && e["kind"] == "open"
                    && e["source"] == "leadconnector"
            }),
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(
            event_ids(&all_events(&app, query, 1000).await),
            expected,
            "{query}"
        );
        // Page by page gives the same.
        assert_eq!(
            event_ids(&all_events(&app, query, 2).await),
            expected,
            "{query} by 2"
        );
    }
    // The hand-counted sizes, so that the filters above are not all trivially empty.
    assert!(app.events("recipient=test@testdomain.com").await.len() >= 7);
    assert!(app.events("kind=bounce&limit=1000").await.len() >= 7);
    assert!(app.events("source=leadconnector").await.len() >= 8);
}

#[tokio::test]
async fn events_can_be_filtered_by_time_received() {
    let app = spawn_app().await;
    let (first_fixtures, later_fixtures): (Vec<String>, Vec<String>) = good_fixtures()
        .into_iter()
        .partition(|fixture| fixture.starts_with("opptima/"));
    let mut first = Vec::new();
    for fixture in &first_fixtures {
        let (status, report) = app.post_fixture(source_of(fixture), fixture).await;
        assert_eq!(status, 200, "{report}");
        first.extend(ids_of(&report));
    }
    // Ids carry the millisecond they were given in: leave a few between the two groups.
    tokio::time::sleep(Duration::from_millis(3)).await;
    let boundary = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(3)).await;
    let mut later = Vec::new();
    let mut later_sendpulse = Vec::new();
    for fixture in &later_fixtures {
        let (status, report) = app.post_fixture(source_of(fixture), fixture).await;
        assert_eq!(status, 200, "{report}");
        later.extend(ids_of(&report));
        if source_of(fixture) == "sendpulse" {
            later_sendpulse.extend(ids_of(&report));
        }
    }
    let newest_first = |ids: &[String]| ids.iter().rev().cloned().collect::<Vec<_>>();
    let since = all_events(&app, &format!("since={boundary}"), 1000).await;
    assert_eq!(event_ids(&since), newest_first(&later), "since={boundary}");
    let until = all_events(&app, &format!("until={boundary}"), 1000).await;
    assert_eq!(event_ids(&until), newest_first(&first), "until={boundary}");
    let both = all_events(&app, &format!("since={boundary}&until={boundary}"), 1000).await;
    assert!(both.is_empty());
    let sendpulse = all_events(&app, &format!("since={boundary}&source=sendpulse"), 3).await;
    assert_eq!(event_ids(&sendpulse), newest_first(&later_sendpulse));
    // Unix seconds are accepted too.
    let hour_before = boundary.as_second() - 3600;
    let hour_after = boundary.as_second() + 3600;
    let everything = all_events(&app, &format!("since={hour_before}"), 1000).await;
    assert_eq!(everything.len(), first.len() + later.len());
    assert!(
        all_events(&app, &format!("since={hour_after}"), 1000)
            .await
            .is_empty()
    );
    assert_eq!(
        all_events(&app, &format!("until={hour_after}"), 1000)
            .await
            .len(),
        first.len() + later.len()
    );
}

#[tokio::test]
async fn pages_follow_next_cursor_newest_first() {
    let app = spawn_app().await;
    let posted: Vec<String> = post_all(&app)
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    let mut newest_first = posted.clone();
    newest_first.reverse();
    for limit in [1, 2, 3, 7, posted.len() - 1, posted.len(), posted.len() + 1] {
        let pages = all_events(&app, "", limit).await;
        let ids = event_ids(&pages);
        assert_eq!(ids, newest_first, "limit {limit}");
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "limit {limit}: an event came twice"
        );
        assert!(
            ids.windows(2)
                .all(|pair| id_number(&pair[0]) > id_number(&pair[1])),
            "limit {limit}: not newest first"
        );
    }
    // The default page is 50 events.
    let (_, page) = app.get("/api/events").await;
    assert_eq!(
        page["events"].as_array().unwrap().len(),
        posted.len().min(50)
    );
    // Any id works as a cursor: the page holds the events strictly older than it.
    let middle = id_number(&newest_first[10]) + 1;
    let (status, page) = app
        .get(&format!("/api/events?cursor={middle}&limit=1"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"][0]["id"], newest_first[10]);
}

#[tokio::test]
async fn bad_read_parameters_are_json_400s() {
    let app = spawn_app().await;
    let (status, _) = app.post_fixture("sendpulse", "sendpulse/opened.json").await;
    assert_eq!(status, 200);
    for (query, code) in [
        ("limit=0", "bad_limit"),
        ("limit=1001", "bad_limit"),
        ("limit=-1", "bad_limit"),
        ("limit=abc", "bad_limit"),
        ("limit=99999999999999999999999", "bad_limit"),
        ("kind=bouncy", "bad_kind"),
        ("kind=Bounce", "bad_kind"),
        ("kind=%FF", "bad_kind"),
        ("since=yesterday", "bad_time"),
        ("until=2026-13-01T00:00:00Z", "bad_time"),
        ("since=", "bad_time"),
        ("cursor=abc", "bad_cursor"),
        ("cursor=evt_", "bad_cursor"),
        ("recipient=not-an-address", "bad_recipient"),
        ("recipient=%00@example.com", "bad_recipient"),
        ("recipient=", "bad_recipient"),
        ("colour=blue", "bad_query"),
        ("token=x", "bad_query"),
    ] {
        let (status, answer) = app.get(&format!("/api/events?{query}")).await;
        let message = error_message(status, &answer, 400, code);
        assert!(!message.is_empty(), "{query}");
    }
    for (path, status, code) in [
        ("/api/events/evt_1", 404, "not_found"),
        ("/api/events/1", 404, "not_found"),
        ("/api/events/evt_x", 400, "bad_id"),
        ("/api/events/evt_99999999999999999999999", 400, "bad_id"),
        ("/api/quarantine?limit=0", 400, "bad_limit"),
        ("/api/quarantine?cursor=nope", 400, "bad_cursor"),
        ("/api/nothing-here", 404, "not_found"),
        ("/nothing-here", 404, "not_found"),
    ] {
        let (got, answer) = app.get(path).await;
        error_message(got, &answer, status, code);
    }
}

#[tokio::test]
async fn metrics_count_events_and_requests() {
    let app = spawn_app().await;
    let (status, _) = app
        .post_fixture("sendpulse", "sendpulse/mixed_codes.json")
        .await;
    assert_eq!(status, 200);
    let (status, headers, text) = get_with(&app, "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for name in ["mailwarden_events_total", "mailwarden_http_requests_total"] {
        assert!(
            text.lines().any(|line| line.starts_with(name)),
            "{name} missing from:\n{text}"
        );
    }
    assert!(text.contains(r#"route="/webhooks/{source}""#), "{text}");
    assert!(!text.contains("mixed_codes"), "{text}");
}

// ---------------------------------------------------------------------------------------
// The real binary, killed without warning.

#[tokio::test]
async fn acknowledged_events_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let client = http_client();
    let mut acknowledged = Vec::new();
    // The server runs in another process: it finds the tests' SNS certificate where it
    // keeps the certificates it fetched, in the store.
    {
        let store = mailwarden::store::Store::open(
            &dir.path().join("data").join("db"),
            &mailwarden::store::StoreOptions::default(),
        )
        .expect("store");
        store
            .put_certificate(
                crate::signing::SNS_CERT_URL,
                crate::signing::sns().certificate_pem.as_bytes(),
            )
            .expect("certificate kept");
        store.flush().await.expect("flushed");
    }
    {
        let mut server = start_server(dir.path());
        for fixture in good_fixtures() {
            let body = read_fixture(&fixture);
            let (content_type, delivered) = crate::helpers::delivered_as(&fixture, body.clone());
            let response = client
                .post(format!(
                    "http://{}/webhooks/{}",
                    server.address,
                    source_of(&fixture)
                ))
                .header("content-type", content_type)
                .body(delivered)
                .send()
                .await
                .expect("request is sent");
            assert_eq!(response.status().as_u16(), 200, "{fixture}");
            let report: Value = response.json().await.expect("JSON answer");
            let elements = elements_of(&body);
            let ids = ids_of(&report);
            // One element per event, except a single element that names several
            // recipients (an SES bounce): each of its events keeps that element as raw.
            // When a fixture repeats an event of an earlier one (documentation samples
            // do), ids and elements no longer pair up: only the ids are checked then.
            let paired = ids.len() == elements.len() || elements.len() == 1;
            for (index, id) in ids.into_iter().enumerate() {
                let element = paired.then(|| elements[index.min(elements.len() - 1)].clone());
                acknowledged.push((id, fixture.clone(), element));
            }
        }
        // SIGKILL right after the last 200: no graceful shutdown, no final flush.
        server.child.kill().expect("kill");
        let status = server.child.wait().expect("wait");
        assert!(!status.success(), "{status:?}");
    }
    assert!(acknowledged.len() >= 30);

    let server = start_server(dir.path());
    for (id, fixture, element) in &acknowledged {
        let response = client
            .get(format!("http://{}/api/events/{id}", server.address))
            .send()
            .await
            .expect("request is sent");
        assert_eq!(response.status().as_u16(), 200, "{fixture} {id} lost");
        let event: Value = response.json().await.expect("JSON answer");
        if let Some(element) = element {
            assert_eq!(&event["raw"], element, "{fixture} {id}");
        }
    }
    let listed: Value = client
        .get(format!("http://{}/api/events?limit=1000", server.address))
        .send()
        .await
        .expect("request is sent")
        .json()
        .await
        .expect("JSON answer");
    assert_eq!(
        listed["events"].as_array().unwrap().len(),
        acknowledged.len()
    );
    // Retries of what was acknowledged before the kill are still recognised.
    let fixture = "leadconnector/delivered.json";
    let report: Value = client
        .post(format!("http://{}/webhooks/leadconnector", server.address))
        .body(read_fixture(fixture))
        .send()
        .await
        .expect("request is sent")
        .json()
        .await
        .expect("JSON answer");
    assert_eq!(report["duplicates"], 1, "{report}");
}
