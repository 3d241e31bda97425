//! Running a [`Command`] against one listener: the session's entry point
//! ([`Control::execute`]: locking, logging, persisting) and a short
//! dispatch to the handlers in [`crate::control::handlers`].
//!
//! Writers: operator fields are atomics on the channel (one writer: the
//! control handlers); structural changes (`create`) build a new group list
//! and swap it whole, under `write` so two sessions cannot lose each
//! other's changes. The data path never takes a lock for any of this.

use tracing::{error, info};

use crate::control::commands::{Command, HELP, HELP_FLEET, HELP_ROUTE};
use crate::control::handlers::{channel, fleet, group, process, show};

pub(crate) use crate::control::listener::Control;
pub(crate) use crate::control::reply::Reply;

impl Control {
    /// Run one command for a session whose current group is `*group`;
    /// `line` and `uid` are for the log.
    pub(crate) async fn execute(
        &self,
        group: &mut usize,
        cmd: Command,
        line: &str,
        uid: u32,
    ) -> Reply {
        let _w = if cmd.is_change() {
            Some(self.write.lock().await)
        } else {
            None
        };
        let mut reply = self.run(group, &cmd).await;
        if reply.ok && cmd.is_change() {
            info!(
                listener = %self.svc.cfg.name,
                uid,
                command = %line.trim(),
                "control: {}",
                reply.lines.first().map(String::as_str).unwrap_or("done")
            );
        }
        if reply.ok && cmd.persists() {
            if let Err(e) = self.save().await {
                error!(listener = %self.svc.cfg.name, "state file not written: {e}");
                reply
                    .lines
                    .push(format!("error: state file not written: {e}"));
                reply.ok = false;
            }
        }
        reply
    }

    async fn run(&self, cur: &mut usize, cmd: &Command) -> Reply {
        let groups = self.svc.pool.groups();
        let at = *cur;
        match cmd {
            Command::Nop => Reply::ok(vec![]),
            Command::Help => {
                let fleet = if self.fleet.is_some() { HELP_FLEET } else { "" };
                let route = if self.svc.route.is_some() {
                    HELP_ROUTE
                } else {
                    ""
                };
                Reply::ok(
                    HELP.lines()
                        .chain(route.lines())
                        .chain(fleet.lines())
                        .map(String::from)
                        .collect(),
                )
            }
            Command::Fleet(f) => fleet::run(self, at, f).await,
            Command::Version => show::version(),
            Command::Show => show::table(&groups, &self.svc),
            Command::ShowJson => show::json(&self.svc),
            Command::MrtgBytes(g, c) => show::mrtg(self, &groups, *g, *c, show::Mrtg::Bytes),
            Command::MrtgConns(g, c) => show::mrtg(self, &groups, *g, *c, show::Mrtg::Conns),
            Command::Group(g) => group::select(&groups, cur, g),
            Command::Op(op) => {
                // Only `assign` and `create` need them.
                let binds = match op.target() {
                    Some(_) => self.binds(),
                    None => Vec::new(),
                };
                channel::run(&self.svc, at, op, &binds).await
            }
            Command::MonitorShow => group::monitor_show(&self.svc),
            Command::SpinShow => group::spin_show(&self.svc),
            Command::Route(key) => show::route(&self.svc, key).await,
            Command::Quit => Reply::bye(vec![]),
            Command::Kill => process::kill(self),
            Command::Reload => process::reload(self).await,
            Command::StateSave => process::state_save(self).await,
            Command::Upgrade(path) => process::upgrade(self, path.clone()).await,
        }
    }

    /// This listener's name and bind address, then every other running
    /// listener's: what `create`/`assign` must not point at.
    fn binds(&self) -> Vec<(String, std::net::SocketAddr)> {
        let me = &self.svc.cfg;
        std::iter::once((me.name.clone(), me.bind))
            .chain(
                self.listeners
                    .services()
                    .iter()
                    .filter(|s| s.cfg.name != me.name)
                    .map(|s| (s.cfg.name.clone(), s.cfg.bind)),
            )
            .collect()
    }
}

#[cfg(test)]
mod tests;
