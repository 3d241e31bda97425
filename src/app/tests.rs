use super::*;
use crate::exit::Exit;

#[test]
fn config_errors_exit_64_and_os_errors_71_with_the_message_as_is() {
    let c = Fatal::Config("f.yaml: line 3: bad".into());
    assert_eq!(
        (c.exit(), c.to_string().as_str()),
        (Exit::Usage, "f.yaml: line 3: bad")
    );
    let o = Fatal::Os("cannot listen on 127.0.0.1:1: in use".into());
    assert_eq!(o.exit(), Exit::OsErr);
}

#[test]
fn a_reload_summary_counts_each_kind_of_change() {
    let s = plan::Summary {
        added: 1,
        removed: 2,
        changed: 3,
        same: 4,
    };
    assert_eq!(s.to_string(), "1 added, 2 removed, 3 changed, 4 unchanged");
}
