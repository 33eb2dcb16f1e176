//! Placeholder.

use super::{Element, ElementError, Provider};
use crate::event::Event;

/// The adapter.
pub struct Brevo;

impl Provider for Brevo {
    fn name(&self) -> &str {
        "brevo"
    }

    fn normalize(&self, _element: &Element<'_>, _out: &mut Vec<Event>) -> Result<(), ElementError> {
        Err(ElementError::Malformed("not yet".into()))
    }
}
