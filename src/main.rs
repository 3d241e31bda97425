//! Thin entry point: parse → run → exit code.

use std::process::ExitCode;

use balance::{Exit, Invocation, Parsed};

/// glibc's malloc, with tokio's 128-aligned task and socket blocks pooled
/// (see `sys::alloc`: about 500 bytes less per idle connection).
#[global_allocator]
static ALLOC: balance::PoolAlloc = balance::PoolAlloc::new();

fn main() -> ExitCode {
    run().into()
}

fn run() -> Exit {
    let inv = match balance::parse_args(std::env::args_os()) {
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            return Exit::Ok;
        }
        Ok(Parsed::Invocation(i)) => *i,
        Err(e) => return fail(Exit::Usage, &e.0),
    };
    let res = match inv {
        Invocation::Control(a) => return balance::run_client(&a),
        Invocation::Run(cfg) => balance::run(cfg),
        Invocation::ConfigFile {
            path,
            check,
            global,
        } => balance::run_file(&path, check, &global),
    };
    match res {
        Ok(()) => Exit::Ok,
        Err(f) => fail(f.exit(), &f.to_string()),
    }
}

fn fail(exit: Exit, msg: &str) -> Exit {
    eprintln!("balance: {msg}");
    // Started by `upgrade`: the running process answers with this.
    balance::report_failure(msg);
    exit
}
