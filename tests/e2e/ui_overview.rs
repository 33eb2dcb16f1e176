//! The console's Overview page: cards, rates, charts and top domains from webhooks posted
//! through the real server, the 500-send rule, the live fragment, and one browser run.

use fantoccini::Locator;
use mailwarden::config::Secret;
use serde_json::{Value, json};

use crate::browser::{log_in, wait_for, wait_for_text, with_browser};
use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const TOKEN: &str = "overview-admin-token";

/// The value and change text of the card called `name`.
fn card(html: &str, name: &str) -> (String, String) {
    let start = html
        .find(&format!("<div class=\"name\">{name}</div>"))
        .unwrap_or_else(|| panic!("no card {name} in {html}"));
    let rest = &html[start..];
    let between = |open: &str| {
        let from = rest.find(open).expect("card part") + open.len();
        let from = from + rest[from..].find('>').expect("tag end") + 1;
        let to = from + rest[from..].find("</div>").expect("card part end");
        rest[from..to].to_owned()
    };
    (
        between("<div class=\"value\""),
        between("<div class=\"change"),
    )
}

/// The cells of the table row headed `heading` in the table after `after`.
fn row(html: &str, after: &str, heading: &str) -> Vec<String> {
    let table = &html[html.find(after).unwrap_or_else(|| panic!("no {after}"))..];
    let start = table
        .find(&format!(">{heading}</th>"))
        .or_else(|| table.find(&format!(">{heading}</a></th>")))
        .unwrap_or_else(|| panic!("no row {heading} after {after} in {table}"));
    let row = &table[start..table[start..].find("</tr>").expect("row end") + start];
    row.split("<td")
        .skip(1)
        .map(|cell| {
            let text = &cell[cell.find('>').expect("cell open") + 1..];
            strip_tags(&text[..text.find("</td>").expect("cell end")])
        })
        .collect()
}

fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut inside = false;
    for c in html.chars() {
        match c {
            '<' => inside = true,
            '>' => inside = false,
            c if !inside => text.push(c),
            _ => {}
        }
    }
    text
}

/// A SendGrid batch of `delivered` deliveries and `bounced` hard bounces, each event its
/// own recipient (so none is a duplicate of another).
fn sendgrid_batch(tag: &str, delivered: usize, bounced: usize) -> Vec<u8> {
    let mut events: Vec<Value> = Vec::new();
    for n in 0..delivered {
        events.push(json!({
            "email": format!("user{n}.{tag}@example.org"),
            "timestamp": 1_700_000_000 + n,
            "event": "delivered",
            "sg_event_id": format!("d-{tag}-{n}"),
            "sg_message_id": format!("m-{tag}-{n}"),
            "response": "250 OK"
        }));
    }
    for n in 0..bounced {
        events.push(json!({
            "email": format!("gone{n}.{tag}@bounce.example"),
            "timestamp": 1_700_000_000 + n,
            "event": "bounce",
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 5.1.1 user unknown",
            "bounce_classification": "Invalid Address",
            "sg_event_id": format!("b-{tag}-{n}"),
            "sg_message_id": format!("mb-{tag}-{n}")
        }));
    }
    serde_json::to_vec(&events).expect("JSON")
}

async fn post_sendgrid(app: &TestApp, body: Vec<u8>) {
    let response = app.post_raw("sendgrid", body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// One delivery, one hard and one soft bounce and one complaint through SendPulse, one
/// delivery through SendGrid.
async fn post_the_four_kinds(app: &TestApp) {
    for fixture in [
        "sendpulse/delivered.json",
        "sendpulse/hard_bounces.json",
        "sendpulse/soft_bounces.json",
        "sendpulse/spam_by_user.json",
    ] {
        let (status, answer) = app.post_fixture("sendpulse", fixture).await;
        assert_eq!(status, 200, "{fixture}: {answer}");
    }
    let (status, answer) = app
        .post_fixture("sendgrid", "sendgrid/delivered.json")
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn the_overview_counts_posted_webhooks_and_says_too_few_sends() {
    let app = spawn_app().await;
    post_the_four_kinds(&app).await;
    let response = app
        .client
        .put(app.url("/api/suppressions/jane@example.com"))
        .json(&json!({"reason": "asked by phone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let (status, html) = app.page("/ui?period=24h").await;
    assert_eq!(status, 200, "{html}");
    // Sends: SendPulse's delivery and two bounces, SendGrid's delivery.
    assert_eq!(card(&html, "Sends").0, "4");
    assert_eq!(card(&html, "Delivered").0, "2");
    let (hard, change) = card(&html, "Hard bounces");
    assert_eq!(hard, "1");
    assert_eq!(change, "new (none before)");
    assert_eq!(card(&html, "Soft bounces").0, "1");
    assert_eq!(card(&html, "Complaints").0, "1");
    assert_eq!(card(&html, "Suppressions added").0, "1");
    assert_eq!(card(&html, "Quarantined").0, "0");
    assert_eq!(card(&html, "Dead letters").1, "no change (previous 0)");
    assert_eq!(card(&html, "Outbox pending").0, "0");

    // Per source: 3 sends and 1 rated bounce (the soft one is not rated) on SendPulse.
    let sendpulse = row(&html, "Rates by source,", "sendpulse");
    assert_eq!(sendpulse[..3], ["3", "1", "too few sends"]);
    assert_eq!(sendpulse[3..], ["1", "too few sends"]);
    let all = row(&html, "Rates by source,", "All sources");
    assert_eq!(all[..3], ["4", "1", "too few sends"]);

    // The hourly charts have their numbers in tables, the whole period at the foot.
    assert!(
        html.contains("<svg class=\"chart\" id=\"bounce-chart\""),
        "{html}"
    );
    assert!(html.contains("aria-labelledby=\"bounce-chart-title\""));
    let total = row(&html, "Bounce rate per hour", "Whole period");
    assert_eq!(total, ["4", "1", "too few sends"]);
    let total = row(&html, "Complaint rate per hour", "Whole period");
    assert_eq!(total, ["4", "1", "too few sends"]);

    // Both SendPulse bounces went to example.com.
    let domain = row(
        &html,
        "Recipient domains with the most bounces",
        "example.com",
    );
    assert_eq!(domain, ["2", "1", "1", "0"]);
    assert!(html.contains("href=\"/ui/events?recipient=%40example.com&amp;kind=bounce\""));

    // The 30-day view counts the same events in day buckets.
    let (_, html) = app.page("/ui?period=30d").await;
    assert_eq!(card(&html, "Sends").0, "4");
    assert!(html.contains("Bounce rate per day"), "{html}");
}

#[tokio::test]
async fn an_empty_store_shows_friendly_empty_states() {
    let app = spawn_app().await;
    let (status, html) = app.page("/ui").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("No events in this period or the one before."),
        "{html}"
    );
    assert!(html.contains("No sends to chart in this period."));
    assert!(html.contains("No bounces in this period."));
    assert_eq!(
        card(&html, "Sends"),
        ("0".into(), "no change (previous 0)".into())
    );
}

#[tokio::test]
async fn bad_periods_and_sources_are_a_clear_400_page() {
    let app = spawn_app().await;
    let (status, html) = app.page("/ui?period=1y").await;
    assert_eq!(status, 400);
    assert!(html.contains("period must be 24h, 7d or 30d"), "{html}");
    let (status, html) = app.page("/ui/overview/live?source=%3Cscript%3Ex").await;
    assert_eq!(status, 400);
    assert!(
        html.contains("there is no source `&lt;script&gt;x`"),
        "{html}"
    );
    assert!(!html.contains("<script>x"));
}

#[tokio::test]
async fn rates_are_shown_from_five_hundred_sends() {
    let app = spawn_app().await;
    // 469 deliveries and 30 hard bounces: 499 sends, one short.
    post_sendgrid(&app, sendgrid_batch("a", 469, 30)).await;
    let (_, html) = app.page("/ui?source=sendgrid").await;
    let sendgrid = row(&html, "Rates by source,", "sendgrid");
    assert_eq!(sendgrid[..3], ["499", "30", "too few sends"]);
    let total = row(&html, "Bounce rate per day", "Whole period");
    assert_eq!(total, ["499", "30", "too few sends"]);
    assert!(html.contains("Daily rates: sendgrid"), "{html}");

    // One more delivery: 30 of 500 is 6 %, over SES's review level.
    post_sendgrid(&app, sendgrid_batch("b", 1, 0)).await;
    let (_, html) = app.page("/ui?source=sendgrid").await;
    let sendgrid = row(&html, "Rates by source,", "sendgrid");
    assert_eq!(
        sendgrid[..3],
        ["500", "30", "6.0 % at or over review level"]
    );
    assert_eq!(sendgrid[4], "0.00 % under review level");
    let total = row(&html, "Bounce rate per day", "Whole period");
    assert_eq!(total, ["500", "30", "6.0 % at or over review level"]);
    // Today's bar is drawn as over the review level; its table row says the rate.
    assert!(html.contains("class=\"bar over-review\""), "{html}");
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    assert_eq!(
        row(&html, "Bounce rate per day", &today),
        ["500", "30", "6.0 %"]
    );
    assert_eq!(card(&html, "Hard bounces").0, "30");
    let domain = row(
        &html,
        "Recipient domains with the most bounces",
        "bounce.example",
    );
    assert_eq!(domain, ["30", "30", "0", "0"]);
}

#[tokio::test]
async fn the_live_fragment_is_a_fragment_with_the_updated_stamp() {
    let app = spawn_app().await;
    post_the_four_kinds(&app).await;
    let (_, html) = app.page("/ui?period=30d").await;
    assert!(
        html.contains(
            "hx-get=\"/ui/overview/live?period=30d\" hx-trigger=\"every 15s\" hx-swap=\"innerHTML\""
        ),
        "{html}"
    );
    let response = app
        .client
        .get(app.url("/ui/overview/live?period=30d"))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    assert!(
        fragment.starts_with("<p class=\"updated\">Updated <time"),
        "{fragment}"
    );
    assert!(!fragment.contains("<html") && !fragment.contains("<nav aria-label=\"Sections\""));
    assert_eq!(card(&fragment, "Sends").0, "4");
    assert!(fragment.contains("id=\"complaint-chart\""));
}

#[tokio::test]
async fn a_browser_sees_the_charts_with_their_tables_and_a_live_refresh() {
    let app = spawn_app_with(|config| config.admin_token = Some(Secret::new(TOKEN))).await;
    post_the_four_kinds(&app).await;
    post_sendgrid(&app, sendgrid_batch("a", 960, 40)).await;
    let base = app.url("");
    let app = std::sync::Arc::new(app);
    let poster = app.clone();
    with_browser("overview", move |client| async move {
        log_in(&client, &base, "/ui", TOKEN).await;
        wait_for(&client, Locator::Css("svg#bounce-chart rect.bar")).await;
        wait_for(&client, Locator::Css("svg#complaint-chart")).await;
        let text = wait_for_text(&client, "Bounce rate per day").await;
        assert!(text.contains("Complaint rate per day"), "{text}");
        // 40 SendGrid and 1 SendPulse hard bounces of 1004 sends.
        assert!(text.contains("4.1 %"), "{text}");
        let before = crate::browser::read_live(
            &client,
            Locator::Css("#overview-live .updated time"),
            Some("datetime"),
        )
        .await;
        assert!(!before.is_empty(), "the overview says when it was updated");

        // Desktop first; the test ends on a phone-sized window (its final screenshot).
        let png = client.screenshot().await.unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        let _ = std::fs::create_dir_all(&dir);
        std::fs::write(dir.join("overview_desktop.png"), png).unwrap();
        let charts = client
            .find(Locator::Css("section[aria-labelledby=charts-heading]"))
            .await
            .unwrap();
        std::fs::write(
            dir.join("overview_charts.png"),
            charts.screenshot().await.unwrap(),
        )
        .unwrap();

        // A hard bounce arrives; the next poll (every 15 s) shows it without a reload.
        let (status, _) = poster
            .post_fixture("sendgrid", "sendgrid/bounce.json")
            .await;
        assert_eq!(status, 200);
        let hard = Locator::XPath("//li[div[@class='name']='Hard bounces']/div[@class='value']");
        let started = std::time::Instant::now();
        loop {
            let shown = crate::browser::read_live(&client, hard, None).await;
            if shown == "42" {
                break;
            }
            assert!(
                started.elapsed() < crate::browser::PATIENCE,
                "the card still shows {shown} hard bounces"
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let after = crate::browser::read_live(
            &client,
            Locator::Css("#overview-live .updated time"),
            Some("datetime"),
        )
        .await;
        assert_ne!(before, after, "the stamp moved with the refresh");
        client.set_window_size(390, 844).await.unwrap();
        wait_for(&client, Locator::Css(".cards")).await;
    })
    .await;
}
