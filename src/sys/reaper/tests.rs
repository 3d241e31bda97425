use super::*;

#[test]
fn parent_of_reads_the_field_after_the_last_parenthesis() {
    assert_eq!(parent_of("42 (sleep) S 7 42 42 0"), Some(7));
    assert_eq!(parent_of("42 (a) b (c) S 9 1 1"), Some(9));
    assert_eq!(parent_of("42 (x"), None);
    assert_eq!(parent_of(""), None);
}

#[test]
fn our_children_include_a_spawned_process() {
    let mut c = std::process::Command::new("/bin/sleep")
        .arg("5")
        .spawn()
        .expect("spawn sleep");
    let found = children().contains(&c.id());
    let _ = c.kill();
    let _ = c.wait();
    assert!(found);
}
