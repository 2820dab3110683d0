//! The driver of the consumer core: the embedded log the host consumes in process. The
//! Lambda runtime and the Kinesis poller are in [`crate::aws`].

pub mod embedded;
