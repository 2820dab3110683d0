//! Where replayed events come from: a sequence range of the embedded stream log or of a
//! Kinesis shard, a dead-letter file, or a capture. Stream records are decoded as the consumer decodes
//! them; a record that does not decode is reported, not replayed.

use std::path::{Path, PathBuf};

use adtrack_consumer::dead_letter::DeadLetter;
use anyhow::{Context, Result, bail};
use contract::TrackingEvent;
use embedded_log::EmbeddedLog;
use serde::Serialize;

use super::capture::{self, RecordedLookups, ReplayEvent};
use super::kinesis::ShardRange;
use crate::stream::kinesis_client;

/// Records read per call to the log.
const LOG_PAGE: usize = 1_000;

/// A source of captured events.
#[derive(Debug, Clone)]
pub enum Source {
    /// The embedded log's records with sequence numbers `from..=to`.
    Log {
        /// The log directory (`DATA_DIR/stream-log`).
        path: PathBuf,
        /// First sequence number.
        from: u64,
        /// Last sequence number.
        to: u64,
    },
    /// A range of a Kinesis shard, read through `endpoint` when given (emulators).
    Kinesis {
        /// The range.
        range: ShardRange,
        /// The Kinesis endpoint override.
        endpoint: Option<String>,
    },
    /// Every letter of a dead-letter file (`DATA_DIR/dead-letters.jsonl`).
    DeadLetters(PathBuf),
    /// A capture written by `--save-capture`.
    Capture(PathBuf),
}

/// A record of the source that could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Where it is.
    pub at: String,
    /// Why it was skipped.
    pub reason: String,
}

/// What a source holds.
pub struct Loaded {
    /// The events, in source order.
    pub events: Vec<ReplayEvent>,
    /// Records that are not events.
    pub skipped: Vec<Skipped>,
    /// The lookups a capture recorded (`None` for live sources).
    pub lookups: Option<RecordedLookups>,
}

impl Source {
    /// For people: what was read.
    pub fn describe(&self) -> String {
        match self {
            Source::Log { path, from, to } if *to == u64::MAX => format!(
                "embedded log {}, sequences {from} to the end",
                path.display()
            ),
            Source::Log { path, from, to } => {
                format!("embedded log {}, sequences {from} to {to}", path.display())
            }
            Source::Kinesis { range, .. } => range.describe(),
            Source::DeadLetters(path) => format!("dead letters {}", path.display()),
            Source::Capture(path) => format!("capture {}", path.display()),
        }
    }

    /// Reads the events.
    pub async fn load(&self) -> Result<Loaded> {
        match self {
            Source::Log { path, from, to } => load_log(path, *from, *to),
            Source::Kinesis { range, endpoint } => {
                range.load(&kinesis_client(endpoint.as_deref()).await).await
            }
            Source::DeadLetters(path) => load_dead_letters(path),
            Source::Capture(path) => {
                let (events, lookups) = capture::read(path)?;
                Ok(Loaded {
                    events,
                    skipped: Vec::new(),
                    lookups: Some(lookups),
                })
            }
        }
    }
}

fn load_log(path: &Path, from: u64, to: u64) -> Result<Loaded> {
    if from == 0 || to < from {
        bail!("the sequence range {from} to {to} is empty: sequences start at 1");
    }
    if !path.exists() {
        bail!("no embedded log at {}", path.display());
    }
    let log = EmbeddedLog::open(path)
        .with_context(|| format!("cannot open the stream log {}", path.display()))?;
    let mut loaded = Loaded {
        events: Vec::new(),
        skipped: Vec::new(),
        lookups: None,
    };
    let mut after = from - 1;
    'pages: loop {
        let page = log.read_after(Some(after), LOG_PAGE)?;
        if page.is_empty() {
            break;
        }
        for record in page {
            if record.sequence > to {
                break 'pages;
            }
            after = record.sequence;
            let at = format!("log:{}", record.sequence);
            match TrackingEvent::from_bytes(&record.data) {
                Ok(decoded) => loaded.events.push(ReplayEvent {
                    at,
                    event: decoded.into_event(),
                }),
                Err(error) => loaded.skipped.push(Skipped {
                    at,
                    reason: error.to_string(),
                }),
            }
        }
    }
    Ok(loaded)
}

fn load_dead_letters(path: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the dead letters {}", path.display()))?;
    let mut loaded = Loaded {
        events: Vec::new(),
        skipped: Vec::new(),
        lookups: None,
    };
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("dead-letter:{}", index + 1);
        let event = DeadLetter::from_json(line)
            .map_err(|error| format!("not a dead letter: {error}"))
            .and_then(|letter| letter.record().map_err(|error| error.to_string()))
            .and_then(|record| {
                TrackingEvent::from_bytes(&record.data).map_err(|error| error.to_string())
            });
        match event {
            Ok(decoded) => loaded.events.push(ReplayEvent {
                at,
                event: decoded.into_event(),
            }),
            Err(reason) => loaded.skipped.push(Skipped { at, reason }),
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use plugin_engine::Event;

    use super::*;

    fn record(id: &str) -> Vec<u8> {
        let event = Event {
            id: id.into(),
            key: id.into(),
            attributes: vec![("programId".into(), "212313".into())],
            ..Event::default()
        };
        TrackingEvent::from_event(&event, &[]).to_bytes()
    }

    #[tokio::test]
    async fn a_log_range_gives_its_events_in_order_and_names_undecodable_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stream-log");
        let log = EmbeddedLog::open(&path).unwrap();
        log.append(&[
            ("a".into(), record("a")),
            ("b".into(), vec![0xff, 0xff, 0xff]),
            ("c".into(), record("c")),
            ("d".into(), record("d")),
        ])
        .unwrap();
        drop(log);
        let loaded = Source::Log {
            path,
            from: 2,
            to: 3,
        }
        .load()
        .await
        .unwrap();
        let ids: Vec<_> = loaded
            .events
            .iter()
            .map(|e| (e.at.as_str(), e.event.id.as_str()))
            .collect();
        assert_eq!(ids, [("log:3", "c")]);
        assert_eq!(loaded.skipped.len(), 1);
        assert_eq!(loaded.skipped[0].at, "log:2");
    }

    #[tokio::test]
    async fn dead_letters_give_the_events_they_carry() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead-letters.jsonl");
        let letter = serde_json::json!({
            "recordId": "7", "partitionKey": "m7", "kind": "rejected", "reason": "bad",
            "plugin": "validate-tracking", "pluginVersion": "abc",
            "dataBase64": base64::engine::general_purpose::STANDARD.encode(record("m7")),
        });
        std::fs::write(&path, format!("{letter}\nnot json\n")).unwrap();
        let loaded = Source::DeadLetters(path).load().await.unwrap();
        assert_eq!(loaded.events.len(), 1);
        assert_eq!(loaded.events[0].at, "dead-letter:1");
        assert_eq!(loaded.events[0].event.id, "m7");
        assert_eq!(loaded.skipped[0].at, "dead-letter:2");
    }
}
