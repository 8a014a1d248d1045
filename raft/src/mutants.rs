//! Deliberate bugs, compiled only with the `mutants` feature (the test suites' builds):
//! the switches live with the shared types (`shardkv_proto::mutants`), so that every
//! crate's deliberate bugs are switched the same way.

pub use shardkv_proto::mutants::{active, with, Mutation};
