//! `cargo run -p strata -- ARGS` from a checkout: runs the `strata` command line.
//!
//! The command line lives in its own crate (`cli/`, package `strata-cli`, binary `strata`) so
//! that the `strata` library a node embeds compiles no CLI, plotting or Stellar dependency.
//! This launcher, which uses only `std`, keeps the README's `cargo run -p strata -- ...`
//! working: it asks the cargo that started it to build and run the real binary with the same
//! profile and arguments. Outside a `cargo run`, install and run `strata` from `strata-cli`.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    // `cargo run` exports the path of the cargo binary that runs us.
    let Some(cargo) = std::env::var_os("CARGO") else {
        eprintln!(
            "strata-run only forwards `cargo run -p strata -- ARGS`; \
             run the `strata` binary of the `strata-cli` package instead"
        );
        return ExitCode::from(2);
    };
    let mut command = Command::new(cargo);
    command.args(["run", "-p", "strata-cli", "--bin", "strata"]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    command.arg("--").args(std::env::args_os().skip(1));
    match command.status() {
        Ok(status) => match status.code() {
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            None => ExitCode::from(1),
        },
        Err(e) => {
            eprintln!("strata-run: could not start cargo: {e}");
            ExitCode::from(2)
        }
    }
}
