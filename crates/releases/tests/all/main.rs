//! The registry's guarantees, run against both stores: a local directory and S3
//! (moto, started by `cargo xtask test`, with conditional writes).

mod registry;
