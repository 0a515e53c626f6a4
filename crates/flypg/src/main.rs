//! The `flypg` binary; everything is in the library (see [`flypg::main`]).

fn main() -> std::process::ExitCode {
    flypg::main()
}
