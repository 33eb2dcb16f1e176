//! The `mailwarden` command line: one module per subcommand, each with its arguments and
//! what it runs. `main.rs` only parses and dispatches here.

mod api;
mod backup;
mod check;
mod eval;
mod ingest;
mod migrate;
mod migrate_store;
mod replay;
mod restore;
mod serve;
mod suppressions;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use mailwarden::config::Config;

/// Self-hosted engine for e-mail delivery events.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
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
    Serve(serve::ServeArgs),
    /// Compile every rule and user-defined provider, check every source's settings, and
    /// report errors with file:line:column.
    Check(check::CheckArgs),
    /// Run the rule test cases in <rules>/tests/<rule>.toml and the user-defined provider
    /// cases in <providers>/tests/<provider>.toml.
    Test(test::TestArgs),
    /// Show what one rule would do with the events of one provider body.
    Eval(eval::EvalArgs),
    /// Re-run rules over stored events. The service must not be running on the same data
    /// directory (use POST /api/replay then).
    Replay(replay::ReplayArgs),
    /// Import exported webhook bodies through the same path as HTTP. The service must not
    /// be running on the same data directory.
    Ingest(ingest::IngestArgs),
    /// Manage the suppression list of a running service over its HTTP API.
    Suppressions(suppressions::SuppressionsArgs),
    /// Take a backup of a running service (GET /api/backup) into a file.
    Backup(backup::BackupArgs),
    /// Build a new data directory from a backup file.
    Restore(restore::RestoreArgs),
    /// Bring the PostgreSQL store's schema to this version (`--check`: only say what
    /// would run). `serve` does it at start too.
    Migrate(migrate::MigrateArgs),
    /// Copy an embedded store (events, suppressions with their history, bodies,
    /// quarantine) into PostgreSQL; resumes an interrupted copy, and checks the counts at
    /// the end. The service must not be running on the data directory.
    MigrateStore(migrate_store::MigrateStoreArgs),
}

impl Cli {
    /// Whether this invocation runs the service (which logs at `info`; the other commands
    /// print results and keep the log to warnings).
    pub fn serves(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }

    /// Runs the command.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(data) = self.data {
            config.data_dir = data;
        }
        let token = config.admin_token.as_ref().map(|t| t.expose().to_owned());
        match self.command {
            Command::Serve(args) => serve::run(args, config).await,
            Command::Check(args) => check::run(args, config),
            Command::Test(args) => test::run(args, config).await,
            Command::Eval(args) => eval::run(args, &config).await,
            Command::Replay(args) => replay::run(args, config).await,
            Command::Ingest(args) => ingest::run(args, config).await,
            Command::Suppressions(args) => suppressions::run(args, token.as_deref()).await,
            Command::Backup(args) => backup::run(args, token.as_deref()).await,
            Command::Restore(args) => restore::run(args, &config),
            Command::Migrate(args) => migrate::run(args, config).await,
            Command::MigrateStore(args) => migrate_store::run(args, config).await,
        }
    }
}

/// Exit status of a command that checks something.
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

/// `path` with `.suffix` added to its file name.
fn sibling(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Progress of long commands on the terminal; nothing is drawn when standard error is not
/// a terminal (a pipe, a log file, cron).
mod progress {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

    /// A bar over `length` bytes.
    pub fn bar(length: u64, message: &'static str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>12} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(message);
        bar
    }

    /// A bar over `length` records.
    pub fn records(length: u64, message: &'static str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>12} [{bar:30}] {human_pos}/{human_len} ({per_sec}, {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(message);
        bar
    }

    /// A counter of bytes of unknown total.
    pub fn bytes(message: &'static str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} {binary_bytes} ({binary_bytes_per_sec})")
                .expect("valid template"),
        );
        bar.set_message(message);
        bar
    }
}
