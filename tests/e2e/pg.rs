//! A throwaway PostgreSQL for the end-to-end tests (Debian's `postgresql` package).
//!
//! One cluster per test binary, started on first use in a temporary directory under
//! `/tmp`, listening on 127.0.0.1 and a free port, with password (scram-sha-256)
//! authentication over TCP for every role. Each test asks for a fresh database owned by
//! a fresh unprivileged role ([`Cluster::fresh_database`]); admin statements go through
//! the `psql` binary ([`Cluster::admin_sql`]).
//!
//! PostgreSQL refuses to run as root, so when the tests run as root (as in CI) the
//! cluster runs as the `postgres` system user the package creates.
//!
//! Statics are never dropped in a Rust test binary, so a detached watchdog stops the
//! cluster and removes its directory when the test binary exits, even after a panic or
//! a kill: it waits for end-of-file on a pipe whose only writer is the test process.
//!
//! Without PostgreSQL the tests are skipped with a message, unless `REQUIRE_POSTGRES=1`
//! (set by `.ci/run`), where they fail.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Where Debian installs each PostgreSQL version (`<root>/<version>/bin`).
const INSTALL_ROOT: &str = "/usr/lib/postgresql";
/// The cluster's superuser.
const SUPERUSER: &str = "mailwarden_admin";
/// The system user the cluster runs as when the tests run as root.
const SYSTEM_USER: &str = "postgres";

/// The shared cluster, or why it could not be started.
static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
/// Numbers the databases [`Cluster::fresh_database`] creates.
static DATABASES: AtomicU64 = AtomicU64::new(0);

/// A running PostgreSQL cluster, stopped by its watchdog when the test binary exits.
pub struct Cluster {
    /// The TCP port it listens on (127.0.0.1 only).
    port: u16,
    /// The temporary directory: data directory, log, unix socket.
    root: PathBuf,
    /// The directory of `initdb`, `pg_ctl`, `psql`.
    bin: PathBuf,
    /// The superuser's password.
    password: String,
    /// The watchdog's stdin: it cleans up when this closes, that is when the process
    /// exits (never written to, never dropped).
    _watchdog: ChildStdin,
}

/// A fresh, empty database and the role that owns it.
pub struct TestDatabase {
    /// `postgres://role:password@127.0.0.1:port/name`.
    pub url: String,
    /// The database's name.
    pub name: String,
    /// The owning login role (no superuser rights).
    pub role: String,
    /// The role's password.
    pub password: String,
}

/// Returns the shared cluster, starting it on first use, or `None` (after saying why)
/// when PostgreSQL is not installed and `REQUIRE_POSTGRES` is not `1`. Panics when it is
/// `1` and PostgreSQL is missing, and when the cluster does not start.
pub fn cluster() -> Option<&'static Cluster> {
    let Some(bin) = installed() else {
        if std::env::var_os("REQUIRE_POSTGRES").is_some_and(|v| v == "1") {
            panic!(
                "REQUIRE_POSTGRES=1 but PostgreSQL is not installed \
                 (no {INSTALL_ROOT}/*/bin/initdb): apt-get install -y postgresql"
            );
        }
        let test = std::thread::current()
            .name()
            .unwrap_or("this test")
            .to_owned();
        eprintln!("skipping {test}: PostgreSQL is not installed (no {INSTALL_ROOT}/*/bin/initdb)");
        return None;
    };
    match CLUSTER.get_or_init(|| Cluster::start(bin)) {
        Ok(cluster) => Some(cluster),
        Err(why) => panic!("the test PostgreSQL cluster did not start: {why}"),
    }
}

/// The `bin` directory of the highest PostgreSQL version installed, if any.
fn installed() -> Option<PathBuf> {
    std::fs::read_dir(INSTALL_ROOT)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

impl Cluster {
    /// Creates, starts and arranges the removal of a new cluster of the binaries in `bin`.
    fn start(bin: PathBuf) -> Result<Cluster, String> {
        let started = Instant::now();
        let as_system_user = running_as_root()?;
        // Short: the unix socket's path (`<root>/.s.PGSQL.<port>`) is limited to ~100 bytes.
        let root = tempfile::Builder::new()
            .prefix("mwpg.")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temporary directory: {e}"))?
            .keep();
        let give_away = |path: &Path| {
            if as_system_user {
                run(Command::new("chown")
                    .arg(format!("{SYSTEM_USER}:"))
                    .arg(path))
                .map(drop)
            } else {
                Ok(())
            }
        };
        give_away(&root)?;
        // As early as possible, so that what fails later is cleaned up too.
        let watchdog = spawn_watchdog(&bin, &root, as_system_user)?;
        let password = random_password();
        let pwfile = root.join("pwfile");
        std::fs::write(&pwfile, &password).map_err(|e| format!("password file: {e}"))?;
        give_away(&pwfile)?;
        let data = root.join("data");
        run(server_command(&bin, "initdb", &root, as_system_user)
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-instructions",
                // A throwaway cluster: not flushing its files to disk saves seconds.
                "--no-sync",
            ]))?;
        std::fs::remove_file(&pwfile).map_err(|e| format!("password file: {e}"))?;
        // The free port may be taken between finding and binding it: try a second one.
        let port = match start_server(&bin, &root, as_system_user) {
            Ok(port) => port,
            Err(first) => start_server(&bin, &root, as_system_user)
                .map_err(|second| format!("{first}\nand on a second port: {second}"))?,
        };
        eprintln!(
            "PostgreSQL ({}) started on 127.0.0.1:{port} in {} ms",
            bin.display(),
            started.elapsed().as_millis()
        );
        Ok(Cluster {
            port,
            root,
            bin,
            password,
            _watchdog: watchdog,
        })
    }

    /// The TCP port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a fresh, empty database for one test, owned by a fresh login role with a
    /// random password and no superuser rights. Only that role (and the superuser) may
    /// connect to it.
    pub fn fresh_database(&self) -> TestDatabase {
        let number = DATABASES.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("mw_test_{pid}_{number}");
        let role = format!("mw_role_{pid}_{number}");
        let password = random_password();
        // Separate statements: CREATE DATABASE cannot run in a transaction block.
        self.admin_sql(
            "postgres",
            &format!(
                "CREATE ROLE {role} LOGIN PASSWORD '{password}' \
                     NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;\n\
                 CREATE DATABASE {name} OWNER {role};\n\
                 REVOKE ALL ON DATABASE {name} FROM PUBLIC;\n"
            ),
        );
        TestDatabase {
            url: format!(
                "postgres://{role}:{password}@127.0.0.1:{}/{name}",
                self.port
            ),
            name,
            role,
            password,
        }
    }

    /// Runs `sql` (any number of statements) as the superuser in `database` through
    /// `psql` with `ON_ERROR_STOP`, and returns its output (unaligned, tuples only, no
    /// command tags). Panics with psql's stderr when a statement fails.
    pub fn admin_sql(&self, database: &str, sql: &str) -> String {
        let output = psql(
            &self.bin,
            &format!(
                "host=127.0.0.1 port={} user={SUPERUSER} dbname={database}",
                self.port
            ),
            sql,
            Some(&self.password),
        );
        if !output.status.success() {
            panic!(
                "psql as {SUPERUSER} in {database} failed ({}) on:\n{sql}\n{}\n(cluster in {})",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                self.root.display()
            );
        }
        String::from_utf8(output.stdout).expect("psql prints UTF-8")
    }
}

/// Runs `psql` on `connection` (a URL or `key=value` string) with `sql` on its stdin, with
/// `ON_ERROR_STOP`, unaligned, tuples only and quiet, without `~/.psqlrc` or
/// `~/.pgpass`; with `password` in `PGPASSWORD` when given.
fn psql(bin: &Path, connection: &str, sql: &str, password: Option<&str>) -> Output {
    use std::io::Write;

    let mut command = Command::new(bin.join("psql"));
    command
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"])
        .arg(connection)
        .env("PGPASSFILE", "/dev/null")
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let mut child = command.spawn().expect("psql starts");
    let mut stdin = child.stdin.take().expect("psql's stdin is piped");
    let sql = sql.to_owned();
    // From another thread, so that psql's output cannot fill its pipe while psql waits.
    // An error here (psql exited without reading) shows in psql's status and stderr.
    let writer = std::thread::spawn(move || stdin.write_all(sql.as_bytes()));
    let output = child.wait_with_output().expect("psql finishes");
    let _ = writer.join();
    output
}

/// Whether this process runs as root (then PostgreSQL runs as [`SYSTEM_USER`]).
fn running_as_root() -> Result<bool, String> {
    let output = run(Command::new("id").arg("-u"))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// A command running PostgreSQL's `program` from `bin` in `root`, as [`SYSTEM_USER`]
/// when `as_system_user`.
fn server_command(bin: &Path, program: &str, root: &Path, as_system_user: bool) -> Command {
    let mut command = if as_system_user {
        let mut command = Command::new("runuser");
        command
            .args(["-u", SYSTEM_USER, "--"])
            .arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    };
    // The system user may not be allowed into the current directory.
    command.current_dir(root);
    command
}

/// Starts the server of the cluster in `root` on a free port, and returns that port.
fn start_server(bin: &Path, root: &Path, as_system_user: bool) -> Result<u16, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("a free port: {e}"))?
        .port();
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=200",
        root.display()
    );
    run(server_command(bin, "pg_ctl", root, as_system_user)
        .arg("-D")
        .arg(root.join("data"))
        .arg("-l")
        .arg(root.join("log"))
        .args(["-w", "-o", &options, "start"]))
    .map_err(|e| {
        let log = std::fs::read_to_string(root.join("log")).unwrap_or_default();
        format!("{e}\nserver log:\n{log}")
    })?;
    Ok(port)
}

/// Spawns the detached process that, once the test binary has exited (its stdin reaches
/// end-of-file), stops the cluster in `root` and removes `root`. Returns its stdin.
fn spawn_watchdog(bin: &Path, root: &Path, as_system_user: bool) -> Result<ChildStdin, String> {
    use std::os::unix::process::CommandExt;

    let script = format!(
        "cat >/dev/null; '{}' -D '{}' stop -m immediate >/dev/null 2>&1; rm -rf '{}'",
        bin.join("pg_ctl").display(),
        root.join("data").display(),
        root.display()
    );
    let mut command = if as_system_user {
        let mut command = Command::new("runuser");
        command.args(["-u", SYSTEM_USER, "--", "sh", "-c", &script]);
        command
    } else {
        let mut command = Command::new("sh");
        command.args(["-c", &script]);
        command
    };
    let mut child = command
        .current_dir(root)
        // Its own process group: a Ctrl-C to the tests does not kill it before it cleans up.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("the watchdog: {e}"))?;
    child
        .stdin
        .take()
        .ok_or_else(|| "the watchdog's stdin".to_owned())
}

/// Runs `command` to completion; its output, or an error with its stderr.
fn run(command: &mut Command) -> Result<Output, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// 32 random letters and digits (safe in URLs and SQL literals).
fn random_password() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(32)
        .collect()
}

/// Runs `sql` through psql as a client of `url`: whether it succeeded, stdout, stderr.
fn connect(url: &str, sql: &str) -> (bool, String, String) {
    let cluster = cluster().expect("only called once the cluster runs");
    let output = psql(&cluster.bin, url, sql, None);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn fresh_databases_are_distinct_and_need_their_password() {
    let Some(cluster) = cluster() else { return };
    let started = Instant::now();
    let first = cluster.fresh_database();
    eprintln!("fresh_database took {} ms", started.elapsed().as_millis());
    let second = cluster.fresh_database();
    assert_ne!(first.name, second.name);
    assert_ne!(first.role, second.role);
    assert_ne!(first.password, second.password);
    assert_ne!(first.url, second.url);
    assert!(
        first
            .url
            .starts_with(&format!("postgres://{}:", first.role))
            && first
                .url
                .ends_with(&format!("@127.0.0.1:{}/{}", cluster.port(), first.name))
    );

    for database in [&first, &second] {
        let (ok, stdout, stderr) = connect(&database.url, "select 1");
        assert!(
            ok,
            "{} connects to {}: {stderr}",
            database.role, database.name
        );
        assert_eq!(stdout.trim(), "1");
        let (ok, stdout, _) = connect(&database.url, "select current_database(), current_user");
        assert!(ok);
        assert_eq!(
            stdout.trim(),
            format!("{}|{}", database.name, database.role)
        );
        // The owner can create tables in its database (what the storage backend needs).
        let (ok, _, stderr) = connect(
            &database.url,
            "create table t (id bigint primary key); insert into t values (1); drop table t;",
        );
        assert!(ok, "{} creates a table: {stderr}", database.role);

        let wrong = database
            .url
            .replace(&format!(":{}@", database.password), ":not-the-password@");
        assert_ne!(wrong, database.url);
        let (ok, _, stderr) = connect(&wrong, "select 1");
        assert!(!ok, "a wrong password is refused");
        assert!(
            stderr.contains("password authentication failed"),
            "refused for the password: {stderr}"
        );
    }
}

#[test]
fn roles_are_not_superusers_and_stay_in_their_own_database() {
    let Some(cluster) = cluster() else { return };
    let mine = cluster.fresh_database();
    let theirs = cluster.fresh_database();

    let (ok, stdout, stderr) = connect(
        &mine.url,
        "select rolsuper, rolcreatedb, rolcreaterole from pg_roles where rolname = current_user",
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "f|f|f");
    assert_eq!(
        cluster
            .admin_sql(
                "postgres",
                &format!(
                    "select rolsuper from pg_roles where rolname = '{}'",
                    mine.role
                ),
            )
            .trim(),
        "f"
    );
    let (ok, _, stderr) = connect(&mine.url, "create role intruder");
    assert!(!ok, "an ordinary role cannot create roles");
    assert!(stderr.contains("permission denied"), "{stderr}");

    // My credentials, their database.
    let trespass = format!(
        "postgres://{}:{}@127.0.0.1:{}/{}",
        mine.role,
        mine.password,
        cluster.port(),
        theirs.name
    );
    let (ok, _, stderr) = connect(&trespass, "select 1");
    assert!(!ok, "{} cannot connect to {}", mine.role, theirs.name);
    assert!(
        stderr.contains("permission denied for database"),
        "refused for the privilege: {stderr}"
    );
}
