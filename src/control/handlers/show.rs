//! Read-only handlers: `show`, `show json`, `mrtg-bytes`/`mrtg-conns` and
//! `version`. The texts are [`crate::render::show`]'s.

use std::sync::Arc;

use crate::control::listener::Control;
use crate::control::reply::Reply;
use crate::pool::Group;
use crate::render::{self, ChannelView, ListenerView, Pipes};
use crate::service::Service;

pub(crate) use crate::render::show::Mrtg;

/// balance.fm's three lines. There is no compiled-in table size: the
/// limits shown are the largest indexes the commands accept.
pub(crate) fn version() -> Reply {
    let max = crate::control::commands::MAX_INDEX;
    Reply::ok(vec![
        format!("  This is balance {}", env!("CARGO_PKG_VERSION")),
        format!("  MAXGROUPS={max}"),
        format!("  MAXCHANNELS={max}"),
    ])
}

/// `show`: balance's table, the group serving now (several groups), and
/// in fleet mode one line on the fleet.
pub(crate) fn table(groups: &[Arc<Group>], svc: &Service) -> Reply {
    let mut lines = render::show::table(&render::channels(groups));
    lines.extend(render::show::serving_line(&ListenerView::of(svc)));
    if svc.fleet.enabled() {
        lines.push(render::show::fleet_line(&svc.fleet.view()));
    }
    Reply::ok(lines)
}

/// `show json`: one line, every field.
pub(crate) fn json(svc: &Service) -> Reply {
    Reply::line(render::show::json(&ListenerView::of(svc), Pipes::now()))
}

/// `mrtg-bytes G C` / `mrtg-conns G C`.
pub(crate) fn mrtg(ctl: &Control, groups: &[Arc<Group>], g: usize, c: usize, what: Mrtg) -> Reply {
    let Some(grp) = groups.get(g) else {
        return Reply::err(format!("unknown group {g}"));
    };
    let Some(ch) = grp.channels.get(c) else {
        return Reply::err(format!("unknown channel {c} in group {g}"));
    };
    let view = ChannelView::of(g, c, grp.policy(), ch);
    Reply::ok(render::show::mrtg(&view, what, ctl.started.elapsed()))
}

/// `route KEY`: the decision for a key, with its source (a lookup it
/// needs is made and counted; hits and misses are not).
pub(crate) async fn route(svc: &Service, key: &str) -> Reply {
    let Some(r) = &svc.route else {
        return Reply::err("this listener has no route: (see route: in the config file)");
    };
    let k = match r.parse_key(key) {
        Ok(k) => k,
        Err(e) => return Reply::err(e),
    };
    let d = r.resolve(Some(&k)).await;
    Reply::ok(vec![format!(
        "{} -> {} by {} from {}",
        k.text(),
        r.target_name(d.target),
        r.by.word(),
        d.source
    )])
}
