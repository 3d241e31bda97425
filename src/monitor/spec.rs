//! balance.fm's `-m` grammar → [`MonitorSpec`].

use std::time::Duration;

use crate::config::monitor::MonitorSpec;

/// Parse a `-m` spec; `default_timeout` is the listener's connect timeout.
pub fn parse(spec: &str, _default_timeout: Duration) -> Result<MonitorSpec, String> {
    Err(format!(
        "bad -m \"{spec}\": monitoring is not yet supported in this build"
    ))
}
