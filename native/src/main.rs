//! `config-bridge`: the native tool over the filter's sans-IO core (native/README.md). The core
//! builds and signs every request, parses every answer, validates documents and runs the export
//! and import state machines; this binary adds a command line, the wall clock, a file system
//! and real HTTP (ureq).

mod args;
mod aws_files;
mod cmd;
mod driver;
mod entities;
mod entity_diff;
mod http;
mod outcome;
mod pick;
mod settings;
mod shared;
mod storage;
mod time;
mod transfer;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    // clap exits by itself: 0 for --help, 2 for a usage error.
    let cli = Cli::parse();
    let command = &cli.command;
    let result = match command {
        Command::Import(a) => cmd::import::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Drill(a) => cmd::drill::run(a),
        Command::Status(a) => cmd::status::run(a),
        Command::History(a) => cmd::history::run(a),
        Command::Diff(a) => cmd::diff::run(a),
    };
    let outcome = match result {
        Ok(o) | Err(o) => o,
    };
    outcome.print(command.name(), command.common().json);
    ExitCode::from(outcome.exit.code())
}
