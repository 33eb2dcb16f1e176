//! Placeholder.

use super::{Element, ElementError, Provider};
use crate::event::Event;

/// The adapter.
pub struct Mailjet;

impl Provider for Mailjet {
    fn name(&self) -> &str {
        "mailjet"
    }

    fn normalize(&self, _element: &Element<'_>, _out: &mut Vec<Event>) -> Result<(), ElementError> {
        Err(ElementError::Malformed("not yet".into()))
    }
}
