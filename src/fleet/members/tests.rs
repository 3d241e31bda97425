use super::*;

fn kv(key: &str, value: &str) -> Kv {
    Kv {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        create_revision: 1,
        mod_revision: 1,
        lease: 7,
    }
}

#[test]
fn members_decode_from_their_keys_and_values() {
    let v = value("h:12", "follower", 99);
    let m = decode(
        b"/p/svc/db/members/",
        &[
            kv("/p/svc/db/members/h:12", &v),
            kv("/p/svc/db/members/x:1", "not json"),
        ],
    );
    assert_eq!(m.len(), 2);
    assert_eq!(
        (
            m[0].id.as_str(),
            m[0].role.as_str(),
            m[0].pid,
            m[0].since_ms
        ),
        ("h:12", "follower", std::process::id(), 99)
    );
    // A value that does not decode still names its member.
    assert_eq!(
        (m[1].id.as_str(), m[1].role.as_str()),
        ("x:1", "(undecodable)")
    );
}
