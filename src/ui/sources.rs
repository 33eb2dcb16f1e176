//! The Sources page: every webhook source (as `GET /api/sources` describes it) with its
//! provider, the URL to give the provider (with a copy button), how requests are
//! verified, when one last arrived, and how many events it stored in the last 24 hours
//! and 30 days.
//!
//! The last receive time is the source's own (kept in memory, persisted in the store's
//! source records); the counts come from the stats buckets the ingest writes (hour
//! buckets for the day, day buckets for the month), a few hundred small reads whatever
//! the number of events: no event is scanned.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use jiff::{SignedDuration, Timestamp};
use maud::{Markup, html};

use super::layout::{self, Nav, UiError};
use crate::api::{AppState, blocking};
use crate::ingest::sources::SourceInfo;

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new().route("/sources", get(show))
}

/// Events a source stored recently.
#[derive(Debug, Clone, Copy, Default)]
struct Received {
    day: u64,
    month: u64,
}

async fn show(State(state): State<AppState>) -> Result<Markup, UiError> {
    let sources = state
        .ingestor
        .sources()
        .describe(&crate::api::sources::base_url(&state));
    let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    let store = state.store.clone();
    let now = Timestamp::now();
    let received = blocking(move || {
        let day = now - SignedDuration::from_hours(24);
        let month = now - SignedDuration::from_hours(24 * 30);
        names
            .iter()
            .map(|name| {
                Ok(Received {
                    day: store.stats_between(Some(name), day, now)?.iter().sum(),
                    month: store.stats_between(Some(name), month, now)?.iter().sum(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let body = html! {
        p .muted {
            "Give each provider the webhook URL of its source. A source that verifies requests refuses what does not prove it comes from the provider."
        }
        @if state.config.public_url.is_none() {
            p .notice {
                "These URLs use the listen address. Behind a proxy or TLS terminator, set "
                code { "public_url" } " so that they show the address providers reach."
            }
        }
        div .table-wrap {
            table .sources {
                thead {
                    tr {
                        th scope="col" { "Source" }
                        th scope="col" { "Provider" }
                        th scope="col" { "Webhook URL" }
                        th scope="col" { "Verification" }
                        th scope="col" { "Last received" }
                        th scope="col" .num { "Events, 24 h" }
                        th scope="col" .num { "Events, 30 d" }
                    }
                }
                tbody {
                    @for (source, received) in sources.iter().zip(&received) {
                        (source_row(source, *received))
                    }
                }
            }
        }
    };
    Ok(layout::page(&state, Nav::Sources, "Sources", body))
}

fn source_row(source: &SourceInfo, received: Received) -> Markup {
    html! {
        tr {
            th scope="row" { span .mono { (source.name) } }
            td { (source.provider) }
            td .webhook {
                div .copyable {
                code .url { (source.url) }
                button type="button" .secondary.copy data-copy=(source.url)
                    aria-label={ "Copy the webhook URL of " (source.name) } { "Copy" }
                }
            }
            td {
                @if source.verifies {
                    span .label.good { "on" }
                    " " span .muted { (source.verification.join(", ").replace('_', " ")) }
                } @else {
                    span .label.warn { "off" }
                }
                @for subscription in &source.subscriptions {
                    br;
                    span .muted { "SNS " (subscription.status) ": " }
                    span .mono { (subscription.topic_arn) }
                }
            }
            td {
                @match source.last_received_at {
                    Some(at) => (layout::time(at)),
                    None => span .muted { "never" },
                }
            }
            td .num { (received.day) }
            td .num { (received.month) }
        }
    }
}
