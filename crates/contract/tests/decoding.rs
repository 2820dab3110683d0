//! Stream records come from outside the process: any bytes decode to a record or to a
//! `DecodeError`, never a panic, and what decodes converts to an event and encodes back.

use contract::TrackingEvent;
use plugin_engine::Event;
use proptest::prelude::*;

/// Decodes `bytes`; a record must convert to an event and survive a round trip.
fn decodes_or_is_refused(bytes: &[u8]) -> Result<(), TestCaseError> {
    match TrackingEvent::from_bytes(bytes) {
        Ok(record) => {
            let again = TrackingEvent::from_bytes(&record.to_bytes());
            prop_assert_eq!(again.ok(), Some(record.clone()));
            let _ = record.into_event();
        }
        Err(error) => prop_assert!(error.to_string().starts_with("undecodable stream record")),
    }
    Ok(())
}

fn event() -> impl Strategy<Value = Event> {
    (
        "\\PC{0,12}",
        "\\PC{0,12}",
        any::<u64>(),
        "\\PC{0,8}",
        any::<Vec<u8>>(),
        prop::collection::vec(("\\PC{0,8}", "\\PC{0,8}"), 0..6),
    )
        .prop_map(
            |(id, key, timestamp_ms, content_type, payload, attributes)| Event {
                id,
                key,
                timestamp_ms,
                content_type,
                payload,
                attributes,
            },
        )
}

/// A record the host would write, then damaged: cut short, or a byte changed.
fn damaged_record() -> impl Strategy<Value = Vec<u8>> {
    (event(), any::<prop::sample::Index>(), any::<Option<u8>>()).prop_map(|(event, at, byte)| {
        let mut bytes = TrackingEvent::from_event(&event, &[]).to_bytes();
        let at = at.index(bytes.len() + 1);
        match byte {
            Some(byte) if at < bytes.len() => bytes[at] = byte,
            Some(byte) => bytes.push(byte),
            None => bytes.truncate(at),
        }
        bytes
    })
}

proptest! {
    #[test]
    fn any_bytes_are_a_record_or_a_decode_error(bytes in any::<Vec<u8>>()) {
        decodes_or_is_refused(&bytes)?;
    }

    #[test]
    fn a_damaged_record_is_a_record_or_a_decode_error(bytes in damaged_record()) {
        decodes_or_is_refused(&bytes)?;
    }

    #[test]
    fn any_event_survives_the_stream(event in event()) {
        let record = TrackingEvent::from_event(&event, &[]);
        let decoded = TrackingEvent::from_bytes(&record.to_bytes());
        prop_assert_eq!(decoded.ok(), Some(record));
    }
}
