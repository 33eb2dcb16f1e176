//! End-to-end tests: the real server on an ephemeral port, a temporary data directory, HTTP.
//! One test binary (one link step) with a module per area.

mod adapters;
mod helpers;
mod ingest;
mod suppressions;
