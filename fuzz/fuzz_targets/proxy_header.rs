//! The PROXY header parser on any bytes (v1, v2, neither): a header,
//! "incomplete" or an error, never a panic. A complete header never claims
//! more than it was given nor more than the cap; an incomplete one is
//! within the cap (a reader may consume it all and wait); and every prefix
//! of a complete header parses as incomplete. Encoding the addresses it
//! carries and parsing again gives them back.
#![no_main]

use balance::parsers::proxy_header::{Addrs, MAX_HEADER, Parsed, Version, encode, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = data.get(..MAX_HEADER + 64).unwrap_or(data);
    match parse(data) {
        Ok(Parsed::Complete { len, addrs }) => {
            assert!(len <= data.len() && len <= MAX_HEADER);
            for n in 1..len {
                assert_eq!(parse(&data[..n]), Ok(Parsed::Incomplete), "prefix {n}");
            }
            if let Addrs::Tcp { src, dst } = addrs {
                for v in [Version::V1, Version::V2] {
                    let h = encode(v, src, dst);
                    match parse(h.as_bytes()) {
                        Ok(Parsed::Complete {
                            addrs: Addrs::Tcp { src: s, dst: d },
                            ..
                        }) => {
                            assert_eq!(s.port(), src.port());
                            assert_eq!(d.port(), dst.port());
                            assert_eq!(s.ip().to_canonical(), src.ip().to_canonical());
                            assert_eq!(d.ip().to_canonical(), dst.ip().to_canonical());
                        }
                        other => panic!("re-encoded header parsed as {other:?}"),
                    }
                }
            }
        }
        Ok(Parsed::Incomplete) => assert!(data.len() < MAX_HEADER),
        Err(_) => {}
    }
});
