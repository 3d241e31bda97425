use super::*;
use std::ffi::OsString;

#[test]
fn clients_also_look_one_level_down_for_instances_of_other_users() {
    let dir = std::env::temp_dir().join(format!("balance-cand-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mysql")).unwrap();
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("not-a-dir"), b"").unwrap();
    let names = vec!["0.0.0.0:1.sock".to_string(), "[::]:1.sock".to_string()];
    let c = candidates_in(&dir, std::slice::from_ref(&dir), &names);
    assert_eq!(
        c,
        vec![
            dir.join("0.0.0.0:1.sock"),
            dir.join("[::]:1.sock"),
            dir.join("app/0.0.0.0:1.sock"),
            dir.join("mysql/0.0.0.0:1.sock"),
            dir.join("app/[::]:1.sock"),
            dir.join("mysql/[::]:1.sock"),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_dir_prefers_balance_rundir_then_root_then_xdg_then_tmp() {
    let x = || Some(OsString::from("/run/user/1000"));
    assert_eq!(
        run_dir_from(Some("/srv/b".into()), x(), 1000),
        PathBuf::from("/srv/b")
    );
    assert_eq!(run_dir_from(None, x(), 0), PathBuf::from("/run/balance"));
    assert_eq!(
        run_dir_from(None, x(), 1000),
        PathBuf::from("/run/user/1000/balance")
    );
    assert_eq!(
        run_dir_from(Some("".into()), None, 1000),
        PathBuf::from("/tmp/balance-1000")
    );
}

#[test]
fn socket_names_come_from_bind_address_and_port() {
    let n = |s: &str| socket_name(s.parse().unwrap());
    assert_eq!(n("127.0.0.1:8080"), "127.0.0.1:8080.sock");
    assert_eq!(n("0.0.0.0:33306"), "0.0.0.0:33306.sock");
    assert_eq!(n("[::]:33306"), "[::]:33306.sock");
    assert_eq!(n("[::ffff:10.0.0.1]:80"), "10.0.0.1:80.sock");
}

#[test]
fn control_path_names_the_socket_of_one_listener_or_a_directory() {
    let b: SocketAddr = "127.0.0.1:81".parse().unwrap();
    let p = Path::new("/x/c.sock");
    let run = Path::new("/run/b");
    assert_eq!(
        listener_path(Some(p), run, b, false),
        PathBuf::from("/x/c.sock")
    );
    assert_eq!(
        listener_path(Some(Path::new("/x")), run, b, true),
        PathBuf::from("/x/127.0.0.1:81.sock")
    );
    assert_eq!(
        listener_path(None, run, b, true),
        PathBuf::from("/run/b/127.0.0.1:81.sock")
    );
}

#[test]
fn control_is_a_directory_with_several_listeners_or_when_it_is_one() {
    let dir = std::env::temp_dir().join(format!("balance-ctldir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("ctl.sock");
    assert!(!control_is_dir(&sock, 1));
    assert!(control_is_dir(&sock, 2));
    assert!(control_is_dir(&dir, 1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sticky_world_writable_base_gets_a_private_subdirectory_per_uid() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("balance-shared-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let set = |m: u32| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).unwrap();
    set(0o1777);
    assert!(is_shared(&dir));
    assert_eq!(private_in(&dir, 1000), dir.join("balance-1000"));
    // World-writable without the sticky bit is not shared: refused later.
    set(0o777);
    assert!(!is_shared(&dir));
    assert_eq!(private_in(&dir, 1000), dir);
    set(0o700);
    assert!(!is_shared(&dir));
    // A symlink to a shared directory is not one.
    set(0o1777);
    let link = dir.with_extension("link");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    assert!(!is_shared(&link));
    let _ = std::fs::remove_file(&link);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn in_a_shared_base_the_client_also_looks_in_other_users_private_dirs() {
    let base = std::env::temp_dir().join(format!("balance-cand2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let own = base.join("balance-0");
    std::fs::create_dir_all(own.join("nobody")).unwrap();
    std::fs::create_dir_all(base.join("balance-65534")).unwrap();
    let names = vec!["0.0.0.0:1.sock".to_string()];
    let c = candidates_in(&own, &[own.clone(), base.clone()], &names);
    assert_eq!(
        c,
        vec![
            own.join("0.0.0.0:1.sock"),
            own.join("nobody/0.0.0.0:1.sock"),
            base.join("balance-65534/0.0.0.0:1.sock"),
        ]
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn the_sockets_of_a_port_are_found_whatever_their_bind_address() {
    let dir = std::env::temp_dir().join(format!("balance-port-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mysql")).unwrap();
    for f in [
        "127.0.0.1:33306.sock",
        "[::1]:33306.sock",
        "127.0.0.1:3330.sock",
        "127.0.0.1:33306.sock.old",
        "mysql/10.0.0.1:33306.sock",
        "junk:33306.sock",
    ] {
        std::fs::write(dir.join(f), b"").unwrap();
    }
    let found = port_sockets_in(&dir, std::slice::from_ref(&dir), 33306);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        found,
        vec![
            (dir.join("127.0.0.1:33306.sock"), ip("127.0.0.1")),
            (dir.join("[::1]:33306.sock"), ip("::1")),
            (dir.join("mysql/10.0.0.1:33306.sock"), ip("10.0.0.1")),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
