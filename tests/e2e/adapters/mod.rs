//! Provider adapters end to end: every fixture is posted over HTTP to the source named after
//! its provider, every stored event is read back through `GET /api/events/{id}` and compared
//! field by field with what the provider's documentation (fixtures/, and the seed documents
//! they come from) says the event means. Expected values are written out by hand.
//!
//! Opptima sends Colombian local time (UTC-5, no daylight saving) without an offset, so
//! `2020-10-05 17:40:54` is `2020-10-05T22:40:54Z` with `time_quality: assumed_tz`;
//! SendPulse and LeadConnector send Unix seconds (`exact`).

mod amazon_ses;
mod brevo;
mod leadconnector;
mod mailgun;
mod mailjet;
mod mandrill;
mod opptima;
mod postmark;
mod resend;
mod sendgrid;
mod sendpulse;
mod sparkpost;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::helpers::{all_fixtures, read_fixture, spawn_app};

/// What one stored event must look like. Every field is compared exactly: `None`, an empty
/// list or a `Null` metadata mean "absent from the answer".
#[derive(Clone, Debug, Default)]
pub struct Expected {
    pub provider_event: &'static str,
    pub kind: &'static str,
    pub bounce_class: Option<&'static str>,
    pub reason: Option<&'static str>,
    pub recipient: &'static str,
    pub occurred_at: Option<&'static str>,
    pub time_quality: &'static str,
    pub message_id: Option<&'static str>,
    pub provider_event_id: Option<&'static str>,
    pub smtp_code: Option<u16>,
    pub smtp_enhanced: Option<&'static str>,
    pub smtp_response: Option<&'static str>,
    pub subject: Option<&'static str>,
    pub sender: Option<&'static str>,
    pub campaign: Option<&'static str>,
    pub click_url: Option<&'static str>,
    pub user_agent: Option<&'static str>,
    pub ip: Option<&'static str>,
    pub tags: &'static [&'static str],
    pub metadata: Value,
    pub warnings: &'static [&'static str],
}

/// The events one fixture produced, with the request elements they came from.
pub struct Ingested {
    /// Events read back one by one, in request order.
    pub events: Vec<Value>,
    /// The JSON elements of the request (the body itself for a single object).
    pub elements: Vec<Value>,
}

/// Starts a service, posts `fixture` (`provider/case.json`) to the source named after its
/// provider and reads every event of the answer back by id.
pub async fn ingest(fixture: &str) -> Ingested {
    let provider = fixture.split('/').next().expect("provider directory");
    let app = spawn_app().await;
    let (status, report) = app.post_fixture(provider, fixture).await;
    assert_eq!(status, 200, "{fixture}: {report}");
    let body: Value = serde_json::from_slice(&read_fixture(fixture)).expect("fixture is JSON");
    let elements = match body {
        Value::Array(items) => items,
        other => vec![other],
    };
    assert_eq!(report["quarantined"], 0, "{fixture}: {report}");
    assert_eq!(report["duplicates"], 0, "{fixture}: {report}");
    assert!(report.get("errors").is_none(), "{fixture}: {report}");
    let ids = report["event_ids"].as_array().expect("event_ids").clone();
    // Every fixture element has exactly one recipient: one event each.
    assert_eq!(ids.len(), elements.len(), "{fixture}: {report}");
    assert_eq!(report["accepted"], ids.len(), "{fixture}: {report}");
    let mut events = Vec::new();
    for id in &ids {
        let id = id.as_str().expect("ids are strings");
        assert!(id.starts_with("evt_"), "{id}");
        let (status, event) = app.get(&format!("/api/events/{id}")).await;
        assert_eq!(status, 200, "{fixture} {id}: {event}");
        assert_eq!(event["id"], id, "{fixture}: {event}");
        events.push(event);
    }
    let with_warnings = events
        .iter()
        .filter(|event| event.get("warnings").is_some())
        .count();
    assert_eq!(report["warnings"], with_warnings, "{fixture}: {report}");
    Ingested { events, elements }
}

/// Compares one stored event with what is expected of it.
pub fn check(provider: &str, event: &Value, element: &Value, expected: &Expected) {
    let context = format!("{provider}/{}: {event:#}", expected.provider_event);
    let field = |name: &str| event.get(name).cloned();
    let text = |value: Option<&str>| value.map(|text| json!(text));
    assert!(event.is_object(), "{context}");
    assert_eq!(field("source"), Some(json!(provider)), "source; {context}");
    assert_eq!(
        field("provider"),
        Some(json!(provider)),
        "provider; {context}"
    );
    assert_eq!(
        field("provider_event"),
        Some(json!(expected.provider_event)),
        "provider_event; {context}"
    );
    assert_eq!(field("kind"), Some(json!(expected.kind)), "kind; {context}");
    assert_eq!(
        field("bounce_class"),
        text(expected.bounce_class),
        "bounce_class; {context}"
    );
    assert_eq!(field("reason"), text(expected.reason), "reason; {context}");
    assert_eq!(
        field("recipient"),
        Some(json!(expected.recipient)),
        "recipient; {context}"
    );
    match expected.occurred_at {
        Some(at) => {
            let stored = event["occurred_at"]
                .as_str()
                .unwrap_or_else(|| panic!("occurred_at missing; {context}"));
            assert!(stored.ends_with('Z'), "occurred_at not in UTC; {context}");
            let stored: Timestamp = stored.parse().expect("occurred_at is RFC 3339");
            assert_eq!(
                stored,
                at.parse::<Timestamp>().unwrap(),
                "occurred_at; {context}"
            );
        }
        None => assert_eq!(field("occurred_at"), None, "occurred_at; {context}"),
    }
    assert_eq!(
        field("time_quality"),
        Some(json!(expected.time_quality)),
        "time_quality; {context}"
    );
    let received = event["received_at"].as_str().expect("received_at");
    received
        .parse::<Timestamp>()
        .unwrap_or_else(|error| panic!("received_at `{received}`: {error}"));
    assert_eq!(
        field("message_id"),
        text(expected.message_id),
        "message_id; {context}"
    );
    assert_eq!(
        field("provider_event_id"),
        text(expected.provider_event_id),
        "provider_event_id; {context}"
    );
    assert_eq!(
        field("smtp_code"),
        expected.smtp_code.map(|code| json!(code)),
        "smtp_code; {context}"
    );
    assert_eq!(
        field("smtp_enhanced"),
        text(expected.smtp_enhanced),
        "smtp_enhanced; {context}"
    );
    assert_eq!(
        field("smtp_response"),
        text(expected.smtp_response),
        "smtp_response; {context}"
    );
    assert_eq!(
        field("subject"),
        text(expected.subject),
        "subject; {context}"
    );
    assert_eq!(field("sender"), text(expected.sender), "sender; {context}");
    assert_eq!(
        field("campaign"),
        text(expected.campaign),
        "campaign; {context}"
    );
    assert_eq!(
        field("click_url"),
        text(expected.click_url),
        "click_url; {context}"
    );
    assert_eq!(
        field("user_agent"),
        text(expected.user_agent),
        "user_agent; {context}"
    );
    assert_eq!(field("ip"), text(expected.ip), "ip; {context}");
    let list = |items: &[&str]| (!items.is_empty()).then(|| json!(items));
    assert_eq!(field("tags"), list(expected.tags), "tags; {context}");
    let metadata = match &expected.metadata {
        Value::Null => None,
        Value::Object(map) if map.is_empty() => None,
        other => Some(other.clone()),
    };
    assert_eq!(field("metadata"), metadata, "metadata; {context}");
    assert_eq!(
        field("warnings"),
        list(expected.warnings),
        "warnings; {context}"
    );
    assert_eq!(field("raw").as_ref(), Some(element), "raw; {context}");
}

/// `extras` merged into one object, later ones winning.
pub fn merged(extras: &[Value]) -> Value {
    let mut all = Map::new();
    for extra in extras {
        all.extend(extra.as_object().expect("metadata is an object").clone());
    }
    Value::Object(all)
}

/// Posts `fixture` and checks its events, in order, against `expected`.
pub async fn assert_fixture(fixture: &str, expected: &[Expected]) {
    let provider = fixture.split('/').next().expect("provider directory");
    let ingested = ingest(fixture).await;
    assert_eq!(ingested.events.len(), expected.len(), "{fixture}");
    for ((event, element), expected) in ingested.events.iter().zip(&ingested.elements).zip(expected)
    {
        check(provider, event, element, expected);
    }
}

#[tokio::test]
async fn every_good_fixture_is_accepted() {
    let app = spawn_app().await;
    let fixtures = all_fixtures();
    // Every built-in provider has documented samples, and so has the Postal example.
    let mut providers: Vec<String> = mailwarden::ingest::providers::builtin()
        .iter()
        .map(|p| p.name().to_owned())
        .collect();
    providers.push("postal".to_owned());
    for provider in providers {
        assert!(
            fixtures
                .iter()
                .any(|f| f.starts_with(&format!("{provider}/"))),
            "no {provider} fixtures in {fixtures:?}"
        );
    }
    let mut total = 0;
    for fixture in &fixtures {
        if fixture.starts_with("sendpulse/broken_") {
            continue;
        }
        let provider = fixture.split('/').next().expect("provider directory");
        let (status, report) = app.post_fixture(provider, fixture).await;
        assert_eq!(status, 200, "{fixture}: {report}");
        assert_eq!(report["quarantined"], 0, "{fixture}: {report}");
        let accepted = report["accepted"].as_u64().expect("accepted");
        assert!(accepted >= 1, "{fixture}: {report}");
        total += accepted as usize;
    }
    let stored = app.events("limit=1000").await;
    assert!(total < 1000, "raise the page size");
    assert_eq!(stored.len(), total);
}
