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

        let patterns = config::get("bot-patterns")
            .unwrap_or_else(|| DEFAULT_BOT_PATTERNS.to_owned())
            .to_ascii_lowercase();
        let matched = patterns
            .split(',')
            .map(str::trim)
            // An empty pattern would match every user agent.
            .filter(|pattern| !pattern.is_empty())
            .find(|pattern| user_agent.contains(pattern));

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

export!(Filter);
plugin_batch::export_batch_handler!(Filter);
