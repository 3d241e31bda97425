use super::*;

#[test]
fn services_file_lines_are_parsed_with_aliases() {
    let t = parse_services("http 80/tcp www # web\nfoo 7/udp\n\nmysql\t3306/tcp\nbad x/tcp\n");
    assert_eq!(
        t,
        vec![
            ("http".to_string(), 80),
            ("www".to_string(), 80),
            ("mysql".to_string(), 3306)
        ]
    );
}

#[test]
fn ports_are_numbers_or_names() {
    assert_eq!(parse_port("8080"), Ok(8080));
    assert_eq!(parse_port("65535"), Ok(65535));
    assert!(parse_port("0").is_err());
    assert!(parse_port("65536").is_err());
    assert!(parse_port("99999999999999").is_err());
    assert!(parse_port("").is_err());
    assert!(parse_port("no-such-service-here").is_err());
    if std::path::Path::new(SERVICES_FILE).exists() {
        assert_eq!(parse_port("mysql"), Ok(3306));
    }
}
