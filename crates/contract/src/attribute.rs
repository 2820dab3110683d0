//! Event attribute names the host, the consumer and the example plugins agree on; each
//! maps onto a field of the original `TrackingEvent`, except [`CLIENT_EVENT_ID`].

/// The client's user agent.
pub const USER_AGENT: &str = "userAgent";
/// The tracked program.
pub const PROGRAM_ID: &str = "programId";
/// The program's name (from core data).
pub const PROGRAM_NAME: &str = "programName";
/// The program's checksum (from core data).
pub const CHECKSUM: &str = "checksum";
/// The customer owning the program (from core data).
pub const CUSTOMER_ID: &str = "customerId";
/// The customer's name (from core data).
pub const CUSTOMER_NAME: &str = "customerName";
/// `true` once validation accepted the event.
pub const VALID: &str = "valid";
/// The id a client gave an event it posted; the event's own id is assigned by the host.
pub const CLIENT_EVENT_ID: &str = "clientEventId";
