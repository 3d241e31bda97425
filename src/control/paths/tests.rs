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
    let c = candidates_in(&dir, &names);
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
        listener_path(Some(p), run, b, 1),
        PathBuf::from("/x/c.sock")
    );
    assert_eq!(
        listener_path(Some(Path::new("/x")), run, b, 2),
        PathBuf::from("/x/127.0.0.1:81.sock")
    );
    assert_eq!(
        listener_path(None, run, b, 2),
        PathBuf::from("/run/b/127.0.0.1:81.sock")
    );
}
