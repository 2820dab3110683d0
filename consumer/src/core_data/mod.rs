//! The core-data stage: per-program activity (event count, last seen) the consumer adds
//! to the program's core data, and the notification that tells hosts to refresh it.
//! Redis on AWS; an in-process table with a broadcast channel in the embedded mode.
//!
//! The names shared with the host are in [`names`]: the consumer updates fields of the
//! hash `program:{programId}` and publishes the program id on `core-data-updates`; the
//! host subscribes to that channel and reloads its L1 entry for the program.

pub mod in_process;
pub mod redis;

use async_trait::async_trait;

pub use self::redis::RedisCoreData;
pub use in_process::InProcessCoreData;

/// The Redis names the host and the consumer agree on.
pub mod names {
    /// Prefix of a program's core-data hash: `program:{programId}`.
    pub const PROGRAM_KEY_PREFIX: &str = "program:";
    /// Hash field: events stored for the program (HINCRBY).
    pub const EVENT_COUNT_FIELD: &str = "eventCount";
    /// Hash field: the newest stored event's timestamp, ms since the Unix epoch (HSET).
    pub const LAST_SEEN_FIELD: &str = "lastSeenMs";
    /// Channel the program id is published on after its core data changed.
    pub const UPDATES_CHANNEL: &str = "core-data-updates";
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
}

/// What one batch stored for one program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramActivity {
    /// The program.
    pub program_id: String,
    /// Ids of the stored events; an id already counted is not counted again.
    pub message_ids: Vec<String>,
    /// The newest event's timestamp, ms since the Unix epoch.
    pub last_seen_ms: u64,
}

/// Core data could not be updated.
#[derive(Debug, thiserror::Error)]
#[error("cannot update core data of program {program_id}: {reason}")]
pub struct CoreDataUpdateError {
    /// The program whose update failed.
    pub program_id: String,
    /// Why.
    pub reason: String,
}

/// Where program activity is recorded and announced. Updates are idempotent per message
/// id, so a redelivered record is not counted twice. Only programs that exist in core
/// data are updated; activity for unknown programs is ignored, so a consumer never
/// makes up a program the host would then serve.
#[async_trait]
pub trait CoreDataUpdates: Send + Sync {
    /// Adds `activity` to each program's core data and notifies subscribers of every
    /// program that changed.
    async fn record_activity(
        &self,
        activity: &[ProgramActivity],
    ) -> Result<(), CoreDataUpdateError>;
}

/// No core data to update (no Redis configured).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCoreDataUpdates;

#[async_trait]
impl CoreDataUpdates for NoCoreDataUpdates {
    async fn record_activity(
        &self,
        _activity: &[ProgramActivity],
    ) -> Result<(), CoreDataUpdateError> {
        Ok(())
    }
}
