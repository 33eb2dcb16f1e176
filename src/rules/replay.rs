//! Re-running rules over stored events, e.g. after writing a new rule, to act on what
//! happened last month. Replayed actions go to the same outbox; a dry run only lists them.
//! History functions see the store as of each event, as a live run did.

use jiff::Timestamp;
use serde::Serialize;

use super::{Action, QueuedAction, RuleSet, Rules};
use crate::event::EventId;
use crate::store::{Store, StoreError};

/// Most events one replay visits.
pub const MAX_REPLAY_EVENTS: usize = 1_000_000;

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Events visited.
    pub events: usize,
    /// Events some rule matched.
    pub matched: usize,
    /// Actions queued (0 in a dry run).
    pub queued: usize,
    /// Rule failures.
    pub errors: usize,
    /// In a dry run: the actions that would be queued, with their event and rule.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ReplayedAction>,
}

/// One action found by a replay.
#[derive(Debug, Serialize)]
pub struct ReplayedAction {
    /// Event.
    pub event_id: EventId,
    /// Rule.
    pub rule: String,
    /// Action.
    pub action: Action,
}

/// Replays `set` (or only the rule `only`) over events received in `since..until`.
pub fn replay(
    rules: &Rules,
    set: &RuleSet,
    store: &Store,
    since: Timestamp,
    until: Timestamp,
    only: Option<&str>,
    dry_run: bool,
) -> Result<ReplayReport, StoreError> {
    let mut report = ReplayReport::default();
    let mut from = EventId::floor_at(since);
    let to = EventId(EventId::floor_at(until).0.saturating_sub(1));
    while report.events < MAX_REPLAY_EVENTS {
        let events = store.events_between(from, to, 512)?;
        let Some(last) = events.last().and_then(|event| event.id) else {
            break;
        };
        let mut queue = Vec::new();
        for event in events {
            let id = event.id.expect("stored events have ids");
            report.events += 1;
            let evaluation = rules.evaluate(set, &event, Some(store), only);
            if evaluation.rules.iter().any(|o| o.matched) {
                report.matched += 1;
            }
            let now = Timestamp::now();
            for outcome in evaluation.rules {
                if outcome.error.is_some() {
                    report.errors += 1;
                }
                for action in outcome.actions {
                    if dry_run {
                        report.actions.push(ReplayedAction {
                            event_id: id,
                            rule: outcome.rule.clone(),
                            action,
                        });
                    } else {
                        let queued = QueuedAction::new(Some(id), &outcome.rule, action, now);
                        queue.push(serde_json::to_vec(&queued).expect("action serializes"));
                    }
                }
            }
        }
        report.queued += store.queue_actions(&queue)?.len();
        from = EventId(last.0 + 1);
    }
    Ok(report)
}
