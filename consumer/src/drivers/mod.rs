//! The ways batches reach the [`Consumer`](crate::Consumer): the Lambda runtime, a
//! Kinesis poller (emulators, local runs) and the embedded log of the host.

pub mod embedded;
pub mod kinesis_poller;
pub mod lambda;
