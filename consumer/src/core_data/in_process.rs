//! Core data kept in process, for the embedded mode and tests: the same idempotent
//! counting as Redis, with program ids announced on a broadcast channel instead of
//! `PUBLISH`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use plugin_engine::{CoreDataError, CoreDataLookup, CoreRecord};
use tokio::sync::broadcast;

use super::{CoreDataUpdateError, CoreDataUpdates, ProgramActivity, names};

/// Programs' core data in memory; cheap to clone (clones share the table).
#[derive(Clone)]
pub struct InProcessCoreData {
    programs: Arc<Mutex<HashMap<String, ProgramEntry>>>,
    updates: broadcast::Sender<String>,
}

#[derive(Default)]
struct ProgramEntry {
    fields: BTreeMap<String, String>,
    counted: HashSet<String>,
}

impl Default for InProcessCoreData {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessCoreData {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            programs: Arc::default(),
            updates: broadcast::channel(1024).0,
        }
    }

    /// Stores (replaces) the core-data fields of `program_id`.
    pub fn put_program(
        &self,
        program_id: &str,
        fields: impl IntoIterator<Item = (String, String)>,
    ) {
        let mut programs = self.programs.lock().unwrap_or_else(PoisonError::into_inner);
        programs.entry(program_id.to_owned()).or_default().fields = fields.into_iter().collect();
    }

    /// The fields of `program_id`, including the consumer's counters.
    pub fn program(&self, program_id: &str) -> Option<BTreeMap<String, String>> {
        let programs = self.programs.lock().unwrap_or_else(PoisonError::into_inner);
        programs.get(program_id).map(|entry| entry.fields.clone())
    }

    /// Program ids whose core data changed, as they change (the `core-data-updates` channel).
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.updates.subscribe()
    }
}

#[async_trait]
impl CoreDataUpdates for InProcessCoreData {
    async fn record_activity(
        &self,
        activity: &[ProgramActivity],
    ) -> Result<(), CoreDataUpdateError> {
        let mut changed = Vec::new();
        {
            let mut programs = self.programs.lock().unwrap_or_else(PoisonError::into_inner);
            for program in activity {
                let Some(entry) = programs.get_mut(&program.program_id) else {
                    continue;
                };
                let added = program
                    .message_ids
                    .iter()
                    .filter(|id| entry.counted.insert((*id).clone()))
                    .count() as u64;
                let mut touched = false;
                if added > 0 {
                    let count = entry
                        .fields
                        .get(names::EVENT_COUNT_FIELD)
                        .and_then(|count| count.parse::<u64>().ok())
                        .unwrap_or_default();
                    entry
                        .fields
                        .insert(names::EVENT_COUNT_FIELD.into(), (count + added).to_string());
                    touched = true;
                }
                let last = entry
                    .fields
                    .get(names::LAST_SEEN_FIELD)
                    .and_then(|last| last.parse::<u64>().ok())
                    .unwrap_or_default();
                if program.last_seen_ms > last {
                    entry.fields.insert(
                        names::LAST_SEEN_FIELD.into(),
                        program.last_seen_ms.to_string(),
                    );
                    touched = true;
                }
                if touched {
                    changed.push(program.program_id.clone());
                }
            }
        }
        for program_id in changed {
            // No subscriber is not an error.
            let _ = self.updates.send(program_id);
        }
        Ok(())
    }
}

#[async_trait]
impl CoreDataLookup for InProcessCoreData {
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, CoreDataError> {
        Ok(self.program(key).map(|fields| fields.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(program_id: &str, ids: &[&str], last_seen_ms: u64) -> ProgramActivity {
        ProgramActivity {
            program_id: program_id.into(),
            message_ids: ids.iter().map(|id| id.to_string()).collect(),
            last_seen_ms,
        }
    }

    #[tokio::test]
    async fn counts_each_message_once_and_announces_changed_programs() {
        let core = InProcessCoreData::new();
        core.put_program("212313", [("programName".into(), "Summer".into())]);
        let mut updates = core.subscribe();

        core.record_activity(&[
            activity("212313", &["a", "b"], 10),
            activity("999", &["c"], 5),
        ])
        .await
        .unwrap();
        core.record_activity(&[activity("212313", &["b", "c"], 7)])
            .await
            .unwrap();
        let fields = core.program("212313").unwrap();
        assert_eq!(fields[names::EVENT_COUNT_FIELD], "3");
        assert_eq!(fields[names::LAST_SEEN_FIELD], "10");
        assert_eq!(fields["programName"], "Summer");
        assert!(
            core.program("999").is_none(),
            "unknown programs are not made up"
        );
        assert_eq!(updates.recv().await.unwrap(), "212313");
        assert_eq!(updates.recv().await.unwrap(), "212313");

        // A pure redelivery changes nothing and announces nothing.
        core.record_activity(&[activity("212313", &["a"], 1)])
            .await
            .unwrap();
        assert!(updates.try_recv().is_err());
    }
}
