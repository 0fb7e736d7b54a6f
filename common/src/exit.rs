//! The exit codes every tool uses (DESIGN.md), and errors that carry one.

use std::fmt;

pub const OK: u8 = 0;
pub const ERROR: u8 = 1;
pub const USAGE: u8 = 2;
pub const DEGRADED: u8 = 3;
pub const QUORUM_LOST: u8 = 4;
pub const REFUSED: u8 = 5;
pub const INTEGRITY: u8 = 6;
pub const TIMEOUT: u8 = 7;

/// The table printed in every `--help`.
pub const HELP: &str = "Exit codes: 0 ok, 1 error, 2 usage, 3 degraded, 4 quorum lost, 5 refused, \
6 integrity, 7 timeout.";

/// An error that decides the process exit code; anywhere in an anyhow chain.
#[derive(Debug)]
pub struct Coded {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// `Err(coded(USAGE, "..."))?`
pub fn coded(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded { code, message: message.into() })
}

/// `err`, then the state a procedure leaves after it (`"<err>; <state>"`), with `err`'s code: how
/// a failure midway says what was done and what to do next.
pub fn with_state(err: anyhow::Error, state: impl fmt::Display) -> anyhow::Error {
    coded(code_of(&err), format!("{err:#}; {state}"))
}

/// The code an error carries (the outermost `Coded` in its chain), else 1.
pub fn code_of(err: &anyhow::Error) -> u8 {
    err.chain().find_map(|e| e.downcast_ref::<Coded>()).map_or(ERROR, |c| c.code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn code_survives_context() {
        let e: anyhow::Result<()> = Err(coded(REFUSED, "no"));
        let e = e.context("outer").unwrap_err();
        assert_eq!(code_of(&e), REFUSED);
        assert_eq!(format!("{e:#}"), "outer: no");
        assert_eq!(code_of(&anyhow::anyhow!("plain")), ERROR);
    }
}
