//! One client sends events with partition keys Kinesis refuses (empty, over 256
//! characters) while other clients track as usual: the bad requests are refused at the
//! edge with a 400, and the good traffic is not affected at all.

use std::collections::BTreeMap;

use serde_json::json;

use super::aws_world::AwsWorld;
use super::consumer::{catch_up, poller};
use super::load::{Load, REQUESTS};
use super::reconcile::Reconciliation;

/// Requests of the client with invalid keys.
const INVALID_REQUESTS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_partition_keys_are_refused_and_stall_no_one_else() {
    let world = AwsWorld::start().await;
    let host = world.start_host().await;
    let load = Load::start(&host.url);
    let mut invalid_answers: BTreeMap<u16, usize> = BTreeMap::new();
    for request in 0..INVALID_REQUESTS {
        let key = if request % 2 == 0 {
            String::new()
        } else {
            "k".repeat(257)
        };
        let events = json!([{
            "key": key,
            "attributes": { "programId": "212313", "userAgent": "Mozilla/5.0" }
        }]);
        let status = host
            .client
            .post(host.at("/events"))
            .json(&events)
            .send()
            .await
            .map(|response| response.status().as_u16())
            .unwrap_or_default();
        *invalid_answers.entry(status).or_default() += 1;
    }
    let report = load.finish().await;

    let mut poller = poller(&world).await;
    catch_up(&mut poller).await;
    let invalid: Vec<String> = invalid_answers
        .iter()
        .map(|(status, count)| format!("{count} × {status}"))
        .collect();
    let invalid = invalid.join(", ");
    Reconciliation::new(
        "invalid partition keys among good traffic",
        &report.acknowledged,
        &[],
        world.observe().await,
        format!(
            "good clients: {}; invalid-key client: {invalid}",
            report.failures()
        ),
    )
    .require(
        report.acknowledged.len() == REQUESTS,
        format!(
            "the good traffic was affected: {} of {REQUESTS} acknowledged, {}",
            report.acknowledged.len(),
            report.failures()
        ),
    )
    .require(
        invalid_answers == BTreeMap::from([(400, INVALID_REQUESTS)]),
        format!("invalid keys were answered {invalid}, not 400"),
    )
    .print_and_check();
}
