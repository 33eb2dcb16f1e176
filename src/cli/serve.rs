//! `mailwarden serve`: runs the service until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use mailwarden::config::Config;
use mailwarden::{Application, app};

/// Arguments of `mailwarden serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Rules directory (default ./rules).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// User-defined providers directory (default ./providers).
    #[arg(long, value_name = "DIR")]
    providers: Option<PathBuf>,
}

/// Runs the service.
pub async fn run(args: ServeArgs, mut config: Config) -> anyhow::Result<ExitCode> {
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(providers) = args.providers {
        config.providers_dir = providers;
    }
    if let Some(rules) = args.rules {
        config.rules_dir = rules;
    }
    let application = Application::build(config).await?;
    application
        .run_until_stopped(app::shutdown_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}
