//! The `scalecast` binary; everything lives in the library (see `lib.rs`).

fn main() -> std::process::ExitCode {
    scalecast::cli::main()
}
