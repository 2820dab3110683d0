//! One contract, two backends: what the host's cache stage and the consumer rely on.
//! Every test runs against [`InProcessCoreData`] and [`RedisCoreData`].

use std::time::Duration;

use contract::redis_names;
use core_data::{CoreDataStore, CoreDataUpdates, InProcessCoreData, ProgramCount, RedisCoreData};
use tokio::sync::mpsc;

/// Both backends, each with a program id no other test uses.
async fn backends() -> Vec<(&'static str, Box<dyn Backend>)> {
    let url = test_support::service_env("REDIS_URL");
    let redis = RedisCoreData::connect(&url.as_str().into(), None, Duration::from_secs(2))
        .await
        .expect("redis-server answers at REDIS_URL");
    vec![
        ("in-process", Box::new(InProcessCoreData::new())),
        ("redis", Box::new(redis)),
    ]
}

trait Backend: CoreDataStore + CoreDataUpdates {}
impl<T: CoreDataStore + CoreDataUpdates> Backend for T {}

fn program_id() -> String {
    test_support::unique("program")
}

fn count(program_id: &str, event_count: u64, last_seen_ms: u64) -> ProgramCount {
    ProgramCount {
        program_id: program_id.to_owned(),
        event_count,
        last_seen_ms,
    }
}

fn field<'r>(record: &'r [(String, String)], name: &str) -> Option<&'r str> {
    record
        .iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value.as_str())
}

async fn next_change(updates: &mut mpsc::Receiver<String>, skip_empty: bool) -> String {
    loop {
        let key = tokio::time::timeout(Duration::from_secs(5), updates.recv())
            .await
            .expect("a change notification within 5 s")
            .expect("the subscription stays open");
        if !(skip_empty && key.is_empty()) {
            return key;
        }
    }
}

#[tokio::test]
async fn stored_fields_merge_like_hset_and_read_back_sorted() {
    for (name, backend) in backends().await {
        let id = program_id();
        assert_eq!(backend.fetch(&id).await.unwrap(), None, "{name}");
        backend
            .store(&id, &vec![("programName".into(), "Summer".into())])
            .await
            .unwrap();
        backend
            .store(&id, &vec![("checksum".into(), "b84e".into())])
            .await
            .unwrap();
        let record = backend.fetch(&id).await.unwrap().expect(name);
        assert_eq!(
            record,
            vec![
                ("checksum".to_owned(), "b84e".to_owned()),
                ("programName".to_owned(), "Summer".to_owned()),
            ],
            "{name}"
        );
        backend.remove(&id).await.unwrap();
        assert_eq!(backend.fetch(&id).await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn counts_only_move_forward_so_a_late_or_repeated_publish_changes_nothing() {
    for (name, backend) in backends().await {
        let id = program_id();
        backend
            .store(&id, &vec![("programName".into(), "Summer".into())])
            .await
            .unwrap();
        backend.publish_counts(&[count(&id, 2, 10)]).await.unwrap();
        backend.publish_counts(&[count(&id, 3, 7)]).await.unwrap();
        let counted = backend.fetch(&id).await.unwrap().expect(name);
        assert_eq!(
            field(&counted, redis_names::EVENT_COUNT_FIELD),
            Some("3"),
            "{name}"
        );
        assert_eq!(
            field(&counted, redis_names::LAST_SEEN_FIELD),
            Some("10"),
            "{name}"
        );

        // A redelivered batch publishes the same totals; another consumer's older,
        // smaller total arrives late: nothing changes.
        backend.publish_counts(&[count(&id, 3, 10)]).await.unwrap();
        backend.publish_counts(&[count(&id, 1, 4)]).await.unwrap();
        assert_eq!(
            backend.fetch(&id).await.unwrap().expect(name),
            counted,
            "{name}"
        );
    }
}

#[tokio::test]
async fn counts_of_an_unknown_program_make_up_nothing() {
    for (name, backend) in backends().await {
        let id = program_id();
        backend.publish_counts(&[count(&id, 1, 10)]).await.unwrap();
        assert_eq!(backend.fetch(&id).await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn subscribers_hear_of_every_change_but_not_of_a_repeated_count() {
    for (name, backend) in backends().await {
        let id = program_id();
        let mut updates = backend.subscribe();
        if name == "redis" {
            // Redis announces "" once subscribed (refresh everything): wait for it, so
            // the changes below are published to a live subscription.
            assert_eq!(next_change(&mut updates, false).await, "", "{name}");
        }
        backend
            .store(&id, &vec![("programName".into(), "Summer".into())])
            .await
            .unwrap();
        assert_eq!(next_change(&mut updates, true).await, id, "{name}");
        backend.publish_counts(&[count(&id, 1, 10)]).await.unwrap();
        assert_eq!(next_change(&mut updates, true).await, id, "{name}");
        backend.publish_counts(&[count(&id, 1, 5)]).await.unwrap();
        backend.remove(&id).await.unwrap();
        // The next change heard is the removal: the redelivery announced nothing.
        assert_eq!(next_change(&mut updates, true).await, id, "{name}");
        assert_eq!(backend.fetch(&id).await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_the_caller_may_retry() {
    use retry_policy::Classify;
    let error = RedisCoreData::connect(
        &"redis://127.0.0.1:1".into(),
        None,
        Duration::from_millis(300),
    )
    .await
    .err()
    .expect("nothing listens on port 1");
    assert!(error.kind().is_retryable(), "{error}: {:?}", error.kind());
}
