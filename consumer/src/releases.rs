//! The consumer chain from the plugin registry: each batch runs the current release,
//! checked cheaply (at most every few seconds) before the batch starts.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use plugin_engine::Side;
use releases::ReleaseRuntime;

use crate::handler::{BatchChain, ChainSource};

/// How long a check of the registry's pointer stays fresh for the next batches.
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The consumer chain of the registry's current release.
pub struct RegistryChains {
    runtime: Arc<ReleaseRuntime>,
    check_every: Duration,
    instance: String,
}

/// The runtime does not load the consumer side.
#[derive(Debug, thiserror::Error)]
#[error("the release runtime does not load the consumer chain")]
pub struct NoConsumerChain;

impl RegistryChains {
    /// The consumer chains of `runtime` (which must load the consumer side), checking the
    /// registry at most every `check_every` and reporting a heartbeat after each check.
    pub fn new(
        runtime: Arc<ReleaseRuntime>,
        check_every: Duration,
    ) -> Result<Self, NoConsumerChain> {
        if runtime.active().chain(Side::Consumer).is_none() {
            return Err(NoConsumerChain);
        }
        Ok(Self {
            runtime,
            check_every,
            instance: releases::instance_id(),
        })
    }
}

#[async_trait]
impl ChainSource for RegistryChains {
    async fn next_batch(&self) -> BatchChain {
        if let Some(release) = self.runtime.abort_failing_canaries().await {
            tracing::warn!(release, "a failing canary was aborted");
        }
        match self.runtime.refresh_if_older_than(self.check_every).await {
            Ok(Some(_)) => self.runtime.heartbeat(&self.instance).await,
            Ok(None) => {}
            Err(error) => tracing::warn!(
                %error,
                "cannot check the plugin registry; the batch runs the release it has"
            ),
        }
        let active = self.runtime.active();
        // The runtime loads the consumer side of every release it swaps in (checked in `new`).
        let chain = active
            .chain(Side::Consumer)
            .cloned()
            .expect("the runtime loads the consumer chain of every release");
        BatchChain {
            chain,
            release: active.number(),
        }
    }
}
