fn main() -> std::process::ExitCode {
    lanco_client::cli::main()
}
