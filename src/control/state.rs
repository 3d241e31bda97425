//! The state file (`--state-file`): operator state that survives restarts.
//!
//! Kept per listener (keyed by the listener's name): every group's name and
//! policy and every channel's name, target, admin state (enabled, `DIS`,
//! drain), maxc, weight and health-check switch, including channels
//! created or reassigned at runtime; and the listener's operator hold
//! (`spin on`, until when) and monitor switch (`monitor disable`), restored
//! even when the channel list changed. Health is not kept; the monitor
//! re-learns it.
//!
//! Each entry also records the channel list as configured. At start an
//! entry is applied only if the configuration still lists the same
//! channels; after a configuration change the old entry is reported and
//! ignored (the new configuration wins). The configured channels and groups
//! keep the configuration's names; those created at runtime keep the names
//! saved (a file written before names has none: they get the defaults). A
//! file that cannot be read or parsed, or that holds an invalid value, is
//! reported once and ignored as a whole: it is never half-applied.
//!
//! The file is trusted only if it is a regular file owned by us or root,
//! writable by nobody else, in a directory others cannot write to (or a
//! sticky one); otherwise it is reported and ignored like a corrupt one.
//!
//! Writes are atomic: a temporary file in the same directory, created
//! exclusively without following links, fsync, rename, fsync of the
//! directory. Temporary files left by killed instances are removed at
//! start.

use crate::config::quote;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use crate::config::{Policy, names};
use crate::control::commands::{self, MAX_WEIGHT};
use crate::operator::{self, OperatorOp, SpinSet};
use crate::pool::{Admin, Group, Target};
use crate::render::ListenerView;
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
pub(crate) struct ListenerState {
    /// The channels as configured (`host:port` per group), to detect a
    /// changed configuration.
    pub(crate) configured: Vec<Vec<String>>,
    pub(crate) groups: Vec<GroupState>,
    /// `spin on`: when the operator hold ends, in ms since the Unix epoch
    /// (absent: off; older files have neither field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spin_until_ms: Option<u64>,
    /// `monitor disable`: active probes paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) monitor_disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupState {
    /// The group's name (absent in files written before names: the
    /// configured name, or the default, is taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// `rr`, `hash` or `leastconn` (another word makes the file invalid).
    pub(crate) policy: Policy,
    pub(crate) channels: Vec<ChannelState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelState {
    /// The channel's name (absent in files written before names: the
    /// configured channel's at the same place, or the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) admin: Admin,
    pub(crate) maxc: u32,
    pub(crate) weight: u32,
    /// `disable health`: no health checks, counted as up (absent: on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) health_off: bool,
}

/// One state file, shared by every listener of the process.
pub(crate) struct StateFile {
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
    /// Read `path`. A missing file is an empty state; an unreadable,
    /// untrusted (see [`trusted`]) or corrupt one is logged as an error and
    /// ignored. Temporary files left by killed instances are removed.
    pub(crate) fn load(path: &Path) -> Arc<StateFile> {
        remove_leftovers(path);
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

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// State handed over by a previous process (`upgrade`), read from
    /// `text` (the file's format) instead of a file; `from` names it in
    /// the log. Restore only: it is never saved.
    pub(crate) fn from_text(from: &Path, text: &str) -> Result<Arc<StateFile>, String> {
        let doc = parse_doc(text)?;
        Ok(Arc::new(StateFile {
            path: from.to_path_buf(),
            doc: Mutex::new(doc),
        }))
    }

    /// Apply this listener's saved state to its pool (blocking: names are
    /// resolved). Call before the listener serves.
    pub(crate) fn restore(&self, svc: &Service) {
        let Some(st) = lock(&self.doc).listeners.get(&svc.cfg.name).cloned() else {
            return;
        };
        // Listener-wide switches do not depend on the channel list.
        restore_switches(&st, svc);
        if st.configured != configured(svc) {
            warn!(
                listener = %svc.cfg.name,
                "state file {}: saved for a different channel list; ignored (the configuration changed)",
                self.path.display()
            );
            return;
        }
        let cur = svc.pool.groups();
        let mut groups = Vec::with_capacity(st.groups.len());
        let mut taken: std::collections::HashSet<String> = svc
            .cfg
            .groups
            .iter()
            .flat_map(|g| g.channels.iter().map(|c| c.name.clone()))
            .collect();
        let mut gtaken: std::collections::HashSet<String> =
            svc.cfg.groups.iter().map(|g| g.name.clone()).collect();
        for (gi, g) in st.groups.iter().enumerate() {
            let conf = svc.cfg.groups.get(gi);
            // A configured group has the configuration's name; one created
            // at runtime its own (or the default).
            let gname = match conf {
                Some(c) => c.name.clone(),
                None => {
                    let n = g.name.clone().unwrap_or_else(|| names::default_group(gi));
                    names::unique(n, &mut gtaken)
                }
            };
            let mut chans = Vec::with_capacity(g.channels.len());
            for (ci, c) in g.channels.iter().enumerate() {
                // Validated when read.
                let Ok(host) = commands::host(&c.host) else {
                    return;
                };
                // A configured channel (the lists are the same, so it is
                // the one at this place, reassigned or not) has the name
                // the configuration gives; one created at runtime keeps its
                // own (a file written before names: the default).
                let configured = conf.and_then(|gc| gc.channels.get(ci));
                let name = match configured {
                    Some(cc) => cc.name.clone(),
                    None => {
                        let n = c
                            .name
                            .clone()
                            .unwrap_or_else(|| names::default_channel(&host, c.port));
                        names::unique(n, &mut taken)
                    }
                };
                let addrs = resolve(&host, c.port);
                let proxy = svc.cfg.proxy_protocol_for(gi, &host, c.port);
                let ch = svc.pool.new_channel(
                    &name,
                    Target {
                        host,
                        port: c.port,
                        addrs,
                    },
                    c.maxc,
                    c.weight,
                    proxy,
                );
                if let Some(cc) = configured {
                    ch.set_initial_weight(cc.weight);
                }
                ch.set_admin(c.admin);
                if c.health_off {
                    ch.set_checked(false);
                }
                chans.push(ch);
            }
            // A configured group keeps its on-demand state.
            let demand = cur
                .get(gi)
                .filter(|_| conf.is_some())
                .and_then(|c| c.demand().cloned());
            groups.push(Arc::new(
                Group::new(gname, g.policy, chans).with_demand(demand),
            ));
        }
        svc.pool.store_groups(groups);
        info!(listener = %svc.cfg.name, "operator state restored from {}", self.path.display());
    }

    /// Record this listener's current state and rewrite the file
    /// atomically (blocking).
    pub(crate) fn save(&self, svc: &Service) -> io::Result<()> {
        let mut doc = lock(&self.doc);
        doc.version = VERSION;
        doc.listeners.insert(svc.cfg.name.clone(), snapshot(svc));
        let mut text = serde_json::to_string_pretty(&*doc).map_err(io::Error::other)?;
        text.push('\n');
        write_atomic(&self.path, text.as_bytes())
    }
}

/// Every listener's state now, as the file's text (handed to the
/// successor by `upgrade`).
pub(crate) fn snapshot_text(services: &[Arc<Service>]) -> Result<String, String> {
    let doc = Doc {
        version: VERSION,
        listeners: services
            .iter()
            .map(|s| (s.cfg.name.clone(), snapshot(s)))
            .collect(),
    };
    serde_json::to_string(&doc).map_err(|e| e.to_string())
}

/// The operator hold (its remaining time) and the monitor switch.
fn restore_switches(st: &ListenerState, svc: &Service) {
    if let Some(ms) = st.spin_until_ms {
        let until = UNIX_EPOCH + Duration::from_millis(ms);
        let _ = operator::apply(svc, &OperatorOp::Spin(SpinSet::Until(until)));
        if let Some(t) = svc.ops.hold.until() {
            let left = t.duration_since(SystemTime::now()).unwrap_or_default();
            info!(listener = %svc.cfg.name, "operator hold (spin on) restored: {}s left", left.as_secs());
        }
    }
    if st.monitor_disabled && operator::apply(svc, &OperatorOp::Monitor(false)).is_ok() {
        info!(listener = %svc.cfg.name, "monitor disabled (restored from the state file)");
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
pub(crate) fn snapshot(svc: &Service) -> ListenerState {
    let view = ListenerView::of(svc);
    let groups = view
        .groups
        .iter()
        .enumerate()
        .map(|(gi, (policy, _))| GroupState {
            name: view.group_names.get(gi).cloned(),
            policy: *policy,
            channels: view
                .channels
                .iter()
                .filter(|c| c.group == gi)
                .map(|c| ChannelState {
                    name: Some(c.name.clone()),
                    host: c.host(),
                    port: c.target.port,
                    admin: c.admin,
                    maxc: c.maxc,
                    weight: c.weight,
                    health_off: !c.checked,
                })
                .collect(),
        })
        .collect();
    ListenerState {
        configured: configured(svc),
        groups,
        spin_until_ms: view
            .hold_until
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64),
        monitor_disabled: view.monitor_paused,
    }
}

fn read_doc(path: &Path) -> Result<Option<Doc>, String> {
    let f = match crate::sys::file::open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let md = f.metadata().map_err(|e| e.to_string())?;
    trusted(path, &md)?;
    let mut buf = Vec::new();
    f.take(MAX_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > MAX_SIZE {
        return Err(format!("larger than {MAX_SIZE} bytes"));
    }
    let text = String::from_utf8(buf).map_err(|_| "not UTF-8 text".to_string())?;
    parse_doc(&text).map(Some)
}

/// Trust the file only as ssh trusts its keys: owned by us or root, not
/// writable by group or others, in a directory others cannot write to
/// (unless sticky, like /tmp: then only owners remove or replace files).
/// Otherwise anyone could plant the channels we send clients to.
fn trusted(path: &Path, md: &std::fs::Metadata) -> Result<(), String> {
    let me = crate::sys::euid();
    if md.uid() != me && md.uid() != 0 {
        return Err(format!(
            "owned by uid {}, not by this process (uid {me}) or root; not trusted",
            md.uid()
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {:04o}); not trusted",
            md.mode() & 0o7777
        ));
    }
    let dir = parent_dir(path);
    let dmd = std::fs::metadata(&dir).map_err(|e| format!("directory {}: {e}", dir.display()))?;
    if dmd.mode() & 0o002 != 0 && dmd.mode() & 0o1000 == 0 {
        return Err(format!(
            "directory {} is writable by others without the sticky bit; not trusted",
            dir.display()
        ));
    }
    Ok(())
}

/// At start: refuse a `--state-file` that exists and is not a regular file
/// (a FIFO would never be read to the end, a device never ends).
pub(crate) fn preflight(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(md) if !md.file_type().is_file() => Err(format!(
            "--state-file {}: {}",
            path.display(),
            crate::sys::file::not_regular(md.file_type())
        )),
        _ => Ok(()),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// How long a temporary file of a live process may sit before it counts
/// as left over (a save takes milliseconds).
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(60);

/// Remove the temporary files (`.NAME.tmp.PID`) that killed instances left
/// in the state file's directory: ours (a previous process with our PID),
/// those of processes that no longer exist, and any older than a minute.
fn remove_leftovers(path: &Path) {
    let dir = parent_dir(path);
    let Some(prefix) = path
        .file_name()
        .map(|n| format!(".{}.tmp.", n.to_string_lossy()))
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let proc_mounted = Path::new("/proc/self").exists();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        // Not followed: a symlink is judged (and removed) as itself.
        let Ok(md) = e.path().symlink_metadata() else {
            continue;
        };
        let old = md.modified().ok().and_then(|t| t.elapsed().ok()) >= Some(STALE_TMP);
        let dead = proc_mounted && !crate::sys::file::process_exists(pid);
        if pid == std::process::id() || dead || old {
            match std::fs::remove_file(e.path()) {
                Ok(()) => debug!(path = %e.path().display(), "left-over state temp file removed"),
                Err(err) => debug!(path = %e.path().display(), "left-over state temp file: {err}"),
            }
        }
    }
}

fn parse_doc(text: &str) -> Result<Doc, String> {
    let doc: Doc = serde_json::from_str(text).map_err(|e| format!("not valid state: {e}"))?;
    if doc.version != VERSION {
        return Err(format!("unknown version {}", doc.version));
    }
    for (name, l) in &doc.listeners {
        validate(l).map_err(|e| format!("listener {}: {e}", quote(name)))?;
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
        if g.channels.is_empty() {
            return Err(format!("group {gi}: no channels"));
        }
        if let Some(why) = g.name.as_deref().and_then(names::invalid) {
            return Err(format!("group {gi}: bad name: {why}"));
        }
        for (ci, c) in g.channels.iter().enumerate() {
            if let Some(why) = c.name.as_deref().and_then(names::invalid) {
                return Err(format!("channel {gi}:{ci}: bad name: {why}"));
            }
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
/// fsync, rename, fsync the directory. The temp file is created with
/// `O_EXCL|O_NOFOLLOW` (mode 0600), so a symlink planted at its name is
/// never followed; whatever sits there (a leftover of a killed process
/// with our PID, or a planted link) is unlinked and the create retried
/// once.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let create = || crate::sys::file::create_exclusive(&tmp, 0o600);
    let mut f = match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp)?;
            create()?
        }
        r => r?,
    };
    let res = (|| {
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    drop(f);
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests;
