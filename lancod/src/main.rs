//! lancod: serve the helper socket (default), re-create every registered
//! namespace (`lancod restore`) and start the members' enabled definitions
//! (`lancod start-enabled`, also part of `restore`), or end every task
//! (`lancod stop-all`).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lanco_proto::Config;
use lancod::error::StartError;
use lancod::{boot, namespace, server};

#[derive(Parser)]
#[command(
    version,
    about = "lanco's privileged helper (socket-activated; exits when idle)"
)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the helper socket (the default).
    Serve,
    /// Re-create the cgroups and directories of every registered namespace
    /// (they vanish at reboot), then start every member's enabled
    /// definitions as `start-enabled` does. Safe to run at any time; lancod
    /// must be serving its socket for the tasks.
    Restore {
        /// Only the namespaces: start no task (upgrades, administrators;
        /// under systemd lanco-enabled.service starts the tasks)
        #[arg(long)]
        no_tasks: bool,
    },
    /// Start, as each member, the member's enabled definitions (`lanco NS
    /// start --enabled`), all at once, waiting at most 5 minutes; skipped,
    /// with one line saying why, where `defs.toml` or its directory is not
    /// the member's alone, or the user is no longer a member. A task that
    /// fails to start is logged, not an error. ExecStart of
    /// lanco-enabled.service.
    StartEnabled,
    /// End every task of every namespace, each as `lanco NS stop` would
    /// (its exit record says "stopped"); kill what is left after TIMEOUT
    /// seconds. ExecStop of lanco-tasks.service.
    StopAll {
        #[arg(long, value_name = "SECS", default_value_t = 20)]
        timeout: u64,
    },
    /// Sample every member's cgroup counters (CPU, memory peak, io) into
    /// root's billing journal, {state_dir}/billing/usage.jsonl.
    /// ExecStart of lanco-account.service, which lanco-account.timer runs
    /// every 15 minutes; run it from cron without systemd.
    Account,
    /// The records and logs of destroyed namespaces (root only). `destroy`
    /// keeps a namespace's state directory (exit records, accounting
    /// journals, definitions) and its logs, under the same name NS-STAMP,
    /// in {state_dir}/destroyed/ and {log_dir}/lanco.destroyed/, which only
    /// root can enter.
    Destroyed {
        #[command(subcommand)]
        what: Option<DestroyedCmd>,
    },
}

#[derive(Subcommand)]
enum DestroyedCmd {
    /// Each kept NS-STAMP, oldest first: when it was destroyed, and where
    /// its records and logs are (the default).
    List,
    /// Every file kept of KEPT, with owner, mode and size: read them there
    /// (e.g. `cat …/user-UID/accounting.jsonl`).
    Show {
        /// NS-STAMP as `list` shows it, or NS for every one of that namespace.
        kept: String,
    },
    /// Removes KEPT's records and logs for good.
    Remove {
        /// NS-STAMP as `list` shows it, or NS for every one of that namespace.
        kept: String,
    },
}

fn init_logging() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("LANCOD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Under systemd, stderr is already the journal; use its native protocol
    // so the span fields (peer uid and pid) arrive as journal fields.
    let journald = std::env::var_os("JOURNAL_STREAM")
        .is_some()
        .then(|| tracing_journald::layer().ok())
        .flatten();
    let registry = tracing_subscriber::registry().with(filter);
    match journald {
        Some(j) => registry.with(j).init(),
        None => {
            use std::io::IsTerminal;
            let fmt = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal());
            registry.with(fmt).init()
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    match run(args.cmd.unwrap_or(Cmd::Serve)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: to stderr, or to the journal under systemd.
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Every member's enabled definitions of `namespaces`, as that member.
fn start_enabled(
    cfg: &Config,
    layout: &lanco_proto::Layout,
    namespaces: Vec<(lanco_proto::NamespaceName, namespace::Record)>,
) {
    let lanco = match boot::lanco_path(cfg) {
        Ok(l) => l,
        Err(e) => return tracing::error!("{e}; enabled tasks not started"),
    };
    let members = namespaces
        .iter()
        .flat_map(|(ns, rec)| boot::members(layout, ns, rec))
        .collect();
    let failed = boot::start(members, &lanco, boot::DEADLINE);
    if failed > 0 {
        tracing::warn!("enabled tasks of {failed} member(s) did not all start; see above");
    }
}

fn registered_names(
    layout: &lanco_proto::Layout,
) -> Result<Vec<lanco_proto::NamespaceName>, StartError> {
    Ok(namespace::registered(layout)?
        .into_iter()
        .map(|(ns, _)| ns)
        .collect())
}

fn destroyed(layout: &lanco_proto::Layout, what: DestroyedCmd) -> Result<(), StartError> {
    use lancod::destroyed::{self, Kept};
    let when = |k: &Kept| {
        k.destroyed_at()
            .map_or_else(|| "?".into(), lanco_proto::time::utc)
    };
    let place = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or_else(|| "-".into(), |p| p.display().to_string())
    };
    match what {
        DestroyedCmd::List => {
            let all = destroyed::list(layout)?;
            if all.is_empty() {
                eprintln!(
                    "nothing kept: no namespace has been destroyed (or what was kept was removed)"
                );
            }
            for k in &all {
                println!("{}  destroyed {}", k.name, when(k));
                println!("    records: {}", place(&k.state));
                println!("    logs:    {}", place(&k.logs));
            }
        }
        DestroyedCmd::Show { kept } => {
            for k in destroyed::select(layout, &kept)? {
                println!("{}  destroyed {}", k.name, when(&k));
                for f in destroyed::files(&k)? {
                    let slash = if f.kind == "a directory" { "/" } else { "" };
                    println!(
                        "{:04o} {:<12} {:>10}  {}{slash}",
                        f.mode,
                        lanco_proto::files::user_name(f.owner),
                        f.size,
                        f.path.display()
                    );
                }
            }
        }
        DestroyedCmd::Remove { kept } => {
            for k in destroyed::select(layout, &kept)? {
                destroyed::remove(&k)?;
                println!("removed {}", k.name);
            }
        }
    }
    Ok(())
}

/// Serves the socket; the configuration is looked at again at each request
/// (`server::LiveContext`).
fn serve() -> Result<(), StartError> {
    let (live, cfg) = server::LiveContext::load()?;
    let listener = server::listener(&cfg.socket)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
        .map_err(StartError::Runtime)?;
    rt.block_on(server::serve(
        listener,
        live,
        Duration::from_secs(cfg.idle_timeout),
    ))
    .map_err(StartError::Runtime)
}

fn run(cmd: Cmd) -> Result<(), StartError> {
    if let Cmd::Serve = cmd {
        return serve();
    }
    // The other commands read the configuration once.
    let cfg = Config::load()?;
    let ctx = server::Context::from_config(&cfg)?;
    match cmd {
        Cmd::Serve => serve(), // (above)
        Cmd::Restore { no_tasks } => {
            let mut failed = 0;
            let mut restored = Vec::new();
            for (ns, rec) in namespace::registered(&ctx.layout)? {
                match namespace::apply(&ctx.layout, &ns, &rec) {
                    Ok(_) => {
                        tracing::info!(%ns, owner = rec.owner, group = rec.group, "restored");
                        restored.push((ns, rec));
                    }
                    Err(e) => {
                        failed += 1;
                        tracing::error!(%ns, "restore failed: {e}");
                    }
                }
            }
            if !no_tasks {
                // A task that does not start is logged, not the restore's
                // failure.
                start_enabled(&cfg, &ctx.layout, restored);
            }
            if failed > 0 {
                return Err(StartError::Restore(failed));
            }
            Ok(())
        }
        Cmd::Account => {
            let n = lancod::billing::all(
                &ctx.layout,
                ctx.admin_gid,
                &registered_names(&ctx.layout)?,
                lanco_proto::billing::UsageEvent::Sample,
            )?;
            tracing::info!(members = n, "billing sample taken");
            Ok(())
        }
        Cmd::Destroyed { what } => destroyed(&ctx.layout, what.unwrap_or(DestroyedCmd::List)),
        Cmd::StartEnabled => {
            start_enabled(&cfg, &ctx.layout, namespace::registered(&ctx.layout)?);
            Ok(())
        }
        Cmd::StopAll { timeout } => {
            let t0 = std::time::Instant::now();
            let stopped = lancod::stop_all::stop_all(&ctx.layout, Duration::from_secs(timeout));
            // The last counters before a shutdown, whatever the stop's result.
            let sampled = registered_names(&ctx.layout).and_then(|names| {
                Ok(lancod::billing::all(
                    &ctx.layout,
                    ctx.admin_gid,
                    &names,
                    lanco_proto::billing::UsageEvent::StopAll,
                )?)
            });
            if let Err(e) = sampled {
                tracing::error!("billing sample failed: {e}");
            }
            let n = stopped?;
            tracing::info!(
                monitors = n,
                "stop-all: every task ended in {} ms",
                t0.elapsed().as_millis()
            );
            Ok(())
        }
    }
}
