//! The Redis names the host and the consumer agree on: the consumer updates fields of
//! the hash `program:{programId}` and publishes the program id on `core-data-updates`;
//! every host subscribes to that channel and reloads its L1 entry for the program.

/// Prefix of a program's core-data hash: `program:{programId}`.
pub const PROGRAM_KEY_PREFIX: &str = "program:";
/// Hash field: events stored for the program (counted once per message id).
pub const EVENT_COUNT_FIELD: &str = "eventCount";
/// Hash field: the newest stored event's timestamp, ms since the Unix epoch.
pub const LAST_SEEN_FIELD: &str = "lastSeenMs";
/// Channel the program id is published on after its core data changed.
pub const UPDATES_CHANNEL: &str = "core-data-updates";
/// Channel a new current plugin release is announced on (the message is its number);
/// every host task follows it, and polls the registry in case a message is missed.
pub const RELEASES_CHANNEL: &str = "plugin-releases";
/// Suffix of the set of message ids already counted for a program
/// (`program:{programId}:counted`), which makes counting idempotent.
pub const COUNTED_SET_SUFFIX: &str = ":counted";
/// How long a program's counted-ids set is kept after its last update: longer than
/// the stream's retention (24 h by default), so any redelivery is recognised.
pub const COUNTED_SET_TTL_SECS: u64 = 8 * 24 * 60 * 60;

/// The core-data hash of `program_id`.
pub fn program_key(program_id: &str) -> String {
    format!("{PROGRAM_KEY_PREFIX}{program_id}")
}

/// The counted-ids set of `program_id`.
pub fn counted_set_key(program_id: &str) -> String {
    format!("{PROGRAM_KEY_PREFIX}{program_id}{COUNTED_SET_SUFFIX}")
}
