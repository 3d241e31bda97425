use super::*;

#[test]
fn endpoints_parse_and_refuse() {
    assert_eq!(
        parse_endpoints("http://127.0.0.1:2379, http://[::1]:2379").unwrap(),
        vec!["http://127.0.0.1:2379", "http://[::1]:2379"]
    );
    assert!(parse_endpoints("http://etcd.example:2379/").is_ok());
    // The file's tls: is checked once it is known (see below).
    assert!(parse_endpoints("https://h:2379").is_ok());
    for bad in [
        "",
        "127.0.0.1:2379",
        "ftp://h:2379",
        "http://h",
        "http://h:0",
        "http://h:99999",
        "http://h:2379/v3",
        "http://u@h:2379",
        "http://h:2379,,http://g:1",
        "http://:2379",
    ] {
        let e = parse_endpoints(bad).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn prefix_id_and_fallback_are_checked() {
    let ok = FleetConfig::new(vec!["http://127.0.0.1:2379".into()]);
    assert!(ok.validate().is_ok());
    for p in ["", "/", "balance", "/b/", "/a b"] {
        let c = FleetConfig {
            prefix: p.into(),
            ..ok.clone()
        };
        assert!(c.validate().unwrap_err().starts_with("prefix: "), "{p}");
    }
    for id in ["", "a b", "a/b"] {
        let c = FleetConfig {
            id: Some(id.into()),
            ..ok.clone()
        };
        assert!(c.validate().unwrap_err().starts_with("id: "), "{id}");
    }
    let c = FleetConfig {
        fallback: Some(Duration::from_millis(10)),
        ..ok.clone()
    };
    assert_eq!(c.validate().unwrap_err(), "fallback: must be 100ms-1h");
}

#[test]
fn https_needs_tls_and_discovery_replaces_the_list() {
    let https = FleetConfig::new(vec!["https://etcd.example:2379".into()]);
    let e = https.validate().unwrap_err();
    assert!(e.contains("https:// needs fleet.tls"), "{e}");
    let srv = FleetConfig {
        discovery_srv: Some("example.com".into()),
        ..FleetConfig::new(Vec::new())
    };
    assert!(srv.validate().is_ok());
    let both = FleetConfig {
        discovery_srv: Some("example.com".into()),
        ..FleetConfig::new(vec!["http://e:1".into()])
    };
    assert_eq!(
        both.validate().unwrap_err(),
        "endpoints and discovery_srv: give one of them"
    );
    for d in ["", "a..b", "a b.com", "-_/"] {
        let c = FleetConfig {
            discovery_srv: Some(d.into()),
            ..FleetConfig::new(Vec::new())
        };
        assert!(
            c.validate().unwrap_err().starts_with("discovery_srv: "),
            "{d}"
        );
    }
}

#[test]
fn the_files_are_read_and_their_errors_are_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("balance-fleet-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let base = FleetConfig::new(vec!["https://e:2379".into()]);
    let with_tls = |ca: &str, cert: Option<&str>, key: Option<&str>| FleetConfig {
        tls: Some(Box::new(TlsFiles {
            ca: ca.into(),
            cert: cert.map(Into::into),
            key: key.map(Into::into),
        })),
        ..base.clone()
    };
    let junk_s = junk.to_str().unwrap();
    for (mut c, want) in [
        (
            with_tls("/nonexistent/ca.pem", None, None),
            "tls.ca /nonexistent/ca.pem: No such file",
        ),
        (with_tls(junk_s, None, None), "no PEM certificate in it"),
        (with_tls(junk_s, Some(junk_s), None), "tls.cert needs key"),
        (with_tls(junk_s, None, Some(junk_s)), "tls.key needs cert"),
        (
            FleetConfig {
                password_file: Some(pw.clone()),
                ..base.clone()
            },
            "password_file needs user",
        ),
        (
            FleetConfig {
                user: Some("bal".into()),
                ..base.clone()
            },
            "user needs password_file",
        ),
    ] {
        let e = c.load_files().unwrap_err();
        assert!(e.contains(want) && !e.contains('\n'), "{want}: {e}");
    }
    let mut c = FleetConfig {
        user: Some("bal".into()),
        password_file: Some(pw.clone()),
        ..base.clone()
    };
    c.load_files().unwrap();
    assert_eq!(c.loaded.password().unwrap().0, "s3cret");
    // The same bytes read again are equal; other bytes are not, and
    // only the login and files differ: no restart.
    let mut again = c.clone();
    again.load_files().unwrap();
    assert_eq!(again, c);
    std::fs::write(&pw, "other\n").unwrap();
    again.load_files().unwrap();
    assert_ne!(again, c);
    assert_eq!(again.fixed(), c.fixed());
    std::fs::remove_dir_all(&dir).unwrap();
}
