//! Consumer throughput (events/s through decode, the consumer chain of `pipeline.toml`,
//! the event store and the core-data update) at batches of 100 and 500 tracking events
//! spread over 8 programs, and cold-start init time with and without the `.cwasm`
//! artifact cache. Needs the example plugins: `cargo xtask plugins`.
//!
//! Stores: the embedded store, and DynamoDB Local when `DYNAMODB_ENDPOINT_URL` names one
//! (with `AWS_REGION`, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` set), writing the
//! programs one after the other (`DYNAMODB_WRITE_CONCURRENCY=1`) and concurrently (the
//! default). Each is measured with the consumer chain and with no plugins, and the
//! ratios against the baselines measured in the same run are printed at the end.
//!
//! `cargo bench -p adtrack-consumer --bench consumer_throughput`

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adtrack_consumer::aws::DynamoDbStore;
use adtrack_consumer::aws::dynamodb::DEFAULT_WRITE_CONCURRENCY;
use adtrack_consumer::dead_letter::JsonLinesDeadLetters;
use adtrack_consumer::init::load_chain;
use adtrack_consumer::store::{EmbeddedStore, EventStore};
use adtrack_consumer::{Consumer, StreamRecord};
use contract::TrackingEvent;
use core_data::InProcessCoreData;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use plugin_engine::{Event, NoCoreData};
use test_support::dynamodb::create_event_table;
use test_support::repo_root;

/// Programs the records of a batch are spread over.
const PROGRAMS: usize = 8;
const BATCH_SIZES: [usize; 2] = [100, 500];

fn pipeline() -> PathBuf {
    let root = repo_root();
    assert!(
        root.join("target/plugins/validate-tracking.wasm").exists(),
        "run `cargo xtask plugins` first"
    );
    root.join("pipeline.toml")
}

fn program_id(n: usize) -> String {
    format!("2123{:02}", 10 + n % PROGRAMS)
}

fn record(n: usize) -> StreamRecord {
    let id = format!("msg-{n}-{}", std::process::id());
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
            ("programId".into(), program_id(n)),
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

/// A consumer over `pipeline` writing to `store`, dead letters into `dir`, with the
/// programs in core data.
fn consumer(
    runtime: &tokio::runtime::Runtime,
    pipeline: &Path,
    store: Arc<dyn EventStore>,
    dir: &Path,
) -> Consumer {
    let core_data = InProcessCoreData::new();
    for n in 0..PROGRAMS {
        core_data.put_program(
            &program_id(n),
            [("programName".to_owned(), "Summer".to_owned())],
        );
    }
    runtime.block_on(async {
        let (chain, _) = load_chain(pipeline, None, Arc::new(core_data.clone()))
            .await
            .expect("load the consumer chain");
        Consumer::new(
            Arc::new(chain),
            store,
            Arc::new(JsonLinesDeadLetters::open(&dir.join("dead.jsonl")).expect("file")),
            Arc::new(core_data),
        )
    })
}

/// A fresh table in the DynamoDB Local that `DYNAMODB_ENDPOINT_URL` names, if set.
fn dynamodb_table(runtime: &tokio::runtime::Runtime) -> Option<(aws_sdk_dynamodb::Client, String)> {
    let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT_URL") else {
        eprintln!("DYNAMODB_ENDPOINT_URL is not set: the DynamoDB Local setups are left out");
        return None;
    };
    runtime.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .load()
            .await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        let table = format!("consumer-bench-{}", std::process::id());
        create_event_table(&client, &table).await;
        Some((client, table))
    })
}

/// Median time per batch of each setup and size, as measured by criterion's samples.
#[derive(Default)]
struct Medians(RefCell<BTreeMap<(String, usize), Vec<Duration>>>);

impl Medians {
    fn record(&self, setup: &str, size: usize, per_batch: Duration) {
        let mut samples = self.0.borrow_mut();
        samples
            .entry((setup.to_owned(), size))
            .or_default()
            .push(per_batch);
    }

    fn median(&self, setup: &str, size: usize) -> Option<Duration> {
        let samples = self.0.borrow();
        let mut times = samples.get(&(setup.to_owned(), size))?.clone();
        times.sort();
        times.get(times.len() / 2).copied()
    }
}

const EMBEDDED_WITH: &str = "embedded, with plugins";
const EMBEDDED_WITHOUT: &str = "embedded, no plugins";
const SEQUENTIAL_WITH: &str = "DynamoDB Local sequential, with plugins";
const SEQUENTIAL_WITHOUT: &str = "DynamoDB Local sequential, no plugins";
const CONCURRENT_WITH: &str = "DynamoDB Local concurrent, with plugins";
const CONCURRENT_WITHOUT: &str = "DynamoDB Local concurrent, no plugins";

fn throughput(c: &mut Criterion, medians: &Medians) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    let no_plugins = dir.path().join("no-plugins.toml");
    std::fs::write(&no_plugins, "[pipeline]\nconsumer = []\n").expect("write the pipeline");
    let embedded = |name: &str| -> Arc<dyn EventStore> {
        let path = dir.path().join(format!("{name}.redb"));
        Arc::new(EmbeddedStore::open(&path).expect("store"))
    };
    let mut setups = vec![
        (
            EMBEDDED_WITH,
            consumer(&runtime, &pipeline(), embedded("with"), dir.path()),
        ),
        (
            EMBEDDED_WITHOUT,
            consumer(&runtime, &no_plugins, embedded("without"), dir.path()),
        ),
    ];
    if let Some((client, table)) = dynamodb_table(&runtime) {
        let dynamodb = |concurrency: usize| -> Arc<dyn EventStore> {
            Arc::new(DynamoDbStore::new(client.clone(), &table).with_write_concurrency(concurrency))
        };
        for (name, pipeline, concurrency) in [
            (SEQUENTIAL_WITH, pipeline(), 1),
            (SEQUENTIAL_WITHOUT, no_plugins.clone(), 1),
            (CONCURRENT_WITH, pipeline(), DEFAULT_WRITE_CONCURRENCY),
            (
                CONCURRENT_WITHOUT,
                no_plugins.clone(),
                DEFAULT_WRITE_CONCURRENCY,
            ),
        ] {
            let store = dynamodb(concurrency);
            setups.push((name, consumer(&runtime, &pipeline, store, dir.path())));
        }
    }
    let mut group = c.benchmark_group("consumer_batch");
    // Every sample runs the same number of batches: a sequential DynamoDB batch of 500
    // takes a good part of a second.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    // Every batch stores new events (a record already stored is only a duplicate).
    let next = Cell::new(0);
    for size in BATCH_SIZES {
        group.throughput(Throughput::Elements(size as u64));
        for (name, consumer) in &setups {
            group.bench_function(BenchmarkId::new(*name, size), |b| {
                b.to_async(&runtime).iter_custom(|batches| {
                    let next = &next;
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..batches {
                            let first = next.replace(next.get() + size);
                            let batch: Vec<_> = (first..first + size).map(record).collect();
                            let started = Instant::now();
                            let report = consumer.handle(batch).await;
                            total += started.elapsed();
                            assert_eq!(report.stored_events, size);
                        }
                        medians.record(name, size, total / batches.max(1) as u32);
                        total
                    }
                });
            });
        }
    }
    group.finish();
}

/// The ratios against the baselines of the same run.
fn print_ratios(medians: &Medians) {
    let ms = |time: Duration| time.as_secs_f64() * 1e3;
    println!("\nconsumer throughput, median per batch (events/s):");
    for size in BATCH_SIZES {
        for name in [
            EMBEDDED_WITH,
            EMBEDDED_WITHOUT,
            SEQUENTIAL_WITH,
            SEQUENTIAL_WITHOUT,
            CONCURRENT_WITH,
            CONCURRENT_WITHOUT,
        ] {
            if let Some(time) = medians.median(name, size) {
                let rate = size as f64 / time.as_secs_f64();
                println!(
                    "  batch {size:>3}  {name:<40} {:>9.2} ms  {rate:>9.0}/s",
                    ms(time)
                );
            }
        }
    }
    println!("\nratios (throughput / baseline throughput, same run):");
    let comparisons = [
        (
            "embedded: with plugins / no plugins",
            EMBEDDED_WITH,
            EMBEDDED_WITHOUT,
        ),
        (
            "DynamoDB Local: with plugins / no plugins (concurrent)",
            CONCURRENT_WITH,
            CONCURRENT_WITHOUT,
        ),
        (
            "DynamoDB Local: concurrent / sequential, with plugins",
            CONCURRENT_WITH,
            SEQUENTIAL_WITH,
        ),
        (
            "DynamoDB Local: concurrent / sequential, no plugins",
            CONCURRENT_WITHOUT,
            SEQUENTIAL_WITHOUT,
        ),
    ];
    for size in BATCH_SIZES {
        for (label, measured, baseline) in comparisons {
            if let (Some(measured), Some(baseline)) = (
                medians.median(measured, size),
                medians.median(baseline, size),
            ) {
                let ratio = baseline.as_secs_f64() / measured.as_secs_f64();
                println!("  batch {size:>3}  {label:<56} {ratio:.2}");
            }
        }
    }
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

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let medians = Medians::default();
    throughput(&mut criterion, &medians);
    init_time(&mut criterion);
    criterion.final_summary();
    print_ratios(&medians);
}
