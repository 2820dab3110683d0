//! One scenario's world in embedded mode: the host with its durable local log and
//! in-process consumer, counting in a redis-server of the scenario's own so the
//! counters can be read while the host runs.

use std::collections::BTreeMap;

use adtrack_consumer::store::EmbeddedStore;
use contract::TrackingEvent;
use embedded_log::EmbeddedLog;
use test_support::{PrivateService, ServiceKind};

use super::reconcile::{Observed, counter_total};
use crate::common::*;

/// The sample programs `/cache/fill` loads, with their core-data fields.
pub fn sample_programs() -> Vec<(String, BTreeMap<String, String>)> {
    let path = repo_root().join("host/samples/core-data.json");
    let text = std::fs::read_to_string(&path).expect("the sample core data");
    let programs: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(&text).expect("sample core data is JSON");
    programs.into_iter().collect()
}

/// The private Redis and the pipeline of an embedded-mode scenario.
pub struct EmbeddedWorld {
    /// Core data and counters.
    pub redis: PrivateService,
    pipeline_dir: tempfile::TempDir,
}

impl EmbeddedWorld {
    /// Starts the Redis server and writes `pipeline` (see [`write_pipeline`]).
    pub async fn start(pipeline: &str) -> Self {
        let pipeline_dir = tempfile::tempdir().expect("temp dir");
        write_pipeline(pipeline_dir.path(), pipeline);
        Self {
            redis: PrivateService::start(ServiceKind::Redis).await,
            pipeline_dir,
        }
    }

    /// Starts an embedded-mode host and fills core data with the sample programs.
    pub async fn start_host(&self) -> Host {
        let pipeline = self.pipeline_dir.path().join("pipeline.toml");
        let redis_url = self.redis.url();
        let host = start_host(&[
            ("PIPELINE_FILE", pipeline.to_str().expect("utf-8 path")),
            ("REDIS_URL", &redis_url),
        ])
        .await;
        let (status, body) = host.get("/cache/fill").await;
        assert_eq!(status, 200, "cache fill: {body}");
        host
    }

    /// What the log, the store, the dead-letter file and the counters of `host` hold;
    /// the host must be gone (the files are opened by one process at a time).
    pub async fn observe(&self, host: &Host) -> Observed {
        let log = EmbeddedLog::open(&host.stream_log()).expect("the host's stream log");
        let stream = log
            .read_after(None, usize::MAX)
            .expect("read the log")
            .iter()
            .map(|record| {
                TrackingEvent::from_bytes(&record.data)
                    .expect("a record the host wrote decodes")
                    .message_id
            })
            .collect();
        let store =
            EmbeddedStore::open(&host.data_dir.path().join("events.redb")).expect("the store");
        let stored = store
            .all()
            .expect("stored events")
            .into_iter()
            .map(|stored| stored.event.id)
            .collect();
        Observed {
            stream,
            stored,
            counted: counter_total(&self.redis).await,
            dead_letters: dead_letters(host),
        }
    }
}

/// Letters in the host's JSON-lines dead-letter file (none when it does not exist).
pub fn dead_letters(host: &Host) -> usize {
    std::fs::read_to_string(host.data_dir.path().join("dead-letters.jsonl"))
        .map(|text| text.lines().filter(|line| !line.trim().is_empty()).count())
        .unwrap_or_default()
}
