//! Shared configuration helpers for the binaries' settings (clap argument groups that
//! live beside the stage they configure): secrets and URLs with credentials that print
//! redacted, and the error a group's validation returns.
//!
//! Every binary prints its configuration at start; with these types a `#[derive(Debug)]`
//! on a settings group is already safe to print.
#![deny(missing_docs)]

pub mod deployment;

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// What a redacted value prints as.
pub const REDACTED: &str = "(redacted)";

/// A secret setting (a token, a password): prints as `(redacted)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl FromStr for Secret {
    type Err = Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self::from(value))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A URL that may carry a password (`redis://user:password@host`): prints with the
/// password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialUrl(String);

impl CredentialUrl {
    /// The URL with its credentials, for the one place that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL's scheme (`redis`, `https`), if it has one.
    pub fn scheme(&self) -> Option<&str> {
        self.0.split_once("://").map(|(scheme, _)| scheme)
    }
}

impl From<&str> for CredentialUrl {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl FromStr for CredentialUrl {
    type Err = Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self::from(value))
    }
}

impl fmt::Debug for CredentialUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for CredentialUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// `scheme://user:secret@host` becomes `scheme://user:(redacted)@host`; a URL without a
/// password is returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    format!("{scheme}://{user}:{REDACTED}@{host}")
}

/// A setting is unusable: which one (its environment variable) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {setting}: {reason}")]
pub struct InvalidSetting {
    /// The environment variable at fault.
    pub setting: &'static str,
    /// What is wrong with it, for people.
    pub reason: String,
}

impl InvalidSetting {
    /// `setting` is wrong because of `reason`.
    pub fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        Self {
            setting,
            reason: reason.into(),
        }
    }
}

/// Fails with [`InvalidSetting`] for `setting` unless `holds`.
pub fn ensure(holds: bool, setting: &'static str, reason: &str) -> Result<(), InvalidSetting> {
    if holds {
        Ok(())
    } else {
        Err(InvalidSetting::new(setting, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_url_passwords_never_print() {
        let token = Secret::from("hunter2");
        assert_eq!(format!("{token:?} {token}"), "(redacted) (redacted)");
        assert_eq!(token.expose(), "hunter2");
        let url = CredentialUrl::from("rediss://default:hunter2@cache:6379");
        let printed = format!("{url:?} {url}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("rediss://default:(redacted)@cache:6379"));
        assert_eq!(url.scheme(), Some("rediss"));
    }

    #[test]
    fn urls_without_credentials_print_as_they_are() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
