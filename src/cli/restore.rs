//! `mailwarden restore --from FILE --data DIR`: a new data directory from a backup.
//!
//! The store is built next to its final place and moved there only once the whole file
//! has been read and its digest checked; an existing store is never overwritten.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use mailwarden::app;
use mailwarden::config::Config;
use mailwarden::store::backup;

use super::{progress, say};

/// Arguments of `mailwarden restore` (the target is `--data`, default ./data).
#[derive(Args)]
pub struct RestoreArgs {
    /// Backup file written by `mailwarden backup`.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
}

/// Restores the backup into the data directory.
pub fn run(args: RestoreArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let file =
        File::open(&args.from).with_context(|| format!("cannot open {}", args.from.display()))?;
    let length = file.metadata()?.len();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let bar = progress::bar(length, "restoring");
    let restored = backup::restore(
        file,
        &app::store_path(config),
        &app::store_options(config),
        &|read| bar.set_position(read),
    );
    bar.finish_and_clear();
    let summary = restored.with_context(|| {
        format!(
            "cannot restore {} into {}",
            args.from.display(),
            config.data_dir.display()
        )
    })?;
    say(&format!(
        "restored the backup taken at {} into {}: {} events ({} waiting for the rules), {} \
         suppression entries, {} actions in the outbox",
        summary.created_at,
        config.data_dir.display(),
        summary.events,
        summary.pending_events,
        summary.suppressions,
        summary.outbox
    ));
    Ok(ExitCode::SUCCESS)
}
