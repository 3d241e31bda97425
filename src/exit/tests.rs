use super::*;

#[test]
fn codes_are_the_documented_sysexits() {
    let table = [
        (Exit::Ok, 0),
        (Exit::Failure, 1),
        (Exit::Usage, 64),
        (Exit::Unavailable, 69),
        (Exit::OsErr, 71),
    ];
    for (e, code) in table {
        assert_eq!(e.code(), code, "{e:?}");
    }
}
