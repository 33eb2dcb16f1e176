//! Dry runs of a draft: a rule that is not saved yet, compiled by the same engine with the
//! same limits as the rules in force, and run over the stored events of a time range.
//!
//! A dry run has no side effects: it only reads the store (events, history windows,
//! suppressions), records nothing next to the events, queues nothing in the outbox, and
//! touches neither the rules' counters nor the metrics ([`Rules::try_rule`]). It is
//! bounded by a number of events and a wall-clock budget, and says when a bound stopped
//! it. Callers run it on a blocking thread and hold the [`DraftSlot`] while it runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::{Action, CompileError, Rule, Rules};
use crate::event::{EventId, EventKind};
use crate::store::events::EventQuery;
use crate::store::{Store, StoreError};

/// Most events one dry run visits.
pub const MAX_DRAFT_EVENTS: usize = 50_000;
/// Longest one dry run may take, on the wall clock.
pub const DRAFT_BUDGET: Duration = Duration::from_secs(10);
/// Matched events kept as samples.
pub const MAX_SAMPLES: usize = 10;
/// Runtime errors kept with their messages.
pub const MAX_ERROR_SAMPLES: usize = 5;
/// Events read from the store per page.
const PAGE: usize = 512;

/// Admits one dry run at a time: drafts are the one way a console user can make the
/// server evaluate many events, and one running is plenty for a small team.
#[derive(Debug, Default)]
pub struct DraftSlot(Arc<AtomicBool>);

/// The right to run a dry run; the slot is free again when it is dropped.
#[derive(Debug)]
pub struct DraftPermit(Arc<AtomicBool>);

impl DraftSlot {
    /// Takes the slot, or returns `None` while another dry run holds it.
    pub fn try_take(&self) -> Option<DraftPermit> {
        self.0
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| DraftPermit(self.0.clone()))
    }
}

impl Drop for DraftPermit {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// How far one dry run may go.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most events visited.
    pub max_events: usize,
    /// Wall-clock budget.
    pub budget: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_events: MAX_DRAFT_EVENTS,
            budget: DRAFT_BUDGET,
        }
    }
}

/// Which bound ended a dry run before it had seen the whole range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It visited [`Bounds::max_events`] events.
    EventLimit,
    /// It used up [`Bounds::budget`].
    TimeBudget,
}

/// One matched event and what the draft would do with it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The event.
    pub event_id: EventId,
    /// Its recipient.
    pub recipient: String,
    /// Its kind.
    pub kind: EventKind,
    /// When it was received.
    pub received_at: Timestamp,
    /// Actions the draft asked for.
    pub actions: Vec<Action>,
    /// Tags it added.
    pub tags: Vec<String>,
}

/// One runtime failure of the draft.
#[derive(Debug, Clone)]
pub struct RuntimeError {
    /// The event it failed on.
    pub event_id: EventId,
    /// Why (with the line, when the engine knows it).
    pub message: String,
}

/// What a dry run found.
#[derive(Debug, Default)]
pub struct DraftReport {
    /// Events of the range visited (newest first).
    pub scanned: usize,
    /// Of those, events of the kinds the draft runs on.
    pub evaluated: usize,
    /// Events the draft asked something for (an action or a tag).
    pub matched: usize,
    /// Actions it would take, by type (`suppress`, `alert`, `http_post`, ...; `tag` for
    /// tags).
    pub actions: BTreeMap<&'static str, usize>,
    /// Up to [`MAX_SAMPLES`] matched events, newest first.
    pub samples: Vec<Sample>,
    /// Events it failed on.
    pub errors: usize,
    /// The first [`MAX_ERROR_SAMPLES`] failures.
    pub first_errors: Vec<RuntimeError>,
    /// The bound that stopped it early, if one did.
    pub stopped: Option<Stopped>,
    /// When stopped early: the receive time of the oldest event visited (older events of
    /// the range were not).
    pub reached: Option<Timestamp>,
    /// How long it took.
    pub elapsed: Duration,
}

/// Compiles `source` as the rule `<name>.rhai` with the engine and limits of the rules in
/// force.
pub fn compile(rules: &Rules, name: &str, source: &str) -> Result<Rule, CompileError> {
    rules.compile(Path::new(&format!("{name}.rhai")), source)
}

/// Runs `rule` over the events received in `since..until`, newest first, within
/// `bounds`, and reports what it would have done. Reads the store and writes nothing.
pub fn dry_run(
    rules: &Rules,
    rule: &Rule,
    store: &Store,
    since: Timestamp,
    until: Timestamp,
    bounds: Bounds,
) -> Result<DraftReport, StoreError> {
    let started = Instant::now();
    let mut report = DraftReport::default();
    let mut before = None;
    'pages: loop {
        let page = store.events_page(&EventQuery {
            since: Some(since),
            until: Some(until),
            before,
            limit: PAGE,
            ..EventQuery::default()
        })?;
        for event in &page.events {
            if report.scanned >= bounds.max_events {
                report.stopped = Some(Stopped::EventLimit);
            } else if started.elapsed() >= bounds.budget {
                report.stopped = Some(Stopped::TimeBudget);
            }
            if report.stopped.is_some() {
                break 'pages;
            }
            report.scanned += 1;
            report.reached = Some(event.received_at);
            let Some(outcome) = rules.try_rule(rule, event, Some(store)) else {
                continue;
            };
            report.evaluated += 1;
            let id = event.id.expect("stored events have ids");
            if let Some(message) = outcome.error {
                report.errors += 1;
                if report.first_errors.len() < MAX_ERROR_SAMPLES {
                    report.first_errors.push(RuntimeError {
                        event_id: id,
                        message,
                    });
                }
                continue;
            }
            if !outcome.matched {
                continue;
            }
            report.matched += 1;
            for action in &outcome.actions {
                *report.actions.entry(action.kind()).or_default() += 1;
            }
            if !outcome.tags.is_empty() {
                *report.actions.entry("tag").or_default() += outcome.tags.len();
            }
            if report.samples.len() < MAX_SAMPLES {
                report.samples.push(Sample {
                    event_id: id,
                    recipient: event.recipient.as_str().to_owned(),
                    kind: event.kind,
                    received_at: event.received_at,
                    actions: outcome.actions,
                    tags: outcome.tags,
                });
            }
        }
        match page.next_cursor {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
    }
    if report.stopped.is_none() {
        report.reached = None;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::engine::Limits;

    #[test]
    fn one_dry_run_holds_the_slot_until_it_ends() {
        let slot = DraftSlot::default();
        let permit = slot.try_take().expect("the slot is free");
        assert!(slot.try_take().is_none(), "a second run waits its turn");
        drop(permit);
        assert!(slot.try_take().is_some(), "free again after the first run");
    }

    /// Stores `n` SendPulse hard bounces in a scratch store through the real ingest path.
    async fn store_with_bounces(dir: &Path, n: usize) -> Store {
        let options = crate::store::StoreOptions {
            cache_capacity: 8 * 1024 * 1024,
            ..crate::store::StoreOptions::default()
        };
        let store = Store::open(dir, &options).expect("a scratch store");
        let config = crate::config::Config {
            providers_dir: dir.join("no-providers"),
            ..crate::config::Config::default()
        };
        let ingestor =
            crate::ingest::Ingestor::from_config(store.clone(), &config).expect("an ingestor");
        let source = ingestor.source("sendpulse").expect("the sendpulse source");
        let events: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "event": "hard_bounces",
                    "email": format!("user{i}@example.com"),
                    "timestamp": 1_700_000_000 + i,
                })
            })
            .collect();
        let body = serde_json::to_vec(&events).expect("JSON");
        ingestor
            .ingest(source, body.into())
            .await
            .expect("the body is stored");
        store
    }

    #[tokio::test]
    async fn a_dry_run_stops_at_its_bounds_and_says_how_far_it_got() {
        let dir = tempfile::tempdir().expect("a directory");
        let store = store_with_bounces(dir.path(), 5).await;
        let rules = Rules::new(Limits::default(), &serde_json::Map::new());
        let rule = compile(
            &rules,
            "hard",
            "// on: bounce\nsuppress(event.recipient, \"x\");",
        )
        .expect("compiles");
        let (since, until) = (Timestamp::UNIX_EPOCH, Timestamp::MAX);
        let all = dry_run(&rules, &rule, &store, since, until, Bounds::default()).unwrap();
        assert_eq!((all.scanned, all.matched, all.stopped), (5, 5, None));
        assert_eq!(all.actions.get("suppress"), Some(&5));
        assert_eq!(
            all.samples[0].recipient, "user4@example.com",
            "newest first"
        );

        let bounds = Bounds {
            max_events: 3,
            ..Bounds::default()
        };
        let some = dry_run(&rules, &rule, &store, since, until, bounds).unwrap();
        assert_eq!((some.scanned, some.stopped), (3, Some(Stopped::EventLimit)));
        assert!(some.reached.is_some());

        let bounds = Bounds {
            budget: Duration::ZERO,
            ..Bounds::default()
        };
        let none = dry_run(&rules, &rule, &store, since, until, bounds).unwrap();
        assert_eq!((none.scanned, none.stopped), (0, Some(Stopped::TimeBudget)));

        // Nothing was recorded or queued: the runner still finds every event pending.
        assert_eq!(store.pending_blocks(10).unwrap().len(), 1);
        assert!(store.suppression("user0@example.com").unwrap().is_none());
    }

    #[test]
    fn a_draft_that_does_not_compile_says_where() {
        let rules = Rules::new(Limits::default(), &serde_json::Map::new());
        let error = compile(&rules, "draft", "// on: bounce\ntag(\"a\");\nlet = 5;\n")
            .expect_err("a syntax error");
        assert_eq!(error.line, Some(3), "{error}");
        assert!(error.to_string().starts_with("draft.rhai:3"), "{error}");
    }
}
