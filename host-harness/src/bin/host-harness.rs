//! The `host-harness` command: a thin layer over `host_harness::cli` (host-harness/README.md).

use clap::Parser;

fn main() {
    let cli = host_harness::cli::Cli::parse();
    match host_harness::cli::main_with(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("host-harness: {e:#}");
            std::process::exit(2);
        }
    }
}
