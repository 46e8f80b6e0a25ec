//! `lanco-gen OUTDIR`: writes the man pages and shell completions of `lanco`,
//! generated from its clap definition, for packaging (packaging/build-deb.sh).
//! Not installed.
//!
//! OUTDIR/man/lanco.1, OUTDIR/man/lanco-SUBCOMMAND.1, ...
//! OUTDIR/completions/lanco.bash, _lanco (zsh), lanco.fish

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

const BIN: &str = "lanco";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: lanco-gen OUTDIR");
        return ExitCode::from(2);
    };
    match generate(&PathBuf::from(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanco-gen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path) -> std::io::Result<()> {
    let cmd = lanco_client::cli_command().name(BIN).bin_name(BIN);

    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    // One page per (sub)command: lanco.1, lanco-run.1, ...
    clap_mangen::generate_to(cmd.clone(), &man)?;

    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut c = cmd.clone();
        clap_complete::generate_to(shell, &mut c, BIN, &completions)?;
    }
    Ok(())
}
