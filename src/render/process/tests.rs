use super::*;

#[test]
fn stat_fields_are_read_after_a_command_name_with_spaces_and_parens() {
    let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 123456789 300 18446744073709551615";
    let v = parse_stat(stat, 1_700_000_000, 100, 4096).unwrap();
    assert_eq!(v.cpu_seconds, 3.0);
    assert_eq!(v.start_time, 1_700_000_010.0);
    assert_eq!(v.virtual_bytes, 123_456_789);
    assert_eq!(v.resident_bytes, 300 * 4096);
    assert!(parse_stat("42 (x) S 1", 0, 100, 4096).is_none());
    assert_eq!(
        boot_time("cpu 1 2\nbtime 1700000000\n"),
        Some(1_700_000_000)
    );
}

#[test]
fn this_process_reads_sensible_values() {
    let v = ProcessView::now().expect("/proc/self");
    assert!(v.resident_bytes > 0 && v.virtual_bytes >= v.resident_bytes);
    assert!(v.open_fds >= 3 && v.max_fds >= v.open_fds);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        v.start_time > now - 3600.0 && v.start_time <= now + 1.0,
        "{v:?}"
    );
}
