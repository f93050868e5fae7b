//! The `claudemesh-broker` binary: everything is in [`claudemesh_broker::cli`], which
//! `claudemesh broker …` runs too.

fn main() -> std::process::ExitCode {
    claudemesh_broker::cli::main_with(std::env::args_os())
}
