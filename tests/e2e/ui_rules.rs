//! The console's Rules page over HTTP and in real Chromium: rules in force with their
//! hits, compile errors with their line, and drafts tried as dry runs over stored events
//! (counts, samples, limits, escaping, and no side effects).

use std::path::Path;

use fantoccini::Locator;
use mailwarden::config::Secret;
use serde_json::json;

use crate::browser::{log_in, wait_for, wait_for_text, with_browser};
use crate::helpers::{TestApp, eventually, spawn_app, spawn_app_with};

const TOKEN: &str = "rules-admin-token";

/// The draft of the issue: suppress hard bounces.
const SUPPRESS_HARD_BOUNCES: &str = "// on: bounce\n\
if event.bounce_class == \"hard\" {\n    suppress(event.recipient, \"hard bounce\");\n}\n";

/// Writes `<dir>/<name>.rhai` in one step, so the watcher never reads half a file.
fn write_rule(dir: &Path, name: &str, source: &str) {
    let temporary = dir.join(format!(".{name}.partial"));
    std::fs::write(&temporary, source).expect("rule written");
    std::fs::rename(&temporary, dir.join(format!("{name}.rhai"))).expect("rule renamed");
}

/// A SendPulse body with one event of `event` (`hard_bounces`, `delivered`, ...).
fn sendpulse(event: &str, email: &str) -> String {
    json!([{
        "event": event,
        "email": email,
        "timestamp": 1_700_000_000,
        "smtp_server_response_code": 550,
        "smtp_server_response_subcode": "5.1.1",
        "smtp_server_response": "550 5.1.1 User unknown",
    }])
    .to_string()
}

/// Posts `body` to SendPulse; returns how many events it stored.
async fn post_sendpulse(app: &TestApp, body: String) -> usize {
    let (status, answer) = app.post("sendpulse", body).await;
    assert_eq!(status, 200, "{answer}");
    answer["event_ids"].as_array().expect("event_ids").len()
}

/// Posts fixture files: three hard bounces and some deliveries. Returns (events stored,
/// hard-bounced recipients).
async fn post_mixed_fixtures(app: &TestApp) -> (usize, Vec<&'static str>) {
    let mut stored = 0;
    for fixture in ["sendpulse/hard_bounces.json", "sendpulse/delivered.json"] {
        let (status, answer) = app.post_fixture("sendpulse", fixture).await;
        assert_eq!(status, 200, "{fixture}: {answer}");
        stored += answer["event_ids"].as_array().expect("event_ids").len();
    }
    for address in ["hard-one@example.com", "hard-two@example.com"] {
        stored += post_sendpulse(app, sendpulse("hard_bounces", address)).await;
    }
    for address in ["fine@example.com", "also-fine@example.com"] {
        stored += post_sendpulse(app, sendpulse("delivered", address)).await;
    }
    (
        stored,
        vec![
            "example@example.com",
            "hard-one@example.com",
            "hard-two@example.com",
        ],
    )
}

/// Tries `source` over the last 24 hours as htmx does; returns status and the fragment.
async fn try_draft(app: &TestApp, source: &str, htmx: bool) -> (u16, String) {
    try_draft_with(
        app,
        &[("name", "hard"), ("source", source), ("range", "24h")],
        htmx,
    )
    .await
}

async fn try_draft_with(app: &TestApp, form: &[(&str, &str)], htmx: bool) -> (u16, String) {
    let mut request = app
        .client
        .post(app.url("/ui/rules/draft"))
        .header("origin", format!("http://{}", app.address))
        .form(form);
    if htmx {
        request = request.header("hx-request", "true");
    }
    let response = request.send().await.expect("draft answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("HTML"))
}

/// The text of the element with id `id` (a card's value).
fn value_of(html: &str, id: &str) -> String {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let after = &html[start..];
    let open = after.find('>').expect("tag ends") + 1;
    let close = after[open..].find('<').expect("text ends");
    after[open..open + close].to_owned()
}

/// The table row of the page that names `rule`.
fn row_of<'a>(html: &'a str, rule: &str) -> &'a str {
    let link = format!("href=\"/ui/rules/{rule}\"");
    html.split("<tr")
        .find(|row| row.contains(&link))
        .unwrap_or_else(|| panic!("no row for {rule} in {html}"))
}

#[tokio::test]
async fn the_rules_page_lists_a_loaded_rule_with_its_hits() {
    let app = spawn_app_with(|config| {
        write_rule(
            &config.rules_dir,
            "tag_bounces",
            "// on: bounce\ntag(\"b\");\n",
        );
    })
    .await;
    post_sendpulse(&app, sendpulse("hard_bounces", "a@example.com")).await;
    post_sendpulse(&app, sendpulse("delivered", "b@example.com")).await;
    eventually("the rule to count its hit", || async {
        let (_, rules) = app.get("/api/rules").await;
        (rules["rules"][0]["matches"] == json!(1)).then_some(())
    })
    .await;

    let (status, html) = app.page("/ui/rules").await;
    assert_eq!(status, 200, "{html}");
    let row = row_of(&html, "tag_bounces");
    assert!(row.contains("running"), "{row}");
    assert!(row.contains("kind-bounce"), "runs on bounces: {row}");
    // Runs, hits, actions, errors.
    let counts: Vec<&str> = row
        .split("<td class=\"num\">")
        .skip(1)
        .map(|cell| cell.split('<').next().unwrap_or_default())
        .collect();
    assert_eq!(counts, ["1", "1", "0", "0"], "{row}");
    assert!(html.contains("Rule set last changed"), "{html}");

    // Its source, read-only, with a draft form prefilled from it.
    let (status, html) = app.page("/ui/rules/tag_bounces").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("tag(&quot;b&quot;);"), "{html}");
    assert!(html.contains("rules/tag_bounces.rhai"), "{html}");
    let (status, _) = app.page("/ui/rules/no_such_rule").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_broken_rule_file_shows_its_compile_error_with_the_line() {
    let app = spawn_app_with(|config| {
        config.rules.reload_interval_secs = 1;
        write_rule(&config.rules_dir, "hot", "// on: bounce\ntag(\"v1\");\n");
    })
    .await;
    let dir = app.rules_dir();
    write_rule(
        &dir,
        "hot",
        "// on: bounce\nlet ok = 1;\nlet broken = <b>;\n",
    );
    write_rule(&dir, "fresh", "// on: bounce\nlet = 5;\n");
    let html = eventually("both compile errors on the page", || async {
        let (_, html) = app.page("/ui/rules").await;
        (html.contains("href=\"/ui/rules/fresh\"") && html.contains("previous version runs"))
            .then_some(html)
    })
    .await;
    assert!(html.contains("Files that do not compile"), "{html}");
    assert!(html.contains("line 3, column"), "hot.rhai's line: {html}");
    assert!(html.contains("line 2, column"), "fresh.rhai's line: {html}");
    // The offending line, escaped.
    assert!(
        html.contains("   3 | let broken = &lt;b&gt;;"),
        "the offending line is shown: {html}"
    );
    assert!(!html.contains("<b>;"), "{html}");
    assert!(row_of(&html, "fresh").contains("not running"), "{html}");

    // The rule's page marks the line too.
    let (status, html) = app.page("/ui/rules/hot").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"L3\""), "{html}");
    assert!(html.contains("← the compile error"), "{html}");
}

#[tokio::test]
async fn a_draft_that_suppresses_hard_bounces_reports_counts_and_samples_and_changes_nothing() {
    let app = spawn_app().await;
    let (stored, hard) = post_mixed_fixtures(&app).await;
    assert!(stored >= 5, "{stored}");

    let (status, html) = try_draft(&app, SUPPRESS_HARD_BOUNCES, true).await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("<html"), "htmx gets a fragment: {html}");
    assert_eq!(
        value_of(&html, "draft-scanned"),
        stored.to_string(),
        "{html}"
    );
    assert_eq!(value_of(&html, "draft-matched"), "3", "{html}");
    assert_eq!(value_of(&html, "draft-errors"), "0", "{html}");
    let actions = html
        .split("<table class=\"draft-actions\">")
        .nth(1)
        .expect("the actions table");
    assert!(
        actions.contains("<code>suppress</code></th><td class=\"num\">3</td>"),
        "{actions}"
    );
    for address in &hard {
        let link = format!("/ui/recipient?address={}", address.replace('@', "%40"));
        assert!(html.contains(&link), "a sample links {address}: {html}");
    }
    assert!(!html.contains("fine%40example.com"), "{html}");
    assert!(
        html.contains("/ui/events/evt_"),
        "samples link their events: {html}"
    );
    assert!(html.contains("rules/hard.rhai"), "{html}");

    // Without script: the whole page, with the form keeping the draft.
    let (status, html) = try_draft(&app, SUPPRESS_HARD_BOUNCES, false).await;
    assert_eq!(status, 200);
    assert!(html.contains("<html"), "{html}");
    assert_eq!(value_of(&html, "draft-matched"), "3", "{html}");
    assert!(html.contains("suppress(event.recipient"), "{html}");

    // A dry run: nothing suppressed, nothing queued, no counters, no evaluation records.
    let (_, suppressions) = app.get("/api/suppressions").await;
    assert_eq!(suppressions["suppressions"], json!([]), "{suppressions}");
    let (_, outbox) = app.get("/api/outbox").await;
    assert_eq!(outbox["actions"], json!([]), "{outbox}");
    let (_, rules) = app.get("/api/rules").await;
    assert_eq!(rules["rules"], json!([]), "{rules}");
    for event in app.events("limit=50").await {
        let (_, detail) = app
            .get(&format!("/api/events/{}", event["id"].as_str().unwrap()))
            .await;
        assert!(
            detail["evaluation"]["rules"]
                .as_array()
                .is_none_or(Vec::is_empty),
            "{detail}"
        );
    }
    assert!(!app.metrics().await.contains("rule=\"hard\""));
}

#[tokio::test]
async fn a_draft_with_a_syntax_error_shows_the_error_with_its_line() {
    let app = spawn_app().await;
    let (status, html) = try_draft(&app, "// on: bounce\ntag(\"a\");\nlet = 5;\n", true).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("The draft does not compile"), "{html}");
    assert!(html.contains("line 3, column"), "{html}");
    assert!(html.contains("   3 | let = 5;"), "{html}");
    // A bad header is a compile error too, with its line.
    let (_, html) = try_draft(&app, "// on: bouncy\ntag(\"a\");\n", true).await;
    assert!(html.contains("line 1"), "{html}");
}

#[tokio::test]
async fn a_draft_with_an_endless_loop_is_stopped_by_the_limits() {
    let app = spawn_app().await;
    for address in ["a@example.com", "b@example.com"] {
        post_sendpulse(&app, sendpulse("hard_bounces", address)).await;
    }
    let (status, html) = try_draft(&app, "// on: bounce\nloop {}\n", true).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(value_of(&html, "draft-errors"), "2", "{html}");
    assert!(
        html.contains("The draft failed on every event it ran on"),
        "{html}"
    );
    assert!(html.contains("endless loop"), "{html}");
}

#[tokio::test]
async fn hostile_text_in_a_draft_is_escaped_and_bad_forms_are_400() {
    let app = spawn_app().await;
    post_sendpulse(&app, sendpulse("hard_bounces", "a@example.com")).await;
    let hostile = "// on: bounce\ntag(\"<script>alert(1)</script>\");\n\
                   suppress(event.recipient, \"<img src=x onerror=alert(2)>\");\n";
    let (status, html) = try_draft(&app, hostile, false).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(value_of(&html, "draft-matched"), "1", "{html}");
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );

    let broken = "// on: bounce\nlet x = \"</textarea><script>alert(3)</script>\" +;\n";
    let (_, html) = try_draft(&app, broken, false).await;
    assert!(html.contains("does not compile"), "{html}");
    assert!(!html.contains("<script>alert(3)"), "{html}");

    for (form, says) in [
        (
            vec![("source", "tag(\"a\");"), ("since", "yesterday")],
            "Since",
        ),
        (
            vec![("source", "tag(\"a\");"), ("name", "../../etc/passwd")],
            "Name",
        ),
        (vec![("source", "  ")], "empty"),
        (vec![("source", "tag(\"a\");"), ("range", "1y")], "Range"),
    ] {
        let (status, html) = try_draft_with(&app, &form, false).await;
        assert_eq!(status, 400, "{form:?}: {html}");
        assert!(html.contains(says), "{form:?}: {html}");
        let (status, html) = try_draft_with(&app, &form, true).await;
        assert_eq!(status, 200, "htmx swaps only 2xx: {html}");
        assert!(html.contains(says), "{form:?}: {html}");
    }
}

#[tokio::test]
async fn a_browser_tries_a_draft_and_sees_its_counts() {
    let app = spawn_app_with(|config| {
        config.admin_token = Some(Secret::new(TOKEN));
        config.rules.reload_interval_secs = 1;
        write_rule(
            &config.rules_dir,
            "tag_bounces",
            "// on: bounce\ntag(\"b\");\n",
        );
    })
    .await;
    let (stored, _) = post_mixed_fixtures(&app).await;
    // A file that does not compile, for the page to show next to the rule in force.
    write_rule(&app.rules_dir(), "broken", "// on: bounce\nlet x = ;\n");
    eventually("the compile error to be known", || async {
        let rules: serde_json::Value = app
            .client
            .get(app.url("/api/rules"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let mut rules = rules["rules"].as_array()?.iter();
        rules
            .any(|rule| rule["compile_error"].is_string())
            .then_some(())
    })
    .await;
    let base = app.url("");
    with_browser("ui_rules_draft", move |client| async move {
        log_in(&client, &base, "/ui/rules", TOKEN).await;
        wait_for_text(&client, "Try a draft").await;
        let text = wait_for_text(&client, "Files that do not compile").await;
        assert!(text.contains("line 2, column"), "{text}");
        let list = client.screenshot().await.expect("a screenshot");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("ui_rules_list.png"), list);
        // The broken rule's source, with its line marked; then back to the list.
        client
            .find(Locator::Css(".rule-failures h3 a"))
            .await
            .expect("the broken rule's link")
            .click()
            .await
            .expect("the link opens");
        wait_for_text(&client, "the compile error").await;
        let source = client.screenshot().await.expect("a screenshot");
        let _ = std::fs::write(dir.join("ui_rules_source.png"), source);
        client.back().await.expect("back to the list");
        wait_for_text(&client, "Try a draft").await;
        let source = wait_for(&client, Locator::Css("textarea#draft-source")).await;
        source.clear().await.expect("the textarea clears");
        source
            .send_keys(SUPPRESS_HARD_BOUNCES)
            .await
            .expect("typing works");
        let range = client
            .find(Locator::Css("select#draft-range option[value='24h']"))
            .await
            .expect("the range choice");
        range.click().await.expect("the range is chosen");
        client
            .find(Locator::Css(".draft-go button"))
            .await
            .expect("the button")
            .click()
            .await
            .expect("the form is sent");
        let text = wait_for_text(&client, "Events scanned").await;
        assert!(text.contains("Actions it would take"), "{text}");
        let value = |id: &'static str| {
            let client = client.clone();
            async move {
                client
                    .find(Locator::Id(id))
                    .await
                    .expect("a card")
                    .text()
                    .await
                    .expect("its text")
            }
        };
        assert_eq!(value("draft-scanned").await, stored.to_string());
        assert_eq!(value("draft-matched").await, "3");
        // htmx swapped the result in: still on the Rules page, not the POST's.
        let url = client.current_url().await.expect("a URL");
        assert!(url.as_str().ends_with("/ui/rules"), "{url}");
        // A wide screenshot of the result, then the phone width for the final one.
        let show_result = "document.getElementById('draft-result').scrollIntoView()";
        client.execute(show_result, vec![]).await.expect("scrolled");
        let wide = client.screenshot().await.expect("a screenshot");
        let _ = std::fs::write(dir.join("ui_rules_draft_wide.png"), wide);
        client.set_window_size(390, 844).await.expect("resized");
        client.execute(show_result, vec![]).await.expect("scrolled");
    })
    .await;
}
