//! Rates and the SVG charts drawn from them, on the server.
//!
//! - A rate is shown only over at least [`MIN_SENDS`] sends; below that the figures are
//!   counts and the words "too few sends" (one bounce in twenty sends is no signal).
//! - Sends are `delivered + bounces`, or a source's `sent` where that is larger: some
//!   providers report only that they handed a message over (`sent`), others report
//!   deliveries and bounces, some report both (then `sent` already holds the others, and
//!   adding them would count a message twice). This is worked out per source and bucket,
//!   then summed.
//! - The bounce rate counts the bounces that are not classed soft (hard and
//!   undetermined): SES's reputation bounce rate counts permanent bounces, and an
//!   unclassed bounce is counted rather than hidden. Bounces stored before the hard/soft
//!   split count as unclassed.
//! - The levels are SES's: review at 5 % bounces and 0.1 % complaints, pause at 10 % and
//!   0.5 %.
//! - Charts are plain SVG: classes from the stylesheet and presentation attributes only
//!   (the policy forbids `style`), a `<title>` and `aria-labelledby`, and every figure is
//!   also in a table next to the chart.

use maud::{Markup, html};

use crate::event::EventKind;
use crate::store::keys::{self, StatCounts};

/// Fewest sends over which a rate is shown.
pub const MIN_SENDS: u64 = 500;

/// The two levels a rate is judged by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// Rate (a fraction) at which SES reviews an account.
    pub review: f64,
    /// Rate at which SES may pause sending.
    pub pause: f64,
}

/// SES's bounce-rate levels: 5 % and 10 %.
pub const BOUNCE_LEVELS: Levels = Levels {
    review: 0.05,
    pause: 0.10,
};

/// SES's complaint-rate levels: 0.1 % and 0.5 %.
pub const COMPLAINT_LEVELS: Levels = Levels {
    review: 0.001,
    pause: 0.005,
};

/// Returns the sends of one source's counts (see the module notes).
pub fn sends(counts: &StatCounts) -> u64 {
    let sent = counts[EventKind::Sent.index()];
    let reached = counts[EventKind::Delivered.index()] + counts[EventKind::Bounce.index()];
    sent.max(reached)
}

/// Returns the bounces the bounce rate counts: every bounce not classed soft.
pub fn rated_bounces(counts: &StatCounts) -> u64 {
    counts[EventKind::Bounce.index()].saturating_sub(counts[keys::SOFT_BOUNCE_SLOT])
}

/// Returns the complaints of `counts`.
pub fn complaints(counts: &StatCounts) -> u64 {
    counts[EventKind::Complaint.index()]
}

/// A rate, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Fewer than [`MIN_SENDS`] sends.
    TooFewSends,
    /// The fraction of sends.
    Of(f64),
}

impl Rate {
    /// Returns `part / sends`, or [`Rate::TooFewSends`] under [`MIN_SENDS`].
    pub fn of(part: u64, sends: u64) -> Rate {
        if sends < MIN_SENDS {
            Rate::TooFewSends
        } else {
            Rate::Of(part as f64 / sends as f64)
        }
    }

    /// Returns the fraction, if there is one.
    pub fn value(self) -> Option<f64> {
        match self {
            Rate::TooFewSends => None,
            Rate::Of(rate) => Some(rate),
        }
    }
}

/// Where a rate stands against its [`Levels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No rate: too few sends.
    TooFewSends,
    /// Under the review level.
    Fine,
    /// At or over the review level.
    Review,
    /// At or over the pause level.
    Pause,
}

impl Standing {
    /// Judges `rate` by `levels`.
    pub fn of(rate: Rate, levels: Levels) -> Standing {
        match rate {
            Rate::TooFewSends => Standing::TooFewSends,
            Rate::Of(rate) if rate >= levels.pause => Standing::Pause,
            Rate::Of(rate) if rate >= levels.review => Standing::Review,
            Rate::Of(_) => Standing::Fine,
        }
    }

    /// Returns the words shown for it.
    pub fn words(self) -> &'static str {
        match self {
            Standing::TooFewSends => "too few sends",
            Standing::Fine => "under review level",
            Standing::Review => "at or over review level",
            Standing::Pause => "at or over pause level",
        }
    }

    /// Returns the label class (a tint next to the words).
    pub fn class(self) -> &'static str {
        match self {
            Standing::TooFewSends => "label",
            Standing::Fine => "label good",
            Standing::Review => "label warn",
            Standing::Pause => "label bad",
        }
    }
}

/// Formats a fraction as a percentage: two decimals under 1 %, one above.
pub fn percent(rate: f64) -> String {
    let percent = rate * 100.0;
    if percent < 1.0 {
        format!("{percent:.2} %")
    } else {
        format!("{percent:.1} %")
    }
}

/// Formats the rate of `part` in `sends` for a table cell: the percentage, "too few
/// sends", or "no sends".
pub fn rate_text(part: u64, sends: u64) -> String {
    match Rate::of(part, sends) {
        Rate::TooFewSends if sends == 0 => "no sends".to_owned(),
        Rate::TooFewSends => Standing::TooFewSends.words().to_owned(),
        Rate::Of(rate) => percent(rate),
    }
}

/// How a count compares with the previous period of the same length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Both zero, or equal.
    Same,
    /// Something where the previous period had nothing.
    New,
    /// More, by this fraction of the previous count.
    Up(f64),
    /// Fewer, by this fraction of the previous count.
    Down(f64),
}

impl Change {
    /// Compares `now` with `before`.
    pub fn between(now: u64, before: u64) -> Change {
        match (now, before) {
            _ if now == before => Change::Same,
            (_, 0) => Change::New,
            _ if now > before => Change::Up((now - before) as f64 / before as f64),
            _ => Change::Down((before - now) as f64 / before as f64),
        }
    }

    /// Returns the words shown for it (the arrow comes from the class).
    pub fn words(self, before: u64) -> String {
        match self {
            Change::Same => format!("no change (previous {before})"),
            Change::New => "new (none before)".to_owned(),
            Change::Up(by) => format!("up {:.0} % from {before}", by * 100.0),
            Change::Down(by) => format!("down {:.0} % from {before}", by * 100.0),
        }
    }

    /// Returns the class of the change (`.change.up`/`.change.down` draw ▲/▼).
    pub fn class(self) -> &'static str {
        match self {
            Change::Same => "change",
            Change::New | Change::Up(_) => "change up",
            Change::Down(_) => "change down",
        }
    }
}

/// One bar of a rate chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Short label under the bar (a day or an hour).
    pub label: String,
    /// Sends in the bucket.
    pub sends: u64,
    /// The counted part (bounces or complaints).
    pub part: u64,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 96.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// Returns the top of a chart's scale: room above the pause level and the highest rate.
pub fn scale_top(points: &[Point], levels: Levels) -> f64 {
    let highest = points
        .iter()
        .filter_map(|point| Rate::of(point.part, point.sends).value())
        .fold(0.0, f64::max);
    (levels.pause * 1.25).max(highest * 1.1)
}

/// Draws a bar chart of the points' rates with lines at the review and pause levels.
/// Buckets with some but too few sends get a hollow marker on the base line and no bar;
/// buckets without sends get nothing.
pub fn rate_chart(id: &str, title: &str, points: &[Point], levels: Levels) -> Markup {
    let top = scale_top(points, levels);
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let base = TOP + plot_height;
    let y = |rate: f64| base - (rate / top).min(1.0) * plot_height;
    let step = plot_width / points.len().max(1) as f64;
    let bar = (step * 0.62).max(1.0);
    // Every label when they fit, else about eight.
    let every = points.len().div_ceil(8).max(1);
    let title_id = format!("{id}-title");
    let lines = [
        ("threshold-review", "review", levels.review),
        ("threshold-pause", "pause", levels.pause),
    ];
    html! {
        svg .chart id=(id) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-labelledby=(title_id) xmlns="http://www.w3.org/2000/svg" {
            title id=(title_id) { (title) }
            line .axis x1=(LEFT) y1=(base) x2=(WIDTH - RIGHT) y2=(base) {}
            line .axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(base) {}
            text .tick x=(LEFT - 6.0) y=(base + 4.0) text-anchor="end" { "0 %" }
            text .tick x=(LEFT - 6.0) y=(TOP + 8.0) text-anchor="end" { (percent(top)) }
            @for (index, point) in points.iter().enumerate() {
                @let x = LEFT + step * index as f64 + (step - bar) / 2.0;
                @let centre = x + bar / 2.0;
                @match Rate::of(point.part, point.sends) {
                    Rate::Of(rate) => {
                        @let standing = Standing::of(Rate::Of(rate), levels);
                        @let height = (base - y(rate)).max(if point.part > 0 { 1.5 } else { 0.0 });
                        rect class={ "bar " (standing_class(standing)) } x=(fmt(x)) y=(fmt(base - height))
                            width=(fmt(bar)) height=(fmt(height)) {
                            title { (point.label) ": " (percent(rate)) " of " (point.sends) " sends" }
                        }
                    }
                    Rate::TooFewSends if point.sends == 0 => {}
                    Rate::TooFewSends => {
                        circle .few cx=(fmt(centre)) cy=(fmt(base - 4.0)) r="3" {
                            title { (point.label) ": too few sends (" (point.sends) ")" }
                        }
                    }
                }
                @if index % every == 0 {
                    text .tick x=(fmt(centre)) y=(HEIGHT - 10.0) text-anchor="middle" { (point.label) }
                }
            }
            @for (class, name, level) in lines {
                line class=(class) x1=(LEFT) y1=(fmt(y(level))) x2=(WIDTH - RIGHT) y2=(fmt(y(level))) {}
                text class={ "tick " (class) "-label" } x=(WIDTH - RIGHT + 6.0) y=(fmt(y(level) + 4.0)) {
                    (name) " " (percent(level))
                }
            }
        }
    }
}

fn standing_class(standing: Standing) -> &'static str {
    match standing {
        Standing::Pause => "over-pause",
        Standing::Review => "over-review",
        Standing::Fine | Standing::TooFewSends => "fine",
    }
}

fn fmt(value: f64) -> String {
    format!("{value:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(usize, u64)]) -> StatCounts {
        let mut counts = [0; keys::STAT_SLOTS];
        for &(slot, count) in pairs {
            counts[slot] = count;
        }
        counts
    }

    #[test]
    fn sends_count_a_message_once_whether_sent_or_delivered_is_reported() {
        let delivered = EventKind::Delivered.index();
        let bounce = EventKind::Bounce.index();
        let sent = EventKind::Sent.index();
        assert_eq!(sends(&counts(&[(delivered, 480), (bounce, 20)])), 500);
        assert_eq!(sends(&counts(&[(sent, 600)])), 600);
        assert_eq!(
            sends(&counts(&[(sent, 500), (delivered, 490), (bounce, 10)])),
            500
        );
    }

    #[test]
    fn soft_bounces_are_left_out_of_the_bounce_rate() {
        let bounces = counts(&[
            (EventKind::Bounce.index(), 10),
            (keys::HARD_BOUNCE_SLOT, 6),
            (keys::SOFT_BOUNCE_SLOT, 3),
        ]);
        // Six hard and one unclassed count; three soft do not.
        assert_eq!(rated_bounces(&bounces), 7);
    }

    #[test]
    fn a_rate_needs_five_hundred_sends() {
        assert_eq!(Rate::of(10, 499), Rate::TooFewSends);
        assert_eq!(Rate::of(10, 500), Rate::Of(0.02));
        assert_eq!(rate_text(3, 100), "too few sends");
        assert_eq!(rate_text(0, 0), "no sends");
        assert_eq!(rate_text(25, 500), "5.0 %");
        assert_eq!(rate_text(1, 1000), "0.10 %");
    }

    #[test]
    fn rates_are_judged_by_the_ses_levels() {
        let bounce = |part| Standing::of(Rate::of(part, 1000), BOUNCE_LEVELS);
        assert_eq!(bounce(49), Standing::Fine);
        assert_eq!(bounce(50), Standing::Review);
        assert_eq!(bounce(100), Standing::Pause);
        let complaint = |part| Standing::of(Rate::of(part, 10_000), COMPLAINT_LEVELS);
        assert_eq!(complaint(9), Standing::Fine);
        assert_eq!(complaint(10), Standing::Review);
        assert_eq!(complaint(50), Standing::Pause);
        assert_eq!(
            Standing::of(Rate::of(400, 400), BOUNCE_LEVELS),
            Standing::TooFewSends
        );
    }

    #[test]
    fn changes_compare_with_the_previous_period_in_words() {
        assert_eq!(Change::between(0, 0), Change::Same);
        assert_eq!(Change::between(5, 0), Change::New);
        assert_eq!(Change::between(15, 10), Change::Up(0.5));
        assert_eq!(Change::between(5, 20), Change::Down(0.75));
        assert_eq!(Change::between(15, 10).words(10), "up 50 % from 10");
        assert_eq!(Change::between(5, 20).words(20), "down 75 % from 20");
        assert_eq!(Change::between(5, 0).class(), "change up");
    }

    #[test]
    fn a_chart_scales_above_the_pause_level_and_marks_thin_buckets() {
        let points = vec![
            Point {
                label: "05-01".into(),
                sends: 1000,
                part: 30,
            },
            Point {
                label: "05-02".into(),
                sends: 20,
                part: 20,
            },
        ];
        // The thin day's 100 % is not a rate, so the scale is set by the pause level.
        assert!((scale_top(&points, BOUNCE_LEVELS) - 0.125).abs() < 1e-9);
        let svg = rate_chart("b", "Bounce rate <all>", &points, BOUNCE_LEVELS).into_string();
        assert!(svg.contains("<title id=\"b-title\">Bounce rate &lt;all&gt;</title>"));
        assert!(svg.contains("05-02: too few sends (20)"), "{svg}");
        assert!(svg.contains("05-01: 3.0 % of 1000 sends"), "{svg}");
        assert!(svg.contains("review 5.0 %") && svg.contains("pause 10.0 %"));
        assert!(!svg.contains("style="));
    }
}
