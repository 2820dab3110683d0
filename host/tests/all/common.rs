//! The shared test support, with the host harness bound to this crate's binary.

pub use test_support::{
    ADMIN_TOKEN, Host, free_port, plugin_path, repo_root, service_env, write_pipeline,
};

/// Starts this crate's `adtrack-host serve` with the repository pipeline and `env`.
pub async fn start_host(env: &[(&str, &str)]) -> Host {
    Host::start(env!("CARGO_BIN_EXE_adtrack-host"), env).await
}
