//! The `tenantry` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    tenantry::cli::main()
}
