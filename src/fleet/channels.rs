//! Dynamic channel lists (`P/svc/NAME/channels/GROUP/HOST:PORT`, value
//! `{"weight":N}` or `{}`): every instance of the service adds the
//! channel to group GROUP of its running pool, enabled (as `create` then
//! `enable`), changes its weight when the value changes, and removes it
//! when the key is deleted (live connections on it go on to their end).
//! Only channels added this way are ever removed: a registration of a
//! channel the configuration already lists only sets its weight.
//!
//! A key or value that does not decode, a group the listener does not
//! have, a host that does not resolve or is the listener itself: logged
//! and ignored. Driven by the `follow` task; the pool's group list is
//! swapped whole (`Pool::update_groups`) by the operator model (a
//! registration is [`OperatorOp::Create`] then `enable`, an
//! unregistration [`OperatorOp::Remove`], both through
//! [`operator::apply`]).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::is_self_loop_addr;
use crate::operator::{
    self, ChannelKey, Endpoint, GroupKey, MAX_WEIGHT, OpError, OperatorOp, Outcome, WeightSet,
};
use crate::pool::{Admin, Channel, Target};
use crate::service::{Service, resolve};

/// Weight of a registration without one (as a configured channel's).
const DEFAULT_WEIGHT: u32 = 1;

/// One registration: group, channel, weight (None: as it is / default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reg {
    pub(crate) group: usize,
    pub(crate) chan: Endpoint,
    pub(crate) weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Value {
    #[serde(default)]
    weight: Option<u32>,
}

impl Reg {
    /// Decode a key below `channels/` (`GROUP/HOST:PORT`) and its value.
    pub fn decode(key: &str, value: &[u8]) -> Result<Reg, String> {
        let (group, chan) = Reg::decode_key(key)?;
        let v: Value = serde_json::from_slice(value).map_err(|e| format!("bad value: {e}"))?;
        if let Some(w) = v.weight.filter(|w| *w > MAX_WEIGHT) {
            return Err(format!("weight {w} is above {MAX_WEIGHT}"));
        }
        Ok(Reg {
            group,
            chan,
            weight: v.weight,
        })
    }

    pub(crate) fn decode_key(key: &str) -> Result<(usize, Endpoint), String> {
        let (g, c) = key.split_once('/').ok_or("key is not GROUP/HOST:PORT")?;
        let group = g
            .parse::<usize>()
            .ok()
            .filter(|_| g.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("bad group {g:?}"))?;
        Ok((group, Endpoint::parse(c)?))
    }
}

/// The channels this task added, by (group, channel): the only ones it
/// removes.
#[derive(Default)]
pub(crate) struct Added(HashMap<(usize, Endpoint), Arc<Channel>>);

impl Added {
    /// How many channels this task added.
    pub(crate) fn count(&self) -> usize {
        self.0.len()
    }

    /// Whether this task added `reg`'s channel.
    pub(crate) fn has(&self, reg: &Reg) -> bool {
        self.0.contains_key(&(reg.group, reg.chan.clone()))
    }

    /// Make the pool have `reg`: add it or set its weight. What changed.
    pub(crate) async fn ensure(
        &mut self,
        svc: &Service,
        reg: &Reg,
    ) -> Result<Option<String>, String> {
        let groups = svc.pool.groups();
        let Some(g) = groups.get(reg.group) else {
            return Err(format!(
                "no group {} here (groups 0-{})",
                reg.group,
                groups.len().saturating_sub(1)
            ));
        };
        if let Some(ch) = g.channels.iter().find(|ch| reg.chan.matches(ch)) {
            // Restored from the state file after a restart: this task's.
            if !configured(svc, reg.group, &reg.chan) {
                self.0
                    .entry((reg.group, reg.chan.clone()))
                    .or_insert_with(|| Arc::clone(ch));
            }
            let w = reg
                .weight
                .unwrap_or(if self.0.contains_key(&(reg.group, reg.chan.clone())) {
                    DEFAULT_WEIGHT
                } else {
                    ch.weight()
                });
            let set =
                OperatorOp::Weight(ChannelKey::Name(ch.name().to_string()), WeightSet::Abs(w));
            return match operator::apply(svc, &set) {
                Ok(out) if out.changed() => Ok(Some(format!("weight of {} {w}", reg.chan))),
                Ok(_) => Ok(None),
                Err(e) => Err(e.to_string()),
            };
        }
        let target = target(svc, &reg.chan).await?;
        let gi = reg.group;
        // The group gone (a reload) or the channel added meanwhile (by a
        // control session): nothing to add.
        let groups = svc.pool.groups();
        match groups.get(gi) {
            Some(g) if !g.channels.iter().any(|c| reg.chan.matches(c)) => {}
            _ => return Ok(None),
        }
        // As `create` then `enable`, through the operator model.
        let create = OperatorOp::Create {
            group: GroupKey::Index(gi),
            target,
            weight: Some(reg.weight.unwrap_or(DEFAULT_WEIGHT)),
        };
        let hit = match operator::apply(svc, &create) {
            Ok(Outcome::Created { hit }) => hit,
            Ok(_) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let key = ChannelKey::Name(hit.name);
        operator::apply(svc, &OperatorOp::Admin(key.clone(), Admin::Enabled))
            .map_err(|e| e.to_string())?;
        let (_, chans) = operator::find(&svc.pool.groups(), &key).map_err(|e| e.to_string())?;
        if let Some(ch) = chans.into_iter().next() {
            self.0.insert((gi, reg.chan.clone()), ch);
        }
        Ok(Some(format!("channel {} added to group {gi}", reg.chan)))
    }

    /// Remove a channel this task added (a configured one stays).
    pub(crate) fn remove(
        &mut self,
        svc: &Service,
        group: usize,
        chan: &Endpoint,
    ) -> Result<Option<String>, String> {
        let Some(ch) = self.0.remove(&(group, chan.clone())) else {
            return if configured(svc, group, chan) {
                Err("a configured channel stays (only registered ones are removed)".into())
            } else {
                Ok(None)
            };
        };
        let remove = OperatorOp::Remove {
            group: GroupKey::Index(group),
            chan: ChannelKey::Name(ch.name().to_string()),
        };
        match operator::apply(svc, &remove) {
            Ok(Outcome::Removed { conns, .. }) => Ok(Some(format!(
                "channel {chan} removed from group {group} ({conns} live connections go on)"
            ))),
            // Gone already (a reload).
            Ok(_) | Err(OpError::NoChannel(_) | OpError::NoGroup { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The added channels no longer registered (after a resync).
    pub(crate) fn stale(&self, live: &[(usize, Endpoint)]) -> Vec<(usize, Endpoint)> {
        self.0
            .keys()
            .filter(|k| !live.contains(k))
            .cloned()
            .collect()
    }
}

/// Whether the configuration lists `chan` in `group`.
fn configured(svc: &Service, group: usize, chan: &Endpoint) -> bool {
    svc.cfg.groups.get(group).is_some_and(|g| {
        g.channels
            .iter()
            .any(|c| c.host == chan.host && c.port == chan.port)
    })
}

/// Resolve a registration, refusing the listener itself.
async fn target(svc: &Service, chan: &Endpoint) -> Result<Target, String> {
    let (host, port) = (chan.host.clone(), chan.port);
    let addrs = tokio::task::spawn_blocking(move || resolve(&host, port))
        .await
        .unwrap_or_default();
    if addrs.is_empty() {
        return Err(format!("{chan} does not resolve"));
    }
    if let Some(a) = addrs.iter().find(|a| is_self_loop_addr(svc.cfg.bind, **a)) {
        return Err(format!(
            "{chan}: {a} is this listener ({}) itself",
            svc.cfg.bind
        ));
    }
    Ok(Target {
        host: chan.host.clone(),
        port: chan.port,
        addrs,
    })
}

#[cfg(test)]
mod tests;
