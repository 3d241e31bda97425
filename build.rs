//! Link-time layout of the `balance` binary (Linux/glibc), for a small idle
//! RSS: every instance maps, file-backed, the code pages it touches in 64 KiB
//! windows (or whole page-cache folios), so what counts is where the code
//! that runs lies, not how much code there is.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/hot-text.txt");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let libc = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || libc != "gnu" {
        return;
    }
    // Not packed relative relocations (`-z pack-relative-relocs`, 160 KiB
    // less for the loader to read at start): they need glibc 2.36, and a
    // binary built on Debian 12 otherwise runs on glibc 2.34 (RHEL 9,
    // Ubuntu 22.04), where balance must stay a drop-in.
    if env::var("PROFILE").as_deref() == Ok("release") {
        hot_text();
    }
}

/// Puts the functions listed in build/hot-text.txt (those that run from
/// start to idle and per connection; contrib/dev/hot-text.py writes the
/// list) together in front of the rest of the code, with a linker script
/// that only inserts one output section (GNU ld and lld). A listed name the
/// build no longer has matches nothing.
fn hot_text() {
    let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let Ok(list) = fs::read_to_string(Path::new(&dir).join("build/hot-text.txt")) else {
        return;
    };
    // The C start files' code (`_start`, `frame_dummy`) runs first of all.
    let mut script = String::from(
        "SECTIONS {\n  .text.hot : {\n    *crt1.o(.text)\n    *crti.o(.text)\n    *crtbegin*.o(.text)\n",
    );
    for name in list.split_whitespace() {
        let Some(name) = section_pattern(name) else {
            continue;
        };
        let _ = writeln!(script, "    *(.text.{name} .text.unlikely.{name})");
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("hot-text.ld");
    fs::write(&out, script).expect("write hot-text.ld");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", out.display());
}

/// A symbol (in the list, `17h*E*` stands for any legacy-mangling hash) as a
/// section-name pattern: the suffix ThinLTO adds to promoted
/// local symbols (`.llvm.<module hash>`) and v0 mangling's crate hash
/// (`Cs<hash>_`, e.g. std's) change between builds and toolchains, so they
/// become wildcards. None for a name a linker script would misread.
fn section_pattern(name: &str) -> Option<String> {
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_$.*".contains(c))
    {
        return None;
    }
    let name = match name.find(".llvm.") {
        Some(i) => format!("{}.llvm.*", &name[..i]),
        None => name.to_string(),
    };
    let mut out = String::with_capacity(name.len());
    let mut rest = name.as_str();
    while let Some(i) = rest.find("Cs") {
        out.push_str(&rest[..i + 2]);
        rest = &rest[i + 2..];
        let id = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
        if name.starts_with("_R") && id > 0 && rest.as_bytes().get(id) == Some(&b'_') {
            out.push('*');
            rest = &rest[id..];
        }
    }
    out.push_str(rest);
    Some(out)
}
