//! One handler per control command, grouped by what they act on:
//! - [`channel`]: one channel's operator state and target (`enable`,
//!   `disable`, `drain`, `reset`, `maxc`, `weight`, `assign`, `create`);
//! - [`group`]: the session's group and group-wide settings (`group`,
//!   `hash`, `rr`, `failback`, `monitor`, `spin`);
//! - [`show`]: read-only outputs (`show`, `show json`, `mrtg-*`, `version`);
//! - [`process`]: the whole process (`kill`, `reload`, `state save`);
//! - [`switchover`]: moving writes to another group without losing any;
//! - [`fleet`]: `fleet ...`, the changes for every instance (etcd);
//!   [`fleet_switchover`]: `fleet switchover`, run through etcd.
//!
//! Every handler returns the [`Reply`](crate::control::reply::Reply) the
//! session sends back; none of them logs or persists (the caller does).

pub mod channel;
pub mod fleet;
pub mod fleet_switchover;
pub mod group;
pub mod process;
pub mod show;
pub mod switchover;
