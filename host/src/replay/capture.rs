//! Captures: the events of a replay and every core-data lookup answered while they ran,
//! in one JSON-lines file, so replaying the capture later gives the same outcomes
//! whatever core data looks like by then.
//!
//! ```json
//! {"at":"log:3","event":{"id":"…","key":"…","timestampMs":…,"contentType":"…","payload":"…","attributes":[["programId","212313"]]}}
//! {"lookup":"212313","record":[["programName","Summer Video Preroll"]]}
//! {"lookup":"999999","record":null}
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use async_trait::async_trait;
use base64::Engine as _;
use plugin_engine::{CoreDataLookup, CoreRecord, Event, LookupError};
use serde::{Deserialize, Serialize};

/// One event to replay and where it came from (`log:17`, `dead-letter:2`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayEvent {
    /// Where the event was read, for the report.
    pub at: String,
    /// The event.
    pub event: Event,
}

/// What a lookup answered: a record, no record, or the store's error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RecordedAnswer {
    /// The record, or `null` when there was none.
    Record(Option<CoreRecord>),
    /// The store could not answer.
    Error(String),
}

/// Lookups answered during a run, by key.
pub type RecordedLookups = BTreeMap<String, RecordedAnswer>;

/// One line of a capture file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum CaptureLine {
    Event {
        at: String,
        event: CapturedEvent,
    },
    Lookup {
        lookup: String,
        #[serde(flatten)]
        answer: RecordedAnswer,
    },
}

/// An event as a capture keeps it: every field, attributes in order, the payload as
/// text when it is UTF-8 and in base64 otherwise.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CapturedEvent {
    id: String,
    key: String,
    timestamp_ms: u64,
    content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    attributes: Vec<(String, String)>,
}

impl From<&Event> for CapturedEvent {
    fn from(event: &Event) -> Self {
        let (payload, payload_base64) = match String::from_utf8(event.payload.clone()) {
            Ok(text) => (Some(text), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&event.payload)),
            ),
        };
        Self {
            id: event.id.clone(),
            key: event.key.clone(),
            timestamp_ms: event.timestamp_ms,
            content_type: event.content_type.clone(),
            payload,
            payload_base64,
            attributes: event.attributes.clone(),
        }
    }
}

impl CapturedEvent {
    fn into_event(self) -> Result<Event, base64::DecodeError> {
        let payload = match (self.payload, self.payload_base64) {
            (_, Some(encoded)) => base64::engine::general_purpose::STANDARD.decode(encoded)?,
            (Some(text), None) => text.into_bytes(),
            (None, None) => Vec::new(),
        };
        Ok(Event {
            id: self.id,
            key: self.key,
            timestamp_ms: self.timestamp_ms,
            content_type: self.content_type,
            payload,
            attributes: self.attributes,
        })
    }
}

/// Writes `events` and `lookups` to `path`: events in order, then lookups by key.
pub fn write(path: &Path, events: &[ReplayEvent], lookups: &RecordedLookups) -> Result<()> {
    let mut text = String::new();
    for replayed in events {
        let line = CaptureLine::Event {
            at: replayed.at.clone(),
            event: CapturedEvent::from(&replayed.event),
        };
        text.push_str(&serde_json::to_string(&line)?);
        text.push('\n');
    }
    for (key, answer) in lookups {
        let line = CaptureLine::Lookup {
            lookup: key.clone(),
            answer: answer.clone(),
        };
        text.push_str(&serde_json::to_string(&line)?);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a capture written by [`write`].
pub fn read(path: &Path) -> Result<(Vec<ReplayEvent>, RecordedLookups)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the capture {}", path.display()))?;
    let mut events = Vec::new();
    let mut lookups = RecordedLookups::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: CaptureLine = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {} is neither a captured event nor a lookup",
                path.display(),
                index + 1
            )
        })?;
        match parsed {
            CaptureLine::Event { at, event } => events.push(ReplayEvent {
                at,
                event: event.into_event().with_context(|| {
                    format!("{} line {}: payloadBase64", path.display(), index + 1)
                })?,
            }),
            CaptureLine::Lookup { lookup, answer } => {
                lookups.insert(lookup, answer);
            }
        }
    }
    Ok((events, lookups))
}

/// Answers lookups from a live store and remembers every answer, for the capture.
pub struct RecordingCoreData {
    inner: Arc<dyn CoreDataLookup>,
    seen: Mutex<RecordedLookups>,
}

impl RecordingCoreData {
    /// Records what `inner` answers.
    pub fn new(inner: Arc<dyn CoreDataLookup>) -> Self {
        Self {
            inner,
            seen: Mutex::new(RecordedLookups::new()),
        }
    }

    /// Every answer so far, by key.
    pub fn recorded(&self) -> RecordedLookups {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl CoreDataLookup for RecordingCoreData {
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, LookupError> {
        let answer = self.inner.lookup(key).await;
        let recorded = match &answer {
            Ok(record) => RecordedAnswer::Record(record.clone()),
            Err(error) => RecordedAnswer::Error(error.to_string()),
        };
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_owned())
            .or_insert(recorded);
        answer
    }
}

/// Answers lookups from a capture only: a key the capture did not see is an error,
/// so a replay never silently differs from the run that was captured.
pub struct CapturedCoreData {
    lookups: HashMap<String, RecordedAnswer>,
}

impl CapturedCoreData {
    /// Answers from `lookups`.
    pub fn new(lookups: RecordedLookups) -> Self {
        Self {
            lookups: lookups.into_iter().collect(),
        }
    }
}

#[async_trait]
impl CoreDataLookup for CapturedCoreData {
    async fn lookup(&self, key: &str) -> Result<Option<CoreRecord>, LookupError> {
        match self.lookups.get(key) {
            Some(RecordedAnswer::Record(record)) => Ok(record.clone()),
            Some(RecordedAnswer::Error(error)) => Err(LookupError::from_message(error.clone())),
            None => Err(LookupError::from_message(format!(
                "core data for {key:?} is not in the capture"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use plugin_engine::StaticCoreData;

    use super::*;

    #[tokio::test]
    async fn a_capture_answers_what_was_looked_up_and_keeps_events_exact() {
        let live: Arc<dyn CoreDataLookup> = Arc::new(StaticCoreData::new(HashMap::from([(
            "212313".to_owned(),
            vec![("programName".to_owned(), "Summer".to_owned())],
        )])));
        let recording = RecordingCoreData::new(live);
        recording.lookup("212313").await.unwrap();
        recording.lookup("999").await.unwrap();
        let event = Event {
            id: "m1".into(),
            key: "k1".into(),
            timestamp_ms: 7,
            content_type: "application/octet-stream".into(),
            payload: vec![0xff, 0x00],
            attributes: vec![("b".into(), "2".into()), ("a".into(), "1".into())],
        };
        let events = vec![ReplayEvent {
            at: "log:3".into(),
            event: event.clone(),
        }];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.jsonl");
        write(&path, &events, &recording.recorded()).unwrap();

        let (read_events, lookups) = read(&path).unwrap();
        assert_eq!(read_events, events);
        let captured = CapturedCoreData::new(lookups);
        assert_eq!(
            captured.lookup("212313").await.unwrap(),
            Some(vec![("programName".to_owned(), "Summer".to_owned())])
        );
        assert_eq!(captured.lookup("999").await.unwrap(), None);
        let unseen = captured.lookup("212314").await.unwrap_err();
        assert!(
            unseen.to_string().contains("not in the capture"),
            "{unseen}"
        );
    }
}
