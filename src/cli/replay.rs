//! `mailwarden replay`: re-runs rules over stored events, with the service stopped.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use mailwarden::app;
use mailwarden::config::Config;
use mailwarden::rules::replay;

use super::say;

/// Arguments of `mailwarden replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// Start of the range (RFC 3339), by time of receipt.
    #[arg(long)]
    since: jiff::Timestamp,
    /// End of the range (RFC 3339), default now.
    #[arg(long)]
    until: Option<jiff::Timestamp>,
    /// Only this rule.
    #[arg(long)]
    rule: Option<String>,
    /// Print the actions instead of queueing them.
    #[arg(long)]
    dry_run: bool,
    /// Rules directory (default ./rules).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
}

/// Replays the range and prints the report as JSON.
pub async fn run(args: ReplayArgs, mut config: Config) -> anyhow::Result<ExitCode> {
    if let Some(rules) = args.rules {
        config.rules_dir = rules;
    }
    let state = app::load_rules(&config)?;
    let set = state.current();
    if let Some(name) = &args.rule {
        anyhow::ensure!(
            set.get(name).is_some(),
            "no rule named `{name}` in {}",
            config.rules_dir.display()
        );
    }
    let store = app::open_store(&config)?;
    let until = args.until.unwrap_or_else(jiff::Timestamp::now);
    let (since, rule, dry_run) = (args.since, args.rule, args.dry_run);
    let report = tokio::task::spawn_blocking(move || {
        replay::replay(
            state.rules(),
            &set,
            &store,
            since,
            until,
            rule.as_deref(),
            dry_run,
        )
    })
    .await??;
    say(&serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
