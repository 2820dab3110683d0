//! One scenario's world on the AWS path: its own redis-server, kinesalite and DynamoDB
//! Local, a fault proxy in front of each (the processes under test only ever reach a
//! service through its proxy), a two-shard stream, a table, and the sample programs.

use std::sync::Arc;

use adtrack_consumer::aws::dynamodb::is_event_id;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::config::Credentials;
use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use contract::TrackingEvent;
use test_support::dynamodb::create_event_table;
use test_support::{FaultProxy, PrivateService, ServiceKind};

use super::consumer::CollectedDeadLetters;
use super::reconcile::{Observed, counter_total};
use crate::common::*;

/// The private services of one scenario and the proxies in front of them.
pub struct AwsWorld {
    /// redis-server: core data and counters.
    pub redis: PrivateService,
    /// kinesalite: the stream.
    pub kinesalite: PrivateService,
    /// DynamoDB Local: the event store.
    pub dynamodb: PrivateService,
    /// In front of `redis`.
    pub redis_proxy: FaultProxy,
    /// In front of `kinesalite`.
    pub kinesis_proxy: FaultProxy,
    /// In front of `dynamodb`.
    pub dynamodb_proxy: FaultProxy,
    /// The stream the host writes.
    pub stream: String,
    /// The table the consumer writes.
    pub table: String,
    /// What the consumer dead-lettered.
    pub dead_letters: Arc<CollectedDeadLetters>,
}

impl AwsWorld {
    /// Starts the services, creates the stream and the table.
    pub async fn start() -> Self {
        let (redis, kinesalite, dynamodb) = tokio::join!(
            PrivateService::start(ServiceKind::Redis),
            PrivateService::start(ServiceKind::Kinesalite),
            PrivateService::start(ServiceKind::DynamoDbLocal),
        );
        let proxy = |service: &PrivateService| FaultProxy::start(service.address());
        let world = Self {
            redis_proxy: proxy(&redis).await.expect("redis proxy"),
            kinesis_proxy: proxy(&kinesalite).await.expect("kinesis proxy"),
            dynamodb_proxy: proxy(&dynamodb).await.expect("dynamodb proxy"),
            redis,
            kinesalite,
            dynamodb,
            stream: "fault-events".into(),
            table: "fault-events".into(),
            dead_letters: Arc::default(),
        };
        create_stream(&world.kinesis().await, &world.stream, 2).await;
        create_event_table(&world.dynamodb_client().await, &world.table).await;
        world
    }

    /// `redis://` of the proxy in front of Redis.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_proxy.port())
    }

    /// The environment of a host on this world (`ACK=stream`, the default).
    pub fn host_env(&self) -> Vec<(&'static str, String)> {
        let mut env = aws_env();
        env.push(("REDIS_URL", self.redis_url()));
        env.push(("KINESIS_STREAM_NAME", self.stream.clone()));
        env.push((
            "KINESIS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", self.kinesis_proxy.port()),
        ));
        env
    }

    /// Starts a host on this world and fills core data with the sample programs.
    pub async fn start_host(&self) -> Host {
        self.start_host_with(&[]).await
    }

    /// [`AwsWorld::start_host`] with `extra` variables (a pipeline file, say).
    pub async fn start_host_with(&self, extra: &[(&'static str, String)]) -> Host {
        let mut env = self.host_env();
        env.extend(extra.iter().cloned());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let host = start_host(&env).await;
        let (status, body) = host.get("/cache/fill").await;
        assert_eq!(status, 200, "cache fill: {body}");
        host
    }

    /// A Kinesis client straight to kinesalite (the test's own reads, never faulted).
    pub async fn kinesis(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&sdk_config(&self.kinesalite.url()).await)
    }

    /// A DynamoDB client straight to DynamoDB Local (the test's own reads).
    pub async fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&sdk_config(&self.dynamodb.url()).await)
    }

    /// A DynamoDB client through the proxy, for the consumer under test.
    pub async fn dynamodb_client_through_proxy(&self) -> aws_sdk_dynamodb::Client {
        let url = format!("http://127.0.0.1:{}", self.dynamodb_proxy.port());
        aws_sdk_dynamodb::Client::new(&sdk_config(&url).await)
    }

    /// What the stream, the table, the counters and the dead letters hold.
    pub async fn observe(&self) -> Observed {
        Observed {
            stream: self.stream_message_ids().await,
            stored: self.stored_ids().await,
            counted: counter_total(&self.redis).await,
            dead_letters: self.dead_letters.count(),
        }
    }

    /// The message id of every record of every shard, from the oldest.
    pub async fn stream_message_ids(&self) -> Vec<String> {
        self.shard_records()
            .await
            .iter()
            .flatten()
            .map(|record| {
                TrackingEvent::from_bytes(record.data().as_ref())
                    .expect("a record the host wrote decodes")
                    .message_id
            })
            .collect()
    }

    /// Every record of the stream, shard by shard, in order.
    pub async fn shard_records(&self) -> Vec<Vec<Record>> {
        let kinesis = self.kinesis().await;
        let shards = kinesis
            .list_shards()
            .stream_name(&self.stream)
            .send()
            .await
            .expect("ListShards");
        let mut all = Vec::new();
        for shard in shards.shards() {
            let mut records = Vec::new();
            let mut iterator = kinesis
                .get_shard_iterator()
                .stream_name(&self.stream)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("GetShardIterator")
                .shard_iterator;
            while let Some(current) = iterator {
                let output = kinesis
                    .get_records()
                    .shard_iterator(current)
                    .send()
                    .await
                    .expect("GetRecords");
                if output.records().is_empty() {
                    break;
                }
                records.extend(output.records().iter().cloned());
                iterator = output.next_shard_iterator().map(str::to_owned);
            }
            all.push(records);
        }
        all
    }

    /// The id of every event item in the table (not the counter and attempt items).
    pub async fn stored_ids(&self) -> Vec<String> {
        let dynamodb = self.dynamodb_client().await;
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let output = dynamodb
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("Scan");
            for item in output.items() {
                if let Some(AttributeValue::S(id)) = item.get("id")
                    && is_event_id(id)
                {
                    ids.push(id.clone());
                }
            }
            start = output.last_evaluated_key().cloned();
            if start.is_none() {
                return ids;
            }
        }
    }
}

/// Region and dummy credentials for the emulators, as the processes get them.
pub fn aws_env() -> Vec<(&'static str, String)> {
    [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(name, value)| (name, value.to_owned()))
    .collect()
}

/// SDK configuration for an emulator at `endpoint`.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "fault-suite"))
        .load()
        .await
}
