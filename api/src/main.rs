//! The `pds` binary: `pds serve` (default) and operator tools (`pds car ...`).

fn main() -> std::process::ExitCode {
    api::cli::main()
}
