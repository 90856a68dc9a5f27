//! The controller room. Today it holds what every election goes through: the
//! [`election::LeaderElector`] trait the controller calls (implemented by the policy room's
//! plugins) and the step that turns the controller's view of a partition into the plugin's
//! question and its answer into a new leader and leader epoch. The metadata quorum, broker
//! registry and fencing arrive with the controller issue and call the same trait.

pub mod election;
