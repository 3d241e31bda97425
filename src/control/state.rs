//! The state file (`--state-file`): operator state that survives restarts.
//!
//! Kept per listener (keyed by the listener's name): every group's policy
//! and every channel's target, admin state (enabled, `DIS`, drain), maxc
//! and weight, including channels created or reassigned at runtime. Health
//! is not kept; the monitor re-learns it.
//!
//! Each entry also records the channel list as configured. At start an
//! entry is applied only if the configuration still lists the same
//! channels; after a configuration change the old entry is reported and
//! ignored (the new configuration wins). A file that cannot be read or
//! parsed, or that holds an invalid value, is reported once and ignored
//! as a whole: it is never half-applied.
//!
//! Writes are atomic: a temporary file in the same directory, fsync,
//! rename, fsync of the directory.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::config::Policy;
use crate::control::commands::{self, MAX_WEIGHT};
use crate::pool::{Admin, Group, Target};
use crate::render::{ListenerView, policy_word};
use crate::service::{Service, resolve};

const VERSION: u32 = 1;
/// A state file larger than this is not read (it would not be ours).
const MAX_SIZE: u64 = 16 << 20;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    version: u32,
    listeners: BTreeMap<String, ListenerState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerState {
    /// The channels as configured (`host:port` per group), to detect a
    /// changed configuration.
    pub configured: Vec<Vec<String>>,
    pub groups: Vec<GroupState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupState {
    /// `rr` or `hash`.
    pub policy: String,
    pub channels: Vec<ChannelState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelState {
    pub host: String,
    pub port: u16,
    pub admin: Admin,
    pub maxc: u32,
    pub weight: u32,
}

/// One state file, shared by every listener of the process.
pub struct StateFile {
    path: PathBuf,
    doc: Mutex<Doc>,
}

impl std::fmt::Debug for StateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateFile({})", self.path.display())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StateFile {
    /// Read `path`. A missing file is an empty state; an unreadable or
    /// corrupt one is logged as an error and ignored.
    pub fn load(path: &Path) -> Arc<StateFile> {
        let doc = match read_doc(path) {
            Ok(Some(d)) => {
                info!(path = %path.display(), listeners = d.listeners.len(), "state file read");
                d
            }
            Ok(None) => Doc::default(),
            Err(e) => {
                error!(
                    "state file {} ignored: {e}; starting from the configuration (the file is replaced at the next change)",
                    path.display()
                );
                Doc::default()
            }
        };
        Arc::new(StateFile {
            path: path.to_path_buf(),
            doc: Mutex::new(doc),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Apply this listener's saved state to its pool (blocking: names are
    /// resolved). Call before the listener serves.
    pub fn restore(&self, svc: &Service) {
        let Some(st) = lock(&self.doc).listeners.get(&svc.cfg.name).cloned() else {
            return;
        };
        if st.configured != configured(svc) {
            warn!(
                listener = %svc.cfg.name,
                "state file {}: saved for a different channel list; ignored (the configuration changed)",
                self.path.display()
            );
            return;
        }
        let mut groups = Vec::with_capacity(st.groups.len());
        for g in &st.groups {
            let mut chans = Vec::with_capacity(g.channels.len());
            for c in &g.channels {
                // Validated when read.
                let Ok(host) = commands::host(&c.host) else {
                    return;
                };
                let addrs = resolve(&host, c.port);
                let ch = svc.pool.new_channel(
                    Target {
                        host,
                        port: c.port,
                        addrs,
                    },
                    c.maxc,
                    c.weight,
                );
                ch.set_admin(c.admin);
                chans.push(ch);
            }
            let policy = if g.policy == "hash" {
                Policy::Hash
            } else {
                Policy::RoundRobin
            };
            groups.push(Arc::new(Group::new(policy, chans)));
        }
        svc.pool.store_groups(groups);
        info!(listener = %svc.cfg.name, "operator state restored from {}", self.path.display());
    }

    /// Record this listener's current state and rewrite the file
    /// atomically (blocking).
    pub fn save(&self, svc: &Service) -> io::Result<()> {
        let mut doc = lock(&self.doc);
        doc.version = VERSION;
        doc.listeners.insert(svc.cfg.name.clone(), snapshot(svc));
        let mut text = serde_json::to_string_pretty(&*doc).map_err(io::Error::other)?;
        text.push('\n');
        write_atomic(&self.path, text.as_bytes())
    }
}

/// The configured channel list of a listener.
fn configured(svc: &Service) -> Vec<Vec<String>> {
    svc.cfg
        .groups
        .iter()
        .map(|g| g.channels.iter().map(|c| c.to_string()).collect())
        .collect()
}

/// The listener's operator state now.
pub fn snapshot(svc: &Service) -> ListenerState {
    let view = ListenerView::of(svc);
    let groups = view
        .groups
        .iter()
        .enumerate()
        .map(|(gi, (policy, _))| GroupState {
            policy: policy_word(*policy).into(),
            channels: view
                .channels
                .iter()
                .filter(|c| c.group == gi)
                .map(|c| ChannelState {
                    host: c.host(),
                    port: c.target.port,
                    admin: c.admin,
                    maxc: c.maxc,
                    weight: c.weight,
                })
                .collect(),
        })
        .collect();
    ListenerState {
        configured: configured(svc),
        groups,
    }
}

fn read_doc(path: &Path) -> Result<Option<Doc>, String> {
    let md = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if md.len() > MAX_SIZE {
        return Err(format!("larger than {MAX_SIZE} bytes"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    parse_doc(&text).map(Some)
}

fn parse_doc(text: &str) -> Result<Doc, String> {
    let doc: Doc = serde_json::from_str(text).map_err(|e| format!("not valid state: {e}"))?;
    if doc.version != VERSION {
        return Err(format!("unknown version {}", doc.version));
    }
    for (name, l) in &doc.listeners {
        validate(l).map_err(|e| format!("listener \"{name}\": {e}"))?;
    }
    Ok(doc)
}

/// Parse state-file text as [`StateFile::load`] does: the number of
/// listeners it holds, or why the file would be ignored. For the fuzz target.
#[doc(hidden)]
pub fn parse_text(text: &str) -> Result<usize, String> {
    parse_doc(text).map(|d| d.listeners.len())
}

fn validate(l: &ListenerState) -> Result<(), String> {
    if l.groups.is_empty() {
        return Err("no groups".into());
    }
    for (gi, g) in l.groups.iter().enumerate() {
        if g.policy != "rr" && g.policy != "hash" {
            return Err(format!("group {gi}: bad policy \"{}\"", g.policy));
        }
        if g.channels.is_empty() {
            return Err(format!("group {gi}: no channels"));
        }
        for (ci, c) in g.channels.iter().enumerate() {
            commands::host(&c.host).map_err(|e| format!("channel {gi}:{ci}: {e}"))?;
            if c.port == 0 {
                return Err(format!("channel {gi}:{ci}: port 0"));
            }
            if c.weight > MAX_WEIGHT {
                return Err(format!("channel {gi}:{ci}: weight {} too large", c.weight));
            }
        }
    }
    Ok(())
}

/// Write `data` to `path` atomically: temp file in the same directory,
/// fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests;
