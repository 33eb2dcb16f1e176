//! `GET /api/backup`: streams a consistent backup of the running store (see
//! [`crate::store::backup`] for the format and what "consistent" means here).
//!
//! A backup holds every event, address and secret-bearing source record, so it needs the
//! admin token even where the rest of the admin API is open: without one configured the
//! route refuses.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::{ApiError, AppState};

/// Chunks buffered between the reading thread and the connection.
const CHANNEL_CHUNKS: usize = 8;

/// Starts the backup on a blocking thread and streams it as it is read.
pub async fn download(State(state): State<AppState>) -> Result<Response, ApiError> {
    if state.admin_token.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_token_required",
            "backups hold every event and address: set `admin_token` (or \
             MAILWARDEN_ADMIN_TOKEN) to take them over HTTP",
        ));
    }
    let (sender, receiver) = mpsc::channel::<std::io::Result<Bytes>>(CHANNEL_CHUNKS);
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        match store.write_backup(ChannelWriter(sender.clone())) {
            Ok(summary) => tracing::info!(
                entries = summary.entries,
                bytes = summary.bytes,
                secs = started.elapsed().as_secs_f64(),
                "backup sent"
            ),
            Err(error) => {
                tracing::warn!(%error, "backup not completed");
                // Ends the body with an error: the client sees a cut-off stream, which
                // its check refuses.
                let _ = sender.blocking_send(Err(std::io::Error::other(error.to_string())));
            }
        }
    });
    let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let name = format!(
        "attachment; filename=\"mailwarden-{}.backup\"",
        jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

/// Hands what the backup writes to the connection; fails once the client has gone, which
/// stops the backup.
struct ChannelWriter(mpsc::Sender<std::io::Result<Bytes>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
