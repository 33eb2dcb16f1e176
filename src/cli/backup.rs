//! `mailwarden backup --server URL --to FILE`: a consistent copy of a running service.
//!
//! The stream from `GET /api/backup` goes to `FILE.partial`, is checked end to end (its
//! digest and its frames) and only then renamed to `FILE`: a backup cut off by a dropped
//! connection or a full disk never takes the place of a good one.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use reqwest::Method;

use mailwarden::store::backup;

use super::api::{Api, ServerArgs};
use super::{progress, say, sibling};

/// Arguments of `mailwarden backup`.
#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// File to write the backup to (replaced only once the new one is complete).
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
}

/// Downloads, checks and keeps one backup.
pub async fn run(args: BackupArgs, configured_token: Option<&str>) -> anyhow::Result<ExitCode> {
    let api = Api::new(args.server, configured_token)?;
    let partial = sibling(&args.to, "partial");
    let result = download(&api, &partial).await;
    let summary = result.and_then(|()| {
        let file = File::open(&partial)?;
        let length = file.metadata()?.len();
        let bar = progress::bar(length, "checking");
        let checked = backup::verify(file, &|read| bar.set_position(read));
        bar.finish_and_clear();
        Ok(checked?)
    });
    let (header, summary) = match summary {
        Ok(checked) => checked,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error.context("no backup was written"));
        }
    };
    std::fs::rename(&partial, &args.to)
        .with_context(|| format!("cannot move the backup to {}", args.to.display()))?;
    say(&format!(
        "backup of {} taken at {}: {} entries, {} bytes, written to {}",
        api.base(),
        header.created_at,
        summary.entries,
        summary.bytes,
        args.to.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Streams the server's backup into `path` and syncs it to disk.
async fn download(api: &Api, path: &std::path::Path) -> anyhow::Result<()> {
    let mut response = api
        .send(api.request(Method::GET, &["backup"], &[])?)
        .await?;
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let bar = progress::bytes("downloading");
    while let Some(chunk) = response
        .chunk()
        .await
        .context("the connection broke during the backup")?
    {
        out.write_all(&chunk)
            .with_context(|| format!("cannot write {}", path.display()))?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let file = out.into_inner().map_err(|error| error.into_error())?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
