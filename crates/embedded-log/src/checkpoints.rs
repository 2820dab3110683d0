//! Reader checkpoints: one line `name<TAB>sequence` per reader in a small file, replaced
//! whole (written beside it, synced, renamed over it, the directory synced).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The checkpoints of a log directory.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    path: PathBuf,
    readers: BTreeMap<String, u64>,
}

impl Checkpoints {
    const FILE: &'static str = "checkpoints";

    /// Reads the checkpoints in `dir` (none when the file does not exist).
    pub(crate) fn load(dir: &Path) -> io::Result<Self> {
        let path = dir.join(Self::FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(error),
        };
        let mut readers = BTreeMap::new();
        for line in text.lines().filter(|line| !line.is_empty()) {
            let parsed = line
                .split_once('\t')
                .and_then(|(name, sequence)| Some((name, sequence.parse().ok()?)));
            let Some((name, sequence)) = parsed else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a checkpoint line: {line:?}", path.display()),
                ));
            };
            readers.insert(name.to_owned(), sequence);
        }
        Ok(Self { path, readers })
    }

    /// The last sequence `reader` has handled.
    pub(crate) fn get(&self, reader: &str) -> Option<u64> {
        self.readers.get(reader).copied()
    }

    /// The lowest checkpoint of all readers, `None` without readers.
    pub(crate) fn lowest(&self) -> Option<u64> {
        self.readers.values().copied().min()
    }

    /// Records `sequence` for `reader` and waits until the file is on disk.
    pub(crate) fn set(&mut self, reader: &str, sequence: u64) -> io::Result<()> {
        if reader.contains(['\t', '\n', '\r']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a reader name cannot hold tabs or line breaks: {reader:?}"),
            ));
        }
        let previous = self.readers.insert(reader.to_owned(), sequence);
        let written = self.write();
        if written.is_err() {
            match previous {
                Some(previous) => self.readers.insert(reader.to_owned(), previous),
                None => self.readers.remove(reader),
            };
        }
        written
    }

    fn write(&self) -> io::Result<()> {
        let text: String = self
            .readers
            .iter()
            .map(|(name, sequence)| format!("{name}\t{sequence}\n"))
            .collect();
        let staged = self.path.with_extension("new");
        let mut file = File::create(&staged)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        std::fs::rename(&staged, &self.path)?;
        sync_dir(self.path.parent().unwrap_or(Path::new(".")))
    }
}

/// Waits until the entries of directory `dir` (files created, renamed, removed) are
/// on disk.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
