//! The registry in the stack's plugin bucket: `components/<sha256>.wasm`,
//! `releases/<number>.json` written with `If-None-Match: *` (create-only),
//! `current.json` moved with `If-Match: <ETag>` (compare-and-set), and
//! `heartbeats/<side>/<instance>.json`.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use plugin_engine::PluginVersion;
use retry_policy::aws::failure;
use retry_policy::{ClassifiedError, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::document::{Heartbeat, Release};
use crate::error::RegistryError;
use crate::store::{Pointer, RegistryStore, decode, release_name};

/// The registry in an S3 bucket, under an optional key prefix.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

#[derive(Serialize, Deserialize)]
struct StoredPointer {
    release: u64,
    generation: u64,
}

impl S3Store {
    /// The registry in `bucket` under `prefix`, with the SDK's default configuration
    /// (`endpoint`: an emulator, addressed path-style).
    pub async fn connect(bucket: &str, prefix: &str, endpoint: Option<&str>) -> Self {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        Self::new(Client::from_conf(config.build()), bucket, prefix)
    }

    /// The registry in `bucket` under `prefix` (e.g. `registry/`).
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The object's bytes and ETag, `None` when there is no such key.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(error) => return Err(failure(&format!("GetObject {key}"), error).into()),
        };
        let etag = output.e_tag().unwrap_or_default().to_owned();
        let bytes = output.body.collect().await.map_err(|error| {
            ClassifiedError::caused_by(ErrorKind::Transient, format!("reading {key}"), error)
        })?;
        Ok(Some((bytes.to_vec(), etag)))
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, RegistryError> {
        let prefix = self.key(prefix);
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| failure(&format!("ListObjectsV2 {prefix}"), error))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|object| object.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }
}

/// Whether the SDK error is S3's answer to a failed condition (412, or 409 when a
/// concurrent conditional write is in flight).
fn precondition_failed<E>(
    error: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    error
        .raw_response()
        .is_some_and(|response| matches!(response.status().as_u16(), 412 | 409))
}

#[async_trait]
impl RegistryStore for S3Store {
    async fn put_component(
        &self,
        version: PluginVersion,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let key = self.key(&format!("components/{version}.wasm"));
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_none_match("*")
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(error) if precondition_failed(&error) => Ok(()), // already stored
            Err(error) => Err(failure(&format!("PutObject {key}"), error).into()),
        }
    }

    async fn component(&self, version: PluginVersion) -> Result<Vec<u8>, RegistryError> {
        let key = self.key(&format!("components/{version}.wasm"));
        let (bytes, _) = self
            .get(&key)
            .await?
            .ok_or(RegistryError::UnknownComponent(version))?;
        Ok(bytes)
    }

    async fn create_release(&self, release: &Release) -> Result<(), RegistryError> {
        let key = self.key(&format!("releases/{}", release_name(release.number)));
        let json = serde_json::to_vec_pretty(release).map_err(|error| RegistryError::Corrupt {
            what: format!("release {}", release.number),
            reason: error.to_string(),
        })?;
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_none_match("*")
            .content_type("application/json")
            .body(ByteStream::from(json))
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(error) if precondition_failed(&error) => Err(RegistryError::Conflict(format!(
                "release {} was published by someone else",
                release.number
            ))),
            Err(error) => Err(failure(&format!("PutObject {key}"), error).into()),
        }
    }

    async fn release(&self, number: u64) -> Result<Release, RegistryError> {
        let key = self.key(&format!("releases/{}", release_name(number)));
        let (bytes, _) = self
            .get(&key)
            .await?
            .ok_or(RegistryError::UnknownRelease(number))?;
        decode(&format!("release {number}"), &bytes)
    }

    async fn release_numbers(&self) -> Result<Vec<u64>, RegistryError> {
        let mut numbers: Vec<u64> = self
            .keys("releases/")
            .await?
            .iter()
            .filter_map(|key| key.rsplit('/').next()?.strip_suffix(".json")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    async fn current(&self) -> Result<Option<Pointer>, RegistryError> {
        let Some((bytes, etag)) = self.get(&self.key("current.json")).await? else {
            return Ok(None);
        };
        let stored: StoredPointer = decode("the current-release pointer", &bytes)?;
        Ok(Some(Pointer {
            release: stored.release,
            generation: stored.generation,
            tag: etag,
        }))
    }

    async fn move_current(
        &self,
        expected: Option<&Pointer>,
        release: u64,
    ) -> Result<Pointer, RegistryError> {
        let key = self.key("current.json");
        let generation = expected.map_or(0, |pointer| pointer.generation) + 1;
        let json = serde_json::to_vec(&StoredPointer {
            release,
            generation,
        })
        .map_err(|error| RegistryError::Corrupt {
            what: "the current-release pointer".into(),
            reason: error.to_string(),
        })?;
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(json));
        put = match expected {
            Some(pointer) => put.if_match(&pointer.tag),
            None => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(output) => Ok(Pointer {
                release,
                generation,
                tag: output.e_tag().unwrap_or_default().to_owned(),
            }),
            Err(error) if precondition_failed(&error) => Err(RegistryError::Conflict(
                "the current release moved meanwhile".to_owned(),
            )),
            Err(error) => Err(failure(&format!("PutObject {key}"), error).into()),
        }
    }

    async fn put_heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), RegistryError> {
        let key = self.key(&format!(
            "heartbeats/{}/{}.json",
            heartbeat.side, heartbeat.instance
        ));
        let json = serde_json::to_vec(heartbeat).map_err(|error| RegistryError::Corrupt {
            what: "a heartbeat".into(),
            reason: error.to_string(),
        })?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(json))
            .send()
            .await
            .map_err(|error| failure(&format!("PutObject {key}"), error))?;
        Ok(())
    }

    async fn heartbeats(&self) -> Result<Vec<Heartbeat>, RegistryError> {
        let mut heartbeats = Vec::new();
        for key in self.keys("heartbeats/").await? {
            if let Some((bytes, _)) = self.get(&key).await?
                && let Ok(heartbeat) = serde_json::from_slice(&bytes)
            {
                heartbeats.push(heartbeat);
            }
        }
        Ok(heartbeats)
    }
}
