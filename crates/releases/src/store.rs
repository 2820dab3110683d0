//! Where the registry keeps components, releases, the pointer and heartbeats.

use async_trait::async_trait;
use plugin_engine::PluginVersion;

use crate::document::{Heartbeat, Release};
use crate::error::RegistryError;

/// The current-release pointer as read: the release and the tag a compare-and-set
/// must present to move it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer {
    /// The current release.
    pub release: u64,
    /// How many times the pointer has moved: a reader never goes back to a pointer
    /// with a smaller generation than one it has used (a rollback is a new generation).
    pub generation: u64,
    /// Opaque version of the pointer (an S3 ETag, a counter): what `move_current` compares.
    pub tag: String,
}

/// A registry backend. Components and releases are write-once; only the pointer
/// changes, by compare-and-set.
#[async_trait]
pub trait RegistryStore: Send + Sync {
    /// Stores a component under its version; storing it again is a no-op.
    async fn put_component(
        &self,
        version: PluginVersion,
        bytes: &[u8],
    ) -> Result<(), RegistryError>;
    /// The bytes of a stored component.
    async fn component(&self, version: PluginVersion) -> Result<Vec<u8>, RegistryError>;
    /// Writes a new release document; [`RegistryError::Conflict`] if that number exists.
    async fn create_release(&self, release: &Release) -> Result<(), RegistryError>;
    /// A stored release.
    async fn release(&self, number: u64) -> Result<Release, RegistryError>;
    /// Numbers of every stored release, ascending.
    async fn release_numbers(&self) -> Result<Vec<u64>, RegistryError>;
    /// The pointer, `None` while no release is current.
    async fn current(&self) -> Result<Option<Pointer>, RegistryError>;
    /// Moves the pointer to `release` if it is still `expected` (`None`: if there is
    /// none yet); [`RegistryError::Conflict`] otherwise.
    async fn move_current(
        &self,
        expected: Option<&Pointer>,
        release: u64,
    ) -> Result<Pointer, RegistryError>;
    /// Records what one process runs (replacing its previous heartbeat).
    async fn put_heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), RegistryError>;
    /// Every recorded heartbeat.
    async fn heartbeats(&self) -> Result<Vec<Heartbeat>, RegistryError>;
}

/// The stored JSON of a document, or why it cannot be read back.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|error| RegistryError::Corrupt {
        what: what.to_owned(),
        reason: error.to_string(),
    })
}

/// The name of release `number`'s document (zero-padded, so names sort by number).
pub(crate) fn release_name(number: u64) -> String {
    format!("{number:010}.json")
}
