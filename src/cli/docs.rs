//! `vtepd completions SHELL` and `vtepd man`: shell completion scripts (`clap_complete`) and
//! manual pages (`clap_mangen`), both generated from the clap definitions of the binary that
//! prints them, so they can never describe other flags than the ones it takes. Packages run
//! these at build time (`scripts/dist.sh`) rather than shipping generated files in the
//! repository.

use super::Cli;
use crate::error::Failure;
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

/// `vtepd completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print a completion script for.
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

/// `vtepd man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page (vtepd.1, and vtepd-run.1, vtepd-fdb-show.1, ... for each subcommand)
    /// into this directory (created if missing) instead of printing vtepd.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// The command tree the pages and scripts describe (no `help` subcommand: every page has
/// `--help`).
fn command() -> clap::Command {
    Cli::command().disable_help_subcommand(true)
}

/// Prints the completion script for `a.shell`.
pub fn completions(a: &CompletionsArgs) -> Result<(), Failure> {
    let mut cmd = command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "vtepd", &mut script);
    print(&script)
}

/// Prints vtepd(1), or writes every page into `a.out_dir`.
pub fn man(a: &ManArgs) -> Result<(), Failure> {
    let Some(dir) = &a.out_dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command())
            .render(&mut page)
            .map_err(|e| Failure::Runtime(format!("cannot render the manual page: {e}")))?;
        return print(&page);
    };
    let fail = |what: &str, e: std::io::Error| {
        Failure::Runtime(format!("cannot {what} {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("create", e))?;
    clap_mangen::generate_to(command(), dir).map_err(|e| fail("write the manual pages into", e))
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) is not an error.
fn print(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => {
            Err(Failure::Runtime(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}
