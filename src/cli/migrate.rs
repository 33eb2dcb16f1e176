//! `mailwarden migrate [--check]`: brings the PostgreSQL store's schema to this build's
//! version, or says what that would run.
//!
//! `serve` migrates at start too; this command is for doing it ahead of a rolling
//! upgrade, or seeing first what it would do.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use mailwarden::config::Config;
use mailwarden::store::postgres::{PgStore, migrations};

use super::say;

/// Arguments of `mailwarden migrate`.
#[derive(Args)]
pub struct MigrateArgs {
    /// Only say which schema steps would run; change nothing.
    #[arg(long)]
    check: bool,
}

/// Migrates (or reports) the store named by `[storage] url`.
pub async fn run(args: MigrateArgs, config: Config) -> anyhow::Result<ExitCode> {
    config.validate()?;
    let options = config.postgres().context(
        "mailwarden migrate works on a PostgreSQL store: set [storage] backend = \"postgres\" \
         and url (or MAILWARDEN_STORAGE_BACKEND and MAILWARDEN_STORAGE_URL); the embedded \
         store migrates itself when it opens",
    )?;
    if args.check {
        let store = PgStore::connect(&options).await?;
        let status = store.migration_status().await?;
        say(&format!(
            "{}: schema at version {}, this mailwarden's is {}",
            store.target(),
            status.current,
            migrations::latest_version()
        ));
        if status.pending.is_empty() {
            say("nothing to apply");
        }
        for step in &status.pending {
            say(&format!("would apply {}: {}", step.version, step.name));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = PgStore::connect(&options).await?;
    let applied = store.migrate().await?;
    if applied.is_empty() {
        let current = store.migration_status().await?.current;
        say(&format!(
            "{}: schema already at version {current}",
            store.target()
        ));
    }
    for step in &applied {
        say(&format!("applied {}: {}", step.version, step.name));
    }
    Ok(ExitCode::SUCCESS)
}
