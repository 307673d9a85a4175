//! The daemon's and the client's one error type: what failed, and so which exit status the
//! process gets (2 for bad usage or configuration, 1 for a runtime failure).

use std::fmt;

/// Why a command failed, and so which exit status it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Bad usage or bad configuration: exit status 2.
    Usage(String),
    /// A runtime failure: exit status 1.
    Runtime(String),
}

impl Failure {
    /// The process exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }
    /// The message (one line).
    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Runtime(m) => m,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Failure {}

impl From<crate::config::ConfigError> for Failure {
    fn from(e: crate::config::ConfigError) -> Failure {
        Failure::Usage(e.to_string())
    }
}
