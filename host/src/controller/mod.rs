//! The controller room. It holds what every election goes through: the
//! [`election::LeaderElector`] trait the controller calls (implemented by the policy room's
//! plugins) and the step that turns the controller's view of a partition into the plugin's
//! question and its answer into a new leader and leader epoch; and the first pieces of the
//! metadata quorum: the versioned records of the metadata log ([`records`]) and the pure metadata
//! image every node folds them into ([`image`]). The Raft quorum that commits the records, the
//! broker registry and fencing are not built yet; they will feed the same image.

pub mod election;
pub mod image;
pub mod placement;
pub mod quorum;
pub mod records;
