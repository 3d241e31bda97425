use super::*;
use std::sync::Arc;

fn never() -> impl Future<Output = ()> {
    std::future::pending()
}

#[tokio::test]
async fn no_hold_means_no_wait() {
    let h = Hold::default();
    assert!(!h.engaged());
    assert!(h.wait(never()).await.unwrap().hold.is_none());
}

#[tokio::test(start_paused = true)]
async fn held_clients_go_one_at_a_time_in_arrival_order() {
    let h = Arc::new(Hold::default());
    h.on(Duration::from_secs(60));
    assert!(h.engaged());
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (h, order) = (Arc::clone(&h), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let turn = h.wait(never()).await.unwrap();
            turn.run(async {
                order.lock().unwrap().push(i);
                // A connect slower than HOLD_STEP does not stall the queue,
                // yet the next one starts only after this one started.
                sleep(Duration::from_millis(10)).await;
            })
            .await;
        }));
        // Arrive in a known order.
        tokio::task::yield_now().await;
    }
    while h.held() < 5 {
        tokio::task::yield_now().await;
    }
    assert!(order.lock().unwrap().is_empty());
    assert_eq!(h.off(), (true, 5));
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(h.held(), 0);
    assert!(!h.engaged());
}

#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_drops_out_of_the_queue() {
    let h = Arc::new(Hold::default());
    h.on(Duration::from_secs(60));
    let (tx, rx) = oneshot::channel::<()>();
    let h2 = Arc::clone(&h);
    let leaver = tokio::spawn(async move {
        h2.wait(async {
            let _ = rx.await;
        })
        .await
        .map(|_| ())
    });
    while h.held() < 1 {
        tokio::task::yield_now().await;
    }
    tx.send(()).unwrap();
    assert_eq!(leaver.await.unwrap(), Err(Left));
    assert_eq!(h.held(), 0);
    assert_eq!(h.off(), (true, 0));
    assert!(!h.engaged());
}

#[tokio::test(start_paused = true)]
async fn the_hold_ends_by_itself_at_max() {
    let h = Arc::new(Hold::default());
    h.on(Duration::from_secs(2));
    let h2 = Arc::clone(&h);
    let t = tokio::spawn(async move {
        let start = Instant::now();
        drop(h2.wait(never()).await.unwrap());
        start.elapsed()
    });
    let took = t.await.unwrap();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(h.until(), None);
    assert!(!h.engaged());
}

#[tokio::test(start_paused = true)]
async fn newcomers_queue_behind_a_draining_queue() {
    let h = Arc::new(Hold::default());
    h.on(Duration::from_secs(60));
    let (got_tx, got_rx) = oneshot::channel::<()>();
    let (gate_tx, gate_rx) = oneshot::channel::<()>();
    let first = {
        let h = Arc::clone(&h);
        tokio::spawn(async move {
            let turn = h.wait(never()).await.unwrap();
            got_tx.send(()).unwrap();
            let _ = gate_rx.await;
            drop(turn);
        })
    };
    while h.held() < 1 {
        tokio::task::yield_now().await;
    }
    h.off();
    got_rx.await.unwrap();
    // The first client holds the baton: a newcomer queues behind it.
    let h2 = Arc::clone(&h);
    let second = tokio::spawn(async move { h2.wait(never()).await.map(|t| t.hold.is_some()) });
    while h.held() < 1 {
        tokio::task::yield_now().await;
    }
    gate_tx.send(()).unwrap();
    first.await.unwrap();
    assert_eq!(second.await.unwrap(), Ok(true));
    assert!(!h.engaged());
}

#[test]
fn a_saved_end_in_the_past_changes_nothing() {
    let h = Hold::default();
    h.on_until(SystemTime::now() - Duration::from_secs(1));
    assert!(!h.engaged());
}

#[tokio::test(start_paused = true)]
async fn a_shorter_max_set_while_clients_wait_releases_them_at_the_new_end() {
    let h = Arc::new(Hold::default());
    h.on(Duration::from_secs(60));
    let h2 = Arc::clone(&h);
    let t = tokio::spawn(async move {
        let start = Instant::now();
        drop(h2.wait(never()).await.unwrap());
        start.elapsed()
    });
    while h.held() < 1 {
        tokio::task::yield_now().await;
    }
    h.on(Duration::from_secs(1));
    let took = t.await.unwrap();
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn spin_on_again_while_draining_stops_the_release() {
    let h = Arc::new(Hold::default());
    h.on(Duration::from_secs(60));
    let (got_tx, got_rx) = oneshot::channel::<()>();
    let (gate_tx, gate_rx) = oneshot::channel::<()>();
    let first = {
        let h = Arc::clone(&h);
        tokio::spawn(async move {
            let turn = h.wait(never()).await.unwrap();
            got_tx.send(()).unwrap();
            let _ = gate_rx.await;
            drop(turn);
        })
    };
    while h.held() < 1 {
        tokio::task::yield_now().await;
    }
    let h2 = Arc::clone(&h);
    let second = tokio::spawn(async move { drop(h2.wait(never()).await) });
    while h.held() < 2 {
        tokio::task::yield_now().await;
    }
    h.off();
    got_rx.await.unwrap();
    // On again before the first passes its turn: the second stays held.
    h.on(Duration::from_secs(60));
    gate_tx.send(()).unwrap();
    first.await.unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(h.held(), 1);
    assert!(!second.is_finished());
    h.off();
    second.await.unwrap();
    assert!(!h.engaged());
}
