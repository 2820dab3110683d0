//! The `tracking` plugin in Rust: `enrich` and `validate-tracking` in one component, and the
//! reference the JavaScript, Python, C and Zig versions are held to by the conformance suite
//! (`crates/plugin-engine/tests/all/conformance.rs`).
//!
//! `validate` rejects an event whose `programId` is missing or not ASCII digits. `transform`
//! looks the program up in core data (unknown: reject; store unreachable: retry), copies the
//! configured fields into the attributes (replacing same-named ones), checks `checksum`
//! (non-empty ASCII letters and digits) and `customerId` (digits), and sets `valid` = `true`.
//!
//! Config keys:
//! - `fields`: comma-separated core-data fields to copy
//!   (default `programName,checksum,customerId,customerName`).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "batch-plugin",
});

use adtrack::plugin::{config, core_data};
use exports::adtrack::plugin::handler::{Event, Guest, PluginError};

/// The core-data fields copied when the `fields` config key is not set.
const DEFAULT_FIELDS: &str = "programName,checksum,customerId,customerName";
/// The longest part of an offending value quoted back in a rejection message, in characters.
const MAX_SHOWN_CHARS: usize = 64;

struct Tracking;

impl Guest for Tracking {
    fn validate(event: Event) -> Result<(), PluginError> {
        program_id(&event).map(|_| ())
    }

    fn transform(mut event: Event) -> Result<Vec<Event>, PluginError> {
        let program_id = program_id(&event)?.to_owned();
        let record = match core_data::lookup(&program_id) {
            Ok(Some(record)) => record,
            Ok(None) => return Err(reject(format!("unknown program {program_id}"))),
            Err(error) => {
                return Err(PluginError::Retry(format!(
                    "core data unavailable: {error}"
                )));
            }
        };
        let fields = config::get("fields").unwrap_or_else(|| DEFAULT_FIELDS.to_owned());
        for field in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if let Some((_, value)) = record.iter().find(|(name, _)| name == field) {
                set_attribute(&mut event.attributes, field, value);
            }
        }
        check(&event, "checksum", "ASCII letters and digits", |c| {
            c.is_ascii_alphanumeric()
        })?;
        check(&event, "customerId", "digits", |c| c.is_ascii_digit())?;
        set_attribute(&mut event.attributes, "valid", "true");
        Ok(vec![event])
    }
}

/// The event's `programId` when it is present and ASCII digits; a rejection otherwise.
fn program_id(event: &Event) -> Result<&str, PluginError> {
    check(event, "programId", "digits", |c| c.is_ascii_digit())
}

/// Attribute `name` when present, non-empty and made of characters `allowed` accepts; a
/// rejection naming what was `expected` otherwise.
fn check<'a>(
    event: &'a Event,
    name: &str,
    expected: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<&'a str, PluginError> {
    let Some((_, value)) = event.attributes.iter().find(|(key, _)| key == name) else {
        return Err(reject(format!("missing {name}")));
    };
    if value.is_empty() || !value.chars().all(allowed) {
        return Err(reject(format!(
            "invalid {name} {}: expected {expected}",
            quoted(value)
        )));
    }
    Ok(value)
}

/// Removes every attribute called `name` and appends `name` = `value`.
fn set_attribute(attributes: &mut Vec<(String, String)>, name: &str, value: &str) {
    attributes.retain(|(key, _)| key != name);
    attributes.push((name.to_owned(), value.to_owned()));
}

/// A client-supplied value as it appears in a message: the first 64 characters in double
/// quotes, `\0 \t \r \n \\ \"` escaped, other control characters (U+0000–U+001F,
/// U+007F–U+009F) as `\u{hex}`, and `…` after the closing quote when the value was cut.
fn quoted(value: &str) -> String {
    let mut shown = String::from("\"");
    for c in value.chars().take(MAX_SHOWN_CHARS) {
        match c {
            '\0' => shown.push_str("\\0"),
            '\t' => shown.push_str("\\t"),
            '\r' => shown.push_str("\\r"),
            '\n' => shown.push_str("\\n"),
            '\\' => shown.push_str("\\\\"),
            '"' => shown.push_str("\\\""),
            c if c.is_control() => shown.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => shown.push(c),
        }
    }
    shown.push('"');
    if value.chars().nth(MAX_SHOWN_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

fn reject(reason: String) -> PluginError {
    PluginError::Reject(reason)
}

export!(Tracking);
plugin_batch::export_batch_handler!(Tracking);
