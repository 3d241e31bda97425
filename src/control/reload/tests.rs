use super::*;

#[tokio::test]
async fn a_request_gets_the_answer_of_whoever_holds_the_receiver() {
    let (h, mut rx) = ReloadHandle::channel();
    let server = tokio::spawn(async move {
        let reply = rx.recv().await.unwrap();
        reply.send(Ok("1 added".into())).unwrap();
        let reply = rx.recv().await.unwrap();
        reply
            .send(Err(ReloadError::Rejected("bad".into())))
            .unwrap();
    });
    assert_eq!(h.reload().await, Ok("1 added".to_string()));
    let e = h.reload().await.unwrap_err();
    assert_eq!(e.to_string(), "bad");
    server.await.unwrap();
}

#[tokio::test]
async fn without_a_receiver_reload_says_no_supervisor_runs() {
    let e = ReloadHandle::detached().reload().await.unwrap_err();
    assert_eq!(e, ReloadError::NotRunning);
    assert_eq!(e.to_string(), "no supervisor running");
}
