//! `mailwarden suppressions ...`: the suppression list of a running service, through its
//! HTTP API (`/api/suppressions`); see [`super::api`] for how the server and token are
//! found.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::api::{Api, ServerArgs, text};
use super::say;

/// Most addresses the server checks per request.
const CHECK_BATCH: usize = 10_000;
/// Page size used by `list`.
const PAGE: usize = 1_000;

/// Arguments of `mailwarden suppressions`.
#[derive(Args)]
pub struct SuppressionsArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: SuppressionsCommand,
}

#[derive(Subcommand)]
enum SuppressionsCommand {
    /// List the addresses in force, in address order (tab-separated: address, reason,
    /// source, created_at, expires_at).
    List {
        /// Only entries whose reason contains this (case-insensitive).
        #[arg(long)]
        reason: Option<String>,
        /// Only entries from this source.
        #[arg(long)]
        source: Option<String>,
        /// Only entries created at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only addresses containing this (case-insensitive).
        #[arg(long, short)]
        query: Option<String>,
        /// Stop after this many entries (default: all).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Tell whether addresses are suppressed now. Exits non-zero if any is invalid.
    Check {
        /// Addresses to check.
        #[arg(required = true, value_name = "ADDR")]
        addresses: Vec<String>,
    },
    /// Suppress an address by hand (permanently unless --ttl-days is given).
    Add {
        /// The address.
        #[arg(value_name = "ADDR")]
        address: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Lift the suppression after this many days.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=36_500))]
        ttl_days: Option<u64>,
    },
    /// Lift the suppression of an address. Exits non-zero if it was not suppressed.
    Remove {
        /// The address.
        #[arg(value_name = "ADDR")]
        address: String,
        /// Why (kept in the entry's history).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Import a CSV export (with its header), JSON lines, or one address per line (`-` reads
    /// standard input). Exits non-zero if any line was rejected.
    Import {
        /// The file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Write every address in force to standard output.
    Export {
        /// csv (address,reason,source,created_at,expires_at) or jsonl.
        #[arg(long, default_value = "csv", value_parser = ["csv", "jsonl"])]
        format: String,
    },
}

/// Runs `mailwarden suppressions ...`. `configured_token` is the admin token of the settings,
/// used when neither `--token` nor `MAILWARDEN_ADMIN_TOKEN` gives one.
pub async fn run(
    args: SuppressionsArgs,
    configured_token: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(args.server, configured_token)?;
    match args.command {
        SuppressionsCommand::List {
            reason,
            source,
            since,
            query,
            limit,
        } => list(&api, reason, source, since, query, limit).await,
        SuppressionsCommand::Check { addresses } => check(&api, &addresses).await,
        SuppressionsCommand::Add {
            address,
            reason,
            ttl_days,
        } => {
            let mut body = json!({ "reason": reason });
            if let Some(days) = ttl_days {
                body["ttl_seconds"] = json!(days * 86_400);
            }
            let answer = api
                .send_json(
                    api.request(Method::PUT, &["suppressions", &address], &[])?
                        .json(&body),
                )
                .await?;
            say(&format!(
                "{}\t{}\t{}",
                text(&answer["outcome"]),
                text(&answer["address"]),
                expiry(&answer["expires_at"])
            ));
            Ok(ExitCode::SUCCESS)
        }
        SuppressionsCommand::Remove { address, reason } => {
            let mut body = json!({});
            if let Some(reason) = reason {
                body["reason"] = json!(reason);
            }
            let answer = api
                .send_json(
                    api.request(Method::DELETE, &["suppressions", &address], &[])?
                        .json(&body),
                )
                .await?;
            say(&format!("removed\t{}", text(&answer["address"])));
            Ok(ExitCode::SUCCESS)
        }
        SuppressionsCommand::Import { file } => import(&api, &file).await,
        SuppressionsCommand::Export { format } => {
            let answer = api
                .send(api.request(
                    Method::GET,
                    &["suppressions", "export"],
                    &[("format", &format)],
                )?)
                .await?;
            let bytes = answer.bytes().await.context("the export was cut short")?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn list(
    api: &Api,
    reason: Option<String>,
    source: Option<String>,
    since: Option<String>,
    query: Option<String>,
    limit: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let mut cursor: Option<String> = None;
    let mut shown = 0usize;
    loop {
        let page = limit
            .map_or(PAGE, |limit| (limit - shown).clamp(1, PAGE))
            .to_string();
        let mut params: Vec<(&str, &str)> = vec![("limit", &page)];
        for (name, value) in [
            ("reason", &reason),
            ("source", &source),
            ("since", &since),
            ("q", &query),
            ("cursor", &cursor),
        ] {
            if let Some(value) = value {
                params.push((name, value));
            }
        }
        let answer: Value = api
            .send_json(api.request(Method::GET, &["suppressions"], &params)?)
            .await?;
        for entry in answer["suppressions"].as_array().into_iter().flatten() {
            say(&format!(
                "{}\t{}\t{}\t{}\t{}",
                text(&entry["address"]),
                text(&entry["reason"]),
                entry["source"].as_str().unwrap_or("-"),
                text(&entry["created_at"]),
                expiry(&entry["expires_at"])
            ));
            shown += 1;
        }
        cursor = answer["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() || limit.is_some_and(|limit| shown >= limit) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(api: &Api, addresses: &[String]) -> anyhow::Result<ExitCode> {
    let mut invalid = 0usize;
    let mut suppressed = 0usize;
    for batch in addresses.chunks(CHECK_BATCH) {
        let answer: Value = api
            .send_json(
                api.request(Method::POST, &["suppressions", "check"], &[])?
                    .json(&json!({ "addresses": batch })),
            )
            .await?;
        for result in answer["results"].as_array().into_iter().flatten() {
            let address = text(&result["address"]);
            if let Some(error) = result["error"].as_str() {
                invalid += 1;
                say(&format!("invalid\t{address}\t{error}"));
            } else if result["suppressed"].as_bool() == Some(true) {
                suppressed += 1;
                let rule = result["rule"].as_str().unwrap_or("-");
                say(&format!(
                    "suppressed\t{address}\t{}\t{}\t{rule}",
                    text(&result["reason"]),
                    expiry(&result["expires_at"])
                ));
            } else {
                say(&format!("ok\t{address}"));
            }
        }
    }
    eprintln!(
        "{} checked, {suppressed} suppressed, {invalid} invalid",
        addresses.len()
    );
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn import(api: &Api, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let body = if file.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("cannot read standard input")?;
        body
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let answer: Value = api
        .send_json(
            api.request(Method::POST, &["suppressions", "import"], &[])?
                .header("content-type", "text/plain; charset=utf-8")
                .body(body),
        )
        .await?;
    let count = |name: &str| answer[name].as_u64().unwrap_or(0);
    let rejected = count("rejected_count");
    say(&format!(
        "added {}, updated {}, unchanged {}, rejected {rejected}",
        count("added"),
        count("updated"),
        count("unchanged")
    ));
    for item in answer["rejected"].as_array().into_iter().flatten() {
        eprintln!("line {}: {}", item["line"], text(&item["error"]));
    }
    Ok(if rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// An `expires_at` for people.
fn expiry(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| "permanent".to_owned(), |at| format!("until {at}"))
}
