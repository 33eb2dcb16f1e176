//! The `mailwarden` command: parses arguments and hands over to [`cli`].

use std::process::ExitCode;

use clap::Parser as _;

use mailwarden::telemetry;

mod cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    telemetry::init_tracing(if cli.serves() { "info" } else { "warn" });
    match cli.run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
