//! Host bindings of the policy contract (`wit/`), one module per world. The types here are the
//! only vocabulary the policy room shares with the rest of the broker.

/// The election world.
pub mod election {
    wasmtime::component::bindgen!({
        world: "election-policy",
        path: "../wit",
        additional_derives: [PartialEq, Eq, Clone, serde::Serialize, serde::Deserialize],
    });

    pub use self::exports::weir::policy::election::{Election, ElectionReason, PartitionState};
    pub use self::weir::policy::types::{BrokerId, BrokerStatus, ReplicaState};
}

/// The partitioner world.
pub mod partitioner {
    wasmtime::component::bindgen!({
        world: "partitioner-policy",
        path: "../wit",
        with: { "weir:policy/log": super::election::weir::policy::log },
    });
}

/// The acks world.
pub mod acks {
    wasmtime::component::bindgen!({
        world: "acks-policy",
        path: "../wit",
        additional_derives: [PartialEq, Eq, Clone, serde::Serialize, serde::Deserialize],
        with: {
            "weir:policy/log": super::election::weir::policy::log,
            "weir:policy/types": super::election::weir::policy::types,
        },
    });

    pub use self::exports::weir::policy::acks::{Decision, ReplicaProgress, Request, Stage};
}
