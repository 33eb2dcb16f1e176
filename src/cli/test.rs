//! `mailwarden test`: runs the rules' and the user-defined providers' test cases.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use mailwarden::config::Config;
use mailwarden::ingest::providers::script_cases;
use mailwarden::rules::testing;

use super::{exit, say};

/// Arguments of `mailwarden test`.
#[derive(Args)]
pub struct TestArgs {
    /// Rules directory (default ./rules).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// User-defined providers directory (default ./providers).
    #[arg(long, value_name = "DIR")]
    providers: Option<PathBuf>,
}

/// Runs every case and prints PASS or FAIL for each; fails if any failed or none ran.
pub async fn run(args: TestArgs, mut config: Config) -> anyhow::Result<ExitCode> {
    if let Some(providers) = args.providers {
        config.providers_dir = providers;
    }
    let dir = args.rules.unwrap_or(config.rules_dir.clone());
    let mut results: Vec<(String, String, Option<String>)> = testing::run_all(&config, &dir)
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
