//! The host is killed with SIGKILL under load (its Kinesis link slowed down, so records
//! are in flight) and a new one takes over: nothing it acknowledged is lost.

use std::time::Duration;

use test_support::Fault;

use super::aws_world::AwsWorld;
use super::consumer::{catch_up, poller};
use super::load::{Load, REQUESTS};
use super::reconcile::Reconciliation;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_under_load_loses_nothing_it_acknowledged() {
    let world = AwsWorld::start().await;
    world
        .kinesis_proxy
        .set(Fault::Latency(Duration::from_millis(20)));
    let mut host = world.start_host().await;
    let load = Load::start(&host.url);
    load.until_acknowledged(REQUESTS / 3).await;
    host.kill();
    let successor = world.start_host().await;
    load.retarget(&successor.url);
    world.kinesis_proxy.set(Fault::Pass);
    let report = load.finish().await;

    let mut poller = poller(&world).await;
    catch_up(&mut poller).await;
    Reconciliation::new(
        "host `kill -9` under load (Kinesis 20 ms slower)",
        &report.acknowledged,
        &[],
        world.observe().await,
        report.failures(),
    )
    .print_and_check();
}
