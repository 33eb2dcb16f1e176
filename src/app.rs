//! Wiring: open the store, build the parts, bind the listener, serve until told to stop.
//!
//! Tests and `main` build the service the same way: [`Application::build`] binds (port 0
//! picks a free port, see [`Application::local_addr`]) and [`Application::run_until_stopped`]
//! serves until the given future completes, then drains requests and flushes the store.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::actions::{Executor, Worker};
use crate::api::webhooks::BodyBudget;
use crate::api::{self, AppState, serve};
use crate::config::Config;
use crate::ingest::Ingestor;
use crate::ingest::providers::script::{ScriptProviders, Watcher};
use crate::ingest::sources::{SourceContext, Sources};
use crate::ingest::verify::Token;
use crate::ingest::verify::sns::Certificates;
use crate::rules::runner::{RulesState, Runner};
use crate::rules::{Rules, testing};
use crate::store::retention::Purger;
use crate::store::{Store, StoreOptions};
use crate::telemetry;

/// A built service, bound to its address, not yet serving.
pub struct Application {
    listener: TcpListener,
    service: Service,
}

/// Everything but the listener: rebuilt on the same listener when the store is reopened
/// after a write failure.
struct Service {
    state: AppState,
    runner: Runner,
    executor: Arc<Executor>,
    watcher: Watcher,
    purger: Purger,
    limits: serve::Limits,
}

/// How often a store that cannot write is checked for room again.
const FAULT_POLL: Duration = Duration::from_secs(1);
/// How long requests in flight get when the store is reopened (they are being refused
/// with 503 anyway).
const REOPEN_GRACE: Duration = Duration::from_secs(2);

impl Application {
    /// Checks the configuration, binds the listener and opens the store.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        config.validate()?;
        if let Some(options) = config.postgres() {
            let store = open_postgres(&options).await?;
            anyhow::bail!(
                "the PostgreSQL store at {} is reachable and its schema is current, but this \
                 version of mailwarden cannot serve from PostgreSQL yet: only `mailwarden \
                 migrate` uses it. Remove storage.backend (or set it to \"sled\") to serve \
                 from the embedded store.",
                store.target()
            );
        }
        // Installed first, so that gauges set while building are recorded.
        telemetry::metrics_handle();
        // reqwest and lettre use rustls without choosing a crypto provider themselves.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = serve::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let mut config = config;
        // With port 0 the system picks the port: show the real one in source URLs.
        config.listen = listener.local_addr()?;
        let service = Service::assemble(config)?;
        Ok(Application { listener, service })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The SNS signing certificates the service verifies with, by URL. Tests put their
    /// own certificate here, where the fetcher would put Amazon's.
    pub fn sns_certificates(&self) -> Arc<Certificates> {
        self.service.state.certificates.clone()
    }

    /// The store the service writes to.
    pub fn store(&self) -> &Store {
        &self.service.state.store
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and flushes.
    ///
    /// When the store cannot write (a full disk) it answers 503 and `/healthz` says
    /// `degraded`; once a probe write succeeds again, the service stops, opens the store
    /// anew (what was never flushed was never acknowledged) and goes on serving on the
    /// same listener, whose backlog holds the clients meanwhile.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let Application {
            mut listener,
            mut service,
        } = self;
        loop {
            let config = service.state.config.clone();
            let Some(back) = service.run(listener, stopped.clone()).await? else {
                return Ok(());
            };
            listener = back;
            service = loop {
                match Service::assemble((*config).clone()) {
                    Ok(service) => break service,
                    Err(error) => {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "cannot reopen the store; trying again"
                        );
                    }
                }
                let mut stopped = stopped.clone();
                if tokio::time::timeout(FAULT_POLL, stopped.wait_for(|stop| *stop))
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            };
            tracing::info!("store reopened");
        }
    }
}

impl Service {
    /// Opens the store and builds the parts around it.
    fn assemble(config: Config) -> anyhow::Result<Service> {
        let rules = load_rules(&config)?;
        let store = open_store(&config)?;
        let runner = Runner::start(
            rules.clone(),
            store.clone(),
            Duration::from_secs(config.rules.reload_interval_secs),
        )
        .context("cannot start the rules runner")?;
        let scripts = Arc::new(ScriptProviders::load(&config)?);
        let context = SourceContext {
            certificates: Arc::new(Certificates::persisted(store.clone())),
        };
        let certificates = context.certificates.clone();
        let sources = Arc::new(Sources::build(&config, &scripts, context, Some(&store))?);
        let watcher = scripts
            .watch(
                sources.clone(),
                store.clone(),
                Duration::from_secs(config.rules.reload_interval_secs),
            )
            .context("cannot watch the providers directory")?;
        let ingestor = Ingestor::new(store.clone(), sources).with_waker(runner.waker());
        let executor = Arc::new(Executor::new(store.clone(), &config)?);
        let purger = Purger::start(
            store.clone(),
            config.storage.retention(),
            Duration::from_secs(config.storage.purge_interval_secs),
        )
        .context("cannot start the purge")?;
        let limits = serve::Limits::new(&config.server, serve::raise_file_limit());
        let body_budget = Arc::new(BodyBudget::new(config.in_flight_bytes()));
        metrics::gauge!(telemetry::names::COMMIT_QUEUE_LIMIT)
            .set(config.ingest.max_queued_requests as f64);
        let sessions = Arc::new(crate::ui::Sessions::new(&config.ui));
        let state = AppState {
            ingestor,
            store,
            rules,
            admin_token: config.admin_token.as_ref().map(|t| Token::new(t.expose())),
            config: Arc::new(config),
            metrics: telemetry::metrics_handle(),
            certificates,
            breakers: executor.breakers(),
            body_budget,
            sessions,
        };
        Ok(Service {
            state,
            runner,
            executor,
            watcher,
            purger,
            limits,
        })
    }

    /// Serves on `listener` until told to stop, or until the store must be reopened: then
    /// gives the listener back.
    async fn run(
        self,
        listener: TcpListener,
        mut stopped: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Option<TcpListener>> {
        let Service {
            state,
            runner,
            executor,
            watcher,
            mut purger,
            limits,
        } = self;
        let worker = Worker::start(executor);
        let store = state.store.clone();
        let router = api::router(state);
        tracing::info!(address = %listener.local_addr()?, "mailwarden listening");
        // The worker stops taking actions when the listener closes, and both share the
        // grace period. A reopen keeps the listener (see `run_until_stopped`).
        let (begun, mut begin) = tokio::sync::watch::channel(None::<serve::Stop>);
        let recovered = writable_again(store.clone());
        let shutdown = async move {
            let stop = tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => serve::Stop {
                    grace: limits.shutdown_grace,
                    keep_listener: false,
                },
                () = recovered => serve::Stop {
                    grace: REOPEN_GRACE,
                    keep_listener: true,
                },
            };
            let _ = begun.send(Some(stop));
            stop
        };
        let stop_worker = async move {
            let grace = match begin.wait_for(Option::is_some).await {
                Ok(stop) => stop.map(|stop| stop.grace),
                Err(_) => None,
            };
            worker.stop(grace.unwrap_or(limits.shutdown_grace)).await;
        };
        let (listener, ()) = tokio::join!(
            serve::serve(listener, router, limits, shutdown),
            stop_worker
        );
        tokio::task::spawn_blocking(move || {
            purger.stop();
            watcher.stop();
            runner.stop();
        })
        .await
        .context("stopping the rules runner")?;
        if store.fault().is_none() {
            store.flush().await.context("final flush failed")?;
        }
        drop(store);
        if listener.is_some() {
            tracing::warn!("storage writable again: reopening the store");
        } else {
            tracing::info!("mailwarden stopped");
        }
        Ok(listener)
    }
}

/// Completes once the store has failed to write and a probe write succeeds again.
async fn writable_again(store: Store) {
    loop {
        tokio::time::sleep(FAULT_POLL).await;
        if store.fault().is_none() {
            continue;
        }
        let probing = store.clone();
        match tokio::task::spawn_blocking(move || probing.probe_space()).await {
            Ok(Ok(())) => return,
            Ok(Err(error)) => tracing::debug!(%error, "storage still cannot write"),
            Err(error) => tracing::error!(%error, "space probe failed"),
        }
    }
}

/// Compiles the rules of the configured directory; any compile error is fatal, with
/// file, line and column.
pub fn load_rules(config: &Config) -> anyhow::Result<Arc<RulesState>> {
    let rules = Rules::new(testing::limits(config), &config.rules.vars);
    RulesState::load(rules, &config.rules_dir)
        .map(Arc::new)
        .map_err(|errors| {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("rules do not compile:\n  {}", list.join("\n  "))
        })
}

/// The store's options from the settings.
pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        cache_capacity: config.storage.cache_capacity_mb * 1024 * 1024,
        max_group: config.storage.max_group,
        fold_local_parts: config.suppressions.case_insensitive_local_part,
        max_queued_requests: config.ingest.max_queued_requests,
    }
}

/// Connects to the PostgreSQL store and brings its schema to this build's version (under
/// the migration lock, so nodes starting together do not race); each failure says what
/// to fix.
pub async fn open_postgres(
    options: &crate::store::postgres::PgOptions,
) -> anyhow::Result<crate::store::postgres::PgStore> {
    let store = crate::store::postgres::PgStore::connect(options).await?;
    let applied = store.migrate().await?;
    for step in &applied {
        tracing::info!(
            version = step.version,
            name = step.name,
            "applied schema migration"
        );
    }
    Ok(store)
}

/// The store's directory inside the data directory.
pub fn store_path(config: &Config) -> PathBuf {
    config.data_dir.join("db")
}

/// Opens the store with the configured limits.
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    Store::open(&store_path(config), &store_options(config))
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
