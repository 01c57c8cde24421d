fn main() -> std::process::ExitCode {
    sqlguard::cli::main()
}
