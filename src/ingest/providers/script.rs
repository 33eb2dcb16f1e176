//! User-defined providers: `providers/<name>.rhai` scripts that turn one element of a
//! custom JSON body into events of the same model.

use std::sync::Arc;

use super::{Element, ElementError, Provider};
use crate::event::Event;

/// The user-defined providers of a directory.
#[derive(Default)]
pub struct ScriptProviders {
    providers: Vec<Arc<ScriptProvider>>,
}

impl ScriptProviders {
    /// No user-defined providers.
    pub fn empty() -> ScriptProviders {
        ScriptProviders::default()
    }

    /// Loads the providers of `config.providers_dir`.
    pub fn load(_config: &crate::config::Config) -> anyhow::Result<ScriptProviders> {
        Ok(ScriptProviders::empty())
    }

    /// Returns the names of the providers.
    pub fn names(&self) -> Vec<String> {
        self.providers.iter().map(|p| p.name.clone()).collect()
    }

    /// Returns the provider called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<ScriptProvider>> {
        self.providers.iter().find(|p| p.name == name).cloned()
    }
}

/// One user-defined provider.
pub struct ScriptProvider {
    name: String,
}

impl Provider for ScriptProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn normalize(&self, _element: &Element<'_>, _out: &mut Vec<Event>) -> Result<(), ElementError> {
        Err(ElementError::Malformed("not yet".into()))
    }
}
