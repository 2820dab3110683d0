//! The consumer of the AWS-path scenarios: the real consumer core configured as the
//! Lambda function is (DynamoDB store and attempt counts, Redis counters, both reached
//! through the world's proxies), with its dead letters collected to be counted, driven
//! by the Kinesis poller, which plays the event source mapping (a failed record and the
//! ones after it are read again on the next poll).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use adtrack_consumer::Consumer;
use adtrack_consumer::aws::kinesis_poller::KinesisPoller;
use adtrack_consumer::aws::{DynamoDbAttempts, DynamoDbStore};
use adtrack_consumer::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink};
use adtrack_consumer::handler::DEFAULT_MAX_ATTEMPTS;
use adtrack_consumer::init::load_chain;
use async_trait::async_trait;
use core_data::RedisCoreData;
use settings::CredentialUrl;
use tokio::task::JoinHandle;

use super::aws_world::AwsWorld;
use crate::common::repo_root;

/// How long the consumer may take to catch up after the load.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(45);

/// Dead letters kept in memory, so a scenario can count them.
#[derive(Debug, Default)]
pub struct CollectedDeadLetters(Mutex<Vec<DeadLetter>>);

impl CollectedDeadLetters {
    /// Letters sent so far.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[async_trait]
impl DeadLetterSink for CollectedDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        tracing::warn!(dead_letter = %letter.to_json(), "dead letter");
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(letter.clone());
        Ok(())
    }
}

/// A poller from the oldest record of every shard, with the repository pipeline's
/// consumer chain, sending its dead letters to the world's collection.
pub async fn poller(world: &AwsWorld) -> KinesisPoller {
    let url = CredentialUrl::from(world.redis_url().as_str());
    let redis = RedisCoreData::connect(&url, None, Duration::from_secs(2))
        .await
        .expect("the consumer reaches Redis");
    let cache = repo_root().join("target/tmp/fault-suite-artifacts");
    let (chain, _) = load_chain(
        &repo_root().join("pipeline.toml"),
        Some(cache),
        Arc::new(redis.clone()),
    )
    .await
    .expect("the consumer chain loads");
    let dynamodb = world.dynamodb_client_through_proxy().await;
    let attempts = DynamoDbAttempts::new(dynamodb.clone(), &world.table);
    let consumer = Consumer::new(
        Arc::new(chain),
        Arc::new(DynamoDbStore::new(dynamodb, &world.table)),
        world.dead_letters.clone(),
        Arc::new(redis),
    )
    .with_attempts(Arc::new(attempts), DEFAULT_MAX_ATTEMPTS);
    KinesisPoller::new(world.kinesis().await, &world.stream, Arc::new(consumer))
}

/// A poller running while the load runs.
pub struct Running {
    stop: Arc<AtomicBool>,
    task: JoinHandle<KinesisPoller>,
}

impl Running {
    /// Polls every 50 ms until stopped; failed polls are retried, as the mapping does.
    pub fn start(mut poller: KinesisPoller) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            while !stopping.load(Ordering::SeqCst) {
                let _ = poller.poll_once().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            poller
        });
        Self { stop, task }
    }

    /// Stops polling and hands the poller back.
    pub async fn stop(self) -> KinesisPoller {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the poller task")
    }
}

/// Polls until a poll finds nothing left to handle (every record read and handled);
/// fails the scenario, with what the last poll saw, when [`CATCH_UP_LIMIT`] passes
/// first (records still failing, or polls failing).
pub async fn catch_up(poller: &mut KinesisPoller) {
    let started = Instant::now();
    let mut last = String::from("no poll finished");
    while started.elapsed() < CATCH_UP_LIMIT {
        match poller.poll_once().await {
            Ok(report) if report.records == 0 => return,
            Ok(report) => {
                let reasons: Vec<&str> = report
                    .failures
                    .iter()
                    .map(|failure| failure.reason.as_str())
                    .take(3)
                    .collect();
                last = format!(
                    "{} records read, {} stored, {} failed: {reasons:?}",
                    report.records,
                    report.stored_events,
                    report.failures.len()
                );
            }
            Err(error) => last = format!("the poll failed: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the consumer did not catch up within {CATCH_UP_LIMIT:?}; last poll: {last}");
}
