//! `mailwarden migrate-store --from DIR --to URL`: copies an embedded store into
//! PostgreSQL (see `store::postgres::copy`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use mailwarden::app;
use mailwarden::config::{Backend, Config, Secret};
use mailwarden::store::Store;
use mailwarden::store::postgres::PgStore;
use mailwarden::store::postgres::copy::PARTS;

use super::{exit, progress, say};

/// Arguments of `mailwarden migrate-store`.
#[derive(Args)]
pub struct MigrateStoreArgs {
    /// Data directory of the embedded store to copy (default: --data, or ./data).
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// PostgreSQL URL to copy into (default: [storage] url or MAILWARDEN_STORAGE_URL).
    #[arg(long, value_name = "URL")]
    to: Option<String>,
}

/// Copies the store and prints, per part, the records in each store; fails when they
/// differ.
pub async fn run(args: MigrateStoreArgs, mut config: Config) -> anyhow::Result<ExitCode> {
    if let Some(from) = args.from {
        config.data_dir = from;
    }
    if let Some(to) = args.to {
        config.storage.url = Some(Secret::new(to));
    }
    config.storage.backend = Backend::Postgres;
    config.validate()?;
    let options = config
        .postgres()
        .context("give the PostgreSQL store with --to postgres://... or [storage] url")?;
    let path = app::store_path(&config);
    if !path.exists() {
        anyhow::bail!("{} holds no embedded store", config.data_dir.display());
    }
    let store = Store::open(&path, &app::store_options(&config))
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    let target = PgStore::connect(&options).await?;

    let trees_total = store.copy_sizes()?;
    let total: u64 = trees_total.iter().sum();
    let bar = progress::records(total, "copying");
    let offsets: Vec<u64> = trees_total
        .iter()
        .scan(0, |done, size| {
            let start = *done;
            *done += size;
            Some(start)
        })
        .collect();
    let report = |part: &'static str, copied: u64| {
        let index = PARTS.iter().position(|p| *p == part).unwrap_or(0);
        bar.set_position(offsets[index] + copied);
    };
    let counts = target.copy_from(&store, &report).await;
    bar.finish_and_clear();
    let counts = counts.with_context(|| format!("copying into {} stopped", target.target()))?;

    say(&format!(
        "copied {} into {}",
        config.data_dir.display(),
        target.target()
    ));
    let mut same = true;
    for count in &counts {
        let verdict = if count.embedded == count.postgres {
            "same"
        } else {
            same = false;
            "DIFFERENT"
        };
        say(&format!(
            "{:<13} embedded {:>10}  postgres {:>10}  {verdict}",
            count.part, count.embedded, count.postgres
        ));
    }
    say("not copied (no PostgreSQL tables for them yet): outbox, alerts, rule evaluations, stats");
    if !same {
        say("the counts differ: was the service running on either store during the copy?");
    }
    Ok(exit(same))
}
