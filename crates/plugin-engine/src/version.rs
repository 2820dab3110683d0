//! Plugin versions: the sha256 of a component's bytes.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Identifies one build of a plugin: the sha256 of its component bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginVersion([u8; 32]);

impl PluginVersion {
    /// The version of the given component bytes.
    pub fn of(component_bytes: &[u8]) -> Self {
        Self(Sha256::digest(component_bytes).into())
    }

    /// The first 12 hex digits, enough to tell versions apart in logs and metrics.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for PluginVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Encoded on the stack: versions are formatted into every stored record's stamp.
        let mut digits = [0u8; 64];
        hex::encode_to_slice(self.0, &mut digits).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for PluginVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PluginVersion({})", self.short())
    }
}

/// The text was not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid plugin version {0:?}: expected 64 hex digits")]
pub struct InvalidVersion(String);

impl FromStr for PluginVersion {
    type Err = InvalidVersion;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| InvalidVersion(text.to_owned()))?;
        Ok(Self(bytes))
    }
}

/// Serialized as its 64 hex digits.
impl serde::Serialize for PluginVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PluginVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_sha256_of_the_bytes() {
        let version = PluginVersion::of(b"abc");
        assert_eq!(
            version.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(version.short(), "ba7816bf8f01");
    }

    #[test]
    fn version_round_trips_through_text() {
        let version = PluginVersion::of(b"component");
        assert_eq!(
            version.to_string().parse::<PluginVersion>().unwrap(),
            version
        );
        assert!("not-hex".parse::<PluginVersion>().is_err());
    }
}
