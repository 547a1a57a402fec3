//! The `steward` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    steward::cli::run()
}
