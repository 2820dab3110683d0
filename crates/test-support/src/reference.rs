//! Decoding stream records the way an existing consumer of the reference architecture
//! does: with `TrackingEvent` compiled from its own `tracking.proto`
//! (`../shared/reference/tracking.proto` beside the repository), not with our decoder.

use std::path::PathBuf;

use prost_reflect::{DescriptorPool, DynamicMessage, Value};

/// A record as the reference schema reads it (fields 1 to 8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferenceTrackingEvent {
    /// Field 1.
    pub programid: String,
    /// Field 2.
    pub checksum: String,
    /// Field 3.
    pub customer_id: i32,
    /// Field 4.
    pub user_agent: String,
    /// Field 5.
    pub program_name: String,
    /// Field 6.
    pub customer_name: String,
    /// Field 7.
    pub is_valid: bool,
    /// Field 8.
    pub message_id: String,
}

/// The reference schema file; panics (the test fails) when it is missing.
pub fn reference_proto() -> PathBuf {
    let path = crate::repo_root().join("../shared/reference/tracking.proto");
    assert!(
        path.exists(),
        "{} is missing: the reference schema sits in shared/ beside the repository",
        path.display()
    );
    path
}

/// Decodes `bytes` with `TrackingEvent` of the reference schema.
pub fn decode_with_reference_schema(bytes: &[u8]) -> ReferenceTrackingEvent {
    let proto = reference_proto();
    let dir = proto.parent().expect("the schema's directory").to_owned();
    let files = protox::compile([&proto], [&dir]).expect("the reference schema compiles");
    let pool = DescriptorPool::from_file_descriptor_set(files).expect("descriptor pool");
    let descriptor = pool
        .get_message_by_name("TrackingEvent")
        .expect("TrackingEvent in the reference schema");
    let message =
        DynamicMessage::decode(descriptor, bytes).expect("the reference decoder reads it");
    let text = |name: &str| match message.get_field_by_name(name).as_deref() {
        Some(Value::String(text)) => text.clone(),
        _ => String::new(),
    };
    ReferenceTrackingEvent {
        programid: text("programid"),
        checksum: text("checksum"),
        customer_id: match message.get_field_by_name("customer_id").as_deref() {
            Some(Value::I32(id)) => *id,
            _ => 0,
        },
        user_agent: text("user_agent"),
        program_name: text("program_name"),
        customer_name: text("customer_name"),
        is_valid: matches!(
            message.get_field_by_name("is_valid").as_deref(),
            Some(Value::Bool(true))
        ),
        message_id: text("message_id"),
    }
}
