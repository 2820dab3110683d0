//! The embedded consumer's program activity, recorded in the host's core data
//! (`eventCount`, `lastSeenMs`), the way the Lambda consumer records it in Redis.

use adtrack_consumer::core_data::{CoreDataUpdateError, CoreDataUpdates, ProgramActivity};
use async_trait::async_trait;

use super::CoreDataCache;

#[async_trait]
impl CoreDataUpdates for CoreDataCache {
    async fn record_activity(
        &self,
        activity: &[ProgramActivity],
    ) -> Result<(), CoreDataUpdateError> {
        for program in activity {
            let failed = |reason: String| CoreDataUpdateError {
                program_id: program.program_id.clone(),
                reason,
            };
            let Some(record) = self
                .fetch_fresh(&program.program_id)
                .await
                .map_err(|error| failed(error.to_string()))?
            else {
                continue; // never make up a program the host would then serve
            };
            let count = field(&record, "eventCount")
                .and_then(|count| count.parse::<u64>().ok())
                .unwrap_or(0)
                + program.message_ids.len() as u64;
            let activity = vec![
                ("eventCount".to_owned(), count.to_string()),
                ("lastSeenMs".to_owned(), program.last_seen_ms.to_string()),
            ];
            self.update_fields(&program.program_id, activity)
                .await
                .map_err(|error| failed(error.to_string()))?;
        }
        Ok(())
    }
}

fn field<'r>(record: &'r [(String, String)], name: &str) -> Option<&'r str> {
    record
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}
