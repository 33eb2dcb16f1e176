//! Raw request bodies, kept as received so that what a provider sent can always be looked
//! at again (and re-normalized after an adapter fix), whatever the adapter made of it.
//!
//! A value is a 4-byte big-endian header length, the header as JSON, then the body bytes
//! untouched (they need not be UTF-8).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, keys};
use crate::event::EventId;

/// What is known about a stored body besides its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BodyHeader {
    /// Source the body was posted to.
    pub source: String,
    /// When it was received.
    pub received_at: Timestamp,
}

impl Store {
    /// Stores a request body and returns its id. Not flushed: the commit that follows (or
    /// the next one) makes it durable.
    pub fn put_body(&self, header: &BodyHeader, body: &[u8]) -> Result<EventId, StoreError> {
        let (id, value) = self.encode_body(header, body);
        self.trees().bodies.insert(id.to_be_bytes(), value)?;
        Ok(id)
    }

    /// Gives a body its id and stored form, to be written with the request's events (see
    /// `IngestBatch::body`).
    pub fn encode_body(&self, header: &BodyHeader, body: &[u8]) -> (EventId, Vec<u8>) {
        let id = self.next_id();
        let header_json = serde_json::to_vec(header).expect("body header serializes");
        let header_len = u32::try_from(header_json.len()).expect("body header is small");
        let mut value = Vec::with_capacity(4 + header_json.len() + body.len());
        value.extend_from_slice(&header_len.to_be_bytes());
        value.extend_from_slice(&header_json);
        value.extend_from_slice(body);
        (id, value)
    }

    /// Returns a stored body and its header.
    pub fn body(&self, id: EventId) -> Result<Option<(BodyHeader, Vec<u8>)>, StoreError> {
        let Some(value) = self.trees().bodies.get(id.to_be_bytes())? else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            tree: keys::BODIES,
            reason: format!("{id}: {reason}"),
        };
        let header_len = value
            .get(..4)
            .map(|bytes| u32::from_be_bytes(bytes.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| corrupt("truncated".into()))?;
        let header_end = 4 + header_len;
        let header_bytes = value
            .get(4..header_end)
            .ok_or_else(|| corrupt("truncated header".into()))?;
        let header = serde_json::from_slice(header_bytes).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some((header, value[header_end..].to_vec())))
    }
}
