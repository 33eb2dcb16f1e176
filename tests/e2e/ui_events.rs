//! The console's Events and Recipient pages over real posted webhooks: every filter, paging,
//! the detail of an event with what the rules did, hostile strings escaped, bad filters
//! answered 400, a recipient's story with its suppression history; and in real Chromium,
//! finding a recipient from the Events filter and opening its page.

use std::path::Path;

use fantoccini::Locator;
use mailwarden::config::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::browser::{self, log_in, wait_for, wait_for_text, wait_until, with_browser};
use crate::helpers::{TestApp, eventually, spawn_app, spawn_app_with};

const TOKEN: &str = "events-admin-token";

/// Copies the shipped hard-bounce rule (suppress on a hard bounce) into `dir`.
fn hard_bounce_rule(dir: &Path) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/hard_bounce.rhai");
    std::fs::copy(shipped, dir.join("hard_bounce.rhai")).expect("rule copied");
}

/// One SendPulse element: a delivery (with a subject) or a hard or soft bounce.
fn sendpulse(event: &str, email: &str, timestamp: i64, subject: &str) -> Value {
    match event {
        "delivered" => json!({
            "event": "delivered",
            "recipient": email,
            "timestamp": timestamp,
            "subject": subject,
            "smtp_server_response_code": "250",
        }),
        bounce => json!({
            "event": bounce,
            "email": email,
            "timestamp": timestamp,
            "subject": subject,
            "smtp_server_response_code": 550,
            "smtp_server_response_subcode": "5.1.1",
            "smtp_server_response": "550 5.1.1 User unknown",
        }),
    }
}

/// Posts SendPulse elements to the `sendpulse` source; returns the stored ids.
async fn post_sendpulse(app: &TestApp, elements: Vec<Value>) -> Vec<String> {
    let (status, answer) = app
        .post("sendpulse", Value::Array(elements).to_string())
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["event_ids"]
        .as_array()
        .expect("event_ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect()
}

/// The event ids linked from the results table of a page, in order.
fn linked_events(html: &str) -> Vec<String> {
    html.split("href=\"/ui/events/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// Posts the usual mix: two addresses at example.com and one at other.org, deliveries and
/// bounces, to two sources (SendPulse and Postmark).
async fn post_mix(app: &TestApp) -> Vec<String> {
    let mut ids = post_sendpulse(
        app,
        vec![
            sendpulse("delivered", "jane@example.com", 1_767_000_000, "Welcome"),
            sendpulse("delivered", "bob@example.com", 1_767_000_001, "Welcome"),
            sendpulse("soft_bounces", "bob@example.com", 1_767_000_002, "Invoice"),
            sendpulse("delivered", "carol@other.org", 1_767_000_003, "Welcome"),
        ],
    )
    .await;
    let (status, answer) = app
        .post_fixture("postmark", "postmark/bounce_hard.json")
        .await;
    assert_eq!(status, 200, "{answer}");
    ids.push(answer["event_ids"][0].as_str().expect("id").to_owned());
    ids
}

#[tokio::test]
async fn events_filter_by_address_domain_kind_source_and_time() {
    let app = spawn_app().await;
    let ids = post_mix(&app).await;
    let (status, all) = app.page("/ui/events").await;
    assert_eq!(status, StatusCode::OK);
    // Newest first: the Postmark bounce, then the SendPulse ones in reverse.
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(linked_events(&all), newest_first);
    // Every address links to its page; bounces say hard or soft.
    assert!(
        all.contains("href=\"/ui/recipient?address=bob%40example.com\""),
        "{all}"
    );
    assert!(all.contains(">hard<") && all.contains(">soft<"), "{all}");
    // The first page refreshes itself and says when.
    assert!(all.contains("hx-trigger=\"every 10s\""), "{all}");
    assert!(all.contains("Updated"), "{all}");

    let (_, bob) = app.page("/ui/events?recipient=bob%40example.com").await;
    assert_eq!(linked_events(&bob), vec![ids[2].clone(), ids[1].clone()]);
    let (_, domain) = app.page("/ui/events?recipient=%40Example.com").await;
    assert_eq!(
        linked_events(&domain),
        vec![
            ids[4].clone(),
            ids[2].clone(),
            ids[1].clone(),
            ids[0].clone()
        ],
        "@domain matches every address there (the Postmark fixture's john@ too), and only there"
    );
    let (_, bounces) = app.page("/ui/events?kind=bounce").await;
    assert_eq!(
        linked_events(&bounces),
        vec![ids[4].clone(), ids[2].clone()]
    );
    let (_, postmark) = app.page("/ui/events?source=postmark").await;
    assert_eq!(linked_events(&postmark), vec![ids[4].clone()]);
    let (_, both) = app
        .page("/ui/events?recipient=%40example.com&kind=delivered&source=sendpulse")
        .await;
    assert_eq!(linked_events(&both), vec![ids[1].clone(), ids[0].clone()]);

    // Time range on receipt: a later batch, split from the first by a moment.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let split = jiff::Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let later = post_sendpulse(
        &app,
        vec![sendpulse(
            "delivered",
            "jane@example.com",
            1_767_000_100,
            "Later",
        )],
    )
    .await;
    let since = format!("/ui/events?since={}", split);
    assert_eq!(linked_events(&app.page(&since).await.1), later);
    let until = format!("/ui/events?until={}", split);
    assert_eq!(linked_events(&app.page(&until).await.1), newest_first);
    // A date input's value is a UTC day.
    let (_, today) = app
        .page(&format!("/ui/events?since={}", split.strftime("%Y-%m-%d")))
        .await;
    assert_eq!(linked_events(&today).len(), ids.len() + 1);
    // The form keeps what was asked for, in the form its inputs take.
    let (_, form) = app
        .page("/ui/events?kind=bounce&since=2026-01-02T03%3A04")
        .await;
    assert!(form.contains("value=\"2026-01-02T03:04:00\""), "{form}");
    assert!(
        form.contains("<option value=\"bounce\" selected>"),
        "{form}"
    );
    assert!(form.contains("(UTC)"), "the form says its times are UTC");

    // htmx gets the results alone, never the whole page.
    let fragment = app
        .client
        .get(app.url("/ui/events?kind=bounce"))
        .header("hx-request", "true")
        .header("hx-trigger", "event-filters")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!fragment.contains("<html"), "{fragment}");
    assert!(
        fragment.contains("data-announce=\"2 events shown.\""),
        "{fragment}"
    );
}

#[tokio::test]
async fn events_page_by_cursor_and_bad_filters_are_400_with_a_message() {
    let app = spawn_app().await;
    let elements = (0..7)
        .map(|n| {
            sendpulse(
                "delivered",
                &format!("user{n}@example.com"),
                1_767_000_000 + n,
                "Hi",
            )
        })
        .collect();
    let mut ids = post_sendpulse(&app, elements).await;
    ids.reverse();
    let mut seen = Vec::new();
    let mut path = "/ui/events?limit=3".to_owned();
    for _ in 0..5 {
        let (status, html) = app.page(&path).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(linked_events(&html));
        let Some(next) = html
            .split("rel=\"next\"")
            .next()
            .and_then(|head| head.rsplit("href=\"").next())
        else {
            break;
        };
        if !html.contains("rel=\"next\"") {
            // Older pages do not poll: only the first one is live.
            assert!(!html.contains("every 10s"), "{html}");
            break;
        }
        path = next.split('"').next().unwrap().replace("&amp;", "&");
    }
    assert_eq!(
        seen, ids,
        "three pages of at most 3, newest first, none twice"
    );

    for (query, message) in [
        ("recipient=not-an-address", "recipient:"),
        ("recipient=%40", "recipient:"),
        ("kind=bonce", "kind must be one of"),
        ("since=yesterday", "since: expected a date and time in UTC"),
        ("since=2026-02-01&until=2026-01-01", "must be before"),
        ("limit=0", "limit must be a number"),
        ("cursor=abc", "cursor:"),
        ("colour=red", "unknown field"),
    ] {
        let (status, html) = app.page(&format!("/ui/events?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {html}");
        assert!(html.contains(message), "{query}: {html}");
    }
    // Inside the page, htmx swaps the message in place (htmx does not swap a 400).
    let response = app
        .client
        .get(app.url("/ui/events?kind=bonce"))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let fragment = response.text().await.unwrap();
    assert!(
        fragment.contains("role=\"alert\"") && fragment.contains("kind must be one of"),
        "{fragment}"
    );
    // The same parsing serves the API, which now takes @domain too.
    let api = app.events("recipient=%40example.com&limit=2").await;
    assert_eq!(api.len(), 2);
    let (status, _) = app.page("/ui/events/evt_nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, html) = app.page("/ui/events/evt_1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("There is no event evt_1"), "{html}");
}

#[tokio::test]
async fn event_detail_shows_fields_raw_body_rule_outcome_and_escapes_hostile_text() {
    let app = spawn_app_with(|config| hard_bounce_rule(&config.rules_dir)).await;
    let hostile = "<script>alert(1)</script>";
    let ids = post_sendpulse(
        &app,
        vec![sendpulse(
            "hard_bounces",
            "ann@example.com",
            1_767_000_000,
            hostile,
        )],
    )
    .await;
    let id = &ids[0];
    app.evaluated(id).await;
    let suppressed = eventually("the suppression", || async {
        let (status, entry) = app.get("/api/suppressions/ann@example.com").await;
        (status == 200).then_some(entry)
    })
    .await;
    assert_eq!(suppressed["event_id"], json!(id));

    let (status, html) = app.page(&format!("/ui/events/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    // Normalized fields.
    for text in [
        "bounce",
        ">hard<",
        "sendpulse",
        "hard_bounces",
        "550 5.1.1 550 5.1.1 User unknown",
    ] {
        assert!(html.contains(text), "{text}: {html}");
    }
    assert!(
        html.contains("href=\"/ui/recipient?address=ann%40example.com\""),
        "{html}"
    );
    // The raw body, indented, escaped.
    assert!(
        html.contains("&quot;email&quot;: &quot;ann@example.com&quot;,\n"),
        "{html}"
    );
    // The rule's outcome and what came of it.
    assert!(
        html.contains("hard_bounce") && html.contains(">matched<"),
        "{html}"
    );
    assert!(html.contains("Suppress <a"), "{html}");
    assert!(
        html.contains(">done<") && html.contains("suppressed since"),
        "{html}"
    );
    // Hostile text is text, in the fields and in the raw body.
    assert!(!html.contains(hostile), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    let (_, list) = app.page("/ui/events").await;
    assert!(!list.contains(hostile), "{list}");
    assert!(list.contains("&lt;script&gt;"), "{list}");
}

#[tokio::test]
async fn recipient_page_tells_the_story_of_a_suppressed_address() {
    let app = spawn_app_with(|config| hard_bounce_rule(&config.rules_dir)).await;
    let ids = post_sendpulse(
        &app,
        vec![
            sendpulse("delivered", "dan@example.com", 1_767_000_000, "Welcome"),
            sendpulse("hard_bounces", "dan@example.com", 1_767_000_100, "Invoice"),
            sendpulse("delivered", "eve@example.com", 1_767_000_200, "Welcome"),
        ],
    )
    .await;
    app.evaluated(&ids[1]).await;
    eventually("the suppression", || async {
        let (status, _) = app.get("/api/suppressions/dan@example.com").await;
        (status == 200).then_some(())
    })
    .await;

    let (status, html) = app.page("/ui/recipient?address=dan%40EXAMPLE.com").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<h1>dan@example.com</h1>"),
        "the address, normalized: {html}"
    );
    assert_eq!(
        linked_events(&html).first(),
        Some(&ids[1]),
        "the bounce first: {html}"
    );
    assert!(linked_events(&html).contains(&ids[0]));
    assert!(
        !linked_events(&html).contains(&ids[2]),
        "only its own events"
    );
    // Suppressed, why, by which rule, after which event; and the history.
    assert!(html.contains(">suppressed<"), "{html}");
    assert!(
        html.contains("hard bounce: 550 5.1.1 User unknown"),
        "{html}"
    );
    assert!(html.contains("Suppression history"), "{html}");
    assert!(html.contains("<td>suppress</td>"), "{html}");
    assert!(html.contains("What the rules did because of it"), "{html}");

    // Never seen: a calm empty state. Malformed: a clear message, 400.
    let (status, html) = app.page("/ui/recipient?address=nobody%40example.com").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Nothing known about this address"), "{html}");
    let (status, html) = app.page("/ui/recipient?address=%3Cscript%3E").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("is not an e-mail address"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    let (status, html) = app.page("/ui/recipient").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("name=\"address\""), "a search box: {html}");
}

#[tokio::test]
async fn a_browser_finds_a_recipient_from_the_events_filter_and_opens_its_page() {
    let app = spawn_app_with(|config| {
        config.admin_token = Some(Secret::new(TOKEN));
        hard_bounce_rule(&config.rules_dir);
    })
    .await;
    post_mix(&app).await;
    let jane = post_sendpulse(
        &app,
        vec![sendpulse(
            "hard_bounces",
            "jane@example.com",
            1_767_000_500,
            "Your receipt",
        )],
    )
    .await;
    eventually("jane's suppression", || async {
        let response = app
            .client
            .get(app.url("/api/suppressions/jane@example.com"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (response.status() == 200).then_some(())
    })
    .await;

    let base = app.url("");
    let bounce = jane[0].clone();
    with_browser("ui_events_recipient", move |client| async move {
        log_in(&client, &base, "/ui/events", TOKEN).await;
        wait_for(&client, Locator::Css("table.events")).await;
        browser::screenshot(&client, "ui_events_list").await;
        let field = wait_for(&client, Locator::Id("f-recipient")).await;
        field.send_keys("jane@example.com").await.unwrap();
        client
            .find(Locator::Css("#event-filters button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // htmx swaps the results and puts the filter in the address bar.
        wait_until(&client, "the filtered URL", |url| {
            url.contains("recipient=jane%40example.com")
        })
        .await;
        wait_for_text(&client, "2 events shown").await;
        client
            .find(Locator::Css("#results a.address"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_until(&client, "jane's page", |url| {
            url.contains("/ui/recipient?address=jane%40example.com")
        })
        .await;
        let text = wait_for_text(&client, "Suppression history").await;
        assert!(text.contains("jane@example.com"), "{text}");
        assert!(text.contains("suppressed"), "{text}");
        assert!(text.contains(&bounce), "its bounce is listed: {text}");
        browser::screenshot(&client, "ui_events_recipient_desktop").await;
        // And on a phone: the event list from the filter, then the recipient's page.
        client.set_window_size(390, 844).await.unwrap();
        client.back().await.unwrap();
        wait_for(&client, Locator::Css("table.events")).await;
        browser::screenshot(&client, "ui_events_phone").await;
        client.forward().await.unwrap();
        wait_for(&client, Locator::Id("h-events")).await;
    })
    .await;
}
