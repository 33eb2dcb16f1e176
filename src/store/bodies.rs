//! Raw request bodies, kept as received so that what a provider sent can always be looked
//! at again (and re-normalized after an adapter fix), whatever the adapter made of it.
//!
//! A value is a 4-byte big-endian header length, the header as JSON, then the body bytes
//! (they need not be UTF-8): untouched, or, for bodies of [`COMPRESS_FROM`] bytes and more
//! (batches), compressed with zstd as the header says. Batches of JSON events repeat their
//! field names in every element, so they shrink about tenfold, for well under a
//! microsecond per event.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, keys};
use crate::event::EventId;

/// Bodies this large and larger are stored compressed.
pub const COMPRESS_FROM: usize = 2 * 1024;
/// zstd level: the fastest, which already finds the repetition of JSON batches.
const ZSTD_LEVEL: i32 = 1;
/// The `compression` of a zstd-compressed body.
const ZSTD: &str = "zstd";

/// What is known about a stored body besides its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BodyHeader {
    /// Source the body was posted to.
    pub source: String,
    /// When it was received.
    pub received_at: Timestamp,
    /// How the stored bytes are compressed (`zstd`), if they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
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
        (id, encode_body(header, body))
    }

    /// Returns a stored body and its header.
    pub fn body(&self, id: EventId) -> Result<Option<(BodyHeader, Vec<u8>)>, StoreError> {
        match self.trees().bodies.get(id.to_be_bytes())? {
            Some(value) => decode_body(id, &value).map(Some),
            None => Ok(None),
        }
    }
}

/// A body's stored form, as both backends keep it: the length of its JSON header, the
/// header, then the bytes (zstd-compressed when that makes them smaller).
pub fn encode_body(header: &BodyHeader, body: &[u8]) -> Vec<u8> {
    let compressed = (body.len() >= COMPRESS_FROM)
        .then(|| zstd::bulk::compress(body, ZSTD_LEVEL).ok())
        .flatten()
        .filter(|compressed| compressed.len() < body.len());
    let header = BodyHeader {
        compression: compressed.as_ref().map(|_| ZSTD.to_owned()),
        ..header.clone()
    };
    let stored = compressed.as_deref().unwrap_or(body);
    let header_json = serde_json::to_vec(&header).expect("body header serializes");
    let header_len = u32::try_from(header_json.len()).expect("body header is small");
    let mut value = Vec::with_capacity(4 + header_json.len() + stored.len());
    value.extend_from_slice(&header_len.to_be_bytes());
    value.extend_from_slice(&header_json);
    value.extend_from_slice(stored);
    value
}

/// Decodes a stored body value into its header and the bytes as received.
pub(crate) fn decode_body(id: EventId, value: &[u8]) -> Result<(BodyHeader, Vec<u8>), StoreError> {
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
    let header: BodyHeader =
        serde_json::from_slice(header_bytes).map_err(|e| corrupt(e.to_string()))?;
    let stored = &value[header_end..];
    let body = match header.compression.as_deref() {
        None => stored.to_vec(),
        Some(ZSTD) => zstd::stream::decode_all(stored).map_err(|e| corrupt(e.to_string()))?,
        Some(other) => return Err(corrupt(format!("unknown compression `{other}`"))),
    };
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_stored_compressed_and_read_back_as_received() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &super::super::StoreOptions::default()).unwrap();
        let header = BodyHeader {
            source: "sp".into(),
            received_at: Timestamp::now(),
            compression: None,
        };
        let element = r#"{"event":"delivered","email":"user@example.com","timestamp":1763600000}"#;
        let batch = format!("[{}]", vec![element; 200].join(","));
        for body in [batch.as_bytes(), element.as_bytes(), b"\xff\x00 not utf-8"] {
            let (id, value) = store.encode_body(&header, body);
            if body.len() >= COMPRESS_FROM {
                assert!(
                    value.len() * 5 < body.len(),
                    "{} of {}",
                    value.len(),
                    body.len()
                );
            }
            let (_, back) = decode_body(id, &value).unwrap();
            assert_eq!(back, body);
        }
    }
}
