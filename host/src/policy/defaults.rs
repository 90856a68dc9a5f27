//! The built-in plugins: the components `plugins/*-default` build to (by `host/build.rs`),
//! embedded in the binary. The broker runs these, as WASM, when nothing else is activated.

use super::PolicyKind;

/// The built-ins' version: the broker's own.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub const ELECTION: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/weir_election_default.wasm"));
pub const PARTITIONER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/weir_partitioner_default.wasm"));
pub const ACKS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/weir_acks_default.wasm"));

/// (kind, name, component) of each built-in.
pub const BUILTIN: [(PolicyKind, &str, &[u8]); 3] = [
    (PolicyKind::Election, "election-default", ELECTION),
    (PolicyKind::Partitioner, "partitioner-default", PARTITIONER),
    (PolicyKind::Acks, "acks-default", ACKS),
];
