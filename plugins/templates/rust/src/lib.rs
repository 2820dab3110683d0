//! The `{{name}}` plugin.
//!
//! `validate` rejects an event without a `programId` attribute. `transform` looks the
//! program up in core data: a store error asks for a retry, an unknown program drops the
//! event, a known one gets its `programName` and a `label` (config key `label`, default
//! `checked`) appended to the attributes.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use adtrack::plugin::{config, core_data};
use exports::adtrack::plugin::handler::{Event, Guest, PluginError};

struct Plugin;

impl Guest for Plugin {
    fn validate(event: Event) -> Result<(), PluginError> {
        program_id(&event).map(|_| ())
    }

    fn transform(mut event: Event) -> Result<Vec<Event>, PluginError> {
        let id = program_id(&event)?.to_owned();
        let record = match core_data::lookup(&id) {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(Vec::new()),
            Err(error) => {
                return Err(PluginError::Retry(format!("core data unavailable: {error}")));
            }
        };
        if let Some((_, name)) = record.iter().find(|(field, _)| field == "programName") {
            event.attributes.push(("programName".to_owned(), name.clone()));
        }
        let label = config::get("label").unwrap_or_else(|| "checked".to_owned());
        event.attributes.push(("label".to_owned(), label));
        Ok(vec![event])
    }
}

/// The event's `programId`, or a rejection.
fn program_id(event: &Event) -> Result<&str, PluginError> {
    event
        .attributes
        .iter()
        .find(|(name, _)| name == "programId")
        .map(|(_, value)| value.as_str())
        .ok_or_else(|| PluginError::Reject("missing programId".to_owned()))
}

export!(Plugin);
