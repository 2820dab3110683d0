//! The Redis names the host and the consumer agree on: the consumer updates fields of
//! the hash `program:{programId}` and publishes the program id on `core-data-updates`;
//! every host subscribes to that channel and reloads its L1 entry for the program.

/// Prefix of a program's core-data hash: `program:{programId}`.
pub const PROGRAM_KEY_PREFIX: &str = "program:";
/// Hash field: events stored for the program, as the event store counts them.
pub const EVENT_COUNT_FIELD: &str = "eventCount";
/// Hash field: the newest stored event's timestamp, ms since the Unix epoch.
pub const LAST_SEEN_FIELD: &str = "lastSeenMs";
/// Channel the program id is published on after its core data changed.
pub const UPDATES_CHANNEL: &str = "core-data-updates";
/// Channel a new current plugin release is announced on (the message is its number);
/// every host task follows it, and polls the registry in case a message is missed.
pub const RELEASES_CHANNEL: &str = "plugin-releases";
/// The core-data hash of `program_id`.
pub fn program_key(program_id: &str) -> String {
    format!("{PROGRAM_KEY_PREFIX}{program_id}")
}
