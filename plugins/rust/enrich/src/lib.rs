//! Enriches tracking events with their program's core data.
//!
//! `validate` rejects events without a `programId` attribute. `transform` looks the program up
//! in core data and copies the configured fields into the event's attributes (replacing any
//! attribute of the same name). An unknown program is rejected; an unreachable store asks the
//! host to retry.
//!
//! Config keys:
//! - `fields`: comma-separated names of the core-data fields to copy
//!   (default `programName,checksum,customerId,customerName`).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "batch-plugin",
});

use std::sync::OnceLock;

use adtrack::plugin::{config, core_data};
use exports::adtrack::plugin::handler::{Event, Guest, PluginError};
use plugin_batch::{EventView, Verdict};

/// The core-data fields copied when the `fields` config key is not set.
const DEFAULT_FIELDS: &str = "programName,checksum,customerId,customerName";

struct Enrich;

impl Guest for Enrich {
    fn validate(event: Event) -> Result<(), PluginError> {
        program_id(&event).map(|_| ())
    }

    fn transform(mut event: Event) -> Result<Vec<Event>, PluginError> {
        let enrichment = enrichment(program_id(&event)?)?;
        for (name, value) in &enrichment {
            set_attribute(&mut event.attributes, name, value);
        }
        Ok(vec![event])
    }
}

/// `validate` then `transform` over an event read in place: only the attributes it
/// sets cross back.
fn enrich_in_place(event: &EventView<'_>) -> Result<Verdict, PluginError> {
    let program_id = event
        .attribute("programId")
        .filter(|value| !value.is_empty())
        .ok_or_else(missing_program_id)?;
    Ok(Verdict::KeepWith(enrichment(program_id)?))
}

/// The configured fields of program `program_id`'s core-data record, in the configured
/// order: the attributes `transform` sets.
fn enrichment(program_id: &str) -> Result<Vec<(String, String)>, PluginError> {
    let record = match core_data::lookup(program_id) {
        Ok(Some(record)) => record,
        Ok(None) => {
            return Err(PluginError::Reject(format!("unknown program {program_id}")));
        }
        Err(error) => {
            return Err(PluginError::Retry(format!(
                "core data unavailable: {error}"
            )));
        }
    };
    Ok(fields()
        .iter()
        .filter_map(|field| {
            let (_, value) = record.iter().find(|(name, _)| name == field)?;
            Some((field.clone(), value.clone()))
        })
        .collect())
}

/// The configured field names, without empty ones. Read once per instance: config never
/// changes under one.
fn fields() -> &'static [String] {
    static FIELDS: OnceLock<Vec<String>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        config::get("fields")
            .unwrap_or_else(|| DEFAULT_FIELDS.to_owned())
            .split(',')
            .map(str::trim)
            .filter(|field| !field.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// The event's non-empty `programId` attribute, or a rejection.
fn program_id(event: &Event) -> Result<&str, PluginError> {
    event
        .attributes
        .iter()
        .find(|(name, _)| name == "programId")
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
        .ok_or_else(missing_program_id)
}

fn missing_program_id() -> PluginError {
    PluginError::Reject("missing programId".to_owned())
}

/// Sets attribute `name` to `value`, replacing an attribute of the same name.
fn set_attribute(attributes: &mut Vec<(String, String)>, name: &str, value: &str) {
    attributes.retain(|(key, _)| key != name);
    attributes.push((name.to_owned(), value.to_owned()));
}

export!(Enrich);
plugin_batch::export_batch_handler!(Enrich, in_place = enrich_in_place);
