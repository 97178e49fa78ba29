//! The `wgsparse` command line: parses the arguments and runs the command
//! (one module per command under `cli/`).

mod cli;

use clap::Parser;

fn main() {
    if let Err(e) = cli::run(cli::Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
