//! Placeholder.

use super::{Element, ElementError, Provider};
use crate::event::Event;

/// The adapter.
pub struct SparkPost;

impl Provider for SparkPost {
    fn name(&self) -> &str {
        "sparkpost"
    }

    fn normalize(&self, _element: &Element<'_>, _out: &mut Vec<Event>) -> Result<(), ElementError> {
        Err(ElementError::Malformed("not yet".into()))
    }
}
