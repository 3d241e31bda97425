//! The integration tests, one test binary (`cargo test --test integration`):
//! the harness in `common/` and every `tests/*.rs` file, each a module named
//! after its file, are compiled once and linked once. `autotests = false`
//! in Cargo.toml keeps cargo from making a binary of each file, so a new
//! file is listed here (`mod NAME;`); `self_check::every_file_is_a_module`
//! fails while one is not.
//!
//! One file's tests: `cargo test --test integration NAME::` (a filter, so
//! `ops::` also picks `fleet_ops::`; `contrib/test.sh --test NAME` runs
//! exactly one file). Tests run `--test-threads` at a time across all
//! files; tests that must not overlap another heavy one take
//! `common::fleet::serial()`.

mod common;

mod config;
mod connlog;
mod control;
mod core;
mod docs;
mod fleet;
mod fleet_etcd;
mod fleet_fence;
mod fleet_ops;
mod fleet_secure;
mod fleet_switchover;
mod haproxy_socket;
mod monitor;
mod mysql;
mod on_demand;
mod operator;
mod ops;
mod proxy_protocol;
mod relay;
mod reliability;
mod route;
mod tunnel;
mod upgrade;

mod self_check {
    /// Every `tests/*.rs` is a module of this binary: with `autotests =
    /// false` a file not listed in main.rs would be silently not compiled.
    #[test]
    fn every_file_is_a_module() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        let main = std::fs::read_to_string(dir.join("main.rs")).expect("read tests/main.rs");
        let mut missing = Vec::new();
        for e in std::fs::read_dir(&dir).expect("read tests/") {
            let name = e
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let Some(module) = name.strip_suffix(".rs") else {
                continue;
            };
            if module != "main" && !main.lines().any(|l| l.trim() == format!("mod {module};")) {
                missing.push(name);
            }
        }
        assert!(
            missing.is_empty(),
            "tests/main.rs lacks `mod NAME;` for {missing:?}: these files are not compiled"
        );
    }
}
