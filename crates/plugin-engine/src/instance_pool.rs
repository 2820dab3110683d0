//! Warm instances of one registered plugin, kept between batches and reused.
//!
//! Reuse is what makes a plugin call cheap: instantiating a component costs far more
//! than calling it. An instance comes back here only if it may serve again (see
//! [`PluginInstance::may_serve_again`]) and only on its version: a swap empties the
//! list and an instance of an older version is dropped when it comes back.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::engine::PluginEngine;
use crate::instance::PluginInstance;
use crate::version::PluginVersion;

/// The idle instances of one plugin, most recently used last.
#[derive(Default)]
pub(crate) struct InstancePool {
    idle: Mutex<Vec<PluginInstance>>,
}

impl InstancePool {
    /// An idle instance of `version`, if there is one; idle instances of other
    /// versions are dropped on the way.
    pub(crate) fn take(&self, version: PluginVersion) -> Option<PluginInstance> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle();
            loop {
                match idle.pop() {
                    Some(instance) if instance.version() == version => break Some(instance),
                    Some(instance) => stale.push(instance),
                    None => break None,
                }
            }
        };
        drop(stale); // outside the lock: returning memory takes a while
        found
    }

    /// Keeps `instance` for a later batch if it may serve again, is of the `active`
    /// version and the engine and this pool have room for it; drops it otherwise.
    pub(crate) fn give_back(
        &self,
        engine: &PluginEngine,
        mut instance: PluginInstance,
        active: PluginVersion,
    ) {
        let limit = engine.config().reuse.idle_per_plugin;
        if instance.version() != active || !instance.may_serve_again(&engine.config().reuse) {
            return;
        }
        let mut idle = self.idle();
        if idle.len() >= limit {
            return;
        }
        let Some(place) = engine.idle_place() else {
            return;
        };
        instance.move_to(place);
        idle.push(instance);
    }

    /// Drops every idle instance (after a swap or rollback).
    pub(crate) fn clear(&self) {
        let idle = std::mem::take(&mut *self.idle());
        drop(idle);
    }

    fn idle(&self) -> MutexGuard<'_, Vec<PluginInstance>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
