//! `lanco NS accounting` and `lanco --all-namespaces accounting`: which
//! journals a report reads, for whom. The figures come from
//! `crate::accounting`; `accounting_print` writes them out.

use lanco_proto::files::Dir;
use lanco_proto::{cgroupfs, Config, Layout, NamespaceName};

use super::accounting_billing as billing;
use super::accounting_print::{self as print, Format};
use crate::accounting::{self, By, Period};
use crate::cli::AccountingArgs;
use crate::error::{Error, Result};
use crate::namespace::Namespace;

/// `lanco NS accounting`: the runs in the journals of the namespace's
/// members, for a member or root.
pub fn run(ns: &Namespace, args: AccountingArgs) -> Result<u8> {
    let period = period(&args)?;
    let report = accounting::report(
        std::slice::from_ref(ns),
        period,
        args.by.unwrap_or(By::Task),
    )?;
    warn(&report.warnings);
    print::report(&report, Some(ns.name()), format(&args))?;
    Ok(0)
}

/// `lanco --all-namespaces accounting`, for root and the admin group. By
/// user (the default), from root's billing journal, with the members' own
/// records beside where the caller may read them; by task or day, from
/// the records of every namespace the caller may read.
pub fn run_all(config: &Config, args: AccountingArgs) -> Result<u8> {
    let period = period(&args)?;
    if !is_admin(config) {
        return Err(Error::PermissionDenied(
            "--all-namespaces is for root and the admin group (admin_group in lanco.toml)".into(),
        ));
    }
    let layout = Layout::of(config, cgroupfs::resolve_root(&config.cgroup_root)?);
    let by = args.by.unwrap_or(By::User);
    let billing = match by {
        By::User => Some(accounting::read_billing(&layout, period)?),
        _ => None,
    };
    // Root lists them; an administrator, who may not list the state
    // directory, learns them from the billing journal.
    let mut namespaces = if nix::unistd::geteuid().is_root() {
        Dir::open(&layout.ns_state_root())?
            .list()?
            .iter()
            .filter_map(|n| NamespaceName::try_from(n.as_str()).ok())
            .collect()
    } else {
        let usage = match &billing {
            Some(b) => b.usage.clone(),
            None => accounting::read_billing(&layout, Period::default())?.usage,
        };
        usage.into_iter().map(|u| u.namespace).collect::<Vec<_>>()
    };
    namespaces.sort();
    namespaces.dedup();
    // The namespaces whose members' records the caller may read (root:
    // all; an administrator: those of its groups).
    let (readable, closed): (Vec<_>, Vec<_>) = namespaces
        .into_iter()
        .partition(|ns| Dir::open(&layout.ns_state_dir(ns)).is_ok());
    let Some(billing) = billing else {
        for ns in &closed {
            crate::msg::warn(
                "accounting",
                &format_args!(
                    "namespace {ns}: its members' records are not readable to you (not in its \
                     group); its usage per member is in --by user"
                ),
            );
        }
        let report = accounting::report_at(&layout, &readable, period, by)?;
        warn(&report.warnings);
        print::report(&report, None, format(&args))?;
        return Ok(0);
    };
    warn(&billing.warnings);
    let records = accounting::report_at(&layout, &readable, period, By::User)?;
    warn(&records.warnings);
    if let (Some(since), Some(oldest)) = (period.since, billing.oldest_sample) {
        if oldest > since {
            crate::msg::warn(
                "accounting",
                &format_args!(
                    "the billing journal's oldest sample is of {}, after --since: a subtree \
                     made before then counts from its creation",
                    crate::time::utc(oldest)
                ),
            );
        }
    }
    let rows = billing::join(&billing.usage, &records.groups, &readable);
    billing::print(&rows, period, format(&args))?;
    Ok(0)
}

fn period(args: &AccountingArgs) -> Result<Period> {
    let p = Period {
        since: args.since,
        until: args.until,
    };
    if let (Some(s), Some(u)) = (p.since, p.until) {
        if s >= u {
            return Err(Error::InvalidInput(format!(
                "--since ({}) is not before --until ({})",
                crate::time::utc(s),
                crate::time::utc(u)
            )));
        }
    }
    Ok(p)
}

fn format(args: &AccountingArgs) -> Format {
    match (args.json, args.csv) {
        (true, _) => Format::Json,
        (_, true) => Format::Csv,
        _ => Format::Text,
    }
}

fn warn(warnings: &[accounting::JournalWarning]) {
    for w in warnings {
        crate::msg::warn("accounting", w);
    }
}

/// Root, or a member of the configured admin group (effective or
/// supplementary).
pub(super) fn is_admin(config: &Config) -> bool {
    use nix::unistd::{getegid, geteuid, getgroups, Group};
    if geteuid().is_root() {
        return true;
    }
    if config.admin_group.is_empty() {
        return false;
    }
    let Ok(Some(g)) = Group::from_name(&config.admin_group) else {
        return false;
    };
    getegid() == g.gid || getgroups().is_ok_and(|gs| gs.contains(&g.gid))
}
