//! The policy room: leader election, partitioning and ack handling as WebAssembly components
//! behind the WIT contract in `wit/` (DESIGN.md section 4).
//!
//! - [`wit`]: the host bindings; the only types this room shares with the broker.
//! - [`engine`]: wasmtime, the precompiled-artifact cache, and a call's sandbox (CPU-time
//!   deadline by epoch interruption, memory cap).
//! - [`plugin`]: one loaded version: import check, pre-instantiation, an instance pool.
//! - [`runtime`]: [`Policies`]: resolution, fallback to the built-in, quarantine, hot swap,
//!   install/activate/rollback/remove, metrics.
//! - [`registry`]: installed plugins, persisted in the data directory.
//! - [`validate`] and [`conformance`]: what a valid answer is, and the scenarios every plugin
//!   passes before install.
//! - [`defaults`]: the embedded built-ins.
//!
//! The room knows nothing of Kafka beyond the WIT records: callers build those.

pub mod conformance;
pub mod defaults;
pub mod engine;
pub mod plugin;
pub mod registry;
pub mod runtime;
pub mod validate;
pub mod wit;

pub use runtime::{PluginInfo, Policies, PolicyConfig};

/// The three kinds of policy.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    Election,
    Partitioner,
    Acks,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 3] = [
        PolicyKind::Election,
        PolicyKind::Partitioner,
        PolicyKind::Acks,
    ];

    /// The interface name in the WIT package, which is also the `policy` metric label.
    pub fn interface(self) -> &'static str {
        match self {
            PolicyKind::Election => "election",
            PolicyKind::Partitioner => "partitioner",
            PolicyKind::Acks => "acks",
        }
    }

    /// The kind a topic config key binds, if it is one of `policy.*`.
    pub fn from_topic_config(key: &str) -> Option<PolicyKind> {
        PolicyKind::ALL
            .into_iter()
            .find(|kind| kind.topic_config() == key)
    }

    /// The topic config that binds a topic to a plugin of this kind.
    pub fn topic_config(self) -> &'static str {
        match self {
            PolicyKind::Election => "policy.election",
            PolicyKind::Partitioner => "policy.partitioner",
            PolicyKind::Acks => "policy.acks",
        }
    }
}

/// One value per kind, indexed by [`PolicyKind`]: the hot path looks plugins up here rather than
/// in a map.
#[derive(Debug, Clone)]
pub struct PerKind<T>([T; 3]);

impl<T> PerKind<T> {
    /// Values in [`PolicyKind::ALL`] order.
    pub fn new(values: [T; 3]) -> Self {
        PerKind(values)
    }

    pub fn from_fn(make: impl FnMut(PolicyKind) -> T) -> Self {
        PerKind(PolicyKind::ALL.map(make))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }
}

impl<T> std::ops::Index<PolicyKind> for PerKind<T> {
    type Output = T;

    fn index(&self, kind: PolicyKind) -> &T {
        // ALL lists the kinds in declaration order, so the discriminant is the position.
        &self.0[kind as usize]
    }
}
