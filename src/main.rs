//! The `mailwarden` command: parses arguments and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::Path;

use mailwarden::config::Config;
use mailwarden::ingest::providers::script::ScriptProviders;
use mailwarden::ingest::providers::script_cases;
use mailwarden::ingest::sources::{SourceContext, Sources};
use mailwarden::ingest::{IngestError, Ingestor};
use mailwarden::rules::{Rules, replay, testing};
use mailwarden::{Application, app, telemetry};

mod cli_suppressions;

/// Self-hosted engine for e-mail delivery events.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Settings file (TOML); also read from MAILWARDEN_CONFIG. Optional.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (default ./data).
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the suppression list of a running service over its HTTP API.
    Suppressions(cli_suppressions::SuppressionsArgs),
    /// Run the service.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Rules directory (default ./rules).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// User-defined providers directory (default ./providers).
        #[arg(long, value_name = "DIR")]
        providers: Option<PathBuf>,
    },
    /// Compile every rule and user-defined provider, check every source's settings, and
    /// report errors with file:line:column.
    Check {
        /// Rules directory (default ./rules).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// User-defined providers directory (default ./providers).
        #[arg(long, value_name = "DIR")]
        providers: Option<PathBuf>,
    },
    /// Run the rule test cases in <rules>/tests/<rule>.toml and the user-defined provider
    /// cases in <providers>/tests/<provider>.toml.
    Test {
        /// Rules directory (default ./rules).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// User-defined providers directory (default ./providers).
        #[arg(long, value_name = "DIR")]
        providers: Option<PathBuf>,
    },
    /// Show what one rule would do with the events of one provider body.
    Eval {
        /// The rule file.
        #[arg(long, value_name = "FILE")]
        rule: PathBuf,
        /// A provider webhook body (for example a fixture).
        #[arg(long, value_name = "FILE")]
        event: PathBuf,
        /// Provider of the body (guessed from its shape when left out).
        #[arg(long)]
        source: Option<String>,
    },
    /// Re-run rules over stored events. The service must not be running on the same data
    /// directory (use POST /api/replay then).
    Replay {
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
    },
    /// Import exported webhook bodies through the same path as HTTP. The service must not
    /// be running on the same data directory.
    Ingest {
        /// Source the files are from (as in /webhooks/{source}).
        #[arg(long)]
        source: String,
        /// Files holding one webhook body each (a JSON object or array).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands other than `serve` print results; keep the log to warnings there.
    let level = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    telemetry::init_tracing(level);
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(data) = cli.data {
        config.data_dir = data;
    }
    match cli.command {
        Command::Serve {
            listen,
            rules,
            providers,
        } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(providers) = providers {
                config.providers_dir = providers;
            }
            if let Some(rules) = rules {
                config.rules_dir = rules;
            }
            let application = Application::build(config).await?;
            application
                .run_until_stopped(app::shutdown_signal())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest { source, files } => ingest_files(config, &source, &files).await,
        Command::Suppressions(args) => {
            cli_suppressions::run(args, config.admin_token.as_ref().map(|t| t.expose())).await
        }
        Command::Check { rules, providers } => {
            if let Some(providers) = providers {
                config.providers_dir = providers;
            }
            let dir = rules.unwrap_or(config.rules_dir.clone());
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
        Command::Test { rules, providers } => {
            if let Some(providers) = providers {
                config.providers_dir = providers;
            }
            let dir = rules.unwrap_or(config.rules_dir.clone());
            let mut results: Vec<(String, String, Option<String>)> =
                testing::run_all(&config, &dir)
                    .await?
                    .into_iter()
                    .map(|r| (r.rule, r.case, r.failure))
                    .collect();
            results.extend(
                script_cases::run_all(&config)?
                    .into_iter()
                    .map(|r| (format!("provider {}", r.provider), r.case, r.failure)),
            );
            let failed = results.iter().filter(|r| r.2.is_some()).count();
            for (subject, case, failure) in &results {
                match failure {
                    None => say(&format!("PASS  {subject}: {case}")),
                    Some(why) => say(&format!("FAIL  {subject}: {case}\n      {why}")),
                }
            }
            say(&format!(
                "{} cases, {} passed, {failed} failed",
                results.len(),
                results.len() - failed
            ));
            Ok(exit(failed == 0 && !results.is_empty()))
        }
        Command::Eval {
            rule,
            event,
            source,
        } => eval(&config, &rule, &event, source).await,
        Command::Replay {
            since,
            until,
            rule,
            dry_run,
            rules,
        } => {
            if let Some(rules) = rules {
                config.rules_dir = rules;
            }
            let state = app::load_rules(&config)?;
            let set = state.current();
            if let Some(name) = &rule {
                anyhow::ensure!(
                    set.get(name).is_some(),
                    "no rule named `{name}` in {}",
                    config.rules_dir.display()
                );
            }
            let store = app::open_store(&config)?;
            let until = until.unwrap_or_else(jiff::Timestamp::now);
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

fn exit(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes one line of command output.
#[allow(clippy::print_stdout, reason = "command output")]
fn say(line: &str) {
    println!("{line}");
}

async fn eval(
    config: &Config,
    rule: &Path,
    event: &Path,
    source: Option<String>,
) -> anyhow::Result<ExitCode> {
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

async fn ingest_files(config: Config, source: &str, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    config.validate()?;
    let store = app::open_store(&config)?;
    let ingestor = Ingestor::from_config(store.clone(), &config)?;
    let source = ingestor.source(source).with_context(|| {
        format!(
            "no source named `{source}` (configured: {})",
            ingestor
                .sources()
                .all()
                .iter()
                .map(|source| source.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let mut failed = false;
    for file in files {
        let body =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let line = match ingestor.ingest(source.clone(), body.into()).await {
            Ok(report) => {
                failed |= !report.errors.is_empty();
                serde_json::json!({ "file": file, "report": report })
            }
            Err(IngestError::Body {
                error,
                quarantine_id,
            }) => {
                failed = true;
                serde_json::json!({
                    "file": file,
                    "error": { "code": error.code(), "message": error.to_string() },
                    "quarantine_id": quarantine_id,
                })
            }
            Err(IngestError::Store(error)) => return Err(error.into()),
        };
        say(&line.to_string());
    }
    store.flush().await?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
