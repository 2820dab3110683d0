//! Which versions of the plugin contract (the `adtrack:plugin` WIT package) this host
//! accepts. A component names the version it was built for in every import and export
//! of the package (`adtrack:plugin/handler@0.1.0`). The policy is semver's, as Cargo
//! reads it: a component built for an older version of the same compatible line (same
//! major version; for `0.x`, the same minor) loads, because later versions of a line
//! only add; a component built for a newer version than the host, or another line, is
//! refused with both versions named.

use semver::Version;

/// The WIT package of the contract.
pub const CONTRACT_PACKAGE: &str = "adtrack:plugin";

/// The contract version this host implements (`package adtrack:plugin@…` in
/// `wit/plugin.wit`).
pub const CONTRACT_VERSION: &str = "0.1.2";

/// The version this host implements.
pub fn host_version() -> Version {
    Version::parse(CONTRACT_VERSION).expect("CONTRACT_VERSION is a semver version")
}

/// The oldest version this host accepts: the start of its compatible line.
pub fn oldest_accepted() -> Version {
    let host = host_version();
    if host.major > 0 {
        Version::new(host.major, 0, 0)
    } else {
        Version::new(0, host.minor, 0)
    }
}

/// Whether a component built for `target` loads on this host.
pub fn accepts(target: &Version) -> bool {
    *target >= oldest_accepted() && *target <= host_version()
}

/// The accepted range, for messages: `0.1.0 to 0.1.3`.
pub fn accepted_range() -> String {
    format!("{} to {}", oldest_accepted(), host_version())
}

/// The contract version a component targets, from its import and export names; `None`
/// when it names none of the package's interfaces. Names that disagree are an error.
pub fn targeted_version<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Option<Version>, String> {
    let prefix = format!("{CONTRACT_PACKAGE}/");
    let mut found: Option<Version> = None;
    for name in names {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Some((_, version)) = rest.split_once('@') else {
            return Err(format!("{name} names no contract version"));
        };
        let version = Version::parse(version)
            .map_err(|error| format!("{name}: {version:?} is not a semver version: {error}"))?;
        match &found {
            Some(earlier) if *earlier != version => {
                return Err(format!(
                    "the component targets two contract versions, {earlier} and {version}"
                ));
            }
            _ => found = Some(version),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_version_is_the_wit_package_version() {
        let wit =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit/plugin.wit"))
                .expect("wit/plugin.wit");
        assert!(
            wit.contains(&format!("package {CONTRACT_PACKAGE}@{CONTRACT_VERSION};")),
            "CONTRACT_VERSION must follow the package line of wit/plugin.wit"
        );
    }

    #[test]
    fn older_versions_of_the_line_load_newer_or_other_lines_do_not() {
        assert!(accepts(&host_version()));
        assert!(accepts(&oldest_accepted()));
        let newer = Version::new(
            host_version().major,
            host_version().minor,
            host_version().patch + 1,
        );
        assert!(!accepts(&newer));
        assert!(!accepts(&Version::new(host_version().major + 2, 0, 0)));
    }

    #[test]
    fn the_targeted_version_comes_from_the_package_names() {
        let names = [
            "wasi:io/streams@0.2.0",
            "adtrack:plugin/log@0.1.0",
            "adtrack:plugin/handler@0.1.0",
        ];
        assert_eq!(
            targeted_version(names).unwrap(),
            Some(Version::new(0, 1, 0))
        );
        assert_eq!(targeted_version(["wasi:io/streams@0.2.0"]).unwrap(), None);
        let mixed = targeted_version(["adtrack:plugin/log@0.1.0", "adtrack:plugin/handler@0.2.0"]);
        assert!(mixed.unwrap_err().contains("two contract versions"));
    }
}
