//! One decoded request, answered: authorisation (a pure function, in
//! `auth`), then init, destroy or admission. Each arm re-checks what it
//! relies on; nothing here trusts the peer beyond what the kernel says.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};

use lanco_proto::cgroupfs::CgroupError;
use lanco_proto::limits::{self, Limits};
use lanco_proto::wire::{self, ErrorCode, NamespaceInfo, Request, Response};
use lanco_proto::{Config, Layout, NamespaceName};
use tracing::{info, warn};

use crate::auth::{self, Action, Peer, Verdict};
use crate::billing;
use crate::error::StartError;
use crate::namespace::{self, NsError};
use lanco_proto::billing::UsageEvent;

/// What every request handler needs: paths and the settings lancod reads
/// at start.
pub struct Context {
    pub layout: Layout,
    pub admin_gid: Option<u32>,
    pub user_max_cgroups: u64,
}

impl Context {
    pub fn from_config(cfg: &Config) -> Result<Self, StartError> {
        let cgroup_root = lanco_proto::cgroupfs::resolve_root(&cfg.cgroup_root)?;
        let admin_gid = if cfg.admin_group.is_empty() {
            None
        } else {
            let g = uzers::get_group_by_name(&cfg.admin_group)
                .ok_or_else(|| StartError::NoAdminGroup(cfg.admin_group.clone()))?;
            Some(g.gid())
        };
        Ok(Self {
            layout: Layout::of(cfg, cgroup_root),
            admin_gid,
            user_max_cgroups: cfg.user_max_cgroups,
        })
    }
}

pub(crate) fn err(code: ErrorCode, message: &str) -> Response {
    Response::Error {
        code,
        message: message.to_owned(),
    }
}

fn ns_error(e: NsError) -> Response {
    let code = match &e {
        // What the request names does not exist (exit 5, as the README's
        // table says), not a malformed request.
        NsError::NoUser(_) | NsError::NoGroup(_) => ErrorCode::NotFound,
        // `Busy` on the wire means "lancod is overloaded, try again", which
        // clients retry; a namespace still in use is a conflict of state,
        // answered like one.
        NsError::OwnedByOther { .. } | NsError::Unexpected { .. } | NsError::Busy { .. } => {
            ErrorCode::AlreadyExists
        }
        NsError::NotFound(_) => ErrorCode::NotFound,
        NsError::Cgroup(CgroupError::NoController { .. }) => ErrorCode::Unsupported,
        NsError::NotInGroup { .. } => ErrorCode::InvalidRequest,
        NsError::Cgroup(_)
        | NsError::TaskRoot(_)
        | NsError::File(_)
        | NsError::Several(_)
        | NsError::BadRecord { .. } => ErrorCode::Internal,
    };
    warn!("request failed: {e}");
    err(code, &e.to_string())
}

/// One request, already decoded. Each arm re-checks what it relies on.
pub fn handle(ctx: &Context, peer: &Peer, pidfd: Option<OwnedFd>, req: Request) -> Response {
    match req {
        Request::Init { ns, owner, group } => init(ctx, peer, ns, owner, group, Limits::default()),
        Request::InitLimited {
            ns,
            owner,
            group,
            limits,
        } => init(ctx, peer, ns, owner, group, limits),
        Request::Destroy { ns, force } => {
            if let Verdict::Deny(why) =
                auth::authorize(peer, Action::Administer, ctx.admin_gid, None)
            {
                info!(%ns, "destroy of {ns} denied for uid {}: {why}", peer.uid);
                return err(ErrorCode::PermissionDenied, why);
            }
            match namespace::destroy(&ctx.layout, ctx.admin_gid, &ns, force) {
                Ok(()) => {
                    info!(%ns, force, "{ns} destroyed by uid {}", peer.uid);
                    Response::Destroyed
                }
                Err(e) => ns_error(e),
            }
        }
        Request::Admit { ns } => admit(ctx, peer, pidfd, &ns),
        Request::Join { ns } => join(ctx, peer, &ns),
        Request::Limit { ns, set, clear } => {
            if let Verdict::Deny(why) =
                auth::authorize(peer, Action::Administer, ctx.admin_gid, None)
            {
                info!(%ns, "limit of {ns} denied for uid {}: {why}", peer.uid);
                return err(ErrorCode::PermissionDenied, why);
            }
            if clear.len() > limits::Key::ALL.len() {
                return err(ErrorCode::InvalidRequest, "too many limits to clear");
            }
            match namespace::limit(&ctx.layout, &ns, &set, &clear) {
                Ok(limits) => {
                    info!(
                        %ns,
                        set = set.describe(),
                        ?clear,
                        "limits of {ns} changed by uid {}",
                        peer.uid
                    );
                    Response::Limited { limits }
                }
                Err(e) => ns_error(e),
            }
        }
        Request::Enable { ns, controllers } => enable(ctx, peer, &ns, &controllers),
        Request::Namespaces => namespaces(ctx, peer),
    }
}

fn init(
    ctx: &Context,
    peer: &Peer,
    ns: NamespaceName,
    owner: Option<String>,
    group: Option<String>,
    limits: Limits,
) -> Response {
    if let Verdict::Deny(why) = auth::authorize(peer, Action::Administer, ctx.admin_gid, None) {
        info!(%ns, "init of {ns} denied for uid {}: {why}", peer.uid);
        return err(ErrorCode::PermissionDenied, why);
    }
    let too_long =
        |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > wire::MAX_ACCOUNT_NAME);
    if too_long(&owner) || too_long(&group) {
        return err(ErrorCode::InvalidRequest, "user or group name too long");
    }
    let rec = match namespace::resolve_owner(owner.as_deref(), group.as_deref(), peer.uid) {
        Ok(r) => namespace::Record { limits, ..r },
        Err(e) => return ns_error(e),
    };
    match namespace::init(&ctx.layout, &ns, &rec) {
        Ok(created) => {
            info!(
                %ns,
                owner = rec.owner,
                group = rec.group,
                created,
                "init of {ns} allowed for uid {} (owner {}, group {})",
                peer.uid,
                rec.owner,
                rec.group
            );
            Response::Initialized {
                created,
                uid: rec.uid,
                gid: rec.gid,
            }
        }
        Err(e) => ns_error(e),
    }
}

/// The controllers a member may ask for, for its tasks' own limits.
const CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "io"];

fn enable(ctx: &Context, peer: &Peer, ns: &NamespaceName, wanted: &[String]) -> Response {
    let mut names = Vec::new();
    for w in wanted {
        match CONTROLLERS.iter().find(|c| **c == w.as_str()) {
            Some(c) if !names.contains(c) => names.push(*c),
            Some(_) => {}
            None => return err(ErrorCode::InvalidRequest, "no such controller"),
        }
    }
    match entering(ctx, peer, ns, "enable") {
        Ok(Some(_)) => {}
        Ok(None) => return ns_error(NsError::NotFound(ns.clone())),
        Err(answer) => return answer,
    }
    match namespace::enable(&ctx.layout, ns, &names) {
        Ok(()) => {
            info!(
                %ns,
                controllers = names.join(" "),
                "controllers {} enabled in {ns} for uid {}",
                names.join(" "),
                peer.uid
            );
            Response::Enabled
        }
        Err(e) => ns_error(e),
    }
}

/// Every namespace the peer may use or manage, with its ceilings.
fn namespaces(ctx: &Context, peer: &Peer) -> Response {
    let all = match namespace::registered(&ctx.layout) {
        Ok(all) => all,
        Err(e) => return ns_error(e),
    };
    let admin = auth::authorize(peer, Action::Administer, ctx.admin_gid, None) == Verdict::Allow;
    let list = all
        .into_iter()
        .filter(|(_, rec)| {
            admin
                || auth::authorize(peer, Action::Enter, ctx.admin_gid, Some(rec)) == Verdict::Allow
        })
        .map(|(ns, rec)| NamespaceInfo {
            running: namespace::running_tasks(&ctx.layout, &ns)
                .map_or(0, |t| u32::try_from(t.len()).unwrap_or(u32::MAX)),
            name: ns,
            owner: rec.owner,
            uid: rec.uid,
            group: rec.group,
            gid: rec.gid,
            limits: rec.limits,
        })
        .collect();
    Response::Namespaces { list }
}

/// The namespace's record, once the caller is allowed in (`what`: the
/// request, for the log); else the answer.
fn entering(
    ctx: &Context,
    peer: &Peer,
    ns: &NamespaceName,
    what: &str,
) -> Result<Option<namespace::Record>, Response> {
    let rec = namespace::load_record(&ctx.layout, ns).map_err(ns_error)?;
    if let Verdict::Deny(why) = auth::authorize(peer, Action::Enter, ctx.admin_gid, rec.as_ref()) {
        info!(%ns, "{what} of uid {} in {ns} denied: {why}", peer.uid);
        return Err(err(ErrorCode::PermissionDenied, why));
    }
    Ok(rec)
}

/// The member's subtree and state directory, made as admission makes them;
/// no process moves.
fn join(ctx: &Context, peer: &Peer, ns: &NamespaceName) -> Response {
    let made = entering(ctx, peer, ns, "join").and_then(|rec| {
        rec.ok_or_else(|| NsError::NotFound(ns.clone()))
            .and_then(|rec| {
                namespace::ensure_member(&ctx.layout, ns, &rec, peer.uid, ctx.user_max_cgroups)
            })
            .map_err(ns_error)
    });
    match made {
        Ok(_) => Response::Joined,
        Err(answer) => answer,
    }
}

fn admit(ctx: &Context, peer: &Peer, pidfd: Option<OwnedFd>, ns: &NamespaceName) -> Response {
    let rec = match entering(ctx, peer, ns, "admission") {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let pidfd = match pidfd
        .map(Ok)
        .unwrap_or_else(|| lanco_proto::sys::pidfd_open(peer.pid).map_err(std::io::Error::from))
    {
        Ok(fd) => fd,
        Err(e) => {
            return err(
                ErrorCode::InvalidRequest,
                &format!("cannot pin the calling process: {e}"),
            )
        }
    };
    // The process that connected must still be the caller, with the caller's
    // identity (not, say, a set-uid or set-gid program it exec'd since),
    // before and after the move: a pid cannot be reused while its pidfd shows
    // it alive.
    let same_caller =
        || lanco_proto::sys::pidfd_alive(pidfd.as_fd()) && ids_are(peer.pid, peer.uid, peer.gid);
    if !same_caller() {
        info!(
            %ns,
            "admission of pid {} of uid {} into {ns} denied: caller changed identity or exited",
            peer.pid,
            peer.uid
        );
        return err(
            ErrorCode::PermissionDenied,
            "the calling process exited or changed identity",
        );
    }
    // After a reboot the cgroups are gone until `lancod restore` (run by
    // lanco-tasks.service at boot); this then fails cleanly.
    let leaf = match rec
        .as_ref()
        .ok_or_else(|| NsError::NotFound(ns.clone()))
        .and_then(|rec| {
            namespace::ensure_member(&ctx.layout, ns, rec, peer.uid, ctx.user_max_cgroups)
        }) {
        Ok(leaf) => leaf,
        Err(e) => return ns_error(e),
    };
    if let Err(e) = leaf.attach(peer.pid) {
        warn!(
            %ns,
            "admission of pid {} of uid {} into {ns} failed: {e}",
            peer.pid,
            peer.uid
        );
        return err(ErrorCode::Internal, &e.to_string());
    }
    if !same_caller() {
        warn!(
            %ns,
            "admission of pid {} of uid {} into {ns}: caller exited or changed identity meanwhile",
            peer.pid,
            peer.uid
        );
        return err(
            ErrorCode::PermissionDenied,
            "the calling process exited or changed identity",
        );
    }
    info!(%ns, "admitted pid {} of uid {} into {ns}", peer.pid, peer.uid);
    if let Err(e) = billing::member(&ctx.layout, ctx.admin_gid, ns, peer.uid, UsageEvent::Admit) {
        warn!(%ns, "billing sample failed: {e}");
    }
    Response::Admitted
}

/// Real, effective, saved and filesystem uids of `pid` all equal `uid`, and
/// its four gids all equal `gid` (SO_PEERCRED's, from connect(2)). A set-gid
/// program exec'd since connecting changes the gids only: checking uids alone
/// let it through with a group the caller is not in.
fn ids_are(pid: i32, uid: u32, gid: u32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let four_equal = |key: &str, want: u32| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .is_some_and(|ids| {
                let ids: Vec<_> = ids.split_whitespace().map(str::parse::<u32>).collect();
                ids.len() == 4 && ids.iter().all(|i| i.as_ref() == Ok(&want))
            })
    };
    four_equal("Uid:", uid) && four_equal("Gid:", gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_compares_all_uids_and_gids() {
        let pid = std::process::id() as i32;
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        assert!(ids_are(pid, uid, gid));
        assert!(!ids_are(pid, uid, gid.wrapping_add(1)));
        assert!(!ids_are(pid, uid.wrapping_add(1), gid));
        assert!(!ids_are(i32::MAX, uid, gid), "no such process");
    }
}
