//! The console's Outbox, Alerts, Quarantine and Sources pages (issue 14), over HTTP and
//! in real Chromium: dead letters made for real by a receiver that answers 500, retried
//! one by one and all at once after the count; an alert through a real SMTP
//! conversation; a malformed body in quarantine, escaped; the sources with their URLs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use fantoccini::Locator;
use mailwarden::config::{Config, Secret};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};

use crate::actions::{use_smtp, write_rule};
use crate::browser::{self, log_in, wait_for, wait_for_text, wait_until, with_browser};
use crate::helpers::{TestApp, eventually, no_redirects, spawn_app_with};
use crate::sinks::SmtpSink;

const TOKEN: &str = "ops-console-token";
/// What the failing receiver answers, hostile on purpose: the page must escape it.
const DOWN_BODY: &str = "<b>crm down</b>";

/// A receiver for outbound calls that answers its current status (500 with
/// [`DOWN_BODY`] until told otherwise) and counts what it got.
struct Receiver {
    address: std::net::SocketAddr,
    status: Arc<AtomicU16>,
    calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(500));
        let calls = Arc::new(AtomicUsize::new(0));
        let (answer, count) = (status.clone(), calls.clone());
        let router = axum::Router::new().fallback(move || {
            let (answer, count) = (answer.clone(), count.clone());
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                let status = answer.load(Ordering::SeqCst);
                let code = axum::http::StatusCode::from_u16(status).unwrap();
                (code, if status == 500 { DOWN_BODY } else { "ok" })
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Receiver {
            address,
            status,
            calls,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn host(&self) -> String {
        self.address.to_string()
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Two immediate attempts, then the dead letters; breakers that stay closed.
fn two_attempts(config: &mut Config) {
    config.outbound.retry_schedule_secs = vec![0, 0];
    config.outbound.breaker_failures = 1_000;
    config.outbound.allow = vec!["127.0.0.1/32".into()];
}

/// An app whose bounces are posted to every URL in `urls` (two attempts each).
async fn app_calling(urls: &[String], adjust: impl FnOnce(&mut Config)) -> TestApp {
    let urls = urls.to_vec();
    spawn_app_with(move |config| {
        two_attempts(config);
        config.rules.vars.insert("urls".into(), json!(urls));
        write_rule(
            &config.rules_dir,
            "hooks",
            "// on: bounce\nfor url in config.urls { http_post(url, #{recipient: event.recipient}); }\n",
        );
        adjust(config);
    })
    .await
}

/// A SendPulse body of hard bounces to `recipients`.
fn bounces(recipients: &[&str]) -> String {
    let events: Vec<Value> = recipients
        .iter()
        .enumerate()
        .map(|(i, address)| {
            json!({"event": "hard_bounces", "timestamp": 1_700_000_000 + i as i64,
                   "email": address, "smtp_server_response_code": 550})
        })
        .collect();
    Value::Array(events).to_string()
}

/// POSTs a form from a page of the console; returns the redirect target.
async fn post_form_redirect(app: &TestApp, path: &str, form: &[(&str, &str)]) -> String {
    let response = no_redirects()
        .post(app.url(path))
        .header("origin", format!("http://{}", app.address))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
    response.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// The dead letters of `GET /api/outbox`, waiting until there are `n`.
async fn dead_letters(app: &TestApp, n: usize) -> Vec<Value> {
    eventually(&format!("{n} dead letters"), || async {
        let (_, page) = app.get("/api/outbox?status=dead&limit=1000").await;
        let dead = page["actions"].as_array().cloned().unwrap_or_default();
        (dead.len() == n).then_some(dead)
    })
    .await
}

/// The value of the hidden field `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("hidden field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_dead_letter_shows_its_attempts_and_response_and_a_retry_finishes_it() {
    let receiver = Receiver::start().await;
    let app = app_calling(&[receiver.url("/hook?token=s3cret")], |_| {}).await;
    let (status, answer) = app.post("sendpulse", bounces(&["jane@example.com"])).await;
    assert_eq!(status, 200, "{answer}");
    let dead = dead_letters(&app, 1).await;
    let id = dead[0]["id"].as_str().unwrap().to_owned();
    let event = dead[0]["event_id"].as_str().unwrap().to_owned();

    let (status, html) = app.page("/ui/outbox?status=dead").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&id), "{html}");
    assert!(html.contains("HTTP 500"), "{html}");
    assert!(
        html.contains("&lt;b&gt;crm down&lt;/b&gt;"),
        "escaped: {html}"
    );
    assert!(!html.contains(DOWN_BODY), "{html}");
    assert!(
        html.contains("<td class=\"num\">2</td>"),
        "two attempts: {html}"
    );
    assert!(
        html.contains(&format!("href=\"/ui/events/{event}\"")),
        "{html}"
    );
    assert!(
        html.contains("href=\"/ui/recipient?address=jane%40example.com\""),
        "{html}"
    );
    assert!(!html.contains("s3cret"), "no query strings: {html}");
    assert!(html.contains(&receiver.host()), "breakers: {html}");
    // Pending shows nothing; the retrying tab neither.
    let (_, pending) = app.page("/ui/outbox").await;
    assert!(!pending.contains(&id), "{pending}");

    receiver.answer(200);
    let calls = receiver.calls();
    let back = post_form_redirect(
        &app,
        &format!("/ui/outbox/{id}/retry"),
        &[("status", "dead")],
    )
    .await;
    assert_eq!(back, format!("/ui/outbox?status=dead&retried={id}"));
    eventually("the retried call", || async {
        (receiver.calls() > calls).then_some(())
    })
    .await;
    let notice = eventually("the retry to be done", || async {
        let response = no_redirects()
            .get(app.url(&format!("/ui/outbox/{id}/state")))
            .send()
            .await
            .unwrap();
        (response.status().as_u16() == 286).then_some(response.text().await.unwrap())
    })
    .await;
    assert!(notice.contains("Done:"), "{notice}");
    let (_, html) = app.page(&back).await;
    assert!(html.contains("role=\"status\""), "{html}");
    assert!(
        html.contains("was carried out and left the outbox"),
        "{html}"
    );
    assert!(html.contains("No dead letters."), "{html}");
    assert!(dead_letters(&app, 0).await.is_empty());
}

#[tokio::test]
async fn retry_all_shows_the_count_first_then_requeues_only_the_matching_host() {
    let crm = Receiver::start().await;
    let other = Receiver::start().await;
    let app = app_calling(&[crm.url("/hook"), other.url("/hook")], |_| {}).await;
    let (status, answer) = app
        .post(
            "sendpulse",
            bounces(&["a@example.com", "b@example.com", "c@example.com"]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    dead_letters(&app, 6).await;

    let host = crm.host();
    let (status, html) = app.page(&format!("/ui/outbox/retry-all?host={host}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&format!("Retry 3 dead letters to {host}?")),
        "{html}"
    );
    let through = hidden(&html, "through");
    // Only the count so far: nothing moved.
    assert_eq!(dead_letters(&app, 6).await.len(), 6);

    crm.answer(200);
    let back = post_form_redirect(
        &app,
        "/ui/outbox/retry-all",
        &[("host", host.as_str()), ("kind", ""), ("through", &through)],
    )
    .await;
    assert!(back.contains("requeued=3"), "{back}");
    let (_, html) = app.page(&back).await;
    assert!(
        html.contains(&format!("Requeued 3 dead letters to {host}")),
        "{html}"
    );
    let left = dead_letters(&app, 3).await;
    for letter in &left {
        let url = letter["action"]["url"].as_str().unwrap();
        assert!(url.starts_with(&other.url("")), "{url}");
    }
    // Each of the three went to the receiver again and succeeded: 2 + 1 calls each.
    eventually("the requeued calls", || async {
        (crm.calls() == 9).then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_outbox_filters_are_a_clear_400_page() {
    let app = app_calling(&[], |_| {}).await;
    for (path, message) in [
        (
            "/ui/outbox?status=bogus",
            "status must be pending, retrying or dead",
        ),
        ("/ui/outbox?kind=teleport", "kind must be one of"),
        ("/ui/outbox?host=%3Cscript%3E", "host: give a host name"),
        ("/ui/outbox?cursor=yesterday", "cursor:"),
        ("/ui/alerts?cursor=x", "cursor:"),
        ("/ui/quarantine?cursor=x", "cursor:"),
        ("/ui/quarantine/nope", "not a quarantine entry id"),
    ] {
        let (status, html) = app.page(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {html}");
        assert!(html.contains(message), "{path}: {html}");
        assert!(!html.contains("<script>"), "{path}: {html}");
    }
    let (status, _) = app.page("/ui/quarantine/evt_1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, html) = app.page("/ui/outbox/retry-all").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No dead letters to retry."), "{html}");
}

#[tokio::test]
async fn the_alerts_page_shows_an_alert_sent_to_a_real_smtp_sink() {
    let smtp = SmtpSink::start().await;
    let app = spawn_app_with(|config| {
        use_smtp(config, smtp.port);
        write_rule(
            &config.rules_dir,
            "notify",
            "// on: bounce\nalert(#{subject: \"Bounced <b>\" + event.recipient, body: \"look\"});\n",
        );
    })
    .await;
    let (status, answer) = app
        .post_fixture("sendpulse", "sendpulse/hard_bounces.json")
        .await;
    assert_eq!(status, 200, "{answer}");
    smtp.wait_for(1).await;
    eventually("the alert log", || async {
        let (_, page) = app.get("/api/alerts").await;
        (!page["alerts"].as_array()?.is_empty()).then_some(())
    })
    .await;

    let (status, html) = app.page("/ui/alerts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("[mailwarden] Bounced &lt;b&gt;example@example.com"),
        "{html}"
    );
    assert!(html.contains(">sent<"), "{html}");
    assert!(
        html.contains("href=\"/ui/recipient?address=team%40example.com\""),
        "{html}"
    );
    assert!(
        html.contains("href=\"/ui/recipient?address=example%40example.com\""),
        "{html}"
    );
    assert!(html.contains("<th scope=\"col\">Rule</th>"), "{html}");
}

#[tokio::test]
async fn quarantine_shows_a_malformed_body_and_a_bad_element_with_their_causes_escaped() {
    let app = spawn_app_with(|_| {}).await;
    let (status, answer) = app
        .post("sendpulse", "{\"<script>alert(1)</script>\": ")
        .await;
    assert_eq!(status, 400, "{answer}");
    let whole = answer["error"]["quarantine_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let element = json!([{"event": "delivered", "timestamp": 1_700_000_000,
                          "recipient": "<script>alert(2)</script>"}]);
    let (status, answer) = app.post("sendpulse", element.to_string()).await;
    assert_eq!(status, 200, "{answer}");

    let (status, html) = app.page("/ui/quarantine").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&whole), "{html}");
    assert!(html.contains("whole body"), "{html}");
    assert!(html.contains("element 0 of the batch"), "{html}");
    assert!(html.contains("no valid recipient address"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(2)"), "{html}");
    assert!(!html.contains("<script>alert"), "{html}");

    let (status, html) = app.page(&format!("/ui/quarantine/{whole}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("The request body"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("bytes"), "{html}");
}

#[tokio::test]
async fn the_sources_page_lists_the_default_sources_with_webhook_urls_and_verification() {
    let app = spawn_app_with(|_| {}).await;
    let (status, answer) = app
        .post_fixture("sendpulse", "sendpulse/hard_bounces.json")
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, html) = app.page("/ui/sources").await;
    assert_eq!(status, StatusCode::OK);
    let (_, api) = app.get("/api/sources").await;
    for source in api["sources"].as_array().unwrap() {
        let url = source["url"].as_str().unwrap();
        assert!(
            html.contains(&format!("data-copy=\"{url}\"")),
            "{url}: {html}"
        );
    }
    let sendpulse = format!("http://{}/webhooks/sendpulse", app.address);
    assert!(html.contains(&sendpulse), "{html}");
    // SendPulse without credentials checks nothing; SES verifies SNS signatures.
    let row = |name: &str| {
        let start = html
            .find(&format!("<span class=\"mono\">{name}</span>"))
            .unwrap();
        let end = html[start..].find("</tr>").unwrap() + start;
        html[start..end].to_owned()
    };
    assert!(row("sendpulse").contains(">off<"), "{}", row("sendpulse"));
    assert!(row("amazon_ses").contains(">on<"), "{}", row("amazon_ses"));
    assert!(
        row("sendpulse").contains("<td class=\"num\">1</td>"),
        "{}",
        row("sendpulse")
    );
    assert!(!row("sendpulse").contains("never"), "{}", row("sendpulse"));
    assert!(row("postmark").contains("never"), "{}", row("postmark"));
}

#[tokio::test]
async fn a_browser_filters_dead_letters_and_retries_one() {
    let receiver = Receiver::start().await;
    let urls = [receiver.url("/hook")];
    let app = app_calling(&urls, |config| {
        config.admin_token = Some(Secret::new(TOKEN));
    })
    .await;
    let (status, answer) = app.post("sendpulse", bounces(&["jane@example.com"])).await;
    assert_eq!(status, 200, "{answer}");
    let api = reqwest::Client::new();
    let outbox = app.url("/api/outbox?status=dead");
    eventually("the dead letter", || async {
        let page: Value = api
            .get(&outbox)
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (page["actions"].as_array()?.len() == 1).then_some(())
    })
    .await;
    receiver.answer(200);

    let base = app.url("");
    let host = receiver.host();
    with_browser("ui_ops_retry_dead_letter", move |client| async move {
        log_in(&client, &base, "/ui/sources", TOKEN).await;
        wait_for_text(&client, "Webhook URL").await;
        browser::screenshot(&client, "ui_ops_sources").await;
        client.goto(&format!("{base}/ui/outbox")).await.unwrap();
        wait_for_text(&client, "Destinations").await;
        // Dead letters, then narrowed to the host through the filter form.
        client
            .find(Locator::LinkText("Dead letters"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_until(&client, "the dead letters", |url| {
            url.contains("status=dead")
        })
        .await;
        let field = wait_for(&client, Locator::Css("input#host")).await;
        field.send_keys(&host).await.unwrap();
        client
            .find(Locator::Css("form.filters button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_until(&client, "the filtered list", |url| url.contains("host=")).await;
        wait_for_text(&client, &format!("Dead letters to {host}")).await;
        wait_for_text(&client, "crm down").await;
        client.set_window_size(390, 844).await.unwrap();
        browser::screenshot(&client, "ui_ops_outbox_phone").await;
        client.set_window_size(1280, 900).await.unwrap();
        browser::screenshot(&client, "ui_ops_outbox_dead").await;
        wait_for(&client, Locator::Css("button[aria-label^='Retry evt_']"))
            .await
            .click()
            .await
            .unwrap();
        wait_until(&client, "the list after the retry", |url| {
            url.contains("retried=")
        })
        .await;
        // The notice follows the call until it is done.
        let text = wait_for_text(&client, "was carried out and left the outbox").await;
        assert!(text.contains("Done:"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_browser_reads_an_alert_and_opens_a_quarantined_body() {
    let smtp = SmtpSink::start().await;
    let app = spawn_app_with(|config| {
        use_smtp(config, smtp.port);
        write_rule(
            &config.rules_dir,
            "notify",
            "// on: bounce\nalert(#{subject: \"Hard bounce for \" + event.recipient, body: \"The address is gone.\"});\n",
        );
    })
    .await;
    let (status, answer) = app.post("sendpulse", bounces(&["jane@example.com"])).await;
    assert_eq!(status, 200, "{answer}");
    smtp.wait_for(1).await;
    let (status, answer) = app
        .post("sendpulse", "{\"event\": \"hard_bounces\", <script>")
        .await;
    assert_eq!(status, 400, "{answer}");

    let base = app.url("");
    with_browser("ui_ops_quarantined_body", move |client| async move {
        client.goto(&format!("{base}/ui/alerts")).await.unwrap();
        wait_for_text(&client, "Hard bounce for jane@example.com").await;
        wait_for(&client, Locator::Css("details summary"))
            .await
            .click()
            .await
            .unwrap();
        wait_for_text(&client, "The address is gone.").await;
        browser::screenshot(&client, "ui_ops_alerts").await;

        client.goto(&format!("{base}/ui/quarantine")).await.unwrap();
        wait_for_text(&client, "whole body").await;
        browser::screenshot(&client, "ui_ops_quarantine").await;
        wait_for(&client, Locator::Css("table.quarantine a.mono"))
            .await
            .click()
            .await
            .unwrap();
        wait_until(&client, "the entry", |url| {
            url.contains("/ui/quarantine/evt_")
        })
        .await;
        let text = wait_for_text(&client, "The request body").await;
        assert!(text.contains("<script>"), "shown as text: {text}");
    })
    .await;
}
