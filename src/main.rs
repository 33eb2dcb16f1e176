//! The `mailwarden` command: parses arguments and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mailwarden::config::Config;
use mailwarden::ingest::{IngestError, Ingestor};
use mailwarden::{Application, app, telemetry};

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
    /// Run the service.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
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
    telemetry::init_tracing();
    match run(Cli::parse()).await {
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
        Command::Serve { listen, rules } => {
            if let Some(listen) = listen {
                config.listen = listen;
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
    }
}

async fn ingest_files(config: Config, source: &str, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    config.validate()?;
    let store = app::open_store(&config)?;
    let ingestor = Ingestor::new(store.clone(), &config)?;
    let source = ingestor.source(source).with_context(|| {
        format!(
            "no source named `{source}` (configured: {})",
            config
                .effective_sources()
                .into_keys()
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
        #[allow(clippy::print_stdout, reason = "the report is the command's output")]
        {
            println!("{line}");
        }
    }
    store.flush().await?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
