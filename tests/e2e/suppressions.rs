//! The suppression list end to end: `/api/suppressions` (one entry, bulk check, listing,
//! export and import), its admin authentication, and `mailwarden suppressions`.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use mailwarden::config::Secret;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

// ---------------------------------------------------------------------------------------
// Helpers.

/// Path of one entry, with the address percent-encoded as a path segment.
fn entry_path(address: &str) -> String {
    let mut encoded = String::new();
    for byte in address.bytes() {
        if byte.is_ascii_alphanumeric() || b"@.-_+".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("/api/suppressions/{encoded}")
}

/// Sends `method path` with an optional JSON body; returns status and JSON answer.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request is sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("answer body");
    let value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, value)
}

async fn put(app: &TestApp, address: &str, body: Value) -> (u16, Value) {
    call(app, reqwest::Method::PUT, &entry_path(address), Some(body)).await
}

async fn get(app: &TestApp, address: &str) -> (u16, Value) {
    call(app, reqwest::Method::GET, &entry_path(address), None).await
}

async fn check(app: &TestApp, addresses: &[&str]) -> Value {
    let (status, body) = call(
        app,
        reqwest::Method::POST,
        "/api/suppressions/check",
        Some(json!({ "addresses": addresses })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Posts an import body; returns status and answer.
async fn import(app: &TestApp, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/api/suppressions/import"))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .expect("request is sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

/// The body of an export.
async fn export(app: &TestApp, format: &str) -> String {
    let response = app
        .client
        .get(app.url(&format!("/api/suppressions/export?format={format}")))
        .send()
        .await
        .expect("request is sent");
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.expect("export body")
}

/// Every address of `GET /api/suppressions?{query}`, following the cursor.
async fn listed(app: &TestApp, query: &str) -> Vec<String> {
    let mut addresses = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/suppressions?limit=2&{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", cursor.replace('+', "%2B")));
        }
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 200, "{body}");
        let page = body["suppressions"].as_array().expect("suppressions array");
        assert!(page.len() <= 2);
        addresses.extend(
            page.iter()
                .map(|e| e["address"].as_str().expect("address").to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    addresses
}

fn changes(entry: &Value) -> Vec<String> {
    entry["history"]
        .as_array()
        .expect("history array")
        .iter()
        .map(|c| c["change"].as_str().expect("change").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// One entry.

#[tokio::test]
async fn add_get_delete_round_trip_keeps_history() {
    let app = spawn_app().await;
    let address = "bounced@example.com";

    let (status, body) = get(&app, address).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");

    let (status, added) = put(&app, address, json!({ "reason": "hard bounce" })).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["outcome"], "added");
    assert_eq!(added["address"], address);
    assert_eq!(added["rule"], "manual");
    assert_eq!(added["active"], true);
    assert!(added.get("expires_at").is_none(), "permanent: {added}");

    let (status, entry) = get(&app, address).await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["reason"], "hard bounce");
    assert_eq!(changes(&entry), ["suppress"]);
    assert_eq!(entry["history"][0]["by"], "manual");

    let (status, removed) = call(
        &app,
        reqwest::Method::DELETE,
        &entry_path(address),
        Some(json!({ "reason": "customer asked", "by": "support" })),
    )
    .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["active"], false);
    assert_eq!(changes(&removed), ["suppress", "unsuppress"]);
    assert_eq!(removed["history"][1]["by"], "support");
    assert_eq!(removed["history"][1]["reason"], "customer asked");

    let (status, _) = get(&app, address).await;
    assert_eq!(status, 404);
    let (status, body) = call(&app, reqwest::Method::DELETE, &entry_path(address), None).await;
    assert_eq!(status, 404, "{body}");

    // Suppressed again: the old history stays with the address; reason/by in the query.
    let (status, again) = put(&app, address, json!({ "reason": "bounced again" })).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(changes(&again), ["suppress", "unsuppress", "suppress"]);
    let (status, removed) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("{}?reason=fixed&by=ops", entry_path(address)),
        None,
    )
    .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["history"][3]["by"], "ops");
    assert_eq!(removed["history"][3]["reason"], "fixed");
}

#[tokio::test]
async fn bad_addresses_and_bodies_are_json_400s() {
    let app = spawn_app().await;
    for path in [entry_path("not-an-address"), entry_path("a b@example.com")] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_address");
    }
    let (status, body) = put(&app, "not-an-address", json!({ "reason": "x" })).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = put(&app, "ok@example.com", json!({ "reason": "  " })).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = put(&app, "ok@example.com", json!({ "why": "x" })).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request_body")),
        "{body}"
    );
    let (status, body) = put(
        &app,
        "ok@example.com",
        json!({ "reason": "x", "ttl_seconds": 60, "expires_at": "2099-01-01T00:00:00Z" }),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_expiry")),
        "{body}"
    );
    let (status, body) = put(
        &app,
        "ok@example.com",
        json!({ "reason": "x", "expires_at": "2001-01-01T00:00:00Z" }),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_expiry")),
        "{body}"
    );
    let (status, body) = put(
        &app,
        "ok@example.com",
        json!({ "reason": "x", "expires_at": "soon" }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.get("/api/suppressions?limit=0").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_limit")),
        "{body}"
    );
    let (status, body) = app.get("/api/suppressions?since=yesterday").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.get("/api/suppressions?colour=red").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_query")),
        "{body}"
    );
    let (status, body) = app.get("/api/suppressions/export?format=xml").await;
    assert_eq!(status, 400, "{body}");
    // Nothing was suppressed by the refused requests.
    assert_eq!(get(&app, "ok@example.com").await.0, 404);
}

#[tokio::test]
async fn domain_is_case_insensitive_and_local_part_exact() {
    let app = spawn_app().await;
    let (status, added) = put(&app, "User@Example.COM", json!({ "reason": "complaint" })).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["address"], "User@example.com");

    let (status, entry) = get(&app, "User@example.com").await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(get(&app, "User@EXAMPLE.com").await.0, 200);
    assert_eq!(get(&app, "Someone <User@example.COM>").await.0, 200);
    assert_eq!(get(&app, "user@example.com").await.0, 404);

    // The same entry, whatever the domain's case.
    let (status, again) = put(&app, "User@example.com", json!({ "reason": "again" })).await;
    assert_eq!(
        (status, again["outcome"].as_str()),
        (200, Some("unchanged")),
        "{again}"
    );
    assert_eq!(listed(&app, "").await, ["User@example.com"]);

    // Characters that need escaping in a path segment.
    let odd = "a/b%c?d#e@example.com";
    let (status, added) = put(&app, odd, json!({ "reason": "odd" })).await;
    assert_eq!(
        (status, added["address"].as_str()),
        (201, Some(odd)),
        "{added}"
    );
    assert_eq!(get(&app, odd).await.0, 200);

    let body = check(&app, &["User@EXAMPLE.com", "user@example.com"]).await;
    assert_eq!(body["results"][0]["suppressed"], true, "{body}");
    assert_eq!(body["results"][0]["normalized"], "User@example.com");
    assert_eq!(body["results"][1]["suppressed"], false, "{body}");
}

#[tokio::test]
async fn one_entry_per_address_permanent_wins_longer_ttl_extends() {
    let app = spawn_app().await;
    let address = "twice@example.com";

    let (status, first) = put(
        &app,
        address,
        json!({ "reason": "soft", "ttl_seconds": 3600 }),
    )
    .await;
    assert_eq!(
        (status, first["outcome"].as_str()),
        (201, Some("added")),
        "{first}"
    );
    let first_expiry: Timestamp = first["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .unwrap();

    // Shorter: nothing changes.
    let (status, shorter) = put(
        &app,
        address,
        json!({ "reason": "soft", "ttl_seconds": 60 }),
    )
    .await;
    assert_eq!(
        (status, shorter["outcome"].as_str()),
        (200, Some("unchanged")),
        "{shorter}"
    );
    assert_eq!(shorter["expires_at"], first["expires_at"]);

    // Longer: extended.
    let (status, longer) = put(
        &app,
        address,
        json!({ "reason": "soft again", "ttl_seconds": 7200 }),
    )
    .await;
    assert_eq!(
        (status, longer["outcome"].as_str()),
        (200, Some("extended")),
        "{longer}"
    );
    let longer_expiry: Timestamp = longer["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .unwrap();
    assert!(longer_expiry > first_expiry);
    assert_eq!(longer["reason"], "soft again");

    // Permanent beats expiring.
    let (status, permanent) = put(&app, address, json!({ "reason": "hard" })).await;
    assert_eq!(
        (status, permanent["outcome"].as_str()),
        (200, Some("upgraded")),
        "{permanent}"
    );
    assert!(permanent.get("expires_at").is_none(), "{permanent}");

    // And an expiring request no longer shortens it.
    let far = (Timestamp::now() + SignedDuration::from_hours(24 * 365)).to_string();
    let (status, after) = put(
        &app,
        address,
        json!({ "reason": "soft", "expires_at": far }),
    )
    .await;
    assert_eq!(
        (status, after["outcome"].as_str()),
        (200, Some("unchanged")),
        "{after}"
    );
    assert!(after.get("expires_at").is_none(), "{after}");

    let (_, entry) = get(&app, address).await;
    assert_eq!(changes(&entry), ["suppress", "extend", "upgrade"]);
    assert_eq!(listed(&app, "").await, [address]);
}

#[tokio::test]
async fn expired_entries_do_not_count() {
    let app = spawn_app().await;
    let address = "brief@example.com";
    let soon = (Timestamp::now() + SignedDuration::from_millis(700)).to_string();
    let (status, body) = put(
        &app,
        address,
        json!({ "reason": "soft bounce", "expires_at": soon }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    put(&app, "kept@example.com", json!({ "reason": "hard" })).await;
    assert_eq!(check(&app, &[address]).await["suppressed"], 1);

    tokio::time::sleep(Duration::from_millis(900)).await;

    assert_eq!(get(&app, address).await.0, 404);
    let body = check(&app, &[address, "kept@example.com"]).await;
    assert_eq!(body["results"][0]["suppressed"], false, "{body}");
    assert_eq!(body["suppressed"], 1, "{body}");
    assert_eq!(listed(&app, "").await, ["kept@example.com"]);
    assert!(!export(&app, "csv").await.contains(address));
    assert!(!export(&app, "jsonl").await.contains(address));
    // Lifting it is a 404 (it is not suppressed), suppressing it again adds it anew.
    let (status, _) = call(&app, reqwest::Method::DELETE, &entry_path(address), None).await;
    assert_eq!(status, 404);
    let (status, again) = put(&app, address, json!({ "reason": "bounced again" })).await;
    assert_eq!(
        (status, again["outcome"].as_str()),
        (201, Some("added")),
        "{again}"
    );
    assert_eq!(changes(&again), ["suppress", "suppress"]);
}

// ---------------------------------------------------------------------------------------
// Bulk check.

#[tokio::test]
async fn check_reports_each_address() {
    let app = spawn_app().await;
    put(&app, "hard@example.com", json!({ "reason": "hard bounce" })).await;
    put(
        &app,
        "soft@example.com",
        json!({ "reason": "soft bounce", "ttl_seconds": 3600 }),
    )
    .await;

    let body = check(
        &app,
        &[
            "Hard@example.com",
            "Name <hard@EXAMPLE.com>",
            "soft@example.com",
            "fine@example.com",
            "nonsense",
            "",
        ],
    )
    .await;
    assert_eq!(body["suppressed"], 2, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 6);

    assert_eq!(results[0]["address"], "Hard@example.com");
    assert_eq!(results[0]["suppressed"], false, "local part is exact");

    assert_eq!(results[1]["address"], "Name <hard@EXAMPLE.com>");
    assert_eq!(results[1]["normalized"], "hard@example.com");
    assert_eq!(results[1]["suppressed"], true);
    assert_eq!(results[1]["reason"], "hard bounce");
    assert_eq!(results[1]["rule"], "manual");
    assert!(results[1].get("expires_at").is_none());

    assert_eq!(results[2]["suppressed"], true);
    assert!(results[2]["expires_at"].is_string(), "{}", results[2]);

    assert_eq!(results[3]["suppressed"], false);
    assert!(results[3].get("reason").is_none());
    assert!(results[3].get("error").is_none());

    for invalid in &results[4..] {
        assert_eq!(invalid["suppressed"], false, "{invalid}");
        assert!(invalid["error"].is_string(), "{invalid}");
        assert!(invalid.get("normalized").is_none(), "{invalid}");
    }

    let empty = check(&app, &[]).await;
    assert_eq!(empty, json!({ "results": [], "suppressed": 0 }));
}

#[tokio::test]
async fn check_refuses_more_than_ten_thousand_addresses() {
    let app = spawn_app().await;
    let addresses: Vec<String> = (0..10_001)
        .map(|i| format!("user{i}@example.com"))
        .collect();
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/suppressions/check",
        Some(json!({ "addresses": addresses })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "too_many_addresses");

    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/suppressions/check",
        Some(json!({ "addresses": &addresses[..10_000] })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["results"].as_array().map(Vec::len), Some(10_000));

    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/suppressions/check",
        Some(json!({ "emails": [] })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request_body")),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------
// Listing.

#[tokio::test]
async fn list_filters_and_pages_in_address_order() {
    let app = spawn_app().await;
    let (status, report) = import(
        &app,
        "address,reason,source,created_at,expires_at\n\
         d@old.example,hard bounce,sendpulse,2020-01-01T00:00:00Z,\n\
         c@new.example,Spam complaint,opptima,,\n\
         a@new.example,hard bounce,sendpulse,,\n\
         b@new.example,unsubscribed,,,\n\
         e@new.example,hard bounce,opptima,,2099-01-01T00:00:00Z\n",
    )
    .await;
    assert_eq!(
        (status, report["added"].as_u64()),
        (200, Some(5)),
        "{report}"
    );
    put(&app, "gone@new.example", json!({ "reason": "hard bounce" })).await;
    call(
        &app,
        reqwest::Method::DELETE,
        &entry_path("gone@new.example"),
        None,
    )
    .await;

    assert_eq!(
        listed(&app, "").await,
        [
            "a@new.example",
            "b@new.example",
            "c@new.example",
            "d@old.example",
            "e@new.example"
        ]
    );
    assert_eq!(
        listed(&app, "q=NEW.ex").await,
        [
            "a@new.example",
            "b@new.example",
            "c@new.example",
            "e@new.example"
        ]
    );
    assert_eq!(
        listed(&app, "reason=bounce").await,
        ["a@new.example", "d@old.example", "e@new.example"]
    );
    assert_eq!(listed(&app, "reason=complaint").await, ["c@new.example"]);
    assert_eq!(
        listed(&app, "source=opptima").await,
        ["c@new.example", "e@new.example"]
    );
    assert_eq!(
        listed(&app, "since=2021-01-01T00:00:00Z&reason=bounce").await,
        ["a@new.example", "e@new.example"]
    );
    assert_eq!(listed(&app, "q=nobody").await, Vec::<String>::new());

    // A full page at the very end has no next cursor.
    let (_, body) = app.get("/api/suppressions?limit=5").await;
    assert_eq!(body["suppressions"].as_array().map(Vec::len), Some(5));
    assert!(body["next_cursor"].is_null(), "{body}");
    let (_, body) = app
        .get("/api/suppressions?limit=2&cursor=b@new.example")
        .await;
    assert_eq!(
        body["suppressions"][0]["address"], "c@new.example",
        "{body}"
    );
    assert_eq!(body["next_cursor"], "d@old.example");
    // Listed entries leave their history out; the single-entry answer has it.
    assert!(body["suppressions"][0].get("history").is_none());
    assert_eq!(body["suppressions"][0]["rule"], "import");
    assert_eq!(body["suppressions"][0]["source"], "opptima");
}

// ---------------------------------------------------------------------------------------
// Export and import.

/// Fills a server with entries of every shape an export has to carry.
async fn seed(app: &TestApp) {
    put(app, "perm@example.com", json!({ "reason": "hard bounce" })).await;
    put(
        app,
        "Mixed.Case@example.org",
        json!({ "reason": "complaint, \"spam\" button" }),
    )
    .await;
    put(
        app,
        "temp@example.net",
        json!({ "reason": "soft bounce", "ttl_seconds": 86_400 }),
    )
    .await;
    put(app, "lifted@example.com", json!({ "reason": "x" })).await;
    call(
        app,
        reqwest::Method::DELETE,
        &entry_path("lifted@example.com"),
        None,
    )
    .await;
    import(
        app,
        "address,reason,source\nsrc@example.com,from a provider,sendpulse\n",
    )
    .await;
}

#[tokio::test]
async fn csv_export_imports_into_a_fresh_server() {
    let first = spawn_app().await;
    seed(&first).await;
    let csv = export(&first, "csv").await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("address,reason,source,created_at,expires_at")
    );
    assert_eq!(lines.count(), 4, "{csv}");
    assert!(!csv.contains("lifted@"), "{csv}");
    assert!(csv.contains("\"complaint, \"\"spam\"\" button\""), "{csv}");

    let second = spawn_app().await;
    let (status, report) = import(&second, csv.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["added"], 4, "{report}");
    assert_eq!(report["rejected"], json!([]));
    // Same addresses, reasons, sources, creation and expiry times.
    assert_eq!(export(&second, "csv").await, csv);
    let (_, entry) = get(&second, "temp@example.net").await;
    assert_eq!(entry["rule"], "import");
    assert_eq!(changes(&entry), ["suppress"]);

    // Importing it again changes nothing.
    let (_, report) = import(&second, csv).await;
    assert_eq!(
        (report["added"].as_u64(), report["unchanged"].as_u64()),
        (Some(0), Some(4)),
        "{report}"
    );
}

#[tokio::test]
async fn jsonl_export_imports_into_a_fresh_server() {
    let first = spawn_app().await;
    seed(&first).await;
    let jsonl = export(&first, "jsonl").await;
    let entries: Vec<Value> = jsonl
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(entries.len(), 4, "{jsonl}");
    assert!(entries.iter().all(|e| e.get("history").is_none()));

    let second = spawn_app().await;
    let (status, report) = import(&second, jsonl).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["added"], 4, "{report}");
    assert_eq!(export(&second, "csv").await, export(&first, "csv").await);
}

#[tokio::test]
async fn import_reports_bad_lines_and_applies_the_good_ones() {
    let app = spawn_app().await;
    put(&app, "already@example.com", json!({ "reason": "manual" })).await;
    let text = "# suppression list from the old system\n\
                one@example.com\n\
                \n\
                not an address\n\
                Two <two@EXAMPLE.com>\r\n\
                already@example.com\n\
                  # indented comment\n\
                three@\n\
                one@example.com\n";
    let (status, report) = import(&app, text).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["added"], 2, "{report}");
    assert_eq!(report["unchanged"], 2, "{report}");
    assert_eq!(report["updated"], 0, "{report}");
    let lines: Vec<u64> = report["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, [4, 8], "{report}");
    assert_eq!(report["rejected_count"], 2);
    assert!(
        report["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not an address")
    );
    let (status, two) = get(&app, "two@example.com").await;
    assert_eq!(status, 200);
    assert_eq!(
        (two["reason"].as_str(), two["rule"].as_str()),
        (Some("import"), Some("import"))
    );

    // CSV: a row with one bad field is not applied at all.
    let csv = "Address,Reason,Expires_At\n\
               good@example.com,bounced,\n\
               half@example.com,bounced,not-a-time\n\
               late@example.com,bounced,2001-01-01T00:00:00Z\n\
               \"quoted, name\"@x,bounced,\n\
               soft@example.com,soft,2099-01-01T00:00:00Z\n\
               soft@example.com,soft,2099-06-01T00:00:00Z\n\
               ,no address,\n";
    let (status, report) = import(&app, csv).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["added"].as_u64(), report["updated"].as_u64()),
        (Some(2), Some(1)),
        "{report}"
    );
    let rejected: Vec<u64> = report["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(rejected, [3, 4, 5, 8], "{report}");
    assert_eq!(get(&app, "good@example.com").await.0, 200);
    assert_eq!(get(&app, "half@example.com").await.0, 404);
    assert_eq!(get(&app, "late@example.com").await.0, 404);
    let (_, soft) = get(&app, "soft@example.com").await;
    assert_eq!(soft["expires_at"], "2099-06-01T00:00:00Z");

    // Many bad lines: all counted, only the first 10 000 (the most an answer lists)
    // listed, in line order whether the line was unreadable or held a bad address.
    let listed = 10_000;
    let mut jsonl = String::from("{\"address\":\"first@example.com\"}\nnot json\n");
    for _ in 0..listed {
        jsonl.push_str("{\"address\":\"not an address\"}\n");
    }
    jsonl.push_str("{\"address\": \n");
    let (status, report) = import(&app, jsonl).await;
    assert_eq!(status, 200);
    assert_eq!(report["added"], 1);
    assert_eq!(report["rejected_count"], listed + 2);
    let lines: Vec<u64> = report["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect();
    // Lines 2 to 10 001, one by one: the first rejected ones, in order.
    assert_eq!(
        (lines.len(), lines.first().copied(), lines.last().copied()),
        (listed, Some(2), Some(listed as u64 + 1)),
        "the first rejected lines, by line"
    );
    assert!(lines.windows(2).all(|pair| pair[1] == pair[0] + 1));
    assert!(
        report["rejected"][0]["error"]
            .as_str()
            .expect("error")
            .starts_with("not a JSON entry"),
        "{}",
        report["rejected"][0]
    );

    // An empty body imports nothing.
    let (status, report) = import(&app, "").await;
    assert_eq!(
        (status, report["added"].as_u64()),
        (200, Some(0)),
        "{report}"
    );
}

// ---------------------------------------------------------------------------------------
// Authentication.

#[tokio::test]
async fn admin_token_is_required_when_configured() {
    let app = spawn_app_with(|config| config.admin_token = Some(Secret::new("adm"))).await;
    let requests = [
        (reqwest::Method::GET, "/api/suppressions".to_owned()),
        (reqwest::Method::GET, entry_path("a@example.com")),
        (reqwest::Method::PUT, entry_path("a@example.com")),
        (reqwest::Method::DELETE, entry_path("a@example.com")),
        (reqwest::Method::POST, "/api/suppressions/check".to_owned()),
        (reqwest::Method::GET, "/api/suppressions/export".to_owned()),
        (reqwest::Method::POST, "/api/suppressions/import".to_owned()),
    ];
    for (method, path) in &requests {
        for token in [None, Some("wrong")] {
            let mut request = app.client.request(method.clone(), app.url(path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("request is sent");
            assert_eq!(
                response.status().as_u16(),
                401,
                "{method} {path} with {token:?}"
            );
            let body: Value = response.json().await.expect("JSON error");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    let response = app
        .client
        .put(app.url(&entry_path("a@example.com")))
        .bearer_auth("adm")
        .json(&json!({ "reason": "x" }))
        .send()
        .await
        .expect("request is sent");
    assert_eq!(response.status().as_u16(), 201);
    let response = app
        .client
        .post(app.url("/api/suppressions/check"))
        .bearer_auth("adm")
        .json(&json!({ "addresses": ["a@example.com"] }))
        .send()
        .await
        .expect("request is sent");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["suppressed"], 1);
}

// ---------------------------------------------------------------------------------------
// The command line.

/// Runs `mailwarden suppressions <args>` with a clean environment.
async fn cli(args: &[&str], token: Option<&str>) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let token = token.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailwarden"));
        command.arg("suppressions").args(&args).stdin(Stdio::null());
        for (name, _) in std::env::vars() {
            if name.starts_with("MAILWARDEN_") {
                command.env_remove(name);
            }
        }
        if let Some(token) = token {
            command.env("MAILWARDEN_ADMIN_TOKEN", token);
        }
        command.output().expect("the binary runs")
    })
    .await
    .expect("command thread")
}

#[tokio::test]
async fn cli_checks_adds_and_removes_against_the_server() {
    let app = spawn_app_with(|config| config.admin_token = Some(Secret::new("adm"))).await;
    let server = app.url("");
    let response = app
        .client
        .put(app.url(&entry_path("blocked@example.com")))
        .bearer_auth("adm")
        .json(&json!({ "reason": "hard bounce" }))
        .send()
        .await
        .expect("request is sent");
    assert_eq!(response.status().as_u16(), 201);

    let output = cli(
        &[
            "check",
            "--server",
            &server,
            "blocked@EXAMPLE.com",
            "fine@example.com",
        ],
        Some("adm"),
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("suppressed\tblocked@EXAMPLE.com\thard bounce"),
        "{stdout}"
    );
    assert_eq!(lines[1], "ok\tfine@example.com");

    // An invalid address is reported and makes the exit status non-zero.
    let output = cli(
        &["check", "--server", &server, "--token", "adm", "nonsense"],
        None,
    )
    .await;
    assert!(!output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("invalid\tnonsense\t"));

    // Without the token: an error and a non-zero exit status.
    let output = cli(&["check", "--server", &server, "fine@example.com"], None).await;
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("401"),
        "{output:?}"
    );

    // add, list, remove, export.
    let output = cli(
        &[
            "add",
            "--server",
            &server,
            "new@example.com",
            "--reason",
            "by hand",
            "--ttl-days",
            "2",
        ],
        Some("adm"),
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("added\tnew@example.com\tuntil "));
    let output = cli(&["list", "--server", &server], Some("adm")).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let output = cli(
        &[
            "remove",
            "--server",
            &server,
            "new@example.com",
            "--reason",
            "oops",
        ],
        Some("adm"),
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let output = cli(
        &["remove", "--server", &server, "new@example.com"],
        Some("adm"),
    )
    .await;
    assert!(!output.status.success(), "{output:?}");
    let output = cli(
        &["export", "--server", &server, "--format", "csv"],
        Some("adm"),
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with(
        "address,reason,source,created_at,expires_at\nblocked@example.com,hard bounce,"
    ));

    // Nothing listens there: an error, not a hang.
    let output = cli(
        &["check", "--server", "http://127.0.0.1:9", "a@example.com"],
        None,
    )
    .await;
    assert!(!output.status.success(), "{output:?}");
}

// ---------------------------------------------------------------------------------------
// Speed of the check, run by hand:
// `cargo test --release --test e2e check_speed -- --ignored --nocapture`
// (`BENCH_CACHE_MB=1024` to size sled's cache so that the whole list fits).

/// One million entries, then 1 000-address checks (about half suppressed); reports the
/// latency percentiles as the client sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: loads 1 000 000 entries"]
async fn check_speed_with_a_million_entries() {
    let cache: Option<u64> = std::env::var("BENCH_CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok());
    let app = spawn_app_with(|config| {
        if let Some(cache) = cache {
            config.storage.cache_capacity_mb = cache;
        }
    })
    .await;
    let total = 1_000_000;
    let started = Instant::now();
    for chunk in 0..10 {
        let body: String = (chunk * total / 10..(chunk + 1) * total / 10)
            .map(|i| format!("user{i:07}@domain{}.example\n", i % 997))
            .collect();
        let (status, report) = import(&app, body).await;
        assert_eq!(status, 200, "{report}");
    }
    eprintln!("loaded {total} entries in {:?}", started.elapsed());
    let mut timings = Vec::new();
    let mut seed = 7u64;
    for _ in 0..200 {
        let addresses: Vec<String> = (0..1_000)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let i = (seed >> 33) % (2 * total);
                format!("user{i:07}@domain{}.example", i % 997)
            })
            .collect();
        let started = Instant::now();
        let response = app
            .client
            .post(app.url("/api/suppressions/check"))
            .json(&json!({ "addresses": addresses }))
            .send()
            .await
            .expect("request is sent");
        let body: Value = response.json().await.expect("JSON");
        timings.push(started.elapsed());
        assert!(body["suppressed"].as_u64().unwrap() > 300);
    }
    timings.sort();
    let at = |p: usize| timings[(timings.len() * p / 100).min(timings.len() - 1)];
    eprintln!(
        "check of 1 000 addresses: p50 {:?}, p99 {:?}, max {:?}",
        at(50),
        at(99),
        timings[timings.len() - 1]
    );
}
