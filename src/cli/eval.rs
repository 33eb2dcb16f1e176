//! `mailwarden eval`: what one rule would do with the events of one provider body.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use mailwarden::config::Config;
use mailwarden::rules::{Rules, testing};

use super::say;

/// Arguments of `mailwarden eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The rule file.
    #[arg(long, value_name = "FILE")]
    rule: PathBuf,
    /// A provider webhook body (for example a fixture).
    #[arg(long, value_name = "FILE")]
    event: PathBuf,
    /// Provider of the body (guessed from its shape when left out).
    #[arg(long)]
    source: Option<String>,
}

/// Prints, per event of the body, whether the rule ran and what it asked for.
pub async fn run(args: EvalArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let EvalArgs {
        rule,
        event,
        source,
    } = args;
    let (rule, event) = (rule.as_path(), event.as_path());
    let body = std::fs::read(event).with_context(|| format!("cannot read {}", event.display()))?;
    let source = match source {
        Some(source) => source,
        None => testing::guess_source(&body)
            .context("cannot tell the provider of this body; pass --source")?
            .to_owned(),
    };
    let engine = Rules::new(testing::limits(config), &config.rules.vars);
    let compiled = engine.compile_file(rule)?;
    let trial = testing::trial(
        config,
        rule,
        &source,
        &[],
        body,
        &serde_json::Map::new(),
        &[],
    )
    .await?;
    for (event, evaluation) in trial.events.iter().zip(&trial.evaluations) {
        say(&format!(
            "event: {} {} ({})",
            event.kind.as_str(),
            event.recipient.as_str(),
            event.provider_event
        ));
        if evaluation.ran == 0 {
            let kinds = compiled
                .kinds
                .as_ref()
                .map(|kinds| {
                    kinds
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            say(&format!(
                "  not run: the rule is limited to `// on: {kinds}` and this event is `{}`",
                event.kind.as_str()
            ));
            continue;
        }
        let outcomes: Vec<_> = evaluation.rules.iter().collect();
        if outcomes.is_empty() {
            say("  ran and asked for nothing: its conditions were false for this event");
        }
        for outcome in outcomes {
            if let Some(error) = &outcome.error {
                say(&format!("  error: {error}"));
            }
            for action in &outcome.actions {
                say(&format!("  action: {}", serde_json::to_string(action)?));
            }
            for tag in &outcome.tags {
                say(&format!("  tag: {tag}"));
            }
        }
    }
    if trial.events.is_empty() {
        say("the body produced no events");
    }
    Ok(ExitCode::SUCCESS)
}
