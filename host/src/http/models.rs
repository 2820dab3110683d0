//! The HTTP bodies the host answers with, one type per shape.

use core_data::BackendStatus;
use serde::Serialize;

use crate::views::BatchResult;

/// `GET /event/{programId}`: the original service's response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackingResponse {
    /// The client's user agent.
    pub user_agent: String,
    /// The tracked program.
    pub program_id: String,
    /// The program's name.
    pub program_name: String,
    /// The program's checksum.
    pub checksum: String,
    /// The customer owning the program: a number when it is one.
    pub customer_id: CustomerId,
    /// The customer's name.
    pub customer_name: String,
    /// The event's message id.
    pub message_id: String,
    /// Whether validation accepted the event.
    pub valid: bool,
}

/// A customer id as the original service printed it: a JSON number when numeric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CustomerId {
    /// A numeric id.
    Number(i64),
    /// Anything else, as it is.
    Text(String),
}

impl From<&str> for CustomerId {
    fn from(text: &str) -> Self {
        text.parse()
            .map(CustomerId::Number)
            .unwrap_or_else(|_| CustomerId::Text(text.to_owned()))
    }
}

/// `POST /events`: how many output events went on the stream and one result per input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchResponse {
    /// Output events put on the stream.
    pub accepted: usize,
    /// One result per input event, in order.
    pub results: Vec<BatchResult>,
}

/// Every error answer: what went wrong in one sentence, and the plugin when one decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// The plugin that refused or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Its version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How it failed (`timeout`, `trap`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'static str>,
}

/// `GET /health/check`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthResponse {
    /// `ok`; `degraded` while core data is served from L1 only or the plugin registry
    /// cannot be followed; `unavailable` (HTTP 503) while the stream cannot take events.
    pub status: &'static str,
    /// The plugin release this task runs.
    pub release: ReleaseHealth,
    /// The core-data backend and L1.
    pub core_data: CoreDataHealth,
    /// The stream stage.
    pub stream: StreamHealth,
    /// Active plugins.
    pub plugins: Vec<ActivePlugin>,
}

/// The release part of `/health/check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseHealth {
    /// The release this task runs.
    pub number: u64,
    /// Why the registry cannot be followed, while it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The core-data part of `/health/check`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoreDataHealth {
    /// The backend's state.
    #[serde(flatten)]
    pub backend: BackendStatus,
    /// Programs in L1.
    pub cached_programs: u64,
    /// Programs served from L1 although their last refresh failed.
    pub stale_programs: usize,
}

/// The stream part of `/health/check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamHealth {
    /// `kinesis` or `embedded`.
    pub backend: &'static str,
    /// Records waiting for delivery.
    pub buffered_records: usize,
    /// Why the stream stage cannot take events, while it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<&'static str>,
}

/// A plugin and its active version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivePlugin {
    /// Plugin name.
    pub name: String,
    /// Active version.
    pub version: String,
}

/// `GET /admin/plugins`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginsResponse {
    /// Every plugin.
    pub plugins: Vec<PluginEntry>,
}

/// One plugin of `GET /admin/plugins`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginEntry {
    /// Plugin name.
    pub name: String,
    /// Active version.
    pub version: String,
    /// Size of the active component.
    pub size_bytes: usize,
    /// Where this task got the active version's machine code: `package` (the image's
    /// precompiled artifacts), `cache` or `compiled`.
    pub loaded_from: &'static str,
    /// How long loading (or compiling) it took, in milliseconds.
    pub load_ms: f64,
    /// Whether the active version exports `batch-handler` (many events per call).
    pub handles_batches: bool,
    /// Versions available for rollback, newest first.
    pub previous: Vec<String>,
}

/// A publish or a rollback of one plugin: the fleet's new current release and the
/// plugin's version before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwapResponse {
    /// Plugin name.
    pub name: String,
    /// The release now current across the fleet.
    pub release: u64,
    /// The version that was current.
    pub previous: String,
    /// The version current now.
    pub active: String,
}

/// `GET /admin/releases`: every release, oldest first, and the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleasesResponse {
    /// The current release.
    pub current: Option<u64>,
    /// Every release document.
    pub releases: Vec<releases::Release>,
}

/// `GET /admin/releases/status`: which release the fleet runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// The current release.
    pub current: Option<u64>,
    /// Live host instances per release.
    pub hosts: std::collections::BTreeMap<u64, usize>,
    /// Live consumer instances per release.
    pub consumers: std::collections::BTreeMap<u64, usize>,
    /// The same in one sentence.
    pub summary: String,
}

/// `GET /cache/fill`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FillResponse {
    /// Programs loaded.
    pub filled: Vec<String>,
}

/// `GET /cache/purge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeResponse {
    /// Programs removed.
    pub purged: Vec<String>,
}
