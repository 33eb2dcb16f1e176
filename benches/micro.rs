//! Micro-benchmarks of the pure hot paths: `cargo bench --bench micro`.
//!
//! Each adapter's parse and normalize of a documented payload, the dedup key, index key
//! encoding, building an event's script view, and one rule evaluation.

use std::sync::Arc;

use divan::{Bencher, black_box};
use jiff::Timestamp;
use mailwarden::config::SourceConfig;
use mailwarden::event::Event;
use mailwarden::ingest::sources::{Source, SourceContext};
use mailwarden::ingest::{self, Element};
use mailwarden::rules::engine::Limits;
use mailwarden::rules::{RuleSet, Rules, event_view};

fn main() {
    divan::main();
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn source(provider: &str) -> Source {
    let adapter = ingest::providers::find(provider).expect("provider");
    Source::new(
        provider,
        adapter,
        &SourceConfig::new(provider),
        1 << 20,
        &SourceContext::default(),
    )
    .expect("source")
}

fn normalize(source: &Source, body: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    for raw in ingest::parse_body(body).expect("valid body") {
        let element = Element {
            raw,
            source,
            received_at: Timestamp::UNIX_EPOCH,
        };
        source
            .provider
            .normalize(&element, &mut events)
            .expect("normalizes");
    }
    events
}

#[divan::bench(args = ["opptima/smtp_bounce.json", "opptima/marketing_click.json"])]
fn normalize_opptima(bencher: Bencher, path: &str) {
    let (source, body) = (source("opptima"), fixture(path));
    bencher.bench(|| normalize(&source, black_box(&body)));
}

#[divan::bench(args = ["sendpulse/hard_bounces.json", "sendpulse/bulk_events.json"])]
fn normalize_sendpulse(bencher: Bencher, path: &str) {
    let (source, body) = (source("sendpulse"), fixture(path));
    bencher.bench(|| normalize(&source, black_box(&body)));
}

#[divan::bench(args = ["leadconnector/delivered.json", "leadconnector/failed_permanent.json"])]
fn normalize_leadconnector(bencher: Bencher, path: &str) {
    let (source, body) = (source("leadconnector"), fixture(path));
    bencher.bench(|| normalize(&source, black_box(&body)));
}

/// One documented hard bounce (or batch) per provider that reads plain JSON bodies.
#[divan::bench(args = [
    "sendgrid/all_events.json",
    "mailgun/failed_permanent_bounce.json",
    "postmark/bounce_hard.json",
    "brevo/transactional_hard_bounce.json",
    "mailjet/grouped.json",
    "sparkpost/bounce.json",
    "resend/email_bounced.json",
])]
fn normalize_provider(bencher: Bencher, path: &str) {
    let provider = path.split('/').next().expect("provider directory");
    let (source, body) = (source(provider), fixture(path));
    bencher.bench(|| normalize(&source, black_box(&body)));
}

/// An SES notification: the SNS envelope is read, then the SES message inside it.
#[divan::bench]
fn normalize_amazon_ses(bencher: Bencher) {
    let message =
        String::from_utf8(fixture("amazon_ses/notification_bounce_permanent.json")).expect("UTF-8");
    let envelope = serde_json::json!({
        "Type": "Notification", "MessageId": "bench", "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "Message": message, "Timestamp": "2026-12-01T10:00:00.000Z",
    })
    .to_string();
    let source = source("amazon_ses");
    bencher.bench(|| normalize(&source, black_box(envelope.as_bytes())));
}

#[divan::bench]
fn dedup_key(bencher: Bencher) {
    let events = normalize(
        &source("sendpulse"),
        &fixture("sendpulse/hard_bounces.json"),
    );
    bencher.bench(|| ingest::dedup_key(black_box(&events[0])));
}

#[divan::bench]
fn script_view(bencher: Bencher) {
    let events = normalize(
        &source("sendpulse"),
        &fixture("sendpulse/hard_bounces.json"),
    );
    bencher.bench(|| event_view(black_box(&events[0])));
}

#[divan::bench]
fn hard_bounce_rule(bencher: Bencher) {
    let rules = Rules::new(Limits::default(), &serde_json::Map::new());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/hard_bounce.rhai");
    let set = RuleSet::new(vec![Arc::new(rules.compile_file(&path).expect("compiles"))]);
    let events = normalize(
        &source("sendpulse"),
        &fixture("sendpulse/hard_bounces.json"),
    );
    bencher.bench(|| rules.evaluate(&set, black_box(&events[0]), None, None));
}
