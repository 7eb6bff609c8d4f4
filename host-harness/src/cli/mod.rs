//! The `host-harness` command: a thin layer over the library.

/// `host-harness demo`: the config-bridge story in simulated Kong nodes.
pub mod demo;
/// `--request`/`--response` specs and how `run` prints an exchange.
pub mod request;
/// `host-harness run`: a filter in simulated nodes.
pub mod run;
/// `host-harness serve`: a mock on a TCP port.
pub mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "host-harness",
    version,
    about = "Run proxy-wasm filters without a gateway"
)]
/// The command line.
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a filter in a simulated world and print its logs and calls.
    Run(run::RunArgs),
    /// Serve a mock (S3, GCS, Kong Admin API) on a TCP port for real clients.
    #[command(subcommand)]
    Serve(serve::ServeCommand),
    /// The config-bridge demos: debounced exports to mock S3 with a failure retried; `demo
    /// fallback`: import on a fallback node whose CP is down.
    Demo(demo::DemoArgs),
    /// Compile a module and check that the harness provides every import it needs.
    Inspect {
        /// The .wasm file.
        wasm: std::path::PathBuf,
    },
}

/// Runs the CLI; returns the process exit code.
pub fn main_with(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Serve(cmd) => serve::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Inspect { wasm } => {
            let module = crate::PluginModule::load(&wasm)?;
            println!(
                "{}: {} bytes, proxy-wasm ABI {:?}",
                wasm.display(),
                module.size_bytes,
                module.abi
            );
            let imports = module.imports();
            println!("{} imports, all provided by the harness:", imports.len());
            for i in imports {
                println!("  {i}");
            }
            Ok(0)
        }
    }
}
