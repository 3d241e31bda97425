//! A tiny tagged echo backend for trying balance out: it writes its name and
//! a newline to every client, then echoes what it receives.
//!
//!     cargo run --example backend -- 127.0.0.1:9001 A

use std::io::{Read, Write};
use std::net::TcpListener;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(name)) = (args.next(), args.next()) else {
        eprintln!("usage: backend ADDR NAME");
        std::process::exit(64);
    };
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("backend: cannot listen on {addr}: {e}");
            std::process::exit(71);
        }
    };
    eprintln!("backend {name} listening on {addr}");
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let name = name.clone();
        std::thread::spawn(move || {
            let _ = writeln!(s, "{name}");
            let mut buf = [0u8; 16384];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
}
