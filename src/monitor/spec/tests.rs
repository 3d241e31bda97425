use super::*;

#[test]
fn placeholders_are_substituted_per_argv_element() {
    assert_eq!(
        substitute("%H:%P/%G/%C %%", "10.0.0.1", 80, 1, 2),
        "10.0.0.1:80/1/2 %"
    );
}
