//! Kinesis becomes a black hole for the host (connections open, nothing comes back)
//! under load, then returns: every acknowledged request is on the stream exactly once.

use std::time::Duration;

use test_support::Fault;

use super::aws_world::AwsWorld;
use super::consumer::{catch_up, poller};
use super::load::{Load, REQUESTS};
use super::reconcile::Reconciliation;

/// How long the stream stays unreachable: longer than the host's Kinesis call timeout.
const OUTAGE: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_blackholed_then_restored_loses_and_duplicates_nothing() {
    let world = AwsWorld::start().await;
    let host = world.start_host().await;
    let load = Load::start(&host.url);
    load.until_acknowledged(REQUESTS / 3).await;
    world.kinesis_proxy.set(Fault::Blackhole);
    tokio::time::sleep(OUTAGE).await;
    world.kinesis_proxy.set(Fault::Pass);
    let report = load.finish().await;
    assert!(
        world.kinesis_proxy.dropped_bytes() > 0,
        "the black hole swallowed nothing: the host did not call Kinesis during the outage"
    );

    let mut poller = poller(&world).await;
    catch_up(&mut poller).await;
    Reconciliation::new(
        "kinesalite blackholed for 8 s under load, then restored",
        &report.acknowledged,
        &[],
        world.observe().await,
        report.failures(),
    )
    .print_and_check();
}
