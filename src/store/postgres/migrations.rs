//! The PostgreSQL schema, as numbered SQL files embedded in the binary, and how a database
//! is brought to this build's version.
//!
//! `mw_schema_migrations` records each applied file with a SHA-256 of its text. Applying
//! runs in one transaction that first takes a transaction-level advisory lock: nodes that
//! start together queue on the lock, and each one after the first finds nothing left to
//! do. A failed file rolls the whole transaction back, so a database is always at one of
//! the versions below, never between two.
//!
//! A database that records a version this build does not know (written by a newer
//! mailwarden), or a file whose text changed after it was applied, is refused with a
//! message naming it: this build would not know what it is reading.

use sha2::{Digest, Sha256};

use super::{PgError, sql_error};

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version the database has once this step is applied (1, 2, ...).
    pub version: i32,
    /// What the step is for, as in its file name.
    pub name: &'static str,
    /// The SQL, run as one batch.
    pub sql: &'static str,
}

/// Every schema step, in order; the last one's version is this build's.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "events and suppressions",
    sql: include_str!("sql/0001_events_and_suppressions.sql"),
}];

/// Key of the advisory lock held while migrating (`mailward` in ASCII); the partition
/// function of schema 1 takes the same one.
const MIGRATION_LOCK: i64 = 0x6d61_696c_7761_7264;

/// The bookkeeping table, created by the first migration run.
const CREATE_BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS mw_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

impl Migration {
    /// Hex SHA-256 of the step's SQL.
    pub fn checksum(&self) -> String {
        let digest = Sha256::digest(self.sql.as_bytes());
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

/// The schema version of this build.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |step| step.version)
}

/// Where a database stands against this build.
#[derive(Debug, Clone)]
pub struct Status {
    /// Highest version applied (0 for an empty database).
    pub current: i32,
    /// Steps that applying would run, in order.
    pub pending: Vec<Migration>,
}

/// An applied step, as `mw_schema_migrations` records it.
struct Recorded {
    version: i32,
    name: String,
    checksum: String,
}

/// Compares what a database recorded with this build's steps.
fn plan(recorded: &[Recorded]) -> Result<Status, PgError> {
    let latest = latest_version();
    for step in recorded {
        let Some(known) = MIGRATIONS
            .iter()
            .find(|known| known.version == step.version)
        else {
            return Err(PgError::SchemaTooNew {
                found: recorded
                    .iter()
                    .map(|r| r.version)
                    .max()
                    .unwrap_or(step.version),
                known: latest,
            });
        };
        if known.checksum() != step.checksum {
            return Err(PgError::MigrationChanged {
                version: step.version,
                name: step.name.clone(),
            });
        }
    }
    let current = recorded.iter().map(|r| r.version).max().unwrap_or(0);
    let pending = MIGRATIONS
        .iter()
        .filter(|step| !recorded.iter().any(|r| r.version == step.version))
        .copied()
        .collect();
    Ok(Status { current, pending })
}

/// Reads the recorded steps; none when the bookkeeping table does not exist yet.
async fn recorded(client: &impl tokio_postgres::GenericClient) -> Result<Vec<Recorded>, PgError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('mw_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| sql_error("reading the schema version", e))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, name, checksum FROM mw_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(|e| sql_error("reading the schema version", e))?;
    Ok(rows
        .iter()
        .map(|row| Recorded {
            version: row.get(0),
            name: row.get(1),
            checksum: row.get(2),
        })
        .collect())
}

/// Says what [`apply`] would run, without changing anything.
pub async fn status(client: &impl tokio_postgres::GenericClient) -> Result<Status, PgError> {
    plan(&recorded(client).await?)
}

/// Brings the database to this build's version; returns the steps it ran (none when
/// another node got there first).
pub async fn apply(client: &mut tokio_postgres::Client) -> Result<Vec<Migration>, PgError> {
    let transaction = client
        .transaction()
        .await
        .map_err(|e| sql_error("starting the migration", e))?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| sql_error("waiting for the migration lock", e))?;
    // Created only when missing: `IF NOT EXISTS` alone would still need the right to
    // create tables, which a node's role may rightly lack once the schema exists.
    let mut status = plan(&recorded(&transaction).await?)?;
    if status.current == 0 {
        transaction
            .batch_execute(CREATE_BOOKKEEPING)
            .await
            .map_err(|e| sql_error("creating mw_schema_migrations", e))?;
        status = plan(&recorded(&transaction).await?)?;
    }
    for step in &status.pending {
        let context = format!("applying schema {} ({})", step.version, step.name);
        transaction
            .batch_execute(step.sql)
            .await
            .map_err(|e| sql_error(&context, e))?;
        transaction
            .execute(
                "INSERT INTO mw_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[&step.version, &step.name, &step.checksum()],
            )
            .await
            .map_err(|e| sql_error(&context, e))?;
    }
    transaction
        .commit()
        .await
        .map_err(|e| sql_error("committing the migration", e))?;
    Ok(status.pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded_as_built(up_to: i32) -> Vec<Recorded> {
        MIGRATIONS
            .iter()
            .filter(|step| step.version <= up_to)
            .map(|step| Recorded {
                version: step.version,
                name: step.name.to_owned(),
                checksum: step.checksum(),
            })
            .collect()
    }

    #[test]
    fn versions_count_up_from_one_without_gaps() {
        for (index, step) in MIGRATIONS.iter().enumerate() {
            assert_eq!(step.version, i32::try_from(index).expect("few steps") + 1);
            assert!(!step.sql.trim().is_empty(), "{} is empty", step.name);
        }
    }

    #[test]
    fn the_partition_function_queues_on_the_migration_lock() {
        let call = format!("pg_advisory_xact_lock({MIGRATION_LOCK})");
        assert!(MIGRATIONS[0].sql.contains(&call), "{call} not in schema 1");
    }

    #[test]
    fn an_empty_database_needs_every_step_and_a_current_one_none() {
        let fresh = plan(&[]).expect("plan");
        assert_eq!(fresh.current, 0);
        assert_eq!(fresh.pending.len(), MIGRATIONS.len());

        let current = plan(&recorded_as_built(latest_version())).expect("plan");
        assert_eq!(current.current, latest_version());
        assert!(current.pending.is_empty());
    }

    #[test]
    fn a_newer_database_is_refused_with_both_versions() {
        let mut newer = recorded_as_built(latest_version());
        newer.push(Recorded {
            version: latest_version() + 1,
            name: "from the future".into(),
            checksum: "00".into(),
        });
        let error = plan(&newer).expect_err("newer schema").to_string();
        assert!(
            error.contains(&format!("version {}", latest_version() + 1)),
            "{error}"
        );
        assert!(
            error.contains(&format!("knows up to {}", latest_version())),
            "{error}"
        );
    }

    #[test]
    fn a_changed_step_is_refused_with_its_name() {
        let mut changed = recorded_as_built(latest_version());
        changed[0].checksum = "edited".into();
        let error = plan(&changed).expect_err("changed").to_string();
        assert!(error.contains("schema 1"), "{error}");
        assert!(error.contains(MIGRATIONS[0].name), "{error}");
    }
}
