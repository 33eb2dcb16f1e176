//! The suppression list in PostgreSQL: one row per address in `mw_suppressions`, the
//! whole entry (history included) in `record`, the fields queries filter on beside it.
//!
//! What a change does to an entry is decided by the same functions as in the embedded
//! store ([`crate::store::suppressions::suppressed`], [`crate::store::suppressions::lifted`]);
//! only the atomic read-modify-write differs: an existing row is locked (`FOR UPDATE`)
//! for the change, and a new address is inserted with `ON CONFLICT DO NOTHING`, so that of
//! several nodes adding one address at once exactly one adds it and the others see it.

use jiff::Timestamp;
use tokio_postgres::types::ToSql;

use super::{PgError, PgStore, sql_error};
use crate::store::suppressions::SuppressionStatus;
use crate::store::suppressions::{
    SuppressOutcome, SuppressRequest, Suppression, domain_of, lifted, suppressed, suppression_key,
};

/// Attempts at a change before giving up (each retry means another node wrote the same
/// address in between).
const MAX_ATTEMPTS: usize = 16;

impl PgStore {
    /// Returns the entry for `address` (normalized), in force or not.
    pub async fn suppression(&self, address: &str) -> Result<Option<Suppression>, PgError> {
        let address = &*suppression_key(address, self.fold_local_parts);
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT record FROM mw_suppressions WHERE address = $1",
                &[&address],
            )
            .await
            .map_err(|e| sql_error("reading a suppression", e))?;
        row.map(|row| decode(address, row.get(0))).transpose()
    }

    /// Suppresses an address as [`crate::store::Store::suppress_since`] does.
    pub async fn suppress_since(
        &self,
        request: &SuppressRequest,
        created_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(Suppression, SuppressOutcome), PgError> {
        let address = &*suppression_key(&request.address, self.fold_local_parts);
        self.update(address, |existing| {
            Some(suppressed(request, address, existing, created_at, now))
        })
        .await?
        .ok_or_else(|| PgError::Sql {
            context: "suppressing an address".into(),
            reason: "the change was refused".into(),
        })
    }

    /// Lifts the suppression of `address` as [`crate::store::Store::unsuppress`] does.
    pub async fn unsuppress(
        &self,
        address: &str,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Option<Suppression>, PgError> {
        let address = &*suppression_key(address, self.fold_local_parts);
        let changed = self
            .update(address, |existing| {
                lifted(existing, by, reason, now).map(|entry| (entry, ()))
            })
            .await?;
        Ok(changed.map(|(entry, ())| entry))
    }

    /// Atomic read-modify-write of one address's row; `change` returns the new entry (and
    /// a result) or `None` to leave the row as it is.
    async fn update<T>(
        &self,
        address: &str,
        change: impl Fn(Option<Suppression>) -> Option<(Suppression, T)>,
    ) -> Result<Option<(Suppression, T)>, PgError> {
        let mut client = self.client().await?;
        for _ in 0..MAX_ATTEMPTS {
            let transaction = client
                .transaction()
                .await
                .map_err(|e| sql_error("starting a suppression change", e))?;
            let existing = transaction
                .query_opt(
                    "SELECT record FROM mw_suppressions WHERE address = $1 FOR UPDATE",
                    &[&address],
                )
                .await
                .map_err(|e| sql_error("reading a suppression", e))?
                .map(|row| decode(address, row.get(0)))
                .transpose()?;
            let was_there = existing.is_some();
            let Some((entry, result)) = change(existing) else {
                return Ok(None);
            };
            let record = serde_json::to_value(&entry).expect("suppression serializes");
            let params: [&(dyn ToSql + Sync); 8] = [
                &address,
                &domain_of(address),
                &entry.reason,
                &entry.created_at,
                &entry.expires_at,
                &record,
                &entry.rule,
                &entry.active,
            ];
            let written = if was_there {
                transaction
                    .execute(
                        "UPDATE mw_suppressions SET domain = $2, reason = $3,
                             created_at = $4, expires_at = $5, record = $6,
                             rule = $7, active = $8
                         WHERE address = $1",
                        &params,
                    )
                    .await
            } else {
                transaction
                    .execute(
                        "INSERT INTO mw_suppressions
                             (address, domain, reason, created_at, expires_at, record, rule, active)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT (address) DO NOTHING",
                        &params,
                    )
                    .await
            }
            .map_err(|e| sql_error("writing a suppression", e))?;
            if written == 0 {
                // Another node added the address since it was read: decide again on theirs.
                transaction
                    .rollback()
                    .await
                    .map_err(|e| sql_error("retrying a suppression change", e))?;
                continue;
            }
            transaction
                .commit()
                .await
                .map_err(|e| sql_error("committing a suppression change", e))?;
            return Ok(Some((entry, result)));
        }
        Err(PgError::Sql {
            context: format!("changing the suppression of {address}"),
            reason: format!("{MAX_ATTEMPTS} attempts lost to concurrent writers"),
        })
    }
}

/// Decodes a row's `record`.
fn decode(address: &str, record: serde_json::Value) -> Result<Suppression, PgError> {
    serde_json::from_value(record).map_err(|error| PgError::Sql {
        context: format!("decoding the suppression of {address}"),
        reason: error.to_string(),
    })
}

impl PgStore {
    /// What decides whether each of `addresses` (normalized) is suppressed, in one query
    /// (the bulk check before sending); addresses without an entry are left out.
    pub async fn suppression_statuses(
        &self,
        addresses: &[String],
    ) -> Result<std::collections::HashMap<String, SuppressionStatus>, PgError> {
        let keys: Vec<String> = addresses
            .iter()
            .map(|address| suppression_key(address, self.fold_local_parts).into_owned())
            .collect();
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT address, reason, rule, expires_at, active FROM mw_suppressions
                 WHERE address = ANY($1)",
                &[&keys],
            )
            .await
            .map_err(|e| sql_error("checking suppressions", e))?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    SuppressionStatus {
                        reason: row.get(1),
                        rule: row.get(2),
                        expires_at: row.get(3),
                        active: row.get(4),
                    },
                )
            })
            .collect())
    }
}
