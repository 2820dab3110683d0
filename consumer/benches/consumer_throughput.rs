//! Consumer throughput (events/s through decode, the consumer chain of `pipeline.toml`
//! and the embedded store) and cold-start init time with and without the `.cwasm`
//! artifact cache. Needs the example plugins: `cargo xtask plugins`.
//!
//! `cargo bench -p adtrack-consumer --bench consumer_throughput`

use std::path::{Path, PathBuf};

use std::sync::Arc;
use test_support::repo_root;

use adtrack_consumer::dead_letter::JsonLinesDeadLetters;
use adtrack_consumer::init::load_chain;
use adtrack_consumer::store::EmbeddedStore;
use adtrack_consumer::{Consumer, StreamRecord};
use contract::TrackingEvent;
use core_data::InProcessCoreData;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use plugin_engine::{Event, NoCoreData};

fn pipeline() -> PathBuf {
    let root = repo_root();
    assert!(
        root.join("target/plugins/validate-tracking.wasm").exists(),
        "run `cargo xtask plugins` first"
    );
    root.join("pipeline.toml")
}

fn record(n: usize) -> StreamRecord {
    let id = format!("msg-{n}");
    let event = Event {
        id: id.clone(),
        key: id.clone(),
        timestamp_ms: 1_700_000_000_000 + n as u64,
        content_type: "application/json".into(),
        payload: Vec::new(),
        attributes: vec![
            ("checksum".into(), "b84e02d7".into()),
            ("customerId".into(), "4712".into()),
            ("customerName".into(), "Globex Travel".into()),
            ("programId".into(), "212313".into()),
            ("programName".into(), "Summer Video Preroll".into()),
            ("userAgent".into(), "Mozilla/5.0 (X11; Linux x86_64)".into()),
        ],
    };
    StreamRecord {
        id: n.to_string(),
        partition_key: id,
        data: TrackingEvent::from_event(&event, &[]).to_bytes(),
    }
}

/// A consumer over `pipeline` writing into `dir`, with program 212313 in core data.
fn consumer(runtime: &tokio::runtime::Runtime, pipeline: &Path, dir: &Path) -> Consumer {
    let core_data = InProcessCoreData::new();
    core_data.put_program("212313", [("programName".to_owned(), "Summer".to_owned())]);
    runtime.block_on(async {
        let (chain, _) = load_chain(pipeline, None, Arc::new(core_data.clone()))
            .await
            .expect("load the consumer chain");
        Consumer::new(
            Arc::new(chain),
            Arc::new(EmbeddedStore::open(&dir.join("events.redb")).expect("store")),
            Arc::new(JsonLinesDeadLetters::open(&dir.join("dead.jsonl")).expect("file")),
            Arc::new(core_data),
        )
    })
}

/// The consumer with the repository's consumer chain, and the baseline: the same consumer
/// (decode, store, core-data update) with no plugins, measured in the same run.
fn throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (with_dir, without_dir) = (
        tempfile::tempdir().expect("a temp dir"),
        tempfile::tempdir().expect("a temp dir"),
    );
    let no_plugins = without_dir.path().join("no-plugins.toml");
    std::fs::write(&no_plugins, "[pipeline]\nconsumer = []\n").expect("write the pipeline");
    let setups = [
        (
            "with plugins",
            consumer(&runtime, &pipeline(), with_dir.path()),
        ),
        (
            "without plugins",
            consumer(&runtime, &no_plugins, without_dir.path()),
        ),
    ];
    let mut group = c.benchmark_group("consumer_batch");
    // Every iteration stores new events (a record already stored is only a duplicate).
    let next = std::cell::Cell::new(0);
    for size in [1usize, 100, 500] {
        group.throughput(Throughput::Elements(size as u64));
        for (name, consumer) in &setups {
            group.bench_function(BenchmarkId::new(*name, size), |b| {
                b.to_async(&runtime).iter_batched(
                    || {
                        let first = next.replace(next.get() + size);
                        (first..first + size).map(record).collect::<Vec<_>>()
                    },
                    |batch| async move {
                        let report = consumer.handle(batch).await;
                        assert_eq!(report.stored_events, size);
                    },
                    BatchSize::SmallInput,
                );
            });
        }
    }
    group.finish();
}

fn init_time(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let cache = tempfile::tempdir().expect("a temp dir");
    // Fill the artifact cache once, as the first cold start would.
    runtime
        .block_on(load_chain(
            &pipeline(),
            Some(cache.path().to_owned()),
            Arc::new(NoCoreData),
        ))
        .expect("load the consumer chain");
    let mut group = c.benchmark_group("consumer_init");
    group.sample_size(20);
    group.bench_function("compile", |b| {
        b.to_async(&runtime).iter(|| async {
            load_chain(&pipeline(), None, Arc::new(NoCoreData))
                .await
                .expect("load")
        });
    });
    group.bench_function("precompiled_cwasm", |b| {
        b.to_async(&runtime).iter(|| async {
            let (_, report) = load_chain(
                &pipeline(),
                Some(cache.path().to_owned()),
                Arc::new(NoCoreData),
            )
            .await
            .expect("load");
            assert!(report.all_precompiled());
        });
    });
    group.finish();
}

criterion_group!(benches, throughput, init_time);
criterion_main!(benches);
