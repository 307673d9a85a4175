//! The `vtepd` binary: see `vtepd --help`.

fn main() -> std::process::ExitCode {
    vtepd::cli::main_entry()
}
