//! Where the registry is, shared by `serve`, the consumer and the `plugin` CLI: run with
//! the same environment, each reaches the same registry.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use settings::{InvalidSetting, ensure};

use crate::error::RegistryError;
use crate::local::LocalStore;
use crate::registry::ReleaseRegistry;
use crate::store::RegistryStore;

/// How often a process checks the pointer when nothing was announced, by store.
const LOCAL_POLL: Duration = Duration::from_secs(2);
const BUCKET_POLL: Duration = Duration::from_secs(30);

/// The plugin registry: the stack's plugin bucket, or a directory under the data dir.
#[derive(Clone, Debug, clap::Args)]
pub struct RegistryConfig {
    /// S3 bucket holding the plugin registry (the stack's plugin bucket). Unset: the
    /// directory `registry/` under the data directory.
    #[arg(long, env = "PLUGIN_BUCKET")]
    pub plugin_bucket: Option<String>,
    /// Key prefix of the registry in the bucket.
    #[arg(long, env = "PLUGIN_REGISTRY_PREFIX", default_value = "registry/")]
    pub registry_prefix: String,
    /// S3 endpoint override (emulators); also `AWS_ENDPOINT_URL_S3`.
    #[arg(long, env = "S3_ENDPOINT_URL")]
    pub s3_endpoint_url: Option<String>,
    /// Seconds between checks of the current release when no announcement arrives
    /// (default: 30 for a bucket, 2 for a local directory).
    #[arg(long, env = "RELEASE_POLL_SECS")]
    pub release_poll_secs: Option<u64>,
}

impl RegistryConfig {
    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(bucket) = &self.plugin_bucket {
            ensure(
                !bucket.trim().is_empty(),
                "PLUGIN_BUCKET",
                "must name a bucket",
            )?;
        }
        ensure(
            self.release_poll_secs != Some(0),
            "RELEASE_POLL_SECS",
            "must be positive",
        )
    }

    /// How often to poll the pointer.
    pub fn poll(&self) -> Duration {
        match (self.release_poll_secs, &self.plugin_bucket) {
            (Some(secs), _) => Duration::from_secs(secs),
            (None, Some(_)) => BUCKET_POLL,
            (None, None) => LOCAL_POLL,
        }
    }

    /// Opens the registry: the bucket when configured, else `data_dir/registry`.
    pub async fn open(&self, data_dir: &Path) -> Result<ReleaseRegistry, RegistryError> {
        let store: Arc<dyn RegistryStore> = match &self.plugin_bucket {
            #[cfg(feature = "s3")]
            Some(bucket) => Arc::new(
                crate::s3::S3Store::connect(
                    bucket,
                    &self.registry_prefix,
                    self.s3_endpoint_url.as_deref(),
                )
                .await,
            ),
            #[cfg(not(feature = "s3"))]
            Some(_) => {
                return Err(RegistryError::Corrupt {
                    what: "PLUGIN_BUCKET".into(),
                    reason: "this build has no S3 support (feature `s3`)".into(),
                });
            }
            None => Arc::new(LocalStore::open(&data_dir.join("registry"))?),
        };
        Ok(ReleaseRegistry::new(store))
    }
}
