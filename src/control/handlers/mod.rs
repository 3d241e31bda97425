//! One handler per control command, grouped by what they act on:
//! - [`channel`]: every operator change ([`crate::operator::OperatorOp`]:
//!   `enable`, `disable`, `drain`, `reset`, `maxc`, `weight`, `hash`,
//!   `rr`, `leastconn`, `failback`, `monitor enable|disable`, `spin
//!   on|off`, `assign`, `create`, `switchover`): references mapped to
//!   keys, applied by the operator model (a switchover planned, then
//!   awaited), rendered in balance.fm's words;
//! - [`group`]: the session's group, `monitor show`, `spin`;
//! - [`show`]: read-only outputs (`show`, `show json`, `mrtg-*`, `version`);
//! - [`process`]: the whole process (`kill`, `reload`, `state save`);
//! - [`switchover`]: the words of a switchover's result;
//! - [`fleet`]: `fleet ...`, the changes for every instance (etcd);
//!   [`fleet_switchover`]: `fleet switchover`, run through etcd.
//!
//! Every handler returns the [`Reply`](crate::control::reply::Reply) the
//! session sends back; none of them logs or persists (the caller does).

pub(crate) mod channel;
pub(crate) mod fleet;
pub(crate) mod fleet_switchover;
pub(crate) mod group;
pub(crate) mod process;
pub(crate) mod show;
pub(crate) mod switchover;
