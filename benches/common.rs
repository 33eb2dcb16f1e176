//! Helpers shared by the benchmarks (`load`, `soak`): output, paths, what machine ran them,
//! and the server's log line that says where it listens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// Serializes a duration as seconds.
pub fn seconds<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// The address in the server's `mailwarden listening address=...` line.
pub fn listening_address(line: &str) -> Option<SocketAddr> {
    let start = line.find("address=")? + "address=".len();
    let rest = &line[start..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].trim_matches('"').parse().ok()
}

/// Prints one line of the report.
#[allow(clippy::print_stdout, reason = "benchmark output")]
pub fn say(line: &str) {
    println!("{line}");
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The CPU's model name, for the report's header.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Stops a server process cleanly (SIGTERM) and waits for it to exit.
pub fn terminate(child: &mut Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}
