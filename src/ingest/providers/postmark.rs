//! Placeholder.

use super::{Element, ElementError, Provider};
use crate::event::Event;

/// The adapter.
pub struct Postmark;

impl Provider for Postmark {
    fn name(&self) -> &str {
        "postmark"
    }

    fn normalize(&self, _element: &Element<'_>, _out: &mut Vec<Event>) -> Result<(), ElementError> {
        Err(ElementError::Malformed("not yet".into()))
    }
}
