//! `mailwarden check`: compiles every rule and user-defined provider, builds every source
//! as `serve` would, and warns about rules that look further back than events are kept.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use mailwarden::config::Config;
use mailwarden::ingest::providers::script::ScriptProviders;
use mailwarden::ingest::sources::{SourceContext, Sources};
use mailwarden::rules::{Rule, Rules, testing, windows};

use super::{exit, say};

/// Arguments of `mailwarden check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Rules directory (default ./rules).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// User-defined providers directory (default ./providers).
    #[arg(long, value_name = "DIR")]
    providers: Option<PathBuf>,
}

/// Prints `ok`, `warn` or `error` per rule, provider and source; fails on any error.
pub fn run(args: CheckArgs, mut config: Config) -> anyhow::Result<ExitCode> {
    if let Some(providers) = args.providers {
        config.providers_dir = providers;
    }
    let dir = args.rules.unwrap_or(config.rules_dir.clone());
    let engine = Rules::new(testing::limits(&config), &config.rules.vars);
    let (compiled, errors) = engine.load_dir(&dir);
    for rule in &compiled {
        let kinds = rule.kinds.as_ref().map_or_else(
            || "every kind".to_owned(),
            |kinds| {
                kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
        say(&format!("ok    {} (on: {kinds})", rule.name));
        warn_about_windows(rule, config.storage.retain_days);
    }
    for error in &errors {
        say(&format!("error {error}"));
    }
    say(&format!(
        "{} rules compiled, {} failed",
        compiled.len(),
        errors.len()
    ));
    let sources_ok = check_sources(&config);
    Ok(exit(errors.is_empty() && sources_ok))
}

/// Warns about each `count_events` or `stats` window of `rule` longer than the events'
/// retention: what lies beyond it has been purged, so the rule would undercount.
fn warn_about_windows(rule: &Rule, retain_days: f64) {
    let Ok(source) = std::fs::read_to_string(&rule.path) else {
        return;
    };
    let retained = retain_days * 86_400.0;
    for window in windows::history_windows(&source) {
        let Some(seconds) = window.seconds.filter(|&s| s as f64 > retained) else {
            continue;
        };
        say(&format!(
            "warn  {}:{}: the {} window `{}` ({} days) is longer than storage.retain_days \
             ({retain_days}): older events are purged, so it sees at most {retain_days} days",
            rule.path.display(),
            window.line,
            window.function,
            window.text,
            seconds as f64 / 86_400.0,
        ));
    }
}

/// Compiles the user-defined providers and builds every source as `serve` would, saying
/// what each verifies with; returns whether all are fine.
fn check_sources(config: &Config) -> bool {
    let scripts = match ScriptProviders::load(config) {
        Ok(scripts) => scripts,
        Err(error) => {
            say(&format!("error {error:#}"));
            return false;
        }
    };
    for name in scripts.names() {
        say(&format!("ok    provider {name}"));
    }
    match Sources::build(config, &scripts, SourceContext::default(), None) {
        Ok(sources) => {
            for source in sources.all() {
                let checks = source.methods();
                let verification = if checks.is_empty() {
                    "no verification (loopback only)".to_owned()
                } else {
                    format!("verified by {}", checks.join(" + "))
                };
                say(&format!(
                    "ok    source {} ({}, {verification})",
                    source.name,
                    source.provider.name()
                ));
            }
            true
        }
        Err(error) => {
            say(&format!("error {error:#}"));
            false
        }
    }
}
