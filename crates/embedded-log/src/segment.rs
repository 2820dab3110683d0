//! Segment files: records framed one after another in an append-only file.
//!
//! A frame is `[body length: u32 LE][crc32 of the body: u32 LE][body]`, and a body is
//! `[sequence: u64 LE][key length: u32 LE][key][data]`. A segment is named after the
//! sequence number its first record has or will have (`00000000000000000001.seg`), so
//! an empty segment still carries the numbering.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::LogRecord;

/// The extension of segment files.
pub(crate) const EXTENSION: &str = "seg";

/// Bytes before a frame's body: its length and checksum.
const FRAME_HEADER: usize = 8;
/// Bytes of a body before the key: sequence and key length.
const BODY_HEADER: usize = 12;

/// One segment file and where each of its records starts.
#[derive(Debug)]
pub(crate) struct Segment {
    /// The sequence number of its first record.
    pub(crate) first: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// The byte offset of each record, in order; the record with sequence
    /// `first + i` starts at `offsets[i]`.
    pub(crate) offsets: Vec<u64>,
    /// Bytes of whole records in the file.
    pub(crate) len: u64,
}

impl Segment {
    /// The file name of the segment whose first record is `first`.
    pub(crate) fn file_name(first: u64) -> String {
        format!("{first:020}.{EXTENSION}")
    }

    /// The first sequence number a segment file name stands for, if it is one.
    pub(crate) fn first_of(name: &str) -> Option<u64> {
        let digits = name.strip_suffix(EXTENSION)?.strip_suffix('.')?;
        if digits.len() != 20 {
            return None;
        }
        digits.parse().ok()
    }

    /// Creates the empty segment starting at `first` in `dir`.
    pub(crate) fn create(dir: &Path, first: u64) -> io::Result<Self> {
        let path = dir.join(Self::file_name(first));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Self {
            first,
            path,
            file,
            offsets: Vec::new(),
            len: 0,
        })
    }

    /// Opens the segment at `path` starting at `first` and indexes its records. A
    /// frame that is cut short or does not match its checksum ends the segment: with
    /// `repair` (the last segment, where an interrupted append can leave one) the file
    /// is cut back to the records before it; otherwise it is an error.
    pub(crate) fn open(path: PathBuf, first: u64, repair: bool) -> io::Result<Self> {
        let file = File::options().read(true).write(true).open(&path)?;
        let bytes = std::fs::read(&path)?;
        let mut offsets = Vec::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let expected = first + offsets.len() as u64;
            match frame_at(&bytes[at..], expected) {
                Some(frame_len) => {
                    offsets.push(at as u64);
                    at += frame_len;
                }
                None if repair => {
                    file.set_len(at as u64)?;
                    file.sync_data()?;
                    break;
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: record {expected} at byte {at} is damaged",
                            path.display()
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            first,
            path,
            file,
            offsets,
            len: at as u64,
        })
    }

    /// The sequence number the next record appended here gets.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }

    /// Writes `frames` (records `next_sequence()` onwards, encoded by [`encode`], whose
    /// lengths are `frame_lens`) at the end of the file and waits until they are on disk.
    /// On failure the file is cut back to the records it had, as far as it can be.
    pub(crate) fn append(&mut self, frames: &[u8], frame_lens: &[usize]) -> io::Result<()> {
        let written = self
            .file
            .write_all_at(frames, self.len)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            let _ = self.file.set_len(self.len);
            return Err(error);
        }
        let mut at = self.len;
        for len in frame_lens {
            self.offsets.push(at);
            at += *len as u64;
        }
        self.len = at;
        Ok(())
    }

    /// Up to `limit` records from sequence `from` on (which this segment holds).
    pub(crate) fn read_from(&self, from: u64, limit: usize) -> io::Result<Vec<LogRecord>> {
        let start = (from - self.first) as usize;
        let end = (start + limit).min(self.offsets.len());
        if start >= end {
            return Ok(Vec::new());
        }
        let begin = self.offsets[start];
        let finish = self.offsets.get(end).copied().unwrap_or(self.len);
        let mut bytes = vec![0; (finish - begin) as usize];
        self.file.read_exact_at(&mut bytes, begin)?;
        let mut records = Vec::with_capacity(end - start);
        let mut at = 0;
        for sequence in (self.first + start as u64)..(self.first + end as u64) {
            let damaged = || {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: record {sequence} is damaged", self.path.display()),
                )
            };
            let frame_len = frame_at(&bytes[at..], sequence).ok_or_else(damaged)?;
            records.push(decode_body(
                &bytes[at + FRAME_HEADER..at + frame_len],
                sequence,
            ));
            at += frame_len;
        }
        Ok(records)
    }
}

/// Appends the frame of record `sequence` to `buffer`; returns its length.
pub(crate) fn encode(sequence: u64, key: &str, data: &[u8], buffer: &mut Vec<u8>) -> usize {
    let body_len = BODY_HEADER + key.len() + data.len();
    let start = buffer.len();
    buffer.extend_from_slice(&(body_len as u32).to_le_bytes());
    buffer.extend_from_slice(&[0; 4]);
    buffer.extend_from_slice(&sequence.to_le_bytes());
    buffer.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buffer.extend_from_slice(key.as_bytes());
    buffer.extend_from_slice(data);
    let crc = crc32fast::hash(&buffer[start + FRAME_HEADER..]);
    buffer[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
    FRAME_HEADER + body_len
}

/// The length of the whole, intact frame of record `sequence` at the start of
/// `bytes`, or `None` when it is cut short, fails its checksum or is another record.
fn frame_at(bytes: &[u8], sequence: u64) -> Option<usize> {
    let body_len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..FRAME_HEADER)?.try_into().ok()?);
    let body = bytes.get(FRAME_HEADER..FRAME_HEADER.checked_add(body_len)?)?;
    if body_len < BODY_HEADER || crc32fast::hash(body) != crc {
        return None;
    }
    let stored = u64::from_le_bytes(body[..8].try_into().ok()?);
    let key_len = u32::from_le_bytes(body[8..BODY_HEADER].try_into().ok()?) as usize;
    let key = body.get(BODY_HEADER..BODY_HEADER.checked_add(key_len)?)?;
    (stored == sequence && std::str::from_utf8(key).is_ok()).then_some(FRAME_HEADER + body_len)
}

/// The record in an intact body (checked by [`frame_at`]).
fn decode_body(body: &[u8], sequence: u64) -> LogRecord {
    let key_len = u32::from_le_bytes([body[8], body[9], body[10], body[11]]) as usize;
    let key = &body[BODY_HEADER..BODY_HEADER + key_len];
    LogRecord {
        sequence,
        key: String::from_utf8_lossy(key).into_owned(),
        data: body[BODY_HEADER + key_len..].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_first_sequence() {
        assert_eq!(Segment::file_name(7), "00000000000000000007.seg");
        assert_eq!(Segment::first_of("00000000000000000007.seg"), Some(7));
        assert_eq!(Segment::first_of("7.seg"), None);
        assert_eq!(Segment::first_of("00000000000000000007.tmp"), None);
    }

    #[test]
    fn a_frame_is_refused_when_cut_short_altered_or_out_of_place() {
        let mut buffer = Vec::new();
        let len = encode(5, "key", b"data", &mut buffer);
        assert_eq!(frame_at(&buffer, 5), Some(len));
        assert_eq!(frame_at(&buffer, 6), None, "another sequence");
        assert_eq!(frame_at(&buffer[..len - 1], 5), None, "cut short");
        let mut altered = buffer.clone();
        altered[len - 1] ^= 1;
        assert_eq!(frame_at(&altered, 5), None, "checksum");
        assert_eq!(frame_at(&[0xff; 3], 5), None);
    }
}
