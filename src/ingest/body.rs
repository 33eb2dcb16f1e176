//! Body checks: whether a request body is JSON holding an event or a list of events.
//!
//! [`parse_body`] refuses what can never be read as events (not UTF-8, not JSON, nested
//! too deep, a bare string or number) with a [`BodyError`] saying where and why, and
//! otherwise splits the body into its elements without parsing them further: each element
//! is handed to its provider's adapter as raw JSON.

use serde_json::value::RawValue;

use super::fields::JsonType;

/// Why a whole body was refused. The body is kept in quarantine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Zero bytes, or only whitespace.
    #[error("the body is empty")]
    Empty,
    /// Not UTF-8 (JSON must be).
    #[error("the body is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// Not JSON.
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser found.
        message: String,
    },
    /// Arrays and objects nested deeper than [`MAX_JSON_DEPTH`].
    #[error("JSON nested deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep,
    /// JSON, but a string or number rather than an event or a list of events.
    #[error("expected a JSON object or array of objects, found {0}")]
    UnexpectedType(JsonType),
    /// A form-encoded body without the field that carries the events.
    #[error("the form has no `{0}` field")]
    MissingFormField(&'static str),
}

impl BodyError {
    /// Short machine-readable name for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::Empty => "empty_body",
            BodyError::InvalidUtf8 { .. } => "invalid_utf8",
            BodyError::Malformed { .. } => "malformed_json",
            BodyError::UnexpectedType(_) => "unexpected_json_type",
            BodyError::TooDeep => "json_too_deep",
            BodyError::MissingFormField(_) => "missing_form_field",
        }
    }
}

/// Checks a body and splits it into elements: the object itself, or the array's items.
pub fn parse_body(body: &[u8]) -> Result<Vec<&RawValue>, BodyError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|error| BodyError::InvalidUtf8 {
        offset: error.valid_up_to(),
    })?;
    if text.trim().is_empty() {
        return Err(BodyError::Empty);
    }
    // Checked before parsing: stored events must always be readable back, and readers
    // (serde_json's default limit) stop at 128 levels.
    if json_depth(text.as_bytes()) > MAX_JSON_DEPTH {
        return Err(BodyError::TooDeep);
    }
    let malformed = |error: serde_json::Error| BodyError::Malformed {
        line: error.line(),
        column: error.column(),
        message: clean_parser_message(&error),
    };
    let document: &RawValue = serde_json::from_str(text).map_err(malformed)?;
    match JsonType::of(document) {
        JsonType::Array => serde_json::from_str(document.get()).map_err(malformed),
        JsonType::Object => Ok(vec![document]),
        other => Err(BodyError::UnexpectedType(other)),
    }
}

/// Deepest nesting of arrays and objects accepted in a body. Provider payloads use a
/// handful of levels; stored events add two (the event and its metadata).
pub const MAX_JSON_DEPTH: usize = 64;

/// Returns the deepest nesting of `[` and `{` outside strings.
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    outside_strings(bytes, |_, byte| match byte {
        b'[' | b'{' => {
            depth += 1;
            deepest = deepest.max(depth);
        }
        b']' | b'}' => depth = depth.saturating_sub(1),
        _ => {}
    });
    deepest
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn clean_parser_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// Calls `visit` with every byte of `json` that is not inside a string (the quotes
/// themselves included), with its index.
pub(crate) fn outside_strings(json: &[u8], mut visit: impl FnMut(usize, u8)) {
    let (mut in_string, mut escaped) = (false, false);
    for (index, &byte) in json.iter().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            if byte == b'"' {
                in_string = true;
            }
            visit(index, byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_say_what_is_wrong() {
        let error = |body: &[u8]| parse_body(body).err();
        assert_eq!(error(b""), Some(BodyError::Empty));
        assert_eq!(error(b" \n "), Some(BodyError::Empty));
        assert_eq!(
            error(b"{\"a\":\xff}"),
            Some(BodyError::InvalidUtf8 { offset: 5 })
        );
        assert_eq!(
            error(b"42"),
            Some(BodyError::UnexpectedType(JsonType::Number))
        );
        let deep = format!("[{{\"a\":{}{}}}]", "[".repeat(70), "]".repeat(70));
        assert_eq!(error(deep.as_bytes()), Some(BodyError::TooDeep));
        let fine = format!(
            "[{{\"a\":{}{}, \"s\": \"[[[[\"}}]",
            "[".repeat(20),
            "]".repeat(20)
        );
        assert!(parse_body(fine.as_bytes()).is_ok());
        match parse_body(b"[\n {\"a\": 1},\n]") {
            Err(BodyError::Malformed { line, column, .. }) => assert_eq!((line, column), (3, 1)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bodies_split_into_elements() {
        assert_eq!(parse_body(b"{\"a\":1}").unwrap().len(), 1);
        assert_eq!(parse_body(b"[{\"a\":1}, 2, \"x\"]").unwrap().len(), 3);
        assert_eq!(parse_body(b"\xEF\xBB\xBF[]").unwrap().len(), 0);
    }
}
