//! The registry in a local directory: the embedded default (`DATA_DIR/registry`).
//!
//! ```text
//! components/<sha256>.wasm   releases/<number>.json   current.json   heartbeats/<side>-<instance>.json
//! ```
//! Documents are written to a temporary file and linked into place, so a reader never
//! sees half a document and a release number can be created only once; the pointer
//! moves under an exclusive lock on `registry.lock`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use plugin_engine::PluginVersion;
use retry_policy::{ClassifiedError, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::document::{Heartbeat, Release};
use crate::error::RegistryError;
use crate::store::{Pointer, RegistryStore, decode, release_name};

/// The registry in a directory; several processes may share it.
#[derive(Clone, Debug)]
pub struct LocalStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct StoredPointer {
    release: u64,
    generation: u64,
}

impl LocalStore {
    /// The registry in `dir`, created if missing.
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        for sub in ["components", "releases", "heartbeats"] {
            fs::create_dir_all(dir.join(sub)).map_err(|error| io_error(dir, error))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Path) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || work(&dir))
            .await
            .map_err(|join| {
                ClassifiedError::caused_by(ErrorKind::Transient, "registry task failed", join)
            })?
    }
}

#[async_trait]
impl RegistryStore for LocalStore {
    async fn put_component(
        &self,
        version: PluginVersion,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let bytes = bytes.to_vec();
        self.blocking(move |dir| {
            let path = dir.join("components").join(format!("{version}.wasm"));
            match create_once(&path, &bytes) {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(error) => Err(io_error(&path, error)),
            }
        })
        .await
    }

    async fn component(&self, version: PluginVersion) -> Result<Vec<u8>, RegistryError> {
        self.blocking(move |dir| {
            let path = dir.join("components").join(format!("{version}.wasm"));
            match fs::read(&path) {
                Ok(bytes) => Ok(bytes),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    Err(RegistryError::UnknownComponent(version))
                }
                Err(error) => Err(io_error(&path, error)),
            }
        })
        .await
    }

    async fn create_release(&self, release: &Release) -> Result<(), RegistryError> {
        let number = release.number;
        let json = serde_json::to_vec_pretty(release).map_err(|error| corrupt(number, &error))?;
        self.blocking(move |dir| {
            let path = dir.join("releases").join(release_name(number));
            match create_once(&path, &json) {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    Err(RegistryError::Conflict(format!(
                        "release {number} was published by someone else"
                    )))
                }
                Err(error) => Err(io_error(&path, error)),
            }
        })
        .await
    }

    async fn release(&self, number: u64) -> Result<Release, RegistryError> {
        self.blocking(move |dir| {
            let path = dir.join("releases").join(release_name(number));
            match fs::read(&path) {
                Ok(bytes) => decode(&format!("release {number}"), &bytes),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    Err(RegistryError::UnknownRelease(number))
                }
                Err(error) => Err(io_error(&path, error)),
            }
        })
        .await
    }

    async fn release_numbers(&self) -> Result<Vec<u64>, RegistryError> {
        self.blocking(|dir| {
            let releases = dir.join("releases");
            let mut numbers: Vec<u64> = fs::read_dir(&releases)
                .map_err(|error| io_error(&releases, error))?
                .filter_map(|entry| {
                    let name = entry.ok()?.file_name().into_string().ok()?;
                    name.strip_suffix(".json")?.parse().ok()
                })
                .collect();
            numbers.sort_unstable();
            Ok(numbers)
        })
        .await
    }

    async fn current(&self) -> Result<Option<Pointer>, RegistryError> {
        self.blocking(read_pointer).await
    }

    async fn move_current(
        &self,
        expected: Option<&Pointer>,
        release: u64,
    ) -> Result<Pointer, RegistryError> {
        let expected = expected.cloned();
        self.blocking(move |dir| {
            let lock_path = dir.join("registry.lock");
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|error| io_error(&lock_path, error))?;
            lock.lock().map_err(|error| io_error(&lock_path, error))?;
            let current = read_pointer(dir)?;
            if current != expected {
                let now = current.map_or("none".to_owned(), |pointer| pointer.release.to_string());
                return Err(RegistryError::Conflict(format!(
                    "the current release moved to {now} meanwhile"
                )));
            }
            let generation = current.map_or(0, |pointer| pointer.generation) + 1;
            let json = serde_json::to_vec(&StoredPointer {
                release,
                generation,
            })
            .map_err(|error| corrupt(release, &error))?;
            let path = dir.join("current.json");
            replace(&path, &json).map_err(|error| io_error(&path, error))?;
            Ok(Pointer {
                release,
                generation,
                tag: generation.to_string(),
            })
        })
        .await
    }

    async fn put_heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), RegistryError> {
        let name: String = format!("{}-{}", heartbeat.side, heartbeat.instance)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let json =
            serde_json::to_vec(heartbeat).map_err(|error| corrupt(heartbeat.release, &error))?;
        self.blocking(move |dir| {
            let path = dir.join("heartbeats").join(format!("{name}.json"));
            replace(&path, &json).map_err(|error| io_error(&path, error))
        })
        .await
    }

    async fn heartbeats(&self) -> Result<Vec<Heartbeat>, RegistryError> {
        self.blocking(|dir| {
            let heartbeats = dir.join("heartbeats");
            let entries =
                fs::read_dir(&heartbeats).map_err(|error| io_error(&heartbeats, error))?;
            Ok(entries
                .filter_map(|entry| fs::read(entry.ok()?.path()).ok())
                .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
                .collect())
        })
        .await
    }
}

fn read_pointer(dir: &Path) -> Result<Option<Pointer>, RegistryError> {
    let path = dir.join("current.json");
    match fs::read(&path) {
        Ok(bytes) => {
            let stored: StoredPointer = decode("the current-release pointer", &bytes)?;
            Ok(Some(Pointer {
                release: stored.release,
                generation: stored.generation,
                tag: stored.generation.to_string(),
            }))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(&path, error)),
    }
}

/// Writes `bytes` to `path` only if nothing is there: a complete temporary file is
/// hard-linked into place, which fails if the name exists.
fn create_once(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_path(path);
    write_synced(&temporary, bytes)?;
    let linked = fs::hard_link(&temporary, path);
    let _ = fs::remove_file(&temporary);
    linked
}

/// Replaces `path` with `bytes` atomically (rename over it).
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_path(path);
    write_synced(&temporary, bytes)?;
    fs::rename(&temporary, path)
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_extension(format!("tmp-{}-{unique}", std::process::id()))
}

fn io_error(path: &Path, error: io::Error) -> RegistryError {
    let message = format!("{}: {error}", path.display());
    RegistryError::Store(ClassifiedError::caused_by(
        ErrorKind::Transient,
        message,
        error,
    ))
}

fn corrupt(number: u64, error: &serde_json::Error) -> RegistryError {
    RegistryError::Corrupt {
        what: format!("release {number}"),
        reason: error.to_string(),
    }
}
