//! `lanco-gen OUTDIR`: writes the man pages and shell completions of `lanco`
//! for packaging (packaging/build-deb.sh). Not installed.
//!
//! OUTDIR/man/lanco.1, OUTDIR/man/lanco-COMMAND.1 (one per command),
//! OUTDIR/man/lanco.toml.5: generated from the clap definition, with the
//! examples, files and environment `lanco_client`'s manual module adds.
//! OUTDIR/completions/lanco.bash, _lanco (zsh), lanco.fish: small scripts
//! that ask `lanco __complete` for the candidates, so namespaces, task names
//! and signals complete, and new options without regenerating them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const COMPLETIONS: [(&str, &str); 3] = [
    ("lanco.bash", include_str!("../../completions/lanco.bash")),
    ("_lanco", include_str!("../../completions/_lanco")),
    ("lanco.fish", include_str!("../../completions/lanco.fish")),
];

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
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    for (name, page) in lanco_client::man_pages() {
        std::fs::write(man.join(name), page)?;
    }
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (name, script) in COMPLETIONS {
        std::fs::write(completions.join(name), script)?;
    }
    Ok(())
}
