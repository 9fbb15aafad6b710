//! masterlink: the agent<->master protocol of Berth.
//!
//! Berth's agent and master will talk over this crate. Its first part is the
//! resource model both sides share, following Mesos 1.x on the wire:
//!
//! * [`value`]: Mesos `Value` (fixed-point scalars, ranges, sets, text);
//! * [`resources`]: `Resource`/`Resources` with Mesos arithmetic, the
//!   POST-refinement, PRE-refinement and ENDPOINT JSON formats, the agent's
//!   `--resources` syntax and host detection;
//! * [`attributes`]: the agent's `--attributes`;
//! * [`roles`]: role name validation and the role hierarchy.

pub mod attributes;
pub mod protocol;
pub mod recordio;
pub mod resources;
pub mod roles;
pub mod scheduler;
pub mod value;

pub use attributes::Attribute;
pub use resources::{Resource, ResourceFormat, Resources, ResourcesError};
pub use value::{Scalar, Value, ValueType};
