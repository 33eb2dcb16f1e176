//! Alert e-mails: throttling windows, message text and SMTP delivery with lettre.
//!
//! An alert with a `key` and `once_per` opens a window: the first alert goes out at once,
//! later ones with the same key inside the window are counted and folded into one digest
//! mail sent when the window ends ("12 more ... in the last hour"), never dropped. Windows
//! live in sled, so a restart does not lose a digest. Without SMTP settings, alerts are
//! logged and kept in the alert log (`GET /api/alerts`).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::config::{AlertsConfig, SmtpTls};
use crate::event::EventId;
use crate::store::{Store, StoreError};

/// Subject prefix of every alert.
pub const SUBJECT_PREFIX: &str = "[mailwarden]";
/// Subjects of folded alerts kept for the digest.
const DIGEST_SAMPLES: usize = 5;

/// One open throttling window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Window {
    /// When it closes.
    pub ends_at: Timestamp,
    /// Length in seconds.
    pub seconds: i64,
    /// Alerts folded into it.
    pub folded: u64,
    /// A few of their subjects.
    pub samples: Vec<String>,
    /// Recipients of the digest.
    pub to: Vec<String>,
    /// Rule that raised them.
    pub rule: String,
    /// The outbox action whose alert opened the window. The window and that action's
    /// "throttle checked" mark are two writes, so a crash between them runs the action
    /// again: it must find that it opened the window, not fold into it.
    #[serde(default)]
    pub opened_by: Option<EventId>,
}

/// What to do with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Send it.
    Send,
    /// Counted into the open window's digest.
    Folded,
}

/// Decides whether the alert of outbox action `action` with `key` goes out now or folds
/// into the open window. Asked again for the action that opened the window (after a
/// crash), it answers [`Throttle::Send`] again.
#[allow(clippy::too_many_arguments)]
pub fn throttle(
    store: &Store,
    action: Option<EventId>,
    key: &str,
    once_per: i64,
    subject: &str,
    to: &[String],
    rule: &str,
    now: Timestamp,
) -> Result<Throttle, StoreError> {
    store.update_throttle::<Window, Throttle>(key, |window| match window {
        Some(window) if action.is_some() && window.opened_by == action => {
            (Some(window), Throttle::Send)
        }
        Some(mut window) if window.ends_at > now => {
            window.folded += 1;
            if window.samples.len() < DIGEST_SAMPLES && !window.samples.iter().any(|s| s == subject)
            {
                window.samples.push(subject.to_owned());
            }
            (Some(window), Throttle::Folded)
        }
        // A window that ended but whose digest `close_windows` has not sent yet (it runs
        // every poll): fold into it, so the digest counts this alert too.
        Some(mut window) if window.folded > 0 => {
            window.folded += 1;
            if window.samples.len() < DIGEST_SAMPLES && !window.samples.iter().any(|s| s == subject)
            {
                window.samples.push(subject.to_owned());
            }
            (Some(window), Throttle::Folded)
        }
        _ => (
            Some(Window {
                ends_at: now + SignedDuration::from_secs(once_per.max(1)),
                seconds: once_per.max(1),
                folded: 0,
                samples: Vec::new(),
                to: to.to_vec(),
                rule: rule.to_owned(),
                opened_by: action,
            }),
            Throttle::Send,
        ),
    })
}

/// A digest to send for a window that ended.
#[derive(Debug, Clone)]
pub struct Digest {
    /// Throttle key.
    pub key: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Rule.
    pub rule: String,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
}

/// Closes windows that ended: returns a digest for each that folded alerts.
pub fn close_windows(store: &Store, now: Timestamp) -> Result<Vec<Digest>, StoreError> {
    let mut digests = Vec::new();
    for (key, window) in store.throttle_windows::<Window>()? {
        if window.ends_at > now {
            continue;
        }
        let closed =
            store.update_throttle::<Window, Option<Window>>(&key, |current| match current {
                Some(current) if current.ends_at <= now => (None, Some(current)),
                other => (other, None),
            })?;
        let Some(window) = closed.filter(|w| w.folded > 0) else {
            continue;
        };
        let span = humanize(window.seconds);
        let first = window.samples.first().cloned().unwrap_or_default();
        digests.push(Digest {
            subject: format!(
                "{} more alerts like \"{first}\" in the last {span}",
                window.folded
            ),
            body: format!(
                "{} more alerts with key \"{key}\" (rule {}) arrived in the last {span} and were \
                 folded into this digest.\n\nSubjects:\n{}\n",
                window.folded,
                window.rule,
                window
                    .samples
                    .iter()
                    .map(|s| format!("- {s}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            key,
            to: window.to,
            rule: window.rule,
        });
    }
    Ok(digests)
}

fn humanize(seconds: i64) -> String {
    match seconds {
        s if s % 86_400 == 0 && s >= 86_400 => plural(s / 86_400, "day"),
        s if s % 3_600 == 0 && s >= 3_600 => plural(s / 3_600, "hour"),
        s if s % 60 == 0 && s >= 60 => plural(s / 60, "minute"),
        s => plural(s, "second"),
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        unit.to_owned()
    } else {
        format!("{n} {unit}s")
    }
}

/// An entry of the alert log.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRecord {
    /// When.
    pub at: Timestamp,
    /// `sent`, `logged` (no SMTP configured) or `folded`.
    pub status: &'static str,
    /// Rule.
    pub rule: String,
    /// Event that raised it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    /// Recipients.
    pub to: Vec<String>,
    /// Full subject.
    pub subject: String,
    /// Body.
    pub body: String,
}

/// Sends alert mail, or only logs it when no SMTP server is configured.
pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Option<Mailbox>,
    default_to: Vec<String>,
}

impl Mailer {
    /// Builds the transport from the settings.
    pub fn new(config: &AlertsConfig) -> anyhow::Result<Mailer> {
        let Some(smtp) = &config.smtp else {
            return Ok(Mailer {
                transport: None,
                from: None,
                default_to: config.to.clone(),
            });
        };
        let mut builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)?,
        };
        let port = smtp.port.unwrap_or(match smtp.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        });
        builder = builder
            .port(port)
            .timeout(Some(Duration::from_secs(smtp.timeout_secs)));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Mailer {
            transport: Some(builder.build()),
            from: Some(smtp.from.parse()?),
            default_to: config.to.clone(),
        })
    }

    /// Whether mail actually goes out.
    pub fn enabled(&self) -> bool {
        self.transport.is_some()
    }

    /// Recipients for an alert that names `to` (or none).
    pub fn recipients(&self, to: &[String]) -> Vec<String> {
        if to.is_empty() {
            self.default_to.clone()
        } else {
            to.to_vec()
        }
    }

    /// Sends one message. Errors are worth retrying unless they say otherwise.
    pub async fn send(&self, to: &[String], subject: &str, body: &str) -> Result<(), SendError> {
        let (Some(transport), Some(from)) = (&self.transport, &self.from) else {
            return Ok(());
        };
        if to.is_empty() {
            return Err(SendError::Permanent(
                "no recipients: set alerts.to or give `to` in the rule".into(),
            ));
        }
        let mut message = Message::builder()
            .from(from.clone())
            .subject(format!("{SUBJECT_PREFIX} {subject}"))
            .header(ContentType::TEXT_PLAIN);
        for recipient in to {
            let mailbox: Mailbox = recipient.parse().map_err(|error| {
                SendError::Permanent(format!("recipient `{recipient}`: {error}"))
            })?;
            message = message.to(mailbox);
        }
        let message = message
            .body(body.to_owned())
            .map_err(|error| SendError::Permanent(error.to_string()))?;
        match transport.send(message).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_permanent() => Err(SendError::Permanent(error.to_string())),
            Err(error) => Err(SendError::Temporary(error.to_string())),
        }
    }
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server or connection failed; try again later.
    #[error("{0}")]
    Temporary(String),
    /// It will never work as it is.
    #[error("{0}")]
    Permanent(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn the_action_that_opened_a_window_is_sent_again_after_a_crash_and_others_fold() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let to = vec!["ops@example.com".to_owned()];
        let ask = |store: &Store, action: u64| {
            throttle(
                store,
                Some(EventId(action)),
                "complaint",
                3_600,
                "a complaint",
                &to,
                "complaint",
                now,
            )
            .unwrap()
        };
        {
            let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
            assert_eq!(ask(&store, 7), Throttle::Send);
            // Killed here: the window is stored, the action's "checked" mark is not.
            store.flush_blocking().unwrap();
        }
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        assert_eq!(ask(&store, 7), Throttle::Send, "its own window folded it");
        assert_eq!(ask(&store, 8), Throttle::Folded);
        assert_eq!(ask(&store, 9), Throttle::Folded);
    }
}
