//! The rules runner: evaluates stored events in order, off the async runtime, and keeps
//! the rule set fresh while the server runs.
//!
//! - The evaluator thread takes the oldest pending events in batches, runs the rules for
//!   each event's kind, and records each event's evaluation and actions in the same
//!   transaction that takes it off the pending queue: a crash before that transaction
//!   leaves the event pending (evaluated after restart), after it never evaluates it again.
//! - The watcher thread polls the rules directory; a changed file is compiled and swapped
//!   in atomically, a file that fails keeps its previous version running and the error is
//!   shown in `GET /api/rules`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use serde::Serialize;

use super::{CompileError, Evaluation, QueuedAction, Rule, RuleSet, Rules, rule_files};
use crate::event::EventKind;
use crate::store::Store;
use crate::store::rules::EvaluatedBlock;
use crate::telemetry::names;

/// Events evaluated per transaction.
const BATCH: usize = 256;
/// Most events indexed by recipient ahead of evaluation per round.
const INDEX_AHEAD: usize = 8_192;
/// How long the evaluator sleeps when idle before looking again (new events wake it
/// earlier).
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// What `GET /api/rules` shows for one rule.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleStatus {
    /// Rule name.
    pub name: String,
    /// File.
    pub file: PathBuf,
    /// Kinds it runs on (empty: every kind).
    pub kinds: Vec<EventKind>,
    /// When the running version was compiled (absent if no version ever compiled).
    pub loaded_at: Option<Timestamp>,
    /// Events it ran on.
    pub runs: u64,
    /// Events it matched (asked for something).
    pub matches: u64,
    /// Actions it queued.
    pub actions: u64,
    /// Runs that failed.
    pub errors: u64,
    /// Last runtime error.
    pub last_error: Option<String>,
    /// Compile error of the file on disk, if its latest version does not compile (the
    /// previous good version keeps running).
    pub compile_error: Option<String>,
    /// The same compile error with its position, for the console (not in the JSON, which
    /// has `compile_error`).
    #[serde(skip)]
    pub compile_failure: Option<CompileError>,
}

/// Shared state of the runner: the rule set in force and per-rule counters.
pub struct RulesState {
    rules: Rules,
    set: RwLock<Arc<RuleSet>>,
    status: Mutex<BTreeMap<String, RuleStatus>>,
    dir: PathBuf,
    /// When the rule set last changed (loaded at startup or reloaded).
    reloaded_at: Mutex<Timestamp>,
    /// Admits one dry run of a draft at a time.
    drafts: super::draft::DraftSlot,
}

impl RulesState {
    /// Compiles every rule in `dir`. Any compile error fails (the server must not start
    /// with a broken rule).
    pub fn load(rules: Rules, dir: &Path) -> Result<RulesState, Vec<CompileError>> {
        let (compiled, errors) = rules.load_dir(dir);
        if !errors.is_empty() {
            return Err(errors);
        }
        let state = RulesState {
            rules,
            set: RwLock::new(Arc::new(RuleSet::default())),
            status: Mutex::new(BTreeMap::new()),
            dir: dir.to_owned(),
            reloaded_at: Mutex::new(Timestamp::now()),
            drafts: super::draft::DraftSlot::default(),
        };
        state.install(compiled.into_iter().map(Arc::new).collect());
        Ok(state)
    }

    fn install(&self, rules: Vec<Arc<Rule>>) {
        {
            let mut status = self.status.lock().expect("status lock");
            status.retain(|name, _| rules.iter().any(|rule| &rule.name == name));
            for rule in &rules {
                let entry = status.entry(rule.name.clone()).or_default();
                // Only a newly compiled version clears an error: an unchanged old version
                // kept because its file is broken keeps showing why.
                if entry.loaded_at != Some(rule.loaded_at) {
                    entry.compile_error = None;
                    entry.compile_failure = None;
                }
                entry.name = rule.name.clone();
                entry.file = rule.path.clone();
                entry.kinds = rule.kinds.clone().unwrap_or_default();
                entry.loaded_at = Some(rule.loaded_at);
            }
        }
        *self.set.write().expect("rule set lock") = Arc::new(RuleSet::new(rules));
        *self.reloaded_at.lock().expect("reload time lock") = Timestamp::now();
    }

    /// When the rule set last changed: loaded at startup, or a file added, changed or
    /// removed since.
    pub fn reloaded_at(&self) -> Timestamp {
        *self.reloaded_at.lock().expect("reload time lock")
    }

    /// The rules directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The slot a dry run of a draft must hold (one at a time).
    pub fn drafts(&self) -> &super::draft::DraftSlot {
        &self.drafts
    }

    /// The rule set in force.
    pub fn current(&self) -> Arc<RuleSet> {
        self.set.read().expect("rule set lock").clone()
    }

    /// The evaluator.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Status of every rule, by name.
    pub fn status(&self) -> Vec<RuleStatus> {
        self.status
            .lock()
            .expect("status lock")
            .values()
            .cloned()
            .collect()
    }

    fn count(&self, evaluations: &[(EventKind, &Evaluation)], set: &RuleSet) {
        let mut status = self.status.lock().expect("status lock");
        for (kind, evaluation) in evaluations {
            for rule in set.for_kind(*kind) {
                if let Some(entry) = status.get_mut(&rule.name) {
                    entry.runs += 1;
                }
            }
            for outcome in &evaluation.rules {
                if let Some(entry) = status.get_mut(&outcome.rule) {
                    if outcome.matched {
                        entry.matches += 1;
                        entry.actions += outcome.actions.len() as u64;
                    }
                    if let Some(error) = &outcome.error {
                        entry.errors += 1;
                        entry.last_error = Some(error.clone());
                    }
                }
            }
        }
    }

    /// Recompiles the files that changed since `seen`; returns whether anything changed.
    fn reload_changed(&self, seen: &mut BTreeMap<PathBuf, FileStamp>) -> bool {
        let files = rule_files(&self.dir);
        let mut stamps = BTreeMap::new();
        for path in &files {
            stamps.insert(path.clone(), FileStamp::of(path));
        }
        if &stamps == seen {
            return false;
        }
        let current = self.current();
        let mut next: Vec<Arc<Rule>> = Vec::new();
        let mut failures = Vec::new();
        for path in &files {
            let unchanged = seen.get(path) == stamps.get(path);
            let previous = current.rules().iter().find(|rule| &rule.path == path);
            match previous {
                Some(rule) if unchanged => next.push(rule.clone()),
                _ => match self.rules.compile_file(path) {
                    Ok(rule) => {
                        tracing::info!(rule = %rule.name, "rule loaded");
                        next.push(Arc::new(rule));
                    }
                    Err(error) => {
                        tracing::error!(%error, "rule does not compile; previous version kept");
                        if let Some(rule) = previous {
                            next.push(rule.clone());
                        }
                        failures.push(error);
                    }
                },
            }
        }
        for rule in current.rules() {
            if !files.contains(&rule.path) {
                tracing::info!(rule = %rule.name, "rule removed");
            }
        }
        self.install(next);
        let mut status = self.status.lock().expect("status lock");
        for error in failures {
            let name = error
                .file
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            let entry = status.entry(name.clone()).or_default();
            entry.name = name;
            entry.file = error.file.clone();
            entry.compile_error = Some(error.to_string());
            entry.compile_failure = Some(error);
        }
        *seen = stamps;
        true
    }
}

/// Modification time and length: what the watchers compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp(Option<SystemTime>, u64);

impl FileStamp {
    /// Returns the stamp of `path` now.
    pub(crate) fn of(path: &Path) -> FileStamp {
        match std::fs::metadata(path) {
            Ok(meta) => FileStamp(meta.modified().ok(), meta.len()),
            Err(_) => FileStamp(None, 0),
        }
    }
}

/// The running evaluator and watcher threads.
pub struct Runner {
    wake: SyncSender<()>,
    stop: Option<mpsc::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Runner {
    /// Starts evaluating pending events of `store` with `state`'s rules, and watching the
    /// rules directory every `reload_interval` (never, if zero).
    pub fn start(
        state: Arc<RulesState>,
        store: Store,
        reload_interval: Duration,
    ) -> std::io::Result<Runner> {
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let (stop, stopped) = mpsc::channel::<()>();
        let mut threads = Vec::new();
        let evaluator_state = state.clone();
        threads.push(
            std::thread::Builder::new()
                .name("mailwarden-rules".into())
                .spawn(move || evaluate_loop(&evaluator_state, &store, &woken))?,
        );
        if !reload_interval.is_zero() {
            threads.push(
                std::thread::Builder::new()
                    .name("mailwarden-rules-watch".into())
                    .spawn(move || {
                        let mut seen = BTreeMap::new();
                        for path in rule_files(&state.dir) {
                            seen.insert(path.clone(), FileStamp::of(&path));
                        }
                        loop {
                            match stopped.recv_timeout(reload_interval) {
                                Err(RecvTimeoutError::Timeout) => {
                                    state.reload_changed(&mut seen);
                                }
                                _ => return,
                            }
                        }
                    })?,
            );
        }
        Ok(Runner {
            wake,
            stop: Some(stop),
            threads,
        })
    }

    /// A handle that wakes the evaluator (after new events are stored).
    pub fn waker(&self) -> Waker {
        Waker(self.wake.clone())
    }

    /// Stops both threads after the batch in progress.
    pub fn stop(mut self) {
        self.stop.take();
        // Closing the wake channel ends the evaluator loop.
        let Runner { wake, threads, .. } = self;
        drop(wake);
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("rules thread panicked");
            }
        }
    }
}

/// Wakes the evaluator; cheap to clone.
#[derive(Clone)]
pub struct Waker(SyncSender<()>);

impl Waker {
    /// Tells the evaluator there is work (never blocks).
    pub fn wake(&self) {
        let _ = self.0.try_send(());
    }
}

fn evaluate_loop(state: &RulesState, store: &Store, woken: &mpsc::Receiver<()>) {
    loop {
        match evaluate_batch(state, store) {
            Ok(0) => match woken.recv_timeout(IDLE_WAIT) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            },
            Ok(_) => {
                // Stop promptly when asked, even with a backlog.
                if let Err(mpsc::TryRecvError::Disconnected) = woken.try_recv() {
                    return;
                }
            }
            Err(error) => {
                tracing::error!(%error, "rules evaluation failed; retrying");
                if let Err(RecvTimeoutError::Disconnected) = woken.recv_timeout(IDLE_WAIT) {
                    return;
                }
            }
        }
    }
}

/// Evaluates up to one batch of pending events; returns how many.
pub fn evaluate_batch(
    state: &RulesState,
    store: &Store,
) -> Result<usize, crate::store::StoreError> {
    // Index first (cheap), evaluate second (Rhai): under load the index keeps up even
    // when evaluation falls behind.
    store.index_pending(INDEX_AHEAD)?;
    let blocks = store.pending_blocks(BATCH)?;
    if blocks.is_empty() {
        metrics::gauge!(names::PENDING_EVENTS).set(0.0);
        return Ok(0);
    }
    let set = state.current();
    let mut items = Vec::with_capacity(blocks.len());
    let mut evaluations = Vec::new();
    let mut count = 0;
    for block in &blocks {
        // Indexed before evaluation, so history functions see the block's earlier events
        // (normally done by `index_pending` above already).
        while block.block > store.indexed_through() {
            if store.index_pending(INDEX_AHEAD)? == 0 {
                break;
            }
        }
        let mut item = EvaluatedBlock {
            block: block.block,
            records: Vec::new(),
            actions: Vec::new(),
        };
        let now = Timestamp::now();
        for event in &block.events {
            count += 1;
            let id = event.id.expect("stored events have ids");
            let evaluation = state.rules.evaluate(&set, event, Some(store), None);
            for outcome in &evaluation.rules {
                for action in &outcome.actions {
                    metrics::counter!(names::ACTIONS_QUEUED, "type" => action.kind()).increment(1);
                    let queued = QueuedAction::new(Some(id), &outcome.rule, action.clone(), now);
                    item.actions
                        .push(serde_json::to_vec(&queued).expect("action serializes"));
                }
            }
            // Only what matched or failed is recorded; an event no rule acted on needs
            // no record (one write less per event).
            if !evaluation.rules.is_empty() {
                item.records.push((
                    id,
                    serde_json::to_vec(&evaluation).expect("evaluation serializes"),
                ));
            }
            evaluations.push((event.kind, evaluation));
        }
        items.push(item);
    }
    store.record_evaluations(&items)?;
    let counted: Vec<(EventKind, &Evaluation)> =
        evaluations.iter().map(|(kind, e)| (*kind, e)).collect();
    state.count(&counted, &set);
    metrics::counter!(names::EVENTS_EVALUATED).increment(count as u64);
    Ok(blocks.len().max(count))
}
