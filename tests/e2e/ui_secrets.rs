//! Secrets in call URLs stay out of the console: a rule posts to a URL from
//! `[rules.vars]` whose user info, query and path past the first segment carry
//! credentials (as a CRM's `?api_key=` or a Slack-style webhook path do); the event
//! detail, the Recipient page, the Outbox (with the breakers and the stored error of the
//! failed calls) and a draft's dry run show only scheme, host and first segment.

use mailwarden::config::Config;
use serde_json::{Value, json};

use crate::actions::write_rule;
use crate::helpers::{TestApp, eventually, spawn_app_with};

/// What must never be on a page.
const SECRET: &str = "SECRET";

/// The rule under test: post every bounce to `config.crm_url`.
const CRM_RULE: &str = "// on: bounce\nhttp_post(config.crm_url, #{recipient: event.recipient});\n";

/// A port nothing listens on (bound, then let go): calls to it fail to connect, and
/// reqwest's error for them names the whole URL.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

/// Asserts that `html` (page `what`) holds no secret.
fn assert_no_secret(what: &str, html: &str) {
    assert!(!html.contains(SECRET), "{what} shows a secret: {html}");
}

/// The dead letters of `GET /api/outbox`, waiting until there is one.
async fn one_dead_letter(app: &TestApp) -> Value {
    eventually("the dead letter", || async {
        let (_, page) = app.get("/api/outbox?status=dead&limit=10").await;
        page["actions"]
            .as_array()
            .and_then(|dead| (dead.len() == 1).then(|| dead[0].clone()))
    })
    .await
}

#[tokio::test]
async fn console_pages_never_show_the_secret_parts_of_a_call_url() {
    let port = closed_port();
    let url = format!(
        "http://crm:{SECRET}@127.0.0.1:{port}/services/T0/B0/{SECRET}-PATH?api_key={SECRET}#{SECRET}"
    );
    let app = spawn_app_with(|config: &mut Config| {
        config.outbound.retry_schedule_secs = vec![0, 0];
        config.outbound.breaker_failures = 1_000;
        config.outbound.allow = vec!["127.0.0.1/32".into()];
        config.rules.vars.insert("crm_url".into(), json!(url));
        write_rule(&config.rules_dir, "crm", CRM_RULE);
    })
    .await;
    let body = json!([{"event": "hard_bounces", "timestamp": 1_700_000_000,
                       "email": "jane@example.com", "smtp_server_response_code": 550}]);
    let (status, answer) = app.post("sendpulse", body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    let dead = one_dead_letter(&app).await;
    let error = dead["last_error"].as_str().expect("a stored error");
    assert!(error.contains("could not connect"), "{error}");
    assert_no_secret("the stored error", error);
    let event = dead["event_id"].as_str().expect("from an event").to_owned();
    let shown = format!("127.0.0.1:{port}</strong>/services/…");

    let (status, html) = app.page(&format!("/ui/events/{event}")).await;
    assert_eq!(status, 200, "{html}");
    assert_no_secret("the event detail", &html);
    assert!(
        html.contains(&shown),
        "the event shows where it posted: {html}"
    );
    assert!(html.contains("could not connect"), "and the error: {html}");

    let (status, html) = app.page("/ui/recipient?address=jane%40example.com").await;
    assert_eq!(status, 200, "{html}");
    assert_no_secret("the recipient page", &html);
    assert!(html.contains(&shown), "{html}");

    for tab in ["/ui/outbox?status=dead", "/ui/outbox"] {
        let (status, html) = app.page(tab).await;
        assert_eq!(status, 200, "{html}");
        assert_no_secret(tab, &html);
    }
    let (_, html) = app.page("/ui/outbox?status=dead").await;
    assert!(html.contains(&shown), "{html}");
    assert!(html.contains("(query hidden)"), "{html}");
    assert!(html.contains("(credentials hidden)"), "{html}");

    for htmx in [true, false] {
        let mut request = app
            .client
            .post(app.url("/ui/rules/draft"))
            .header("origin", format!("http://{}", app.address))
            .form(&[
                ("name", "crm_draft"),
                ("source", CRM_RULE),
                ("range", "24h"),
            ]);
        if htmx {
            request = request.header("hx-request", "true");
        }
        let response = request.send().await.expect("the draft answers");
        assert_eq!(response.status(), 200);
        let html = response.text().await.expect("HTML");
        assert_no_secret("the draft's dry run", &html);
        assert!(html.contains(&shown), "the sample shows the call: {html}");
    }
}
