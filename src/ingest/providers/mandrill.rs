//! Placeholder.

use super::{Element, ElementError, Provider};
use crate::event::Event;

/// The adapter.
pub struct Mandrill;

impl Provider for Mandrill {
    fn name(&self) -> &str {
        "mandrill"
    }

    fn normalize(&self, _element: &Element<'_>, _out: &mut Vec<Event>) -> Result<(), ElementError> {
        Err(ElementError::Malformed("not yet".into()))
    }
}
