//! The core-data contract, run against both backends: the in-process table and the
//! real redis-server (`REDIS_URL`, started by `cargo xtask test`).

mod contract;
mod subscription_keepalive;
