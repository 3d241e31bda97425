//! The runtime side of a `command=` check: `%H %P %G %C %%` expansion in
//! each argv element (the `-m` grammar that checks the placeholders lives
//! in `config::monitor_spec`).

/// Substitute `%H %P %G %C %%` in one argv element.
pub(crate) fn substitute(a: &str, host: &str, port: u16, group: usize, channel: usize) -> String {
    let mut out = String::with_capacity(a.len() + 16);
    let mut it = a.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('H') => out.push_str(host),
            Some('P') => out.push_str(&port.to_string()),
            Some('G') => out.push_str(&group.to_string()),
            Some('C') => out.push_str(&channel.to_string()),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests;
