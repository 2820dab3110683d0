//! The bounded load: a few concurrent clients sending a fixed number of tracking calls
//! (`GET /event/{programId}` over the sample programs), paced so that the load lasts
//! long enough (about 8 s) for a fault to strike in its middle, to a host that a
//! scenario may replace while they run, keeping the message id of every `200`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::task::JoinSet;

/// The sample programs `/cache/fill` loads; the load spreads over them.
pub const PROGRAMS: [&str; 3] = ["212312", "212313", "212314"];

/// Tracking calls per scenario.
pub const REQUESTS: usize = 300;

/// Concurrent clients.
const CLIENTS: usize = 6;

/// The pause of a client between two requests.
const PACE: Duration = Duration::from_millis(150);

/// What the clients got.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Message ids of the requests answered `200`.
    pub acknowledged: Vec<String>,
    /// Requests answered otherwise, by status.
    pub refused: BTreeMap<u16, usize>,
    /// Requests that got no answer (connection refused or cut, timeout).
    pub unanswered: usize,
}

impl LoadReport {
    /// `12 × 503, 3 unanswered`, or `none` when every request was acknowledged.
    pub fn failures(&self) -> String {
        let mut parts: Vec<String> = self
            .refused
            .iter()
            .map(|(status, count)| format!("{count} × {status}"))
            .collect();
        if self.unanswered > 0 {
            parts.push(format!("{} unanswered", self.unanswered));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A load in progress.
pub struct Load {
    target: Arc<RwLock<String>>,
    acknowledged: Arc<AtomicUsize>,
    finished_clients: Arc<AtomicUsize>,
    report: Arc<Mutex<LoadReport>>,
    clients: JoinSet<()>,
}

impl Load {
    /// Starts [`REQUESTS`] tracking calls against the host at `base_url`.
    pub fn start(base_url: &str) -> Self {
        let target = Arc::new(RwLock::new(base_url.to_owned()));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let sent = Arc::new(AtomicUsize::new(0));
        let finished_clients = Arc::new(AtomicUsize::new(0));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let mut clients = JoinSet::new();
        for _ in 0..CLIENTS {
            let (target, acknowledged, finished, report, sent, http) = (
                target.clone(),
                acknowledged.clone(),
                finished_clients.clone(),
                report.clone(),
                sent.clone(),
                http.clone(),
            );
            clients.spawn(async move {
                loop {
                    let n = sent.fetch_add(1, Ordering::SeqCst);
                    if n >= REQUESTS {
                        finished.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    let url = format!(
                        "{}/event/{}",
                        target.read().unwrap_or_else(PoisonError::into_inner),
                        PROGRAMS[n % PROGRAMS.len()]
                    );
                    let outcome = track(&http, &url).await;
                    let acknowledged_now = {
                        let mut report = report.lock().unwrap_or_else(PoisonError::into_inner);
                        match outcome {
                            Ok(message_id) => {
                                report.acknowledged.push(message_id);
                                true
                            }
                            Err(Some(status)) => {
                                *report.refused.entry(status).or_default() += 1;
                                false
                            }
                            Err(None) => {
                                report.unanswered += 1;
                                false
                            }
                        }
                    };
                    if acknowledged_now {
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(PACE).await;
                }
            });
        }
        Self {
            target,
            acknowledged,
            finished_clients,
            report,
            clients,
        }
    }

    /// Sends the remaining requests to the host at `base_url` instead.
    pub fn retarget(&self, base_url: &str) {
        *self.target.write().unwrap_or_else(PoisonError::into_inner) = base_url.to_owned();
    }

    /// Waits until `count` requests were acknowledged, or the load is over.
    pub async fn until_acknowledged(&self, count: usize) {
        while self.acknowledged.load(Ordering::SeqCst) < count
            && self.finished_clients.load(Ordering::SeqCst) < CLIENTS
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for every request to be answered (or given up on).
    pub async fn finish(mut self) -> LoadReport {
        while let Some(client) = self.clients.join_next().await {
            client.expect("a load client panicked");
        }
        std::mem::take(&mut *self.report.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One tracking call: the message id of a `200`, else the status (`None`: no answer).
async fn track(http: &reqwest::Client, url: &str) -> Result<String, Option<u16>> {
    let response = http.get(url).send().await.map_err(|_| None)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(Some(status));
    }
    let body: serde_json::Value = response.json().await.map_err(|_| None)?;
    body["messageId"]
        .as_str()
        .map(str::to_owned)
        .ok_or(Some(status))
}
