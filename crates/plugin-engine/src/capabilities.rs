//! Which imports a plugin may have: the plugin world, harmless WASI, and granted extras.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A capability beyond the default sandbox that a pipeline may grant a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    /// The real wall clock; without it `wasi:clocks/wall-clock` reads the Unix epoch.
    WallClock,
    /// Outbound TCP/UDP and name lookup through `wasi:sockets`.
    Network,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Grant::WallClock => "wall-clock",
            Grant::Network => "network",
        })
    }
}

impl FromStr for Grant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "wall-clock" => Ok(Grant::WallClock),
            "network" => Ok(Grant::Network),
            other => Err(format!(
                "unknown grant {other:?}: expected wall-clock or network"
            )),
        }
    }
}

/// Interfaces every plugin may import. WASI filesystem, environment and stdio are
/// linked so that ordinary language runtimes start, but the sandbox gives them no
/// preopened directories, no variables and no input.
const ALWAYS_ALLOWED: &[&str] = &[
    "adtrack:plugin/types",
    "adtrack:plugin/log",
    "adtrack:plugin/config",
    "adtrack:plugin/core-data",
    "wasi:io/",
    "wasi:random/",
    "wasi:clocks/",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-",
    "wasi:filesystem/",
];

/// Interfaces allowed only with [`Grant::Network`].
const NETWORK: &[&str] = &["wasi:sockets/"];

/// The first import of `imports` that `grants` does not allow, if any.
pub(crate) fn first_denied_import<'a>(
    imports: impl IntoIterator<Item = &'a str>,
    grants: &BTreeSet<Grant>,
) -> Option<&'a str> {
    imports
        .into_iter()
        .find(|import| !is_allowed(import, grants))
}

fn is_allowed(import: &str, grants: &BTreeSet<Grant>) -> bool {
    let unversioned = import.split('@').next().unwrap_or(import);
    let matches = |patterns: &[&str]| {
        patterns.iter().any(|pattern| {
            if pattern.ends_with('/') || pattern.ends_with('-') {
                unversioned.starts_with(pattern)
            } else {
                unversioned == *pattern
            }
        })
    };
    matches(ALWAYS_ALLOWED) || (grants.contains(&Grant::Network) && matches(NETWORK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_world_and_harmless_wasi_are_allowed() {
        let none = BTreeSet::new();
        for import in [
            "adtrack:plugin/core-data@0.1.0",
            "wasi:io/streams@0.2.6",
            "wasi:cli/environment@0.2.6",
            "wasi:cli/terminal-stdout@0.2.6",
            "wasi:filesystem/preopens@0.2.6",
        ] {
            assert_eq!(first_denied_import([import], &none), None, "{import}");
        }
    }

    #[test]
    fn network_and_unknown_imports_are_denied_unless_granted() {
        let none = BTreeSet::new();
        let imports = ["wasi:io/streams@0.2.6", "wasi:sockets/tcp@0.2.6"];
        assert_eq!(
            first_denied_import(imports, &none),
            Some("wasi:sockets/tcp@0.2.6")
        );
        let network = BTreeSet::from([Grant::Network]);
        assert_eq!(first_denied_import(imports, &network), None);
        assert_eq!(
            first_denied_import(["wasi:http/outgoing-handler@0.2.6"], &network),
            Some("wasi:http/outgoing-handler@0.2.6")
        );
        assert_eq!(
            first_denied_import(["adtrack:plugin/config-extra@0.1.0"], &none),
            Some("adtrack:plugin/config-extra@0.1.0")
        );
    }

    #[test]
    fn grants_parse_from_their_names() {
        assert_eq!("network".parse::<Grant>(), Ok(Grant::Network));
        assert_eq!("wall-clock".parse::<Grant>(), Ok(Grant::WallClock));
        assert!("filesystem".parse::<Grant>().is_err());
    }
}
