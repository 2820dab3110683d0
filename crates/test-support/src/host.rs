//! Running the real `adtrack-host serve` binary for integration tests.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, repo_root};

/// A running host process; killed when dropped.
pub struct Host {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The data directory (embedded log and store).
    pub data_dir: tempfile::TempDir,
    /// A client for the host.
    pub client: reqwest::Client,
}

/// The admin token the test hosts use.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

impl Host {
    /// Starts `binary serve` (the `adtrack-host` of the calling test,
    /// `env!("CARGO_BIN_EXE_adtrack-host")`) with the repository pipeline and `env`, and
    /// waits until `/health/check` answers.
    pub async fn start(binary: &str, env: &[(&str, &str)]) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .current_dir(repo_root())
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("DATA_DIR", data_dir.path())
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .env_remove("REDIS_URL")
            .env_remove("KINESIS_STREAM_NAME")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("adtrack-host starts");
        let host = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            data_dir,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
        };
        host.wait_until_ready().await;
        host
    }

    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(response) = self.client.get(self.at("/health/check")).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the host did not become ready within 60 s");
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The full URL of `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `GET path` with the admin token, returning status and JSON body (Null when not JSON).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.at(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// The plugin release the host runs, from `/health/check` (0 if it cannot say).
    pub async fn release(&self) -> u64 {
        let (_, health) = self.get("/health/check").await;
        health["release"]["number"].as_u64().unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().expect("host exits")
    }

    /// Kills the process with SIGKILL, as a crash would: no drain, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Where the embedded stream log lives.
    pub fn stream_log(&self) -> PathBuf {
        self.data_dir.path().join("stream-log")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
