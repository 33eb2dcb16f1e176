//! The HTTP server loop: accepts connections, serves each with hyper's HTTP/1 (what
//! providers speak), and keeps slow, idle and excess clients from holding the
//! connections and file descriptors that the providers' real webhooks need.
//!
//! - At most `server.max_connections` are open; further clients wait in the listen
//!   backlog until one closes (the kernel holds them, mailwarden spends nothing on them).
//! - A connection's first request must have its headers in within
//!   `header_read_timeout_secs` of the connection's start, a later one within that time of
//!   its first byte; a keep-alive connection may wait `idle_timeout_secs` for its next
//!   request. Past either deadline the connection is closed.
//! - A request's body (outside `/api/`, which needs the admin token or a loopback
//!   listener) must arrive whole within `body_timeout_secs` of its headers; a slower one
//!   is answered `408` and its connection closed.
//! - On shutdown the listener closes at once, keep-alive connections close after their
//!   current request, and whatever is still running after `shutdown_grace_secs` is cut
//!   off.
//!
//! The deadlines are checked by one sleeping task per connection that wakes only at a
//! deadline, so idle connections cost no wake-ups between their deadlines.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::header::{CONNECTION, HeaderValue};
use axum::http::{Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower_service::Service as _;

use crate::config::ServerConfig;
use crate::telemetry::names;

/// File descriptors kept free of connections: the store's files, outbound calls, SMTP.
const RESERVED_FDS: u64 = 256;
/// Pause after a failed `accept` (out of descriptors, say) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Timeouts and bounds of the server (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a connection's start (first request) or a request's first byte until its
    /// headers are in.
    pub header_read: Duration,
    /// From a request's headers until its whole body is in.
    pub body: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The configured limits, with `max_connections` lowered to what the process's file
    /// limit can hold (see [`raise_file_limit`]).
    pub fn new(config: &ServerConfig, file_limit: Option<u64>) -> Limits {
        let mut max_connections = config.max_connections;
        if let Some(limit) = file_limit {
            let room = if limit > 2 * RESERVED_FDS {
                limit - RESERVED_FDS
            } else {
                limit / 2
            };
            let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
            if room < max_connections {
                tracing::warn!(
                    configured = max_connections,
                    file_limit = limit,
                    used = room,
                    "server.max_connections lowered to fit the file descriptor limit"
                );
                max_connections = room;
            }
        }
        Limits {
            header_read: Duration::from_secs(config.header_read_timeout_secs),
            body: Duration::from_secs(config.body_timeout_secs),
            idle: Duration::from_secs(config.idle_timeout_secs),
            max_connections,
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
        }
    }
}

/// Connections the kernel may hold for `accept` (capped by `net.core.somaxconn`): a
/// burst of clients waits there instead of being reset.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `address` with a listen backlog sized for bursts of connections.
pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restart may bind while the last process's connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises the soft limit on open files to the hard limit; returns the limit in force
/// (`None` where the platform has none to read).
pub fn raise_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// How to stop serving.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    /// How long connections in flight may take.
    pub grace: Duration,
    /// Keep the listener open (its backlog holds new clients) and give it back, for a
    /// service that goes on; otherwise it is closed at once and new clients are refused.
    pub keep_listener: bool,
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and
/// drains connections for at most the grace period it gives. Returns the listener if
/// asked to keep it.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = Stop> + Send,
) -> Option<TcpListener> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    metrics::gauge!(names::CONNECTION_LIMIT).set(limits.max_connections as f64);
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let mut how = Stop {
        grace: limits.shutdown_grace,
        keep_listener: false,
    };
    loop {
        // A permit first: at the bound, clients wait in the backlog, not in memory.
        let permit = tokio::select! {
            given = &mut shutdown => {
                how = given;
                break;
            }
            Some(_) = connections.join_next() => continue,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            given = &mut shutdown => {
                how = given;
                break;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before it was taken: keep
                    // serving the ones that are open.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let (stream, peer) = stream;
        let router = router.clone();
        let stopped = stopped.clone();
        connections.spawn(async move {
            metrics::gauge!(names::CONNECTIONS).increment(1.0);
            serve_connection(stream, peer, router, limits, stopped).await;
            metrics::gauge!(names::CONNECTIONS).decrement(1.0);
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    let listener = how.keep_listener.then_some(listener);
    let grace = how.grace;
    let open = connections.len();
    tracing::info!(open, "no longer accepting connections");
    let _ = stop.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            grace_secs = grace.as_secs(),
            "grace period over, closing the connections still open"
        );
        metrics::counter!(names::CONNECTIONS_CLOSED, "reason" => "shutdown")
            .increment(connections.len() as u64);
        connections.shutdown().await;
    }
    listener
}

/// Serves one connection until it ends, a deadline passes, or shutdown closes it.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let guard = activity.request_started();
            // `/api/` needs the admin token (or a loopback listener): imports may take
            // their time there.
            let timed = !request.uri().path().starts_with("/api/");
            let mut request = request.map(|body| {
                if timed {
                    Body::new(DeadlineBody::new(body, limits.body))
                } else {
                    Body::new(body)
                }
            });
            // As `axum::serve` does: handlers may take `ConnectInfo<SocketAddr>`.
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move {
                let Ok(response) = router.call(request).await;
                Ok::<_, std::convert::Infallible>(finish(response, guard))
            }
        })
    };
    // Timeouts are enforced below, by `Activity`: hyper's header timeout also runs while
    // a keep-alive connection waits, so it cannot tell headers from idleness.
    let connection = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = *stopped.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            reason = activity.expired(limits) => {
                // Dropping the connection closes the socket.
                metrics::counter!(names::CONNECTIONS_CLOSED, "reason" => reason).increment(1);
                tracing::debug!(reason, "connection closed");
                return;
            }
            changed = stopped.changed(), if !draining => {
                if changed.is_err() || *stopped.borrow() {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Hands the response to hyper with the request's guard inside its body, so the
/// connection counts as busy until the body has been sent; a body timeout also closes
/// the connection (the rest of that body is not worth reading).
fn finish(response: Response<Body>, guard: RequestGuard) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    if parts.status == StatusCode::REQUEST_TIMEOUT {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
        metrics::counter!(names::CONNECTIONS_CLOSED, "reason" => "body_timeout").increment(1);
    }
    Response::from_parts(
        parts,
        Body::new(GuardedBody {
            inner: body,
            _guard: guard,
        }),
    )
}

/// What a connection is doing, for its deadlines.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
}

#[derive(Debug)]
struct ActivityState {
    /// Requests being handled or answered.
    busy: u32,
    /// Requests answered so far.
    served: u64,
    /// When the connection started waiting for its next request.
    waiting_since: Instant,
    /// First byte of the next request, once one arrived.
    head_started: Option<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                busy: 0,
                served: 0,
                waiting_since: Instant::now(),
                head_started: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bytes_read(&self) {
        let mut state = self.lock();
        if state.busy == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
        }
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        let mut state = self.lock();
        state.busy += 1;
        state.head_started = None;
        RequestGuard(self.clone())
    }

    /// The next deadline and what it is for; none while a request is busy.
    fn deadline(&self, limits: Limits) -> Option<(Instant, &'static str)> {
        let state = self.lock();
        if state.busy > 0 {
            None
        } else if state.served == 0 {
            Some((state.waiting_since + limits.header_read, "header_timeout"))
        } else if let Some(started) = state.head_started {
            Some((started + limits.header_read, "header_timeout"))
        } else {
            Some((state.waiting_since + limits.idle, "idle_timeout"))
        }
    }

    /// Completes when a deadline has passed, with its reason.
    async fn expired(&self, limits: Limits) -> &'static str {
        loop {
            match self.deadline(limits) {
                Some((at, reason)) if at <= Instant::now() => return reason,
                Some((at, _)) => tokio::time::sleep_until(at).await,
                // A busy request has no deadline here; look again later.
                None => tokio::time::sleep(limits.header_read).await,
            }
        }
    }
}

/// Marks a request busy until dropped (with its response body).
#[derive(Debug)]
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.busy = state.busy.saturating_sub(1);
        state.served += 1;
        state.waiting_since = Instant::now();
        state.head_started = None;
    }
}

/// The connection's socket, noting when bytes arrive.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Why a request body was cut off: it did not arrive whole in time.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the body did not arrive within {} s of the request's headers", .0.as_secs())]
pub struct BodyTimeout(Duration);

impl BodyTimeout {
    /// Finds a body timeout among the causes of `error`.
    pub fn find(error: &(dyn std::error::Error + 'static)) -> Option<BodyTimeout> {
        let mut cause = Some(error);
        while let Some(current) = cause {
            if let Some(timeout) = current.downcast_ref::<BodyTimeout>() {
                return Some(*timeout);
            }
            cause = current.source();
        }
        None
    }
}

/// A request body with one deadline for all of it (a per-read timeout would let a
/// client send a byte a second for ever).
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(self.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request's guard until it is dropped.
struct GuardedBody {
    inner: Body,
    _guard: RequestGuard,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
