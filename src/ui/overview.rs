//! The Overview page (`GET /ui`) and its live fragment (`GET /ui/overview/live`): counts
//! of the last 24 hours, 7 or 30 days against the period before, bounce and complaint
//! rates per source with the SES levels, rate charts per bucket, and the recipient
//! domains with the most bounces.
//!
//! A period is the last 24 hour buckets (24 h) or the last 7 or 30 UTC day buckets, the
//! current (partial) one included, so that the cards are the sums of the chart's bars;
//! the previous period is the same number of buckets before it. Nothing here scans
//! events: see [`crate::store::overview`] for what each figure reads and where it is
//! capped.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use maud::{Markup, html};
use serde::Deserialize;

use super::PREFIX;
use super::chart::{self, BOUNCE_LEVELS, COMPLAINT_LEVELS, Change, Levels, Point, Rate, Standing};
use super::layout::{self, Nav, UiError};
use crate::api::{AppState, blocking};
use crate::event::EventKind;
use crate::store::keys::{self, Resolution, StatCounts};
use crate::store::overview::{Bounded, Counted, TopDomains};

/// Highest count of alerts, dead letters, quarantine entries and pending actions read
/// per period: past it the card says "or more" instead of walking the whole tree.
pub const COUNT_CAP: u64 = 5_000;
/// Domains shown in the top-domains table.
pub const TOP_DOMAINS: usize = 10;
/// Seconds between two refreshes of the live region.
pub const REFRESH_SECONDS: u32 = 15;

/// Routes of this page.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(show))
        .route("/overview/live", get(live))
}

/// Query string of the page and of its fragment.
#[derive(Debug, Default, Deserialize)]
pub struct OverviewParams {
    period: Option<String>,
    source: Option<String>,
}

/// The lengths the page can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The last 24 hour buckets.
    Day,
    /// The last 7 day buckets.
    Week,
    /// The last 30 day buckets.
    Month,
}

impl Period {
    const ALL: [Period; 3] = [Period::Day, Period::Week, Period::Month];

    /// Reads `24h`, `7d` or `30d` (absent means `7d`).
    pub fn parse(text: Option<&str>) -> Result<Period, UiError> {
        match text.unwrap_or("7d") {
            "24h" => Ok(Period::Day),
            "7d" | "" => Ok(Period::Week),
            "30d" => Ok(Period::Month),
            other => Err(UiError::bad_request(format!(
                "period must be 24h, 7d or 30d, not `{}`",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }

    /// Returns its name in query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "24h",
            Period::Week => "7d",
            Period::Month => "30d",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Period::Day => "Last 24 hours",
            Period::Week => "Last 7 days",
            Period::Month => "Last 30 days",
        }
    }

    fn resolution(self) -> Resolution {
        match self {
            Period::Day => Resolution::Hour,
            Period::Week | Period::Month => Resolution::Day,
        }
    }

    fn buckets(self) -> u64 {
        match self {
            Period::Day => 24,
            Period::Week => 7,
            Period::Month => 30,
        }
    }

    /// Returns the bucket starts (minutes) of this period and of the one before it, as
    /// `previous_start, current_start, end` (end exclusive).
    pub fn windows(self, now: Timestamp) -> (u64, u64, u64) {
        let resolution = self.resolution();
        let minute = (now.as_second().max(0) / 60) as u64;
        let end = resolution.bucket(minute) + resolution.minutes();
        let length = self.buckets() * resolution.minutes();
        let current = end.saturating_sub(length);
        (current.saturating_sub(length), current, end)
    }
}

/// Counts of one period, summed over the sources (or of the chosen one).
#[derive(Debug, Clone, Default)]
struct Totals {
    counts: StatCounts,
    sends: u64,
    suppressions: u64,
    alerts: Option<Bounded>,
    dead: Option<Bounded>,
    quarantine: Option<Bounded>,
}

impl Totals {
    fn add(&mut self, counts: &StatCounts) {
        for (sum, add) in self.counts.iter_mut().zip(counts) {
            *sum += add;
        }
        self.sends += chart::sends(counts);
    }
}

/// Everything the live region shows.
struct Overview {
    period: Period,
    now: Timestamp,
    current: Totals,
    previous: Totals,
    /// Current period per source.
    by_source: BTreeMap<String, Totals>,
    /// Chart buckets of the chosen source (or all): start minute and counts.
    points: Vec<(u64, Totals)>,
    source: Option<String>,
    outbox: Bounded,
    domains: TopDomains,
}

fn read(state: &AppState, period: Period, source: Option<String>) -> Result<Overview, UiError> {
    let now = Timestamp::now();
    let store = state.store.clone();
    let (previous_start, current_start, end) = period.windows(now);
    let resolution = period.resolution();
    let at = |minute: u64| Timestamp::from_second((minute * 60) as i64).unwrap_or(now);
    let buckets = store.stat_buckets(resolution, previous_start, end)?;
    let mut current = Totals::default();
    let mut previous = Totals::default();
    let mut by_source: BTreeMap<String, Totals> = BTreeMap::new();
    let mut points: Vec<(u64, Totals)> = (0..period.buckets())
        .map(|index| {
            (
                current_start + index * resolution.minutes(),
                Totals::default(),
            )
        })
        .collect();
    for bucket in &buckets {
        if bucket.start_minute < current_start {
            previous.add(&bucket.counts);
            continue;
        }
        current.add(&bucket.counts);
        by_source
            .entry(bucket.source.clone())
            .or_default()
            .add(&bucket.counts);
        if source
            .as_ref()
            .is_none_or(|wanted| *wanted == bucket.source)
        {
            let index = ((bucket.start_minute - current_start) / resolution.minutes()) as usize;
            if let Some((_, totals)) = points.get_mut(index) {
                totals.add(&bucket.counts);
            }
        }
    }
    if let Some(wanted) = &source {
        if !by_source.contains_key(wanted) && state.ingestor.sources().get(wanted).is_none() {
            return Err(UiError::bad_request(format!(
                "there is no source `{}`",
                wanted.chars().take(60).collect::<String>()
            )));
        }
    }
    current.suppressions = store.suppressions_added(current_start, end)?;
    previous.suppressions = store.suppressions_added(previous_start, current_start)?;
    for (totals, from, to) in [
        (&mut current, current_start, end),
        (&mut previous, previous_start, current_start),
    ] {
        let count = |which| store.count_created_between(which, at(from), at(to), COUNT_CAP);
        totals.alerts = Some(count(Counted::Alerts)?);
        totals.dead = Some(count(Counted::DeadLetters)?);
        totals.quarantine = Some(count(Counted::Quarantine)?);
    }
    Ok(Overview {
        period,
        now,
        current,
        previous,
        by_source,
        points,
        source,
        outbox: store.count_outbox_pending(COUNT_CAP)?,
        domains: store.top_bounce_domains(current_start, end, TOP_DOMAINS)?,
    })
}

async fn load(state: &AppState, params: OverviewParams) -> Result<Overview, UiError> {
    let period = Period::parse(params.period.as_deref())?;
    let source = params.source.filter(|source| !source.is_empty());
    let state = state.clone();
    let overview = blocking(move || Ok(read(&state, period, source))).await??;
    Ok(overview)
}

async fn show(
    State(state): State<AppState>,
    Query(params): Query<OverviewParams>,
) -> Result<Response, UiError> {
    let overview = load(&state, params).await?;
    let live_url = layout::url(
        &format!("{PREFIX}/overview/live"),
        &[
            ("period", overview.period.as_str()),
            ("source", overview.source.as_deref().unwrap_or("")),
        ],
    );
    let body = html! {
        nav .period-switch aria-label="Period" {
            ul {
                @for period in Period::ALL {
                    @let href = layout::url(PREFIX, &[
                        ("period", period.as_str()),
                        ("source", overview.source.as_deref().unwrap_or("")),
                    ]);
                    li {
                        @if period == overview.period {
                            a href=(href) aria-current="page" { (period.label()) }
                        } @else {
                            a href=(href) { (period.label()) }
                        }
                    }
                }
            }
        }
        div #overview-live hx-get=(live_url) hx-trigger={ "every " (REFRESH_SECONDS) "s" }
            hx-swap="innerHTML" {
            (live_region(&overview))
        }
    };
    Ok(layout::page(&state, Nav::Overview, "Overview", body).into_response())
}

async fn live(
    State(state): State<AppState>,
    Query(params): Query<OverviewParams>,
) -> Result<Response, UiError> {
    let overview = load(&state, params).await?;
    Ok(live_region(&overview).into_response())
}

fn live_region(overview: &Overview) -> Markup {
    let is_empty = overview.current.counts.iter().all(|&count| count == 0)
        && overview.previous.counts.iter().all(|&count| count == 0);
    html! {
        (layout::updated_stamp(overview.now))
        @if is_empty {
            p .notice {
                "No events in this period or the one before. Once a provider posts to "
                code { "/webhooks/<source>" }
                " (see " a href={ (PREFIX) "/sources" } { "Sources" } " for the URLs), "
                "counts, rates and charts appear here."
            }
        }
        (cards(overview))
        (rates_by_source(overview))
        (charts(overview))
        (domains(overview))
    }
}

fn cards(overview: &Overview) -> Markup {
    let (now, before) = (&overview.current, &overview.previous);
    let kind = |totals: &Totals, kind: EventKind| totals.counts[kind.index()];
    let counted = [
        ("Sends", now.sends, before.sends),
        (
            "Delivered",
            kind(now, EventKind::Delivered),
            kind(before, EventKind::Delivered),
        ),
        (
            "Hard bounces",
            now.counts[keys::HARD_BOUNCE_SLOT],
            before.counts[keys::HARD_BOUNCE_SLOT],
        ),
        (
            "Soft bounces",
            now.counts[keys::SOFT_BOUNCE_SLOT],
            before.counts[keys::SOFT_BOUNCE_SLOT],
        ),
        (
            "Complaints",
            kind(now, EventKind::Complaint),
            kind(before, EventKind::Complaint),
        ),
        ("Suppressions added", now.suppressions, before.suppressions),
    ];
    let capped = [
        ("Alerts", now.alerts, before.alerts),
        ("Dead letters", now.dead, before.dead),
        ("Quarantined", now.quarantine, before.quarantine),
    ];
    let unclassed = kind(now, EventKind::Bounce)
        .saturating_sub(now.counts[keys::HARD_BOUNCE_SLOT] + now.counts[keys::SOFT_BOUNCE_SLOT]);
    html! {
        section aria-labelledby="counts-heading" {
            h2 #counts-heading { (overview.period.label()) }
            p .muted { "Each figure against the " (overview.period.label().to_lowercase().replace("last ", "")) " before." }
            ul .cards .overview-cards {
                @for (name, count, previous) in counted {
                    (card(name, &count.to_string(), Change::between(count, previous), previous))
                }
                @for (name, count, previous) in capped {
                    @let count = count.unwrap_or(Bounded { count: 0, capped: false });
                    @let previous = previous.unwrap_or(Bounded { count: 0, capped: false });
                    @if count.capped || previous.capped {
                        li .card {
                            div .name { (name) }
                            div .value { (count.count) "+" }
                            div .change { "at least " (count.count) "; not compared" }
                        }
                    } @else {
                        (card(name, &count.count.to_string(), Change::between(count.count, previous.count), previous.count))
                    }
                }
                li .card {
                    div .name { "Outbox pending" }
                    div .value { (overview.outbox.count) @if overview.outbox.capped { "+" } }
                    div .change { "waiting now" }
                }
            }
            @if unclassed > 0 {
                p .muted {
                    (unclassed) " bounces in this period are neither hard nor soft (the provider "
                    "did not say, or they were stored before bounces were split); the bounce "
                    "rate counts them."
                }
            }
        }
    }
}

fn card(name: &str, value: &str, change: Change, previous: u64) -> Markup {
    html! {
        li .card {
            div .name { (name) }
            div .value { (value) }
            div class=(change.class()) { (change.words(previous)) }
        }
    }
}

fn rates_by_source(overview: &Overview) -> Markup {
    let rows = overview
        .by_source
        .iter()
        .map(|(name, totals)| (name.as_str(), totals))
        .chain(std::iter::once(("All sources", &overview.current)));
    html! {
        section aria-labelledby="rates-heading" {
            h2 #rates-heading { "Rates by source" }
            p .muted {
                "Bounce rate: hard and unclassed bounces over sends; SES reviews an account at 5 % "
                "and may pause it at 10 %. Complaint rate: complaints over sends; 0.1 % and 0.5 %. "
                "Rates are shown over " (chart::MIN_SENDS) " sends or more."
            }
            @if overview.by_source.is_empty() {
                (layout::empty("No sends in this period."))
            } @else {
                div .table-wrap {
                    table {
                        caption { "Rates by source, " (overview.period.label().to_lowercase()) }
                        thead { tr {
                            th scope="col" { "Source" }
                            th scope="col" .num { "Sends" }
                            th scope="col" .num { "Bounces" }
                            th scope="col" .num { "Bounce rate" }
                            th scope="col" .num { "Complaints" }
                            th scope="col" .num { "Complaint rate" }
                        } }
                        tbody {
                            @for (name, totals) in rows {
                                @let bounces = chart::rated_bounces(&totals.counts);
                                @let complaints = chart::complaints(&totals.counts);
                                tr {
                                    th scope="row" {
                                        @if name == "All sources" { (name) } @else {
                                            a href=(layout::url(PREFIX, &[("period", overview.period.as_str()), ("source", name)])) { (name) }
                                        }
                                    }
                                    td .num { (totals.sends) }
                                    td .num { (bounces) }
                                    td .num { (rate_cell(Rate::of(bounces, totals.sends), BOUNCE_LEVELS)) }
                                    td .num { (complaints) }
                                    td .num { (rate_cell(Rate::of(complaints, totals.sends), COMPLAINT_LEVELS)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A rate and its standing in words (the tint is extra).
fn rate_cell(rate: Rate, levels: Levels) -> Markup {
    let standing = Standing::of(rate, levels);
    html! {
        @match rate {
            Rate::TooFewSends => span .muted { "too few sends" },
            Rate::Of(value) => {
                (chart::percent(value)) " "
                span class=(standing.class()) { (standing.words()) }
            }
        }
    }
}

fn charts(overview: &Overview) -> Markup {
    let hourly = overview.period.resolution() == Resolution::Hour;
    let label = |minute: u64, long: bool| {
        let at = Timestamp::from_second((minute * 60) as i64).unwrap_or(overview.now);
        let format = match (hourly, long) {
            (true, false) => "%H:00",
            (true, true) => "%Y-%m-%d %H:00 UTC",
            (false, false) => "%m-%d",
            (false, true) => "%Y-%m-%d",
        };
        at.strftime(format).to_string()
    };
    let scope = overview.source.as_deref().unwrap_or("all sources");
    let every = if hourly { "Hourly" } else { "Daily" };
    let bucket = if hourly { "Hour" } else { "Day" };
    let bounce_points: Vec<Point> = overview
        .points
        .iter()
        .map(|(minute, totals)| Point {
            label: label(*minute, false),
            sends: totals.sends,
            part: chart::rated_bounces(&totals.counts),
        })
        .collect();
    let complaint_points: Vec<Point> = overview
        .points
        .iter()
        .map(|(minute, totals)| Point {
            label: label(*minute, false),
            sends: totals.sends,
            part: chart::complaints(&totals.counts),
        })
        .collect();
    let long_labels: Vec<String> = overview
        .points
        .iter()
        .map(|(minute, _)| label(*minute, true))
        .collect();
    let any = overview.points.iter().any(|(_, totals)| totals.sends > 0);
    let sources: Vec<&str> = overview.by_source.keys().map(String::as_str).collect();
    let figures = [
        (
            "bounce-chart",
            "Bounce rate",
            "Bounces",
            &bounce_points,
            BOUNCE_LEVELS,
        ),
        (
            "complaint-chart",
            "Complaint rate",
            "Complaints",
            &complaint_points,
            COMPLAINT_LEVELS,
        ),
    ];
    html! {
        section aria-labelledby="charts-heading" {
            h2 #charts-heading { (every) " rates: " (scope) }
            @if sources.len() > 1 || overview.source.is_some() {
                nav .source-switch aria-label="Source of the charts" {
                    ul {
                        li {
                            @let href = layout::url(PREFIX, &[("period", overview.period.as_str())]);
                            @if overview.source.is_none() {
                                a href=(href) aria-current="true" { "All sources" }
                            } @else { a href=(href) { "All sources" } }
                        }
                        @for name in &sources {
                            @let href = layout::url(PREFIX, &[("period", overview.period.as_str()), ("source", name)]);
                            li {
                                @if overview.source.as_deref() == Some(*name) {
                                    a href=(href) aria-current="true" { (name) }
                                } @else { a href=(href) { (name) } }
                            }
                        }
                    }
                }
            }
            @if !any {
                (layout::empty("No sends to chart in this period."))
            } @else {
                div .chart-pair {
                    @for (id, title, part_name, points, levels) in figures {
                        @let total_sends: u64 = points.iter().map(|point| point.sends).sum();
                        @let total_part: u64 = points.iter().map(|point| point.part).sum();
                        figure .rate-figure aria-labelledby={ (id) "-heading" } {
                            h3 #{ (id) "-heading" } { (title) }
                            (chart::rate_chart(id, &format!("{every} {} of {scope}, {}", title.to_lowercase(), overview.period.label().to_lowercase()), points, levels))
                            p .chart-key .muted {
                                "Bars: rate per " (bucket.to_lowercase()) "; circles: too few sends. "
                                "Dashed lines: review " (chart::percent(levels.review))
                                ", pause " (chart::percent(levels.pause)) "."
                            }
                            div .table-wrap {
                                table .chart-table {
                                    caption { (title) " per " (bucket.to_lowercase()) ", " (scope) ", newest first" }
                                    thead { tr {
                                        th scope="col" { (bucket) }
                                        th scope="col" .num { "Sends" }
                                        th scope="col" .num { (part_name) }
                                        th scope="col" .num { (title) }
                                    } }
                                    tbody {
                                        @for (point, long) in points.iter().zip(&long_labels).rev() {
                                            tr {
                                                th scope="row" { (long) }
                                                td .num { (point.sends) }
                                                td .num { (point.part) }
                                                td .num { (chart::rate_text(point.part, point.sends)) }
                                            }
                                        }
                                    }
                                    tfoot { tr {
                                        th scope="row" { "Whole period" }
                                        td .num { (total_sends) }
                                        td .num { (total_part) }
                                        td .num { (rate_cell(Rate::of(total_part, total_sends), levels)) }
                                    } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn domains(overview: &Overview) -> Markup {
    html! {
        section aria-labelledby="domains-heading" {
            h2 #domains-heading { "Top recipient domains by bounces" }
            @if overview.period == Period::Day {
                p .muted { "Counted per UTC day: today and yesterday." }
            }
            @if overview.domains.domains.is_empty() {
                (layout::empty("No bounces in this period."))
            } @else {
                div .table-wrap {
                    table {
                        caption { "Recipient domains with the most bounces, all sources" }
                        thead { tr {
                            th scope="col" { "Domain" }
                            th scope="col" .num { "Bounces" }
                            th scope="col" .num { "Hard" }
                            th scope="col" .num { "Soft" }
                            th scope="col" .num { "Complaints" }
                        } }
                        tbody {
                            @for domain in &overview.domains.domains {
                                tr {
                                    th scope="row" {
                                        a href=(layout::url(&format!("{PREFIX}/events"), &[("recipient", &format!("@{}", domain.domain)), ("kind", "bounce")])) { (domain.domain) }
                                    }
                                    td .num { (domain.bounces) }
                                    td .num { (domain.hard) }
                                    td .num { (domain.soft) }
                                    td .num { (domain.complaints) }
                                }
                            }
                        }
                    }
                }
                @if overview.domains.partial {
                    p .muted { "Only the most recent days were read: there are very many domains." }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_bad_ones_are_refused() {
        assert_eq!(Period::parse(None).unwrap(), Period::Week);
        assert_eq!(Period::parse(Some("24h")).unwrap(), Period::Day);
        assert_eq!(Period::parse(Some("30d")).unwrap(), Period::Month);
        assert!(Period::parse(Some("<script>")).is_err());
    }

    #[test]
    fn a_period_is_whole_buckets_ending_with_the_current_one() {
        let now: Timestamp = "2025-05-10T13:45:00Z".parse().unwrap();
        let minute = |text: &str| (text.parse::<Timestamp>().unwrap().as_second() / 60) as u64;
        assert_eq!(
            Period::Week.windows(now),
            (
                minute("2025-04-27T00:00:00Z"),
                minute("2025-05-04T00:00:00Z"),
                minute("2025-05-11T00:00:00Z")
            )
        );
        assert_eq!(
            Period::Day.windows(now),
            (
                minute("2025-05-08T14:00:00Z"),
                minute("2025-05-09T14:00:00Z"),
                minute("2025-05-10T14:00:00Z")
            )
        );
    }
}
