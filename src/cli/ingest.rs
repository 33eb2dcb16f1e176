//! `mailwarden ingest`: imports exported webhook bodies through the same path as HTTP.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use mailwarden::app;
use mailwarden::config::Config;
use mailwarden::ingest::{IngestError, Ingestor};

use super::say;

/// Arguments of `mailwarden ingest`.
#[derive(Args)]
pub struct IngestArgs {
    /// Source the files are from (as in /webhooks/{source}).
    #[arg(long)]
    source: String,
    /// Files holding one webhook body each (a JSON object or array).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Ingests each file and prints one JSON report line per file.
pub async fn run(args: IngestArgs, config: Config) -> anyhow::Result<ExitCode> {
    let (source, files) = (args.source.as_str(), &args.files);
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
