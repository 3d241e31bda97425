use super::*;

#[test]
fn a_buffer_is_its_size_and_is_reused_by_the_next_phase_on_the_thread() {
    let first = {
        let mut b = SpareBuf::<LARGE>::new();
        let buf = b.get();
        assert_eq!(buf.len(), LARGE);
        buf[0] = 7;
        buf.as_ptr()
    };
    let mut b = SpareBuf::<LARGE>::new();
    assert_eq!(b.get().as_ptr(), first, "the spare is reused");
    let mut s = SpareBuf::<SMALL>::new();
    assert_eq!(s.get().len(), SMALL);
}

#[test]
fn a_thread_keeps_at_most_its_limit_after_a_peak() {
    std::thread::spawn(|| {
        let mut bufs: Vec<SpareBuf<SMALL>> = (0..10).map(|_| SpareBuf::new()).collect();
        for b in &mut bufs {
            b.get();
        }
        drop(bufs);
        assert_eq!(SMALLS.with(|s| s.borrow().len()), 4);
        let mut large: Vec<SpareBuf<LARGE>> = (0..5).map(|_| SpareBuf::new()).collect();
        for b in &mut large {
            b.get();
        }
        drop(large);
        assert_eq!(LARGES.with(|s| s.borrow().len()), 2);
        // One never used takes nothing and gives nothing back.
        drop(SpareBuf::<LARGE>::new());
        assert_eq!(LARGES.with(|s| s.borrow().len()), 2);
    })
    .join()
    .unwrap();
}
