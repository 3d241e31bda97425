//! `on_empty:` and `on_idle:` of a group in the file: the raw model and its
//! checks (see `crate::config::demand`).

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::scalars::{Argv, Dur};
use crate::config::demand::{
    MAX_IDLE_AFTER, MAX_START_TIMEOUT, OnDemand, OnEmpty, OnIdle, check_duration,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOnEmpty {
    argv: Argv,
    timeout: Dur,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOnIdle {
    after: Dur,
    argv: Argv,
}

/// A group's `on_empty:` and `on_idle:`; errors are
/// `line L column C: on_empty.timeout: why`.
pub(super) fn on_demand(
    on_empty: Option<Spanned<RawOnEmpty>>,
    on_idle: Option<Spanned<RawOnIdle>>,
    at: fn(Location) -> String,
) -> Result<Option<Box<OnDemand>>, String> {
    let on_empty = on_empty
        .map(|e| {
            let timeout = check_duration("on_empty.timeout", e.value.timeout.0, MAX_START_TIMEOUT)
                .map_err(|m| format!("{}{m}", at(e.referenced)))?;
            Ok::<_, String>(OnEmpty {
                argv: e.value.argv.0,
                timeout,
            })
        })
        .transpose()?;
    let on_idle = on_idle
        .map(|i| {
            let after = check_duration("on_idle.after", i.value.after.0, MAX_IDLE_AFTER)
                .map_err(|m| format!("{}{m}", at(i.referenced)))?;
            Ok::<_, String>(OnIdle {
                after,
                argv: i.value.argv.0,
            })
        })
        .transpose()?;
    if on_empty.is_none() && on_idle.is_none() {
        return Ok(None);
    }
    Ok(Some(Box::new(OnDemand { on_empty, on_idle })))
}
