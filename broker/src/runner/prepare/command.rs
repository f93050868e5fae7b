//! `command` sources: an executable on the broker host, taken as it is (broker admins only);
//! nothing to fetch or build.

use std::path::Path;

use super::step::{StepCtx, is_executable};
use super::{Entry, PrepareError};

const STEP: &str = "command";

/// `argv[0]` made absolute (found on PATH when it is a bare name) and the rest as it is.
pub(crate) fn prepare(ctx: &StepCtx, argv: &[String]) -> Result<Entry, PrepareError> {
    let program = argv.first().ok_or_else(|| ctx.error(STEP, "the command is empty", Vec::new()))?;
    let resolved = if Path::new(program).is_absolute() {
        if !is_executable(Path::new(program)) {
            return Err(ctx.error(STEP, format_args!("`{program}` is not an executable file"), Vec::new()));
        }
        program.clone()
    } else if program.contains('/') {
        return Err(ctx.error(
            STEP,
            format_args!("`{program}` must be an absolute path or a program name found on PATH"),
            Vec::new(),
        ));
    } else {
        let found = ctx
            .which(program)
            .ok_or_else(|| ctx.error(STEP, format_args!("`{program}` was not found on PATH"), Vec::new()))?;
        super::path_string(ctx, STEP, &found)?
    };
    let mut full = vec![resolved];
    full.extend(argv[1..].iter().cloned());
    Ok(Entry { argv: full, ..Entry::default() })
}
