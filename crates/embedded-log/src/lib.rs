//! The durable local event stream of the embedded mode: an append-only log of stream
//! records in segment files, with named reader checkpoints.
//!
//! The host appends the records it would put on Kinesis; the in-process consumer reads
//! them after its checkpoint and moves the checkpoint once a batch is handled, so a
//! restart resumes where it stopped. An append is one write at the end of the current
//! segment and one `fdatasync`, and a checkpoint one small file replaced whole: what
//! `append` or `set_checkpoint` returned survives a crash. An append a crash cut short
//! is cut off the segment when the log is next opened.
//!
//! The log is a directory: segment files named after their first sequence number, the
//! `checkpoints` file and a `lock` file that one process at a time holds.
//!
//! Retention: [`EmbeddedLog::trim_consumed`] removes whole segments whose records every
//! reader has handled, beyond the most recent ones kept for replay; records a reader has
//! not handled are never removed.
//!
//! All calls block on disk I/O; async callers run them on a blocking thread
//! (`tokio::task::spawn_blocking`).
#![deny(missing_docs)]

mod checkpoints;
mod legacy;
mod segment;

use std::collections::VecDeque;
use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use checkpoints::{Checkpoints, sync_dir};
use segment::Segment;

/// How a log is laid out on disk.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// A segment that has reached this many bytes takes no more records: the next append
    /// starts a new one. Trimming removes whole segments.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 16 << 20,
        }
    }
}

/// A durable, append-only log of stream records; cheap to clone (clones share one
/// open log), and safe to use from several threads.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    options: LogOptions,
    state: Mutex<State>,
    /// Apart from the segments, so a checkpoint being written never holds up an append.
    checkpoints: Mutex<Checkpoints>,
    /// Held (locked) while the log is open.
    _lock: File,
}

struct State {
    /// Oldest first; never empty: the last one takes appends.
    segments: VecDeque<Segment>,
    /// The frames of the append in progress (its capacity is reused).
    frames: Vec<u8>,
}

/// One record of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Position in the log: assigned on append, increasing, starting at 1.
    pub sequence: u64,
    /// Partition key (the message id for tracking events).
    pub key: String,
    /// The record bytes (a protobuf `TrackingEvent`).
    pub data: Vec<u8>,
}

/// The log could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The directory could not be created or opened as a log.
    #[error("cannot open the event log {path}: {source}")]
    Open {
        /// The directory at fault.
        path: PathBuf,
        /// The underlying error, kept as the source.
        source: io::Error,
    },
    /// Another process has the log open.
    #[error("the event log {path} is open in another process (a running host holds it)")]
    Locked {
        /// The log directory.
        path: PathBuf,
    },
    /// A read or write on the log failed.
    #[error("event log {path}: {source}")]
    Io {
        /// The log directory.
        path: PathBuf,
        /// The underlying error, kept as the source.
        source: io::Error,
    },
}

/// The largest frame buffer kept between appends.
const KEPT_FRAME_BYTES: usize = 4 << 20;

impl EmbeddedLog {
    /// Opens the log in directory `path` with default [`LogOptions`], creating it if it
    /// does not exist.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        Self::open_with(path, LogOptions::default())
    }

    /// Opens the log in directory `path`, creating it if it does not exist; the last
    /// segment loses an append a crash cut short.
    pub fn open_with(path: &Path, options: LogOptions) -> Result<Self, LogError> {
        let open_error = |source: io::Error| LogError::Open {
            path: path.to_owned(),
            source,
        };
        if path.exists() && !path.is_dir() {
            return Err(open_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a log directory",
            )));
        }
        std::fs::create_dir_all(path).map_err(open_error)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("lock"))
            .map_err(open_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LogError::Locked {
                    path: path.to_owned(),
                });
            }
            Err(TryLockError::Error(error)) => return Err(open_error(error)),
        }
        let segments = open_segments(path).map_err(open_error)?;
        let checkpoints = Checkpoints::load(path).map_err(open_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: path.to_owned(),
                options,
                state: Mutex::new(State {
                    segments,
                    frames: Vec::new(),
                }),
                checkpoints: Mutex::new(checkpoints),
                _lock: lock,
            }),
        })
    }

    /// The directory the log lives in.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends `records` (partition key, bytes) in one write, on disk when it returns,
    /// and returns their sequence numbers, in order.
    pub fn append(&self, records: &[(String, Vec<u8>)]) -> Result<Vec<u64>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut state = self.state();
        let State {
            segments, frames, ..
        } = &mut *state;
        let segment_bytes = self.inner.options.segment_bytes;
        if segments
            .back()
            .is_some_and(|last| last.len > 0 && last.len >= segment_bytes)
        {
            let first = segments.back().map_or(1, Segment::next_sequence);
            let segment = Segment::create(&self.inner.dir, first)
                .and_then(|segment| sync_dir(&self.inner.dir).map(|()| segment))
                .map_err(|error| self.io_error(error))?;
            segments.push_back(segment);
        }
        let Some(last) = segments.back_mut() else {
            unreachable!("a log always has a segment to append to");
        };
        let first = last.next_sequence();
        frames.clear();
        let lens: Vec<usize> = (first..)
            .zip(records)
            .map(|(sequence, (key, data))| segment::encode(sequence, key, data, frames))
            .collect();
        let appended = last.append(frames, &lens);
        if frames.capacity() > KEPT_FRAME_BYTES {
            *frames = Vec::new();
        }
        appended.map_err(|error| self.io_error(error))?;
        Ok((first..first + records.len() as u64).collect())
    }

    /// Up to `limit` records after sequence `after` (from the start when `None`), in
    /// order; records trimmed away are skipped.
    pub fn read_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<LogRecord>, LogError> {
        let mut from = match after {
            Some(sequence) => match sequence.checked_add(1) {
                Some(next) => next,
                None => return Ok(Vec::new()),
            },
            None => 0,
        };
        let state = self.state();
        let mut records = Vec::new();
        for segment in &state.segments {
            if records.len() >= limit {
                break;
            }
            if from >= segment.next_sequence() {
                continue;
            }
            from = from.max(segment.first);
            let page = segment
                .read_from(from, limit - records.len())
                .map_err(|error| self.io_error(error))?;
            from += page.len() as u64;
            records.extend(page);
        }
        Ok(records)
    }

    /// The last sequence number `reader` has handled, or `None` if it has not started.
    pub fn checkpoint(&self, reader: &str) -> Result<Option<u64>, LogError> {
        Ok(self.checkpoints().get(reader))
    }

    /// Records that `reader` has handled every record up to and including `sequence`.
    pub fn set_checkpoint(&self, reader: &str, sequence: u64) -> Result<(), LogError> {
        self.checkpoints()
            .set(reader, sequence)
            .map_err(|error| self.io_error(error))
    }

    /// Removes the segments whose records every reader has handled, except those holding
    /// the `keep` most recent handled records (kept for replay) and the last segment
    /// (which takes appends); returns how many records were removed. Without readers
    /// nothing is removed.
    pub fn trim_consumed(&self, keep: u64) -> Result<u64, LogError> {
        let Some(handled) = self.checkpoints().lowest() else {
            return Ok(0);
        };
        let mut state = self.state();
        let Some(up_to) = handled.checked_sub(keep) else {
            return Ok(0);
        };
        let mut removed = 0;
        while state.segments.len() > 1
            && state
                .segments
                .front()
                .is_some_and(|oldest| oldest.next_sequence() <= up_to.saturating_add(1))
        {
            let Some(oldest) = state.segments.pop_front() else {
                break;
            };
            removed += oldest.offsets.len() as u64;
            let path = oldest.path.clone();
            drop(oldest);
            std::fs::remove_file(&path).map_err(|error| self.io_error(error))?;
        }
        if removed > 0 {
            sync_dir(&self.inner.dir).map_err(|error| self.io_error(error))?;
        }
        Ok(removed)
    }

    /// How many records the log holds.
    pub fn len(&self) -> Result<u64, LogError> {
        Ok(self
            .state()
            .segments
            .iter()
            .map(|segment| segment.offsets.len() as u64)
            .sum())
    }

    /// Whether the log holds no records.
    pub fn is_empty(&self) -> Result<bool, LogError> {
        Ok(self.len()? == 0)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn checkpoints(&self) -> MutexGuard<'_, Checkpoints> {
        self.inner
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn io_error(&self, source: io::Error) -> LogError {
        LogError::Io {
            path: self.inner.dir.clone(),
            source,
        }
    }
}

/// The segments in `dir`, oldest first, indexed; an empty log gets its first segment.
/// Only the last segment may end in an append a crash cut short (it is cut off); any
/// other damage, or a gap between segments, is an error.
fn open_segments(dir: &Path) -> io::Result<VecDeque<Segment>> {
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(first) = name.to_str().and_then(Segment::first_of) {
            found.push((first, entry.path()));
        }
    }
    found.sort();
    let count = found.len();
    let mut segments = VecDeque::with_capacity(count.max(1));
    for (index, (first, path)) in found.into_iter().enumerate() {
        if let Some(previous) = segments.back().map(Segment::next_sequence)
            && previous != first
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: starts at record {first}, the segment before ends before {previous}",
                    path.display()
                ),
            ));
        }
        segments.push_back(Segment::open(path, first, index + 1 == count)?);
    }
    if segments.is_empty() {
        segments.push_back(Segment::create(dir, 1)?);
        sync_dir(dir)?;
    }
    Ok(segments)
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("path", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(keys: &[&str]) -> Vec<(String, Vec<u8>)> {
        keys.iter()
            .map(|key| (key.to_string(), format!("data-{key}").into_bytes()))
            .collect()
    }

    fn sequences(log: &EmbeddedLog) -> Vec<u64> {
        log.read_after(None, usize::MAX)
            .unwrap()
            .iter()
            .map(|record| record.sequence)
            .collect()
    }

    /// A log whose every append starts a new segment.
    fn one_append_per_segment(path: &Path) -> EmbeddedLog {
        EmbeddedLog::open_with(path, LogOptions { segment_bytes: 1 }).unwrap()
    }

    fn segment_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                Segment::first_of(name.to_str().unwrap()).is_some()
            })
            .count()
    }

    #[test]
    fn appends_get_increasing_sequence_numbers_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("log")).unwrap();
        assert!(log.is_empty().unwrap());
        assert_eq!(log.append(&records(&["a", "b"])).unwrap(), vec![1, 2]);
        assert_eq!(log.append(&records(&["c"])).unwrap(), vec![3]);
        assert_eq!(log.append(&[]).unwrap(), Vec::<u64>::new());
        assert_eq!(log.len().unwrap(), 3);

        let all = log.read_after(None, 10).unwrap();
        let keys: Vec<_> = all.iter().map(|record| record.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(all[1].data, b"data-b");
        assert_eq!(all[2].sequence, 3);

        let tail = log.read_after(Some(1), 1).unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].key, "b");
        assert!(log.read_after(Some(3), 10).unwrap().is_empty());
        assert!(log.read_after(Some(u64::MAX), 10).unwrap().is_empty());
    }

    #[test]
    fn records_and_checkpoints_survive_reopening_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        {
            let log = EmbeddedLog::open(&path).unwrap();
            log.append(&records(&["a", "b", "c"])).unwrap();
            log.set_checkpoint("consumer", 2).unwrap();
        }
        let log = EmbeddedLog::open(&path).unwrap();
        assert_eq!(log.len().unwrap(), 3);
        assert_eq!(log.checkpoint("consumer").unwrap(), Some(2));
        assert_eq!(log.append(&records(&["d"])).unwrap(), vec![4]);
    }

    #[test]
    fn a_reader_resumes_after_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("log")).unwrap();
        log.append(&records(&["a", "b", "c", "d"])).unwrap();
        assert_eq!(log.checkpoint("consumer").unwrap(), None);

        let first = log
            .read_after(log.checkpoint("consumer").unwrap(), 2)
            .unwrap();
        log.set_checkpoint("consumer", first[1].sequence).unwrap();
        let rest = log
            .read_after(log.checkpoint("consumer").unwrap(), 10)
            .unwrap();
        let keys: Vec<_> = rest.iter().map(|record| record.key.as_str()).collect();
        assert_eq!(keys, ["c", "d"]);
        // Readers are independent.
        assert_eq!(log.checkpoint("audit").unwrap(), None);
    }

    #[test]
    fn clones_share_one_log_across_threads() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("log")).unwrap();
        let writers: Vec<_> = (0..4)
            .map(|thread| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for n in 0..5 {
                        log.append(&records(&[&format!("{thread}-{n}")])).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        assert_eq!(sequences(&log), (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn reads_run_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = one_append_per_segment(&dir.path().join("log"));
        for key in ["a", "b", "c", "d"] {
            log.append(&records(&[key, key])).unwrap();
        }
        assert_eq!(segment_files(log.path()), 4);
        let page: Vec<u64> = log
            .read_after(Some(3), 4)
            .unwrap()
            .iter()
            .map(|record| record.sequence)
            .collect();
        assert_eq!(page, [4, 5, 6, 7]);
        drop(log);
        let log = one_append_per_segment(&dir.path().join("log"));
        assert_eq!(sequences(&log), (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn trimming_removes_whole_handled_segments_beyond_those_kept_and_keeps_the_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let log = one_append_per_segment(&dir.path().join("log"));
        for key in ["a", "b", "c", "d", "e", "f"] {
            log.append(&records(&[key])).unwrap();
        }
        assert_eq!(log.trim_consumed(0).unwrap(), 0, "no reader yet");
        log.set_checkpoint("fast", 6).unwrap();
        log.set_checkpoint("slow", 4).unwrap();
        assert_eq!(log.trim_consumed(1).unwrap(), 3);
        assert_eq!(sequences(&log), [4, 5, 6]);
        assert_eq!(segment_files(log.path()), 3, "their files are gone");
        log.set_checkpoint("slow", 6).unwrap();
        assert_eq!(
            log.trim_consumed(0).unwrap(),
            2,
            "the last segment takes appends and stays"
        );
        assert_eq!(log.append(&records(&["g"])).unwrap(), [7]);
        drop(log);
        let log = one_append_per_segment(&dir.path().join("log"));
        assert_eq!(sequences(&log), [6, 7]);
        assert_eq!(log.append(&records(&["h"])).unwrap(), [8]);
    }

    #[test]
    fn an_append_a_crash_cut_short_is_cut_off_on_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = EmbeddedLog::open(&path).unwrap();
        log.append(&records(&["a", "b"])).unwrap();
        drop(log);
        let segment = path.join(Segment::file_name(1));
        let intact = std::fs::metadata(&segment).unwrap().len();
        let mut torn = Vec::new();
        segment::encode(3, "c", b"data-c", &mut torn);
        torn.truncate(torn.len() - 2);
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes.extend_from_slice(&torn);
        std::fs::write(&segment, bytes).unwrap();

        let log = EmbeddedLog::open(&path).unwrap();
        assert_eq!(sequences(&log), [1, 2]);
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), intact);
        assert_eq!(log.append(&records(&["c"])).unwrap(), [3]);
        assert_eq!(log.read_after(Some(2), 1).unwrap()[0].data, b"data-c");
    }

    #[test]
    fn damage_before_the_last_segment_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = one_append_per_segment(&path);
        log.append(&records(&["a"])).unwrap();
        log.append(&records(&["b"])).unwrap();
        drop(log);
        let first = path.join(Segment::file_name(1));
        let mut bytes = std::fs::read(&first).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        let error = EmbeddedLog::open(&path).unwrap_err();
        assert!(matches!(error, LogError::Open { .. }), "{error}");
        assert!(error.to_string().contains("damaged"), "{error}");
    }

    #[test]
    fn one_process_at_a_time_opens_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let log = EmbeddedLog::open(&path).unwrap();
        let error = EmbeddedLog::open(&path).unwrap_err();
        assert!(matches!(error, LogError::Locked { .. }), "{error}");
        drop(log);
        EmbeddedLog::open(&path).expect("free again once closed");
    }

    #[test]
    fn a_file_that_is_not_a_log_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.redb");
        std::fs::write(&path, b"this is not a log at all").unwrap();
        let error = EmbeddedLog::open(&path).unwrap_err();
        assert!(matches!(error, LogError::Open { .. }), "{error}");
    }
}
