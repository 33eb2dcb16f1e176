//! A lenient reader for one provider JSON object, shared by every adapter.
//!
//! Providers send the same field as a string in one event and a number in the next, leave
//! fields empty, or add fields nobody documented. [`Fields`] keeps each field's raw JSON text
//! (so identifiers never pass through floating point), converts on request, turns a wrong
//! type into a warning instead of an error, and hands the fields nobody read back as
//! metadata.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Largest raw size of a field copied into `metadata`; larger ones stay only in `raw`.
pub const MAX_METADATA_FIELD_BYTES: usize = 4 * 1024;

/// Warnings collected while normalizing one element, shared by nested readers.
#[derive(Clone, Default)]
pub struct Warnings(Rc<RefCell<Vec<String>>>);

impl Warnings {
    /// Records a warning.
    pub fn push(&self, message: impl Into<String>) {
        self.0.borrow_mut().push(message.into());
    }

    /// Returns the warnings recorded so far, leaving the list empty.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.borrow_mut())
    }
}

/// The JSON type of a raw value, from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonType {
    /// A JSON string.
    String,
    /// A JSON number.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
}

impl JsonType {
    /// Returns the type of `raw`.
    pub fn of(raw: &RawValue) -> JsonType {
        match raw.get().as_bytes().first() {
            Some(b'"') => JsonType::String,
            Some(b'{') => JsonType::Object,
            Some(b'[') => JsonType::Array,
            Some(b't' | b'f') => JsonType::Bool,
            Some(b'n') => JsonType::Null,
            _ => JsonType::Number,
        }
    }
}

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonType::String => "a string",
            JsonType::Number => "a number",
            JsonType::Bool => "a boolean",
            JsonType::Null => "null",
            JsonType::Object => "an object",
            JsonType::Array => "an array",
        })
    }
}

/// One JSON object, field by field, with its raw values borrowed from the request body.
pub struct Fields<'a> {
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
    used: Vec<bool>,
    path: String,
    warnings: Warnings,
}

impl<'a> Fields<'a> {
    /// Reads `raw` as an object. Returns `None` when it is not one.
    pub fn parse(raw: &'a RawValue, warnings: Warnings) -> Option<Fields<'a>> {
        Fields::parse_at(raw, String::new(), warnings)
    }

    fn parse_at(raw: &'a RawValue, path: String, warnings: Warnings) -> Option<Fields<'a>> {
        if JsonType::of(raw) != JsonType::Object {
            return None;
        }
        let entries = serde_json::from_str::<Entries<'a>>(raw.get()).ok()?.0;
        let used = vec![false; entries.len()];
        Some(Fields {
            entries,
            used,
            path,
            warnings,
        })
    }

    /// Returns the shared warning list.
    pub fn warnings(&self) -> &Warnings {
        &self.warnings
    }

    fn qualified(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Records a warning about field `key`.
    pub fn warn(&self, key: &str, message: impl fmt::Display) {
        self.warnings
            .push(format!("field `{}`: {message}", self.qualified(key)));
    }

    /// Returns the raw value of `key` (the last one if the key repeats), marking it read.
    /// `null` reads as absent.
    pub fn raw(&mut self, key: &str) -> Option<&'a RawValue> {
        let mut found = None;
        for (index, (name, value)) in self.entries.iter().enumerate() {
            if name == key {
                self.used[index] = true;
                found = Some(*value);
            }
        }
        found.filter(|value| JsonType::of(value) != JsonType::Null)
    }

    /// Returns whether `key` is present and not null, without marking it read.
    pub fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|(name, value)| name == key && JsonType::of(value) != JsonType::Null)
    }

    /// Returns `key` as text: strings as they are, numbers and booleans as written.
    /// Empty and blank strings read as absent; objects and arrays give a warning.
    pub fn text(&mut self, key: &str) -> Option<String> {
        let raw = self.raw(key)?;
        match scalar_text(raw) {
            Ok(Some(text)) if !text.trim().is_empty() => Some(text.into_owned()),
            Ok(_) => None,
            Err(found) => {
                self.warn(key, format_args!("expected text, found {found}; ignored"));
                None
            }
        }
    }

    /// Returns the first of `keys` that holds text.
    pub fn text_of(&mut self, keys: &[&str]) -> Option<String> {
        let mut found = None;
        for key in keys {
            let value = self.text(key);
            if found.is_none() {
                found = value;
            }
        }
        found
    }

    /// Returns `key` as an integer: a JSON integer or a string holding one.
    pub fn integer(&mut self, key: &str) -> Option<i64> {
        let raw = self.raw(key)?;
        let text = match scalar_text(raw) {
            Ok(Some(text)) => text,
            Ok(None) => return None,
            Err(found) => {
                self.warn(
                    key,
                    format_args!("expected an integer, found {found}; ignored"),
                );
                return None;
            }
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return None;
        }
        match parse_integer(trimmed) {
            Some(value) => Some(value),
            None => {
                self.warn(
                    key,
                    format_args!("`{}` is not an integer; ignored", clip(trimmed, 40)),
                );
                None
            }
        }
    }

    /// Returns `key` as a boolean: `true`/`false`, `"true"`/`"false"`, `1`/`0`.
    pub fn boolean(&mut self, key: &str) -> Option<bool> {
        let raw = self.raw(key)?;
        match scalar_text(raw).ok().flatten().as_deref().map(str::trim) {
            Some("true" | "1" | "yes") => Some(true),
            Some("false" | "0" | "no") => Some(false),
            _ => {
                self.warn(key, "expected a boolean; ignored");
                None
            }
        }
    }

    /// Returns `key` as a nested object reader. Other types give a warning.
    pub fn object(&mut self, key: &str) -> Option<Fields<'a>> {
        let raw = self.raw(key)?;
        let path = self.qualified(key);
        let nested = Fields::parse_at(raw, path, self.warnings.clone());
        if nested.is_none() {
            self.warn(
                key,
                format_args!("expected an object, found {}; ignored", JsonType::of(raw)),
            );
        }
        nested
    }

    /// Returns `key` as a list of texts: an array of scalars, or one scalar.
    pub fn texts(&mut self, key: &str) -> Vec<String> {
        let Some(raw) = self.raw(key) else {
            return Vec::new();
        };
        match JsonType::of(raw) {
            JsonType::Array => {
                let items: Vec<&RawValue> = serde_json::from_str(raw.get()).unwrap_or_default();
                let mut texts = Vec::with_capacity(items.len());
                for item in items {
                    match scalar_text(item) {
                        Ok(Some(text)) if !text.trim().is_empty() => texts.push(text.into_owned()),
                        Ok(_) => {}
                        Err(found) => {
                            self.warn(key, format_args!("item is {found}; ignored"));
                        }
                    }
                }
                texts
            }
            _ => self.text(key).into_iter().collect(),
        }
    }

    /// Moves every field nobody read into `metadata`, under its original name.
    pub fn rest_into(&self, metadata: &mut Map<String, Value>) {
        for (index, (name, raw)) in self.entries.iter().enumerate() {
            if self.used[index] || JsonType::of(raw) == JsonType::Null {
                continue;
            }
            if raw.get().len() > MAX_METADATA_FIELD_BYTES {
                self.warn(
                    name,
                    format_args!(
                        "{} bytes, too large for metadata; kept in raw only",
                        raw.get().len()
                    ),
                );
                continue;
            }
            metadata.insert(name.to_string(), exact_value(raw));
        }
    }

    /// Copies `key` into `metadata` (under `name`) as it was sent, marking it read.
    pub fn copy_into(&mut self, key: &str, name: &str, metadata: &mut Map<String, Value>) {
        if let Some(raw) = self.raw(key) {
            if raw.get().len() <= MAX_METADATA_FIELD_BYTES {
                metadata.insert(name.to_owned(), exact_value(raw));
            }
        }
    }
}

/// Returns the text of a scalar: the unescaped string, or numbers and booleans as written.
/// `Ok(None)` is `null`; `Err` names the type of an object or array.
pub fn scalar_text(raw: &RawValue) -> Result<Option<Cow<'_, str>>, JsonType> {
    let text = raw.get();
    match JsonType::of(raw) {
        JsonType::String => {
            if text.contains('\\') {
                Ok(serde_json::from_str::<String>(text).ok().map(Cow::Owned))
            } else {
                Ok(Some(Cow::Borrowed(&text[1..text.len() - 1])))
            }
        }
        JsonType::Number | JsonType::Bool => Ok(Some(Cow::Borrowed(text))),
        JsonType::Null => Ok(None),
        other => Err(other),
    }
}

/// Parses `550`, `"550"`, `550.0` into an integer; other fractions are not integers.
fn parse_integer(text: &str) -> Option<i64> {
    if let Ok(value) = text.parse::<i64>() {
        return Some(value);
    }
    let (whole, fraction) = text.split_once('.')?;
    if fraction.bytes().all(|b| b == b'0') {
        whole.parse().ok()
    } else {
        None
    }
}

/// Converts a raw value to a `Value`, keeping integers too large for 64 bits as strings so
/// that no identifier is rounded through floating point.
pub fn exact_value(raw: &RawValue) -> Value {
    let text = raw.get();
    match JsonType::of(raw) {
        JsonType::Number
            if !text.contains(['.', 'e', 'E'])
                && text.parse::<i64>().is_err()
                && text.parse::<u64>().is_err() =>
        {
            Value::String(text.to_owned())
        }
        // Nested values too: a provider's object of ids keeps every digit.
        JsonType::Object if text.bytes().any(|b| b.is_ascii_digit()) => {
            serde_json::from_str::<Entries<'_>>(text).map_or(Value::Null, |entries| {
                Value::Object(
                    entries
                        .0
                        .into_iter()
                        .map(|(key, value)| (key.into_owned(), exact_value(value)))
                        .collect(),
                )
            })
        }
        JsonType::Array if text.bytes().any(|b| b.is_ascii_digit()) => {
            serde_json::from_str::<Vec<&RawValue>>(text).map_or(Value::Null, |items| {
                Value::Array(items.into_iter().map(exact_value).collect())
            })
        }
        _ => serde_json::from_str(text).unwrap_or(Value::Null),
    }
}

/// Returns at most `max` characters of `text`.
pub fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// Deserialized object entries, keys borrowed from the body where they have no escapes.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Entries(entries))
    }
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(key)))
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(key.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn numbers_and_strings_read_alike() {
        let body = raw(r#"{"a": "250", "b": 550, "c": "", "d": null, "e": 550.0}"#);
        let mut fields = Fields::parse(&body, Warnings::default()).unwrap();
        assert_eq!(fields.integer("a"), Some(250));
        assert_eq!(fields.integer("b"), Some(550));
        assert_eq!(fields.integer("c"), None);
        assert_eq!(fields.integer("d"), None);
        assert_eq!(fields.integer("e"), Some(550));
        assert_eq!(fields.text("b").as_deref(), Some("550"));
        assert!(fields.warnings().take().is_empty());
    }

    #[test]
    fn huge_ids_keep_every_digit() {
        let body = raw(r#"{"relid": 123456789012345678901234567890, "x": 1e400}"#);
        let mut fields = Fields::parse(&body, Warnings::default()).unwrap();
        assert_eq!(
            fields.text("relid").as_deref(),
            Some("123456789012345678901234567890")
        );
        let mut metadata = Map::new();
        let body2 = raw(r#"{"contactId": 98765432109876543210}"#);
        Fields::parse(&body2, Warnings::default())
            .unwrap()
            .rest_into(&mut metadata);
        assert_eq!(metadata["contactId"], "98765432109876543210");
        let nested =
            raw(r#"{"ids": {"a": 98765432109876543210, "b": [12345678901234567890123, 1.5]}}"#);
        let value = exact_value(&nested);
        assert_eq!(value["ids"]["a"], "98765432109876543210");
        assert_eq!(value["ids"]["b"][0], "12345678901234567890123");
        assert_eq!(value["ids"]["b"][1], 1.5);
    }

    #[test]
    fn wrong_types_become_warnings() {
        let body = raw(r#"{"subject": {"x": 1}, "code": "abc", "tags": ["a", 2, {"b":1}]}"#);
        let warnings = Warnings::default();
        let mut fields = Fields::parse(&body, warnings.clone()).unwrap();
        assert_eq!(fields.text("subject"), None);
        assert_eq!(fields.integer("code"), None);
        assert_eq!(fields.texts("tags"), vec!["a", "2"]);
        let messages = warnings.take();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("`subject`"));
    }

    #[test]
    fn escaped_keys_and_values_are_unescaped() {
        let body = raw(r#"{"sub\u006aect": "caf\u00e9 \"ok\""}"#);
        let mut fields = Fields::parse(&body, Warnings::default()).unwrap();
        assert_eq!(fields.text("subject").as_deref(), Some("café \"ok\""));
    }

    #[test]
    fn unread_fields_become_metadata() {
        let body = raw(r#"{"to": "a@b.c", "relid": 7, "custom": {"k": "v"}, "n": null}"#);
        let mut fields = Fields::parse(&body, Warnings::default()).unwrap();
        fields.text("to");
        let mut metadata = Map::new();
        fields.rest_into(&mut metadata);
        assert_eq!(metadata.len(), 2);
        assert_eq!(metadata["relid"], 7);
        assert_eq!(metadata["custom"]["k"], "v");
    }

    #[test]
    fn nested_warnings_name_their_path() {
        let body = raw(r#"{"delivery-status": {"code": [1]}}"#);
        let warnings = Warnings::default();
        let mut fields = Fields::parse(&body, warnings.clone()).unwrap();
        let mut status = fields.object("delivery-status").unwrap();
        assert_eq!(status.integer("code"), None);
        assert_eq!(
            warnings.take(),
            vec!["field `delivery-status.code`: expected an integer, found an array; ignored"]
        );
    }

    #[test]
    fn non_objects_are_not_fields() {
        assert!(Fields::parse(&raw("[1]"), Warnings::default()).is_none());
        assert!(Fields::parse(&raw("\"x\""), Warnings::default()).is_none());
    }
}
