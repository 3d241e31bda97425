use super::*;

#[tokio::test]
async fn stop_removes_the_socket_so_a_new_server_can_bind_the_path_at_once() {
    let dir = std::env::temp_dir().join(format!("balance-ctl-stop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let cfg =
        crate::config::ListenerConfig::new("t".into(), "127.0.0.1:1".parse().unwrap(), vec![]);
    let svc = Arc::new(Service::new(cfg, crate::health::RiseFallParams::default()));
    let process = CancellationToken::new();
    let ctx = Context {
        run_dir: dir.join("run"),
        state: None,
        shutdown: process.clone(),
        reload: ReloadHandle::detached(),
        fleet: None,
        listeners: crate::registry::Registry::new(),
        upgrade: crate::control::upgrade::UpgradeHandle::detached(),
    };
    let h = spawn(
        Arc::clone(&svc),
        path.clone(),
        ctx.clone(),
        process.child_token(),
    )
    .await
    .unwrap();
    assert!(path.exists());
    let e = spawn(
        Arc::clone(&svc),
        path.clone(),
        ctx.clone(),
        process.child_token(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("another balance instance"), "{e}");
    h.stop().await;
    assert!(!path.exists());
    assert!(!process.is_cancelled(), "stop ends only this server");
    let h2 = spawn(svc, path.clone(), ctx.clone(), process.child_token())
        .await
        .unwrap();
    process.cancel();
    let _ = h2.task.await;
    assert!(!path.exists(), "the process shutdown removes it too");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn lines_are_bounded_and_a_last_line_without_newline_counts() {
    let mut buf = Vec::new();
    let mut r = BufReader::new(&b"show\r\nhelp"[..]);
    assert!(matches!(
        read_line(&mut r, &mut buf, None).await.unwrap(),
        LineRead::Line
    ));
    assert_eq!(buf, b"show\r");
    assert!(matches!(
        read_line(&mut r, &mut buf, None).await.unwrap(),
        LineRead::Line
    ));
    assert_eq!(buf, b"help");
    assert!(matches!(
        read_line(&mut r, &mut buf, None).await.unwrap(),
        LineRead::Eof
    ));

    let long = vec![b'x'; MAX_LINE + 1];
    let mut r = BufReader::new(&long[..]);
    assert!(matches!(
        read_line(&mut r, &mut buf, None).await.unwrap(),
        LineRead::TooLong
    ));
    let mut exact = vec![b'x'; MAX_LINE];
    exact.push(b'\n');
    let mut r = BufReader::new(&exact[..]);
    assert!(matches!(
        read_line(&mut r, &mut buf, None).await.unwrap(),
        LineRead::Line
    ));
    assert_eq!(buf.len(), MAX_LINE);
}

#[tokio::test]
async fn replies_end_with_a_marker_carrying_status_group_and_bye() {
    let mut out = Vec::new();
    write_reply(&mut out, &Reply::err("no such channel 5"), 2, false)
        .await
        .unwrap();
    assert_eq!(out, b"no such channel 5\n\x04err 2\n");
    out.clear();
    let r = Reply {
        lines: vec![],
        ok: true,
        close: true,
    };
    write_reply(&mut out, &r, 0, true).await.unwrap();
    assert_eq!(out, b"\x04ok 0 bye\n");
}
