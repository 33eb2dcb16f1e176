//! The console's Suppressions page over HTTP and in real Chromium: search, filters, add,
//! remove with a reason (and the complaint confirmation), history, import and export.

use std::path::Path;

use fantoccini::Locator;
use mailwarden::config::Secret;
use reqwest::StatusCode;
use serde_json::json;

use crate::browser::{self, log_in, wait_for, wait_for_text, with_browser};
use crate::helpers::{TestApp, eventually, spawn_app, spawn_app_with};

const TOKEN: &str = "suppressions-admin-token";

/// Posts `contents` as the import form's file, as a browser does (multipart).
async fn import_file(app: &TestApp, name: &str, contents: &str) -> (StatusCode, String) {
    let boundary = "----mailwarden-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n{contents}\r\n--{boundary}--\r\n"
    );
    let response = app
        .client
        .post(app.url("/ui/suppressions/import"))
        .header("sec-fetch-site", "same-origin")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("import answers");
    let status = response.status();
    (status, response.text().await.expect("page text"))
}

/// Suppresses through the API (as a script or another tool would).
async fn suppress(app: &TestApp, address: &str, reason: &str) {
    suppress_as(app, address, reason, None).await;
}

/// Suppresses through the API, with the admin token when one is set.
async fn suppress_as(app: &TestApp, address: &str, reason: &str, token: Option<&str>) {
    let mut request = app
        .client
        .put(app.url(&format!("/api/suppressions/{address}")))
        .json(&json!({ "reason": reason }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
}

/// The rows of the list's table (the part of the page between `<tbody>` and `</tbody>`).
fn rows(html: &str) -> &str {
    let Some(start) = html.find("<tbody>") else {
        return "";
    };
    let end = html[start..]
        .find("</tbody>")
        .map_or(html.len(), |end| start + end);
    &html[start..end]
}

/// Copies a shipped rule into the app's rules directory.
fn shipped_rule(config_rules: &Path, name: &str) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("rules/{name}.rhai"));
    std::fs::copy(source, config_rules.join(format!("{name}.rhai"))).expect("rule copied");
}

#[tokio::test]
async fn a_suppression_added_with_the_form_is_listed_and_found_by_address_and_domain() {
    let app = spawn_app().await;
    let (status, html) = app
        .post_form(
            "/ui/suppressions",
            &[
                ("address", "Jane <jane@Example.com>"),
                ("reason", "hard bounce"),
                ("note", "550 mailbox unknown"),
                ("expires", "30"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("role=\"status\"") && html.contains("Suppressed jane@example.com until"),
        "{html}"
    );
    assert!(
        rows(&html).contains("hard bounce: 550 mailbox unknown"),
        "{html}"
    );
    suppress(&app, "bob@example.com", "unsubscribed").await;
    suppress(&app, "carol@other.org", "spam complaint").await;

    let (_, all) = app.page("/ui/suppressions").await;
    for address in ["jane@example.com", "bob@example.com", "carol@other.org"] {
        assert!(rows(&all).contains(address), "{address}: {all}");
    }
    // Every address links to the recipient page.
    assert!(
        all.contains("href=\"/ui/recipient?address=jane%40example.com\""),
        "{all}"
    );

    let (_, one) = app.page("/ui/suppressions?q=bob%40example.com").await;
    assert!(rows(&one).contains("bob@example.com"));
    assert!(!rows(&one).contains("jane@example.com"), "{one}");

    let (_, domain) = app.page("/ui/suppressions?q=%40EXAMPLE.com").await;
    assert!(rows(&domain).contains("jane@example.com"));
    assert!(rows(&domain).contains("bob@example.com"));
    assert!(!rows(&domain).contains("carol@other.org"), "{domain}");

    let (_, complaints) = app.page("/ui/suppressions?reason=complaint").await;
    assert!(rows(&complaints).contains("carol@other.org"));
    assert!(
        !rows(&complaints).contains("bob@example.com"),
        "{complaints}"
    );

    let (_, expiring) = app.page("/ui/suppressions?state=expiring").await;
    assert!(rows(&expiring).contains("jane@example.com"));
    assert!(!rows(&expiring).contains("bob@example.com"), "{expiring}");
}

#[tokio::test]
async fn bad_form_values_and_filters_are_explained_not_failed() {
    let app = spawn_app().await;
    let (status, html) = app
        .post_form(
            "/ui/suppressions",
            &[("address", "not an address"), ("reason", "hard bounce")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("id=\"add-error\""), "{html}");
    assert!(html.contains("is not an address"), "{html}");
    // The typed value stays in the form.
    assert!(html.contains("value=\"not an address\""), "{html}");

    let (status, html) = app
        .post_form(
            "/ui/suppressions",
            &[("address", "a@example.com"), ("reason", "other")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("Say why in the note"), "{html}");

    for query in ["state=forever", "reason=boredom", "q=jane", "q=%40"] {
        let (status, html) = app.page(&format!("/ui/suppressions?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(html.contains("role=\"alert\""), "{query}: {html}");
    }
}

#[tokio::test]
async fn removing_needs_a_reason_and_a_complaint_needs_its_confirmation() {
    // A real complaint through a webhook, suppressed by the shipped complaint rule.
    let app = spawn_app_with(|config| shipped_rule(&config.rules_dir, "complaint")).await;
    let (status, _) = app
        .post_fixture("postmark", "postmark/spam_complaint.json")
        .await;
    assert_eq!(status, 200);
    let address = "john@example.com";
    eventually("the complaint suppresses the recipient", || async {
        let (_, html) = app.page("/ui/suppressions?reason=complaint").await;
        rows(&html).contains(address).then_some(())
    })
    .await;
    let entry = "/ui/suppressions/entry?address=john%40example.com";
    let (_, html) = app.page(entry).await;
    assert!(
        html.contains("I understand this address reported our mail as spam"),
        "{html}"
    );
    assert!(html.contains("data-confirm="), "{html}");

    let (status, html) = app
        .post_form(
            "/ui/suppressions/remove",
            &[("address", address), ("reason", "  ")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("Give a reason for removing it"), "{html}");
    let (status, html) = app
        .post_form(
            "/ui/suppressions/remove",
            &[("address", address), ("reason", "customer asked by phone")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("Tick the box to confirm"), "{html}");
    // Still suppressed after both refusals.
    let (status, _) = app.get(&format!("/api/suppressions/{address}")).await;
    assert_eq!(status, 200);

    let (status, html) = app
        .post_form(
            "/ui/suppressions/remove",
            &[
                ("address", address),
                ("reason", "customer asked by phone"),
                ("confirm_complaint", "yes"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("Removed the suppression of john@example.com"),
        "{html}"
    );
    let (status, _) = app.get(&format!("/api/suppressions/{address}")).await;
    assert_eq!(status, 404);

    // The history has the complaint that added it and the removal with its reason.
    let (_, html) = app.page(entry).await;
    let history = &html[html.find("id=\"entry-history\"").expect("a history")..];
    assert!(history.contains("removed"), "{history}");
    assert!(history.contains("customer asked by phone"), "{history}");
    assert!(history.contains("console"), "{history}");
    assert!(history.contains("spam complaint"), "{history}");
    assert!(
        !html.contains("Remove suppression"),
        "nothing left to remove: {html}"
    );
}

#[tokio::test]
async fn csv_and_jsonl_files_are_imported_and_the_filter_is_exported() {
    let app = spawn_app().await;
    let csv = "address,reason,expires_at\n\
               ann@example.com,hard bounce,\n\
               ben@example.com,unsubscribed,2099-01-01T00:00:00Z\n\
               nobody,hard bounce,\n";
    let (status, html) = import_file(&app, "list.csv", csv).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("Imported list.csv: 2 added, 0 updated, 0 unchanged, 1 rejected."),
        "{html}"
    );
    assert!(html.contains("Line 4:"), "{html}");

    let jsonl = "{\"address\":\"cat@example.org\",\"reason\":\"spam complaint\"}\n\
                 {\"address\":\"ann@example.com\",\"reason\":\"hard bounce\"}\n";
    let (status, html) = import_file(&app, "list.jsonl", jsonl).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("1 added, 0 updated, 1 unchanged, 0 rejected"),
        "{html}"
    );
    assert!(rows(&html).contains("cat@example.org"), "{html}");

    // Many bad rows: all counted, the first ones shown.
    let junk: String = (0..500).map(|i| format!("junk{i}\n")).collect();
    let (status, html) = import_file(&app, "junk.txt", &junk).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("0 added, 0 updated, 0 unchanged, 500 rejected."),
        "{html}"
    );
    assert!(html.contains("Line 10:"), "{html}");
    assert!(!html.contains("Line 11:"), "{html}");

    let (status, html) = import_file(&app, "empty.csv", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("Choose a CSV or JSONL file"), "{html}");

    // The export links carry the filter; the CSV holds only what it shows.
    let (_, html) = app.page("/ui/suppressions?q=%40example.com").await;
    assert!(
        html.contains("/ui/suppressions/export?q=%40example.com&amp;format=csv"),
        "{html}"
    );
    let response = app
        .client
        .get(app.url("/ui/suppressions/export?q=%40example.com&format=csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "address,reason,source,created_at,expires_at");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1].starts_with("ann@example.com,hard bounce,"),
        "{csv}"
    );
    assert!(
        lines[2].starts_with("ben@example.com,unsubscribed,"),
        "{csv}"
    );
    assert!(!csv.contains("cat@example.org"), "{csv}");

    let (_, jsonl) = app
        .page("/ui/suppressions/export?reason=complaint&format=jsonl")
        .await;
    assert_eq!(jsonl.lines().count(), 1, "{jsonl}");
    assert!(jsonl.contains("\"address\":\"cat@example.org\""), "{jsonl}");
}

#[tokio::test]
async fn hostile_addresses_and_reasons_are_escaped() {
    let app = spawn_app().await;
    let address = "'\"&onmouseover=x@example.com";
    let (status, html) = app
        .post_form(
            "/ui/suppressions",
            &[
                ("address", address),
                ("reason", "other"),
                ("note", "<script>alert(1)</script>"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    for html in [
        html,
        app.page("/ui/suppressions").await.1,
        app.page("/ui/suppressions/entry?address=%27%22%26onmouseover%3Dx%40example.com")
            .await
            .1,
    ] {
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("\"&onmouseover"), "{html}");
        assert!(
            html.contains("&quot;&amp;onmouseover=x@example.com"),
            "{html}"
        );
    }
}

#[tokio::test]
async fn a_browser_finds_a_suppression_removes_it_with_a_reason_and_sees_the_history() {
    let app = spawn_app_with(|config| config.admin_token = Some(Secret::new(TOKEN))).await;
    for (address, reason) in [
        ("jane@example.com", "hard bounce: 550 5.1.1 unknown user"),
        ("joe@example.com", "unsubscribed"),
        ("zed@elsewhere.net", "spam complaint (postmark)"),
    ] {
        suppress_as(&app, address, reason, Some(TOKEN)).await;
    }
    let base = app.url("");
    with_browser("ui_suppressions_remove", move |client| async move {
        log_in(&client, &base, "/ui/suppressions", TOKEN).await;
        let search = wait_for(&client, Locator::Id("sup-q")).await;
        search.send_keys("@example.com").await.unwrap();
        client
            .find(Locator::Css("form.filters button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_text(&client, "2 suppressions shown").await;
        browser::screenshot(&client, "ui_suppressions_list").await;
        client.set_window_size(390, 844).await.unwrap();
        browser::screenshot(&client, "ui_suppressions_phone").await;
        // Nothing but the table scrolls sideways on a phone.
        let width = client
            .execute("return document.documentElement.scrollWidth", vec![])
            .await
            .unwrap();
        assert!(width.as_u64().unwrap() <= 390, "the page is {width}px wide");
        client.set_window_size(1280, 900).await.unwrap();
        client
            .find(Locator::Css(
                "a[href='/ui/suppressions/entry?address=jane%40example.com']",
            ))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let reason = wait_for(&client, Locator::Id("remove-reason")).await;
        reason
            .send_keys("address fixed by the customer")
            .await
            .unwrap();
        client
            .find(Locator::Css(".sup-remove button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // app.js asks before the form is sent.
        client.accept_alert().await.unwrap();
        wait_for_text(&client, "Removed the suppression of jane@example.com").await;
        let text = wait_for_text(&client, "address fixed by the customer").await;
        assert!(text.contains("removed"), "{text}");
    })
    .await;
}
