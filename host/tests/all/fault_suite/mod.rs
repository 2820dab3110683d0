//! The fault suite: the pipeline under a bounded load while a process or the network
//! between processes fails, then a reconciliation of what the clients were promised.
//!
//! Every scenario runs its own redis-server, kinesalite and DynamoDB Local (private
//! processes on free ports, behind a [`test_support::FaultProxy`] each), never the shared
//! services. After the load it lets the consumer catch up and checks that every request
//! answered `200` (under `ACK=stream`) is on the stream exactly once, stored exactly once,
//! and counted exactly once in the program counters. Each scenario prints one line,
//! `acknowledged / on the stream / stored / counted`, which the README's reliability
//! table shows.
//!
//! Each scenario is a test function of its own, so a failure names the broken promise
//! and prints the numbers that break it.

mod aws_world;
mod consumer;
mod embedded_world;
mod load;
mod reconcile;

mod backend_restarts;
mod host_kill;
mod invalid_keys;
mod kinesis_blackhole;
mod poison_records;
mod redelivery;
