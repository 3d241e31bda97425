use super::*;

#[test]
fn the_columns_are_haproxys_first_103_in_order() {
    assert_eq!(COLUMNS.len(), 103);
    let at = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
    // The positions tools index by (prometheus-haproxy-exporter, hatop).
    assert_eq!(at("status"), 17);
    assert_eq!(at("weight"), 18);
    assert_eq!(at("iid"), 27);
    assert_eq!(at("sid"), 28);
    assert_eq!(at("type"), 32);
    assert_eq!(at("check_status"), 36);
    assert_eq!(at("addr"), 73);
    assert_eq!(at("agg_check_status"), 102);
}

#[test]
fn info_is_name_colon_value_and_typed_numbers_its_fields() {
    let i = Info {
        version: version("1.2.3"),
        pid: 7,
        uptime: Duration::from_secs(90_061),
        threads: 1,
        nofile: 1024,
        maxconn: 480,
        curr_conns: 2,
        cum_conns: 9,
        pipes_used: 1,
        pipes_free: 3,
        tasks: 5,
        run_queue: 0,
        node: "h".into(),
    };
    let text = info(&i, false);
    assert!(
        text.starts_with("Name: HAProxy\nVersion: 2.6.0-balance-1.2.3\n"),
        "{text}"
    );
    assert!(text.contains("\nUptime: 1d 1h01m01s\n"), "{text}");
    assert!(text.contains("\nMaxpipes: 4\n"), "{text}");
    let typed = info(&i, true);
    assert!(
        typed.starts_with("0.Name.1:POS:str:HAProxy\n1.Version.1:POS:str:2.6.0-balance-1.2.3\n")
    );
}
