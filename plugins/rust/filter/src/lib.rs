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

/// The bot patterns used when the `bot-patterns` config key is not set.
const DEFAULT_BOT_PATTERNS: &str = "bot,crawler,spider,slurp,headlesschrome";

struct Filter;

impl Guest for Filter {
    fn validate(_event: Event) -> Result<(), PluginError> {
        Ok(())
    }

    fn transform(event: Event) -> Result<Vec<Event>, PluginError> {
        let Some((_, user_agent)) = event
            .attributes
            .iter()
            .find(|(name, _)| name == "userAgent")
        else {
            return Ok(vec![event]);
        };
        let user_agent = user_agent.to_ascii_lowercase();
        let matched = bot_patterns()
            .iter()
            .find(|pattern| user_agent.contains(pattern.as_str()));

        match matched {
            Some(pattern) => {
                log::emit(
                    Level::Debug,
                    &format!(
                        "dropped event {}: userAgent matches bot pattern {pattern:?}",
                        event.id
                    ),
                );
                Ok(Vec::new())
            }
            None => Ok(vec![event]),
        }
    }
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
// `validate` accepts every event, so `transform` alone is both.
plugin_batch::export_batch_handler!(Filter, Filter::transform);
