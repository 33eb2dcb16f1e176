//! The PostgreSQL store, for several mailwarden nodes sharing one database (issue 15).
//!
//! What is here: connecting with a pool and saying plainly what is wrong when that fails
//! (server unreachable, wrong password, no such database, missing rights), the schema and
//! its migrations ([`migrations`]), and the day partitions of the events. What is not here
//! yet: the store's operations (commit, queries, claims) behind the interface both backends
//! share, so `serve` refuses this backend after checking it (see `app`).
//!
//! The driver is `tokio-postgres` with `deadpool-postgres`: asynchronous on the runtime the
//! service already runs, SQL checked by the conformance tests against a real server rather
//! than by compile-time macros that would need a database (or checked-in query data) to
//! build, and a small pool that hands out prepared-statement caches per connection.
//! Connections are plain TCP or a Unix socket; TLS to the database is not supported yet.

pub mod claims;
pub mod copy;
mod events;
pub mod migrations;
mod suppressions;

use std::fmt;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::config::Secret;
use crate::store::IdGenerator;

/// How long connecting to the server may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may wait for a free connection of the pool.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// Oldest server version with what the schema uses (declarative partitions with a default
/// partition, `to_regclass` on a name).
const MIN_SERVER_VERSION: i32 = 130_000;
/// Days of event partitions created ahead of today (and one behind, for clocks a little
/// slow).
pub const PARTITION_DAYS_AHEAD: i32 = 7;

/// What went wrong with the database, in words an operator can act on. Never contains
/// the password.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse.
    #[error(
        "storage.url is not a PostgreSQL URL ({0}); expected postgres://user:password@host:port/database"
    )]
    BadUrl(String),
    /// Nothing answered, or the connection broke.
    #[error("cannot reach PostgreSQL at {target}: {reason}")]
    Unreachable { target: Target, reason: String },
    /// The server refused the user or its password.
    #[error("PostgreSQL at {target} refused the login of role `{}`: {reason}", .target.role)]
    Login { target: Target, reason: String },
    /// The database named in the URL does not exist.
    #[error("PostgreSQL at {} has no database `{}`: create it (createdb -O {} {}) or fix storage.url", .target.hosts, .target.database, .target.role, .target.database)]
    NoDatabase { target: Target },
    /// The role may not do what the store needs.
    #[error("role `{}` lacks rights in {target}: {what}", .target.role)]
    Rights { target: Target, what: String },
    /// The server is older than the schema needs.
    #[error("PostgreSQL at {target} is version {found}; mailwarden needs 13 or newer")]
    TooOld { target: Target, found: String },
    /// The database was migrated by a newer mailwarden.
    #[error(
        "the database's schema is at version {found}, and this mailwarden knows up to {known}: upgrade mailwarden on every node instead of running an older one"
    )]
    SchemaTooNew { found: i32, known: i32 },
    /// An applied migration's text differs from this build's.
    #[error(
        "schema {version} ({name}) was applied from a different text than this build has: the database was migrated by another build of mailwarden; refusing to guess"
    )]
    MigrationChanged { version: i32, name: String },
    /// Any other failure, with what was being done.
    #[error("PostgreSQL error while {context}: {reason}")]
    Sql { context: String, reason: String },
}

/// Where the store connects, for messages: hosts, port, database and role, never the password.
#[derive(Debug, Clone)]
pub struct Target {
    hosts: String,
    database: String,
    role: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (database `{}`)", self.hosts, self.database)
    }
}

impl Target {
    fn of(config: &tokio_postgres::Config) -> Target {
        let ports = config.get_ports();
        let hosts = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(path) => {
                        format!("{}/.s.PGSQL.{port}", path.display())
                    }
                }
            })
            .collect::<Vec<_>>();
        let role = config.get_user().unwrap_or("").to_owned();
        Target {
            hosts: if hosts.is_empty() {
                "localhost:5432".into()
            } else {
                hosts.join(", ")
            },
            database: config.get_dbname().unwrap_or(&role).to_owned(),
            role,
        }
    }
}

/// Wraps a driver error met while doing `context`.
pub(crate) fn sql_error(context: &str, error: tokio_postgres::Error) -> PgError {
    PgError::Sql {
        context: context.to_owned(),
        reason: describe(&error),
    }
}

/// The server's message with its detail and hint, or the driver's own description.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = db.message().to_owned();
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(&format!(": {cause_text}"));
                }
                source = cause.source();
            }
            text
        }
    }
}

/// Connection settings of the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/database` (or the key=value form).
    pub url: Secret,
    /// Connections kept open at most.
    pub pool_size: usize,
    /// Match suppressed addresses' local parts case-insensitively, as the embedded
    /// store's option of the same name.
    pub fold_local_parts: bool,
    /// Most requests written in one transaction (group commit).
    pub max_group: usize,
}

/// A pool of connections to the store's database.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    target: Target,
    fold_local_parts: bool,
    shared: std::sync::Arc<Shared>,
}

/// What the clones of one store share.
struct Shared {
    /// This node's ids (see [`IdGenerator`]).
    ids: std::sync::Arc<IdGenerator>,
    /// The group-commit writer's queue.
    writer: tokio::sync::mpsc::Sender<events::Job>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Builds the pool and opens one connection, so that a wrong address, password or
    /// database name is reported now, by name, rather than on the first webhook.
    pub async fn connect(options: &PgOptions) -> Result<PgStore, PgError> {
        let mut config: tokio_postgres::Config = options
            .url
            .expose()
            .parse()
            .map_err(|error: tokio_postgres::Error| PgError::BadUrl(error.to_string()))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("mailwarden");
        let target = Target::of(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|error| PgError::Sql {
                context: "building the connection pool".into(),
                reason: error.to_string(),
            })?;
        let ids = std::sync::Arc::new(IdGenerator::starting_after(0));
        let writer = events::start_writer(pool.clone(), ids.clone(), options.max_group.max(1));
        let store = PgStore {
            pool,
            target,
            fold_local_parts: options.fold_local_parts,
            shared: std::sync::Arc::new(Shared { ids, writer }),
        };
        let client = store.client().await?;
        let version: String = client
            .query_one("SHOW server_version_num", &[])
            .await
            .map_err(|e| sql_error("reading the server version", e))?
            .get(0);
        if version.trim().parse::<i32>().unwrap_or(0) < MIN_SERVER_VERSION {
            return Err(PgError::TooOld {
                target: store.target.clone(),
                found: version,
            });
        }
        Ok(store)
    }

    /// Where this store connects (no password).
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// A connection from the pool, with connection failures named as such.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, PgError> {
        self.pool
            .get()
            .await
            .map_err(|error| self.pool_error(error))
    }

    fn pool_error(&self, error: deadpool_postgres::PoolError) -> PgError {
        use deadpool_postgres::PoolError;
        let target = self.target.clone();
        match error {
            PoolError::Backend(error) => self.connect_error(error),
            PoolError::Timeout(_) => PgError::Unreachable {
                target,
                reason: format!(
                    "no connection within {} s (server down, or every pooled connection busy)",
                    CONNECT_TIMEOUT.as_secs()
                ),
            },
            other => PgError::Unreachable {
                target,
                reason: other.to_string(),
            },
        }
    }

    fn connect_error(&self, error: tokio_postgres::Error) -> PgError {
        let target = self.target.clone();
        match error.code() {
            Some(code)
                if *code == SqlState::INVALID_PASSWORD
                    || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                PgError::Login {
                    target,
                    reason: describe(&error),
                }
            }
            Some(code) if *code == SqlState::INVALID_CATALOG_NAME => PgError::NoDatabase { target },
            Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => PgError::Rights {
                target,
                what: describe(&error),
            },
            Some(_) => sql_error("connecting", error),
            None => PgError::Unreachable {
                target,
                reason: describe(&error),
            },
        }
    }

    /// Names a missing right of the role in words, for errors met while migrating.
    fn rights_error(&self, error: PgError) -> PgError {
        match error {
            PgError::Sql { context, reason } if reason.starts_with("permission denied") => {
                PgError::Rights {
                    target: self.target.clone(),
                    what: format!(
                        "{reason} while {context}; the role needs to own the database or to have CREATE on its schema (GRANT CREATE ON SCHEMA public TO {})",
                        self.target.role
                    ),
                }
            }
            other => other,
        }
    }

    /// Says what migrating would run.
    pub async fn migration_status(&self) -> Result<migrations::Status, PgError> {
        let client = self.client().await?;
        migrations::status(&**client).await
    }

    /// Brings the schema to this build's version under the migration lock, then creates
    /// the event partitions of the days around today. Returns the steps it ran.
    pub async fn migrate(&self) -> Result<Vec<migrations::Migration>, PgError> {
        let mut client = self.client().await?;
        let applied = migrations::apply(&mut client)
            .await
            .map_err(|error| self.rights_error(error))?;
        drop(client);
        self.ensure_partitions().await?;
        self.check_rights().await?;
        self.advance_ids().await?;
        Ok(applied)
    }

    /// Makes this node's ids greater than every stored one (a clock set back must not
    /// reuse them).
    async fn advance_ids(&self) -> Result<(), PgError> {
        let client = self.client().await?;
        let last: Option<i64> = client
            .query_one(
                "SELECT greatest((SELECT max(id) FROM mw_events), (SELECT max(id) FROM mw_bodies),
                                 (SELECT max(id) FROM mw_quarantine))",
                &[],
            )
            .await
            .map_err(|e| sql_error("reading the last stored id", e))?
            .get(0);
        if let Some(last) = last {
            self.shared
                .ids
                .advance_past(u64::try_from(last).unwrap_or(0));
        }
        Ok(())
    }

    /// Creates the day partitions of the events from yesterday to
    /// [`PARTITION_DAYS_AHEAD`] days ahead (UTC); returns how many were new.
    pub async fn ensure_partitions(&self) -> Result<i32, PgError> {
        let client = self.client().await?;
        let created: i32 = client
            .query_one(
                "SELECT mw_ensure_event_partitions(((now() AT TIME ZONE 'UTC')::date - 1), $1)",
                &[&(PARTITION_DAYS_AHEAD + 2)],
            )
            .await
            .map_err(|e| self.rights_error(sql_error("creating event partitions", e)))?
            .get(0);
        Ok(created)
    }

    /// Checks that the role can read and write every table of the schema (and use its
    /// sequences), naming the ones it cannot.
    pub async fn check_rights(&self) -> Result<(), PgError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT c.relname FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relname LIKE 'mw\\_%' AND NOT c.relispartition
                   AND n.nspname = ANY (current_schemas(false))
                   AND CASE c.relkind
                       WHEN 'S' THEN NOT has_sequence_privilege(c.oid, 'USAGE')
                       WHEN 'r' THEN NOT (has_table_privilege(c.oid, 'SELECT')
                           AND has_table_privilege(c.oid, 'INSERT')
                           AND has_table_privilege(c.oid, 'UPDATE')
                           AND has_table_privilege(c.oid, 'DELETE'))
                       WHEN 'p' THEN NOT (has_table_privilege(c.oid, 'SELECT')
                           AND has_table_privilege(c.oid, 'INSERT')
                           AND has_table_privilege(c.oid, 'UPDATE')
                           AND has_table_privilege(c.oid, 'DELETE'))
                       ELSE false END
                 ORDER BY c.relname",
                &[],
            )
            .await
            .map_err(|e| sql_error("checking the role's rights", e))?;
        if rows.is_empty() {
            return Ok(());
        }
        let tables: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        Err(PgError::Rights {
            target: self.target.clone(),
            what: format!(
                "it cannot read and write {}; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
                tables.join(", "),
                role = self.target.role
            ),
        })
    }
}
