//! Ingest tests.
