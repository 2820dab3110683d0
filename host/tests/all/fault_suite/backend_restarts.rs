//! Backends that crash and come back while the load runs and the consumer writes: the
//! Redis server (core data and counters) is killed and restarted, DynamoDB Local is
//! stopped mid-batch and restarted. Both keep what they acknowledged on disk, as the
//! managed services do (DynamoDB Local only when stopped with SIGTERM: see
//! [`PrivateService::crash`]); the pipeline must neither lose nor double-count a record.
//! DynamoDB answers slowly (50 ms each way through its proxy), so the consumer is in
//! the middle of a batch most of the time.

use std::time::Duration;

use test_support::{Fault, PrivateService};

use super::aws_world::AwsWorld;
use super::consumer::{Running, catch_up, poller};
use super::load::{Load, REQUESTS};
use super::reconcile::Reconciliation;

/// How long a killed service stays down (DynamoDB Local then takes ~5 s to start).
const OUTAGE: Duration = Duration::from_secs(3);

/// Runs the load with the consumer polling, crashes a service of the world a third of
/// the way through, restarts it after [`OUTAGE`], and reconciles.
async fn crash_and_restart(scenario: &'static str, pick: fn(&mut AwsWorld) -> &mut PrivateService) {
    let mut world = AwsWorld::start().await;
    world
        .dynamodb_proxy
        .set(Fault::Latency(Duration::from_millis(50)));
    let host = world.start_host().await;
    let consumer = Running::start(poller(&world).await);
    let load = Load::start(&host.url);
    load.until_acknowledged(REQUESTS / 3).await;
    pick(&mut world).crash();
    tokio::time::sleep(OUTAGE).await;
    pick(&mut world).restart().await;
    let report = load.finish().await;

    let mut poller = consumer.stop().await;
    catch_up(&mut poller).await;
    Reconciliation::new(
        scenario,
        &report.acknowledged,
        &[],
        world.observe().await,
        report.failures(),
    )
    .print_and_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load_loses_and_double_counts_nothing() {
    crash_and_restart("Redis killed under load, restarted 3 s later", |world| {
        &mut world.redis
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_restarted_mid_batch_loses_and_double_stores_nothing() {
    crash_and_restart(
        "DynamoDB Local stopped mid-batch (SIGTERM), restarted 3 s later",
        |world| &mut world.dynamodb,
    )
    .await;
}
