fn main() {
    std::process::exit(corecached::run());
}
