//! The per-task monitor; started by `lanco run` (or the library), never by hand.
fn main() -> std::process::ExitCode {
    lanco_client::monitor::main()
}
