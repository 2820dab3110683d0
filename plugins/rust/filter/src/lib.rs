//! Filters out traffic from bots.
//!
//! `validate` accepts every event. `transform` drops an event (returns no events) when its
//! `userAgent` attribute contains, ignoring ASCII case, any configured bot pattern, and logs the
//! drop at debug level; any other event, including one without a `userAgent`, passes unchanged.
//!
//! Config keys:
//! - `bot-patterns`: comma-separated substrings that mark a bot user agent
//!   (default `bot,crawler,spider,slurp,headlesschrome`).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "batch-plugin",
});

use std::sync::OnceLock;

use adtrack::plugin::config;
use adtrack::plugin::log::{self, Level};
use exports::adtrack::plugin::handler::{Event, Guest, PluginError};
use plugin_batch::{EventView, Verdict};

/// The bot patterns used when the `bot-patterns` config key is not set.
const DEFAULT_BOT_PATTERNS: &str = "bot,crawler,spider,slurp,headlesschrome";

struct Filter;

impl Guest for Filter {
    fn validate(_event: Event) -> Result<(), PluginError> {
        Ok(())
    }

    fn transform(event: Event) -> Result<Vec<Event>, PluginError> {
        let user_agent = event
            .attributes
            .iter()
            .find(|(name, _)| name == "userAgent")
            .map(|(_, value)| value.as_str());
        match user_agent.and_then(bot_pattern_in) {
            Some(pattern) => {
                log_drop(&event.id, pattern);
                Ok(Vec::new())
            }
            None => Ok(vec![event]),
        }
    }
}

/// `validate` and `transform` over an event read in place: it is kept or dropped, never
/// copied.
fn filter_in_place(event: &EventView<'_>) -> Result<Verdict, PluginError> {
    match event.attribute("userAgent").and_then(bot_pattern_in) {
        Some(pattern) => {
            log_drop(event.id, pattern);
            Ok(Verdict::Drop)
        }
        None => Ok(Verdict::Keep),
    }
}

/// The first configured bot pattern `user_agent` contains, ignoring ASCII case.
fn bot_pattern_in(user_agent: &str) -> Option<&'static str> {
    let user_agent = user_agent.to_ascii_lowercase();
    bot_patterns()
        .iter()
        .find(|pattern| user_agent.contains(pattern.as_str()))
        .map(String::as_str)
}

fn log_drop(id: &str, pattern: &str) {
    log::emit(
        Level::Debug,
        &format!("dropped event {id}: userAgent matches bot pattern {pattern:?}"),
    );
}

/// The configured bot patterns, lowercased, without empty ones (an empty pattern would
/// match every user agent). Read once per instance: config never changes under one.
fn bot_patterns() -> &'static [String] {
    static PATTERNS: OnceLock<Vec<String>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        config::get("bot-patterns")
            .unwrap_or_else(|| DEFAULT_BOT_PATTERNS.to_owned())
            .to_ascii_lowercase()
            .split(',')
            .map(str::trim)
            .filter(|pattern| !pattern.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

export!(Filter);
plugin_batch::export_batch_handler!(Filter, in_place = filter_in_place);
