//! Replay source: a sequence range of one Kinesis shard, read with GetShardIterator and
//! GetRecords, records decoded as the consumer decodes them.

use anyhow::{Context, Result, bail};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;
use contract::TrackingEvent;

use super::capture::ReplayEvent;
use super::source::{Loaded, Skipped};

/// Records asked for per GetRecords call.
const PAGE: i32 = 1_000;

/// A range of one shard: from `from` (the oldest record when `None`) up to and including
/// `to` (up to the newest record when `None`).
#[derive(Debug, Clone)]
pub struct ShardRange {
    /// The stream.
    pub stream: String,
    /// The shard (`shardId-000000000000`).
    pub shard: String,
    /// First sequence number.
    pub from: Option<String>,
    /// Last sequence number.
    pub to: Option<String>,
}

impl ShardRange {
    /// For people: what is read.
    pub fn describe(&self) -> String {
        format!(
            "Kinesis stream {} shard {}, sequences {} to {}",
            self.stream,
            self.shard,
            self.from.as_deref().unwrap_or("the oldest"),
            self.to.as_deref().unwrap_or("the newest")
        )
    }

    /// Reads the range's records with `client`.
    pub async fn load(&self, client: &Client) -> Result<Loaded> {
        let to = self.to.as_deref().map(sequence_number).transpose()?;
        let request = client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(&self.shard);
        let request = match &self.from {
            Some(from) => {
                sequence_number(from)?;
                request
                    .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                    .starting_sequence_number(from)
            }
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let mut iterator = request
            .send()
            .await
            .with_context(|| format!("GetShardIterator on {}", self.describe()))?
            .shard_iterator;
        let mut loaded = Loaded {
            events: Vec::new(),
            skipped: Vec::new(),
            lookups: None,
        };
        while let Some(current) = iterator {
            let page = client
                .get_records()
                .shard_iterator(current)
                .limit(PAGE)
                .send()
                .await
                .with_context(|| format!("GetRecords on {}", self.describe()))?;
            for record in page.records() {
                let sequence = record.sequence_number();
                if let Some(to) = &to
                    && sequence_number(sequence).is_ok_and(|at| at > *to)
                {
                    return Ok(loaded);
                }
                let at = format!("kinesis:{}/{sequence}", self.shard);
                match TrackingEvent::from_bytes(record.data().as_ref()) {
                    Ok(decoded) => loaded.events.push(ReplayEvent {
                        at,
                        event: decoded.into_event(),
                    }),
                    Err(error) => loaded.skipped.push(Skipped {
                        at,
                        reason: error.to_string(),
                    }),
                }
            }
            let caught_up = page.millis_behind_latest().unwrap_or_default() == 0;
            if page.records().is_empty() && caught_up {
                break;
            }
            iterator = page.next_shard_iterator;
        }
        Ok(loaded)
    }
}

/// A Kinesis sequence number: up to 129 decimal digits, ordered by value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SequenceNumber {
    /// Digits without leading zeros: a longer number is a larger one.
    digits: usize,
    text: String,
}

/// Parses `text` as a sequence number.
fn sequence_number(text: &str) -> Result<SequenceNumber> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        bail!("{text:?} is not a Kinesis sequence number (decimal digits)");
    }
    let trimmed = text.trim_start_matches('0');
    Ok(SequenceNumber {
        digits: trimmed.len(),
        text: trimmed.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_by_value_beyond_128_bits() {
        let small = sequence_number("9").unwrap();
        let large =
            sequence_number("49680644481433527481507045439311230647718414310174621698").unwrap();
        let larger =
            sequence_number("49680644481433527481507045439311230647718414310174621699").unwrap();
        assert!(small < large && large < larger);
        assert_eq!(
            sequence_number("007").unwrap(),
            sequence_number("7").unwrap()
        );
        assert!(sequence_number("12a").is_err());
    }
}
