//! What fleet mode shares with the rest of the process about one listener:
//! its role, whether etcd answers, who probes, and the two hooks between
//! the fleet task and this listener (the monitor pauses while the
//! instance follows the fleet's verdicts; [`FleetState::reported`] wakes
//! the prober to publish after an outcome). Written only by the fleet task
//! (`crate::fleet`); read by the monitor, `show`, `show json` and metrics.
//! Kept across reloads with the Service's other listener-wide state.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use tokio::sync::Notify;

use crate::atomic_enum::{AtomicEnum, u8_enum};

/// The instance's part in its service's fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Role {
    /// No fleet mode.
    #[default]
    Off,
    /// Probing by itself: starting, or etcd unreachable for too long.
    Alone,
    /// Applying the prober's verdicts.
    Follower,
    /// Probing for the whole fleet and publishing.
    Prober,
}

impl Role {
    pub(crate) const SHOWN: [Role; 3] = [Role::Prober, Role::Follower, Role::Alone];
    pub(crate) const ALL: [Role; 4] = [Role::Off, Role::Alone, Role::Follower, Role::Prober];

    /// The role named `w` (its [`Role::as_str`]).
    pub(crate) fn from_word(w: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == w)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Off => "off",
            Role::Alone => "alone",
            Role::Follower => "follower",
            Role::Prober => "prober",
        }
    }
}

u8_enum!(Role {
    Off = 0,
    Alone = 1,
    Follower = 2,
    Prober = 3,
});

/// A copy for views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FleetView {
    pub(crate) role: Role,
    pub(crate) etcd_up: bool,
    /// The prober's instance id, when known.
    pub(crate) prober: Option<String>,
    /// When this instance took its current role (unix ms).
    pub(crate) since_ms: u64,
    /// This instance's id.
    pub(crate) id: String,
    /// Whether its monitor probes (false: a follower applying verdicts).
    pub(crate) probing: bool,
    /// The service's members as last read from etcd (empty while etcd is
    /// away).
    pub(crate) members: Vec<Member>,
}

/// A member's role as it published it: one this version knows, or the
/// text it did not understand (a newer version's word, a value that did
/// not decode), shown as is rather than taken for some role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberRole {
    Known(Role),
    Unknown(String),
}

impl MemberRole {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            MemberRole::Known(r) => r.as_str(),
            MemberRole::Unknown(w) => w,
        }
    }
}

impl From<&str> for MemberRole {
    fn from(w: &str) -> MemberRole {
        Role::from_word(w).map_or_else(|| MemberRole::Unknown(w.to_string()), MemberRole::Known)
    }
}

impl From<String> for MemberRole {
    fn from(w: String) -> MemberRole {
        MemberRole::from(w.as_str())
    }
}

impl std::fmt::Display for MemberRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance registered under `P/svc/NAME/members/ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) role: MemberRole,
    pub(crate) pid: u32,
    pub(crate) host: String,
    /// Registered since (unix ms).
    pub(crate) since_ms: u64,
}

#[derive(Debug, Default)]
pub(crate) struct FleetState {
    role: AtomicEnum<Role>,
    etcd_up: AtomicBool,
    /// The fleet's verdicts stand in for active probes: the monitor waits.
    following: AtomicBool,
    since_ms: AtomicU64,
    names: Mutex<(String, Option<String>)>,
    /// Wakes the monitor when the instance stops following.
    pub(crate) resumed: Notify,
    /// Notified after each outcome fed to `Service::report` (fleet mode
    /// only): the prober publishes what changed.
    pub(crate) reported: Notify,
    /// Notified after a failed connect from real traffic (fleet mode
    /// only): a follower asks the prober to re-probe.
    pub(crate) passive: Notify,
    /// The next re-probe round probes every channel, not only suspects.
    probe_all: AtomicBool,
    members: Mutex<Vec<Member>>,
}

impl FleetState {
    /// Whether fleet mode runs for this listener.
    pub(crate) fn enabled(&self) -> bool {
        self.role() != Role::Off
    }

    pub(crate) fn role(&self) -> Role {
        self.role.load(Relaxed)
    }

    /// Whether active probing waits for the fleet (a synced follower).
    pub(crate) fn following(&self) -> bool {
        self.following.load(Relaxed)
    }

    /// Set the role (the fleet task only); `since_ms` changes with it.
    pub(crate) fn set_role(&self, role: Role, now_ms: u64) {
        if self.role.swap(role, Relaxed) != role {
            self.since_ms.store(now_ms, Relaxed);
        }
    }

    /// Pause (true) or resume active probing (the fleet task only).
    pub(crate) fn set_following(&self, on: bool) {
        if self.following.swap(on, Relaxed) && !on {
            self.resumed.notify_waiters();
        }
    }

    pub(crate) fn set_etcd_up(&self, up: bool) {
        self.etcd_up.store(up, Relaxed);
    }

    pub(crate) fn set_names(&self, id: &str, prober: Option<&str>) {
        let mut n = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if n.0 != id {
            n.0 = id.to_string();
        }
        if n.1.as_deref() != prober {
            n.1 = prober.map(str::to_string);
        }
    }

    /// Ask the monitor for a full round at its next re-probe.
    pub(crate) fn request_probe_all(&self) {
        self.probe_all.store(true, Relaxed);
    }

    /// Whether a full round was asked for (clears the request).
    pub(crate) fn take_probe_all(&self) -> bool {
        self.probe_all.swap(false, Relaxed)
    }

    /// The members read from etcd (the fleet's members task only).
    pub(crate) fn set_members(&self, m: Vec<Member>) {
        *self.members.lock().unwrap_or_else(|p| p.into_inner()) = m;
    }

    pub(crate) fn view(&self) -> FleetView {
        let members = self
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let n = self.names.lock().unwrap_or_else(|p| p.into_inner());
        FleetView {
            role: self.role(),
            etcd_up: self.etcd_up.load(Relaxed),
            prober: n.1.clone(),
            since_ms: self.since_ms.load(Relaxed),
            id: n.0.clone(),
            probing: !self.following(),
            members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic_enum::U8Enum;

    #[test]
    fn every_role_round_trips_through_its_byte_and_its_word() {
        for r in Role::ALL {
            assert_eq!(Role::from_u8(r.to_u8()), Some(r));
            assert_eq!(Role::from_word(r.as_str()), Some(r));
            assert_eq!(MemberRole::from(r.as_str()), MemberRole::Known(r));
        }
        assert_eq!(Role::from_u8(4), None);
        assert_eq!(Role::from_word("Prober"), None);
    }

    #[test]
    fn a_member_role_this_version_does_not_know_is_kept_as_written() {
        let m = MemberRole::from("leader".to_string());
        assert_eq!(m, MemberRole::Unknown("leader".into()));
        assert_eq!(m.to_string(), "leader");
        assert_eq!(MemberRole::from("(undecodable)").as_str(), "(undecodable)");
    }
}
