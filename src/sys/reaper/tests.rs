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

#[test]
fn state_of_reads_the_field_after_the_last_parenthesis() {
    assert_eq!(state_of("42 (a) Z (b) S 9 1 1"), Some('S'));
    assert_eq!(state_of("42 (sleep) Z 7"), Some('Z'));
    assert_eq!(state_of("42 (x"), None);
}

#[test]
fn a_child_with_the_mark_is_spared_one_without_is_killed_one_with_none_rechecked() {
    let mark = format!("{ON_DEMAND_ENV}={}", std::process::id());
    let mut marked = std::process::Command::new("/bin/sleep")
        .arg("5")
        .env(ON_DEMAND_ENV, std::process::id().to_string())
        .spawn()
        .expect("spawn sleep");
    let mut plain = std::process::Command::new("/bin/sleep")
        .arg("5")
        .env_remove(ON_DEMAND_ENV)
        .spawn()
        .expect("spawn sleep");
    let mut bare = std::process::Command::new("/bin/sleep")
        .arg("5")
        .env_clear()
        .spawn()
        .expect("spawn sleep");
    // spawn returns once the exec is under way; until the kernel has set
    // the new environment up, it reads empty (what `Unsure` is for).
    for c in [&marked, &plain] {
        for _ in 0..200 {
            match std::fs::read(format!("/proc/{}/environ", c.id())) {
                Ok(e) if e.is_empty() => std::thread::sleep(std::time::Duration::from_millis(10)),
                _ => break,
            }
        }
    }
    let spared = fate(marked.id(), mark.as_bytes());
    let killed = fate(plain.id(), mark.as_bytes());
    let unsure = fate(bare.id(), mark.as_bytes());
    let _ = marked.kill();
    let _ = plain.kill();
    let _ = bare.kill();
    let _ = bare.wait();
    // Dead and not yet reaped: reap only (SIGKILL is delivered at once;
    // the bound is only a guard against a stuck test).
    let mut dead = Fate::Kill;
    for _ in 0..200 {
        dead = fate(plain.id(), mark.as_bytes());
        if dead == Fate::Reap {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = marked.wait();
    let _ = plain.wait();
    assert_eq!(spared, Fate::Spare);
    assert_eq!(killed, Fate::Kill);
    assert_eq!(unsure, Fate::Unsure);
    assert_eq!(dead, Fate::Reap);
}
