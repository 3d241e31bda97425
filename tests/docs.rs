//! The documentation keeps up with the code: every key the YAML parser
//! accepts is described in docs/configuration.md, and every relative link
//! in the Markdown documents resolves (the file exists; a `#anchor` names
//! one of its headings). Plain text, no server: it reads the sources.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ------------------------------------------------------------ YAML keys

/// What serde accepts from one `#[derive(Deserialize)]` item.
#[derive(Default)]
struct Accepted {
    /// Mapping keys: struct fields and the variants of enums that carry
    /// data (`- mysql: {...}`).
    keys: BTreeSet<String>,
    /// Scalar values: the variants of unit-only enums (`failback: manual`).
    values: BTreeSet<String>,
}

/// serde's `rename_all` rules that the raw model may use.
fn rename(name: &str, rule: Option<&str>) -> String {
    let snake = || {
        let mut s = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    s.push('_');
                }
                s.push(c.to_ascii_lowercase());
            } else {
                s.push(c);
            }
        }
        s
    };
    match rule {
        None => name.to_string(),
        Some("lowercase") => name.to_ascii_lowercase(),
        Some("snake_case") => snake(),
        Some("kebab-case") => snake().replace('_', "-"),
        Some(other) => panic!("docs test: rename_all = {other:?} is not handled here"),
    }
}

/// The quoted value of `key = "..."` inside an attribute line.
fn attr_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = &line[line.find(&format!("{key} = \""))? + key.len() + 4..];
    Some(&rest[..rest.find('"')?])
}

/// Every name a `#[derive(Deserialize)]` struct or enum in `src` accepts.
/// Hand-written `Deserialize` impls of scalars accept no keys of their own.
fn accepted(src: &str, into: &mut Accepted) {
    let lines: Vec<&str> = src.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if !(line.starts_with("#[derive(") && line.contains("Deserialize")) {
            i += 1;
            continue;
        }
        // The item's own attributes, then its header.
        let mut rule = None;
        i += 1;
        while i < lines.len() && lines[i].trim().starts_with("#[") {
            let a = lines[i].trim();
            assert!(
                !a.contains("untagged") && !a.contains("tag = "),
                "docs test: {a}: enum representation not handled here"
            );
            if let Some(r) = attr_value(a, "rename_all") {
                rule = Some(r.to_string());
            }
            i += 1;
        }
        let header = lines[i].trim();
        let is_enum = header.contains("enum ");
        assert!(
            is_enum || header.contains("struct "),
            "docs test: unexpected item after derive: {header}"
        );
        i += 1;
        if !header.ends_with('{') {
            // A tuple or unit struct: a scalar, no keys.
            continue;
        }
        let mut field_rename: Option<String> = None;
        let mut aliases: Vec<String> = Vec::new();
        while i < lines.len() && lines[i].trim() != "}" {
            let l = lines[i].trim();
            i += 1;
            if l.starts_with("#[serde(") {
                assert!(
                    !l.contains("flatten"),
                    "docs test: {l}: flatten is not handled here"
                );
                if let Some(r) = attr_value(l, "rename") {
                    field_rename = Some(r.to_string());
                }
                if let Some(a) = attr_value(l, "alias") {
                    aliases.push(a.to_string());
                }
                continue;
            }
            if l.is_empty() || l.starts_with("//") || l.starts_with("#[") {
                continue;
            }
            let decl = l
                .trim_start_matches("pub(super) ")
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ");
            let ident: String = decl
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if ident.is_empty() {
                continue;
            }
            let name = field_rename
                .take()
                .unwrap_or_else(|| rename(&ident, rule.as_deref()));
            let names = std::iter::once(name).chain(aliases.drain(..));
            let rest = &decl[ident.len()..];
            if is_enum && !rest.starts_with('(') && !rest.starts_with(" {") {
                into.values.extend(names);
            } else {
                into.keys.extend(names);
            }
        }
    }
}

/// Every key and value the config file's parser accepts.
fn parser_names() -> Accepted {
    let dir = root().join("src/config/file");
    let mut acc = Accepted::default();
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .filter(|p| p.file_name().is_some_and(|n| n != "tests.rs"))
        .collect();
    files.sort();
    for f in files {
        accepted(&read(&f), &mut acc);
    }
    acc
}

#[test]
fn the_extractor_sees_the_raw_model() {
    let acc = parser_names();
    // A few names from each level, so an extractor that stopped seeing the
    // structs fails here instead of passing vacuously.
    for k in [
        "grace",
        "listeners",
        "endpoints",
        "bind",
        "hash_failover",
        "idle",
        "policy",
        "weight",
        "jitter",
        "send_expect",
        "read_only",
        "argv",
    ] {
        assert!(
            acc.keys.contains(k),
            "extractor missed key {k}: {:?}",
            acc.keys
        );
    }
    for v in ["json", "manual", "shutdown-backup", "hash"] {
        assert!(acc.values.contains(v), "extractor missed value {v}");
    }
    assert!(acc.keys.len() >= 50, "only {} keys found", acc.keys.len());
}

#[test]
fn every_config_key_is_in_the_configuration_guide() {
    let doc = read(&root().join("docs/configuration.md"));
    let acc = parser_names();
    // A key is documented by a table row of its own: "| `key` |".
    let rows: HashSet<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(k, _)| k))
        .collect();
    let missing: Vec<&String> = acc
        .keys
        .iter()
        .filter(|k| !rows.contains(k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "keys the config parser accepts without a row (| `key` | ...) in docs/configuration.md: {missing:?}"
    );
    let missing: Vec<&String> = acc
        .values
        .iter()
        .filter(|v| !doc.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "values the config parser accepts that docs/configuration.md never names: {missing:?}"
    );
}

// ------------------------------------------------------------ links

/// The Markdown documents of the repository that users read.
fn documents() -> Vec<PathBuf> {
    let r = root();
    let mut v: Vec<PathBuf> = ["README.md", "CHANGELOG.md", "CONTRIBUTING.md"]
        .iter()
        .map(|f| r.join(f))
        .filter(|p| p.exists())
        .collect();
    let mut docs: Vec<PathBuf> = fs::read_dir(r.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    assert!(v.len() >= 3, "documents: {v:?}");
    v
}

/// The text outside fenced code blocks and inline code spans.
fn prose(md: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || line.starts_with("    ") {
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// `[text](target)` targets in `md`'s prose.
fn links(md: &str) -> Vec<String> {
    let text = prose(md);
    let mut v = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(j) = rest.find(')') {
            v.push(rest[..j].trim().to_string());
            rest = &rest[j..];
        }
    }
    v
}

/// GitHub's anchors for the headings of `md` (lowercase; punctuation other
/// than `-` and `_` dropped; spaces become `-`; repeats get `-1`, `-2`).
fn anchors(md: &str) -> HashSet<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut s = slug.clone();
        let mut n = 0;
        while seen.contains(&s) {
            n += 1;
            s = format!("{slug}-{n}");
        }
        seen.insert(s);
    }
    seen
}

#[test]
fn every_relative_link_resolves() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let md = read(&doc);
        let dir = doc.parent().unwrap();
        for link in links(&md) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                doc.clone()
            } else {
                dir.join(path)
            };
            let name = doc.strip_prefix(root()).unwrap().display().to_string();
            if !target.exists() {
                bad.push(format!("{name}: {link}: no such file"));
                continue;
            }
            if let Some(a) = anchor {
                let is_md = target.extension().is_some_and(|x| x == "md");
                if !is_md || !anchors(&read(&target)).contains(a) {
                    bad.push(format!("{name}: {link}: no heading with that anchor"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
    assert!(checked > 20, "only {checked} relative links found");
}

#[test]
fn anchors_follow_github() {
    let a = anchors("# A b\n## Role, lag and the catch-up gate\n## `spin` on\n## A b\n");
    assert!(a.contains("a-b") && a.contains("a-b-1"));
    assert!(a.contains("role-lag-and-the-catch-up-gate"));
    assert!(a.contains("spin-on"));
    assert_eq!(
        links("see [x](a.md#b) and `[y](no)`\n    [z](code)\n"),
        vec!["a.md#b".to_string()]
    );
}
