use super::*;
use crate::config::route::{Directory, LookupConfig};

fn argv_lookup(script: &str, ttl: Duration, stale: Duration) -> (Arc<Lookup>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "balance-lookup-{}-{}",
        std::process::id(),
        script.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("lookup.sh");
    std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = LookupConfig {
        directory: Directory::Argv(vec![p.display().to_string(), "{key}".into()]),
        timeout: Duration::from_secs(5),
        ttl,
        negative_ttl: Duration::from_secs(60),
        stale,
    };
    (
        Arc::new(Lookup::new(
            cfg,
            vec!["eu".to_string(), "us".to_string()].into(),
            "t",
        )),
        dir,
    )
}

#[test]
fn keys_that_could_be_options_or_paths_are_not_looked_up() {
    assert!(safe_key("a.example.com"));
    assert!(safe_key("2001:db8::1"));
    for bad in ["", "-rf", "a/b", "a b", "a;b", "$(x)", "a?b"] {
        assert!(!safe_key(bad), "{bad}");
    }
}

#[tokio::test]
async fn argv_answers_not_found_errors_and_stale() {
    // Exit 0 with a target, exit 1 for not found, 2 for a failure, chosen
    // by the key itself (the key arrives as $1).
    let (l, dir) = argv_lookup(
        "case \"$1\" in us.*) echo us;; none.*) exit 1;; bad.*) echo asia;; *) exit 2;; esac",
        Duration::ZERO,
        Duration::from_secs(60),
    );
    assert_eq!(
        l.resolve("us.example.com").await,
        Resolved::Looked(Answer::Target(RouteTarget::Group(1)))
    );
    assert_eq!(
        l.resolve("none.example.com").await,
        Resolved::Looked(Answer::NotFound)
    );
    assert!(matches!(
        l.resolve("none.example.com").await,
        Resolved::Cached(Answer::NotFound, _)
    ));
    assert!(
        matches!(l.resolve("bad.example.com").await, Resolved::Failed(e) if e.contains("asia"))
    );
    assert!(
        matches!(l.resolve("x.example.com").await, Resolved::Failed(e) if e.contains("exit code 2"))
    );
    assert!(matches!(l.resolve("-x").await, Resolved::Failed(_)));
    // ttl 0: every resolve asks again; the script now fails for us.*: the
    // last answer serves stale.
    std::fs::write(dir.join("lookup.sh"), "#!/bin/sh\nexit 3\n").unwrap();
    assert!(matches!(
        l.resolve("us.example.com").await,
        Resolved::Stale(Answer::Target(RouteTarget::Group(1)), _, e) if e.contains("exit code 3")
    ));
    assert_eq!(l.stats.stale.load(Relaxed), 1);
    assert_eq!(l.stats.errors.load(Relaxed), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
