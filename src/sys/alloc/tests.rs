use super::*;

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn only_small_blocks_aligned_past_malloc_are_pooled() {
    assert_eq!(class(layout(768, 128)), Some(5));
    assert_eq!(class(layout(256, 128)), Some(1));
    assert_eq!(class(layout(1, 32)), Some(0));
    assert_eq!(class(layout(1024, 64)), Some(7));
    assert_eq!(class(layout(1025, 128)), None, "larger than MAX");
    assert_eq!(class(layout(768, 16)), None, "malloc's own alignment");
    assert_eq!(
        class(layout(768, 256)),
        None,
        "more than a chunk's alignment"
    );
    assert_eq!(class(layout(0, 128)), None);
}

#[test]
fn pooled_blocks_are_aligned_distinct_and_reused_after_free() {
    let a = PoolAlloc::new();
    let l = layout(768, 128);
    // More than one chunk's worth, each block written whole.
    let blocks: Vec<*mut u8> = (0..200)
        .map(|i| unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            assert_eq!(p as usize % 128, 0);
            ptr::write_bytes(p, i as u8, l.size());
            p
        })
        .collect();
    for (i, &p) in blocks.iter().enumerate() {
        let s = unsafe { std::slice::from_raw_parts(p, l.size()) };
        assert!(s.iter().all(|&b| b == i as u8), "block {i} was overwritten");
    }
    let mut sorted = blocks.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), blocks.len());
    unsafe { a.dealloc(blocks[7], l) };
    assert_eq!(
        unsafe { a.alloc(l) },
        blocks[7],
        "a freed block is the next one given"
    );
    for &p in &blocks {
        unsafe { a.dealloc(p, l) };
    }
}

#[test]
fn zeroed_and_realloc_keep_their_promises_across_pools_and_the_system() {
    let a = PoolAlloc::new();
    unsafe {
        let l = layout(256, 128);
        let p = a.alloc(l);
        ptr::write_bytes(p, 0xAB, 256);
        a.dealloc(p, l);
        let z = a.alloc_zeroed(l);
        assert_eq!(z, p, "the dirty block comes back");
        assert!(std::slice::from_raw_parts(z, 256).iter().all(|&b| b == 0));
        // Pooled → larger pool → the system (past MAX) → back to a pool.
        for (i, b) in std::slice::from_raw_parts_mut(z, 256)
            .iter_mut()
            .enumerate()
        {
            *b = i as u8;
        }
        let q = a.realloc(z, l, 900);
        assert_eq!(q as usize % 128, 0);
        let r = a.realloc(q, layout(900, 128), 5000);
        assert_eq!(r as usize % 128, 0);
        let s = a.realloc(r, layout(5000, 128), 100);
        let bytes = std::slice::from_raw_parts(s, 100);
        assert!(bytes.iter().enumerate().all(|(i, &b)| b == i as u8));
        a.dealloc(s, layout(100, 128));
        // Not pooled: plain malloc alignment passes through.
        let m = a.alloc(layout(100, 8));
        let m = a.realloc(m, layout(100, 8), 100_000);
        a.dealloc(m, layout(100_000, 8));
    }
}
