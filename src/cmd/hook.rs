//! `claudemesh hook <event>`: hand the hook to `crate::hook`, which never fails the session.

use std::process::ExitCode;

use crate::cli::HookArgs;

pub fn run(args: HookArgs) -> ExitCode {
    crate::hook::run(args.event.as_deref())
}
