//! Thin entry point: parse → run → exit code.

use std::process::ExitCode;

use balance::cli::{self, EXIT_USAGE, Invocation, Parsed};

fn main() -> ExitCode {
    let parsed = match cli::parse(std::env::args_os()) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_USAGE, &e.0),
    };
    let inv = match parsed {
        Parsed::Print(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Parsed::Invocation(i) => *i,
    };
    match inv {
        Invocation::Run(cfg) => match balance::app::run(cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => fail(f.code, &f.msg),
        },
        Invocation::Control(a) => {
            ExitCode::from(u8::try_from(balance::control::client::run(&a)).unwrap_or(1))
        }
        Invocation::ConfigFile {
            path,
            check,
            global,
        } => match balance::app::run_file(&path, check, &global) {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => fail(f.code, &f.msg),
        },
    }
}

fn fail(code: i32, msg: &str) -> ExitCode {
    eprintln!("balance: {msg}");
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
