//! Authorisation: a pure function of the peer, the request and the namespace
//! record. No I/O, so every decision is covered by the table below.

use crate::namespace::Record;

/// The caller as the kernel saw it at connect(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    pub groups: Vec<u32>,
}

impl Peer {
    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// init, destroy, restore.
    Administer,
    /// admission into a namespace.
    Enter,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(&'static str),
}

/// `admin_gid`: the configured admin group, if any. `record`: the namespace's
/// registration, for `Enter`.
pub fn authorize(
    peer: &Peer,
    action: Action,
    admin_gid: Option<u32>,
    record: Option<&Record>,
) -> Verdict {
    match action {
        // A namespace's directories are its members'; root runs nothing
        // there (lancod would write where tenants can).
        Action::Enter if peer.uid == 0 => {
            Verdict::Deny("root runs no tasks in a namespace; run as one of its members")
        }
        _ if peer.uid == 0 => Verdict::Allow,
        Action::Administer => match admin_gid {
            Some(g) if peer.in_group(g) => Verdict::Allow,
            _ => Verdict::Deny("only root or the admin group may manage namespaces"),
        },
        Action::Enter => match record {
            Some(r) if peer.uid == r.uid || peer.in_group(r.gid) => Verdict::Allow,
            // The same answer whether or not the namespace exists: a denied
            // peer learns nothing about other tenants.
            _ => Verdict::Deny("no such namespace, or you are not a member of it"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid,
            pid: 100,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn decision_table() {
        let rec = Record {
            owner: "alice".into(),
            uid: 1001,
            group: "ops".into(),
            gid: 2000,
            limits: Default::default(),
        };
        let alice = peer(1001, 1001, &[]);
        let bob_in_ops = peer(1002, 1002, &[2000]);
        let ops_primary = peer(1004, 2000, &[]);
        let eve = peer(1003, 1003, &[3000]);
        let admin = peer(1005, 1005, &[3000]);
        let root = peer(0, 0, &[]);
        use Action::*;
        use Verdict::Allow;
        // (peer, action, admin group, namespace record, allowed?)
        type Row<'a> = (&'a Peer, Action, Option<u32>, Option<&'a Record>, bool);
        let table: &[Row] = &[
            (&alice, Enter, None, Some(&rec), true),
            (&bob_in_ops, Enter, None, Some(&rec), true),
            (&ops_primary, Enter, None, Some(&rec), true),
            (&eve, Enter, None, Some(&rec), false),
            (&eve, Enter, Some(3000), Some(&rec), false), // admin of the host is no tenant
            (&alice, Enter, None, None, false),
            (&root, Enter, None, Some(&rec), false),
            (&alice, Administer, None, None, false),
            (&alice, Administer, Some(3000), None, false),
            (&admin, Administer, Some(3000), None, true),
            (&admin, Administer, None, None, false),
            (&root, Administer, None, None, true),
        ];
        for (i, (p, a, admin_gid, r, allowed)) in table.iter().enumerate() {
            let v = authorize(p, *a, *admin_gid, *r);
            assert_eq!(v == Allow, *allowed, "row {i}: {p:?} {a:?} -> {v:?}");
        }
    }

    #[test]
    fn denial_does_not_reveal_existence() {
        let rec = Record {
            owner: "alice".into(),
            uid: 1001,
            group: "ops".into(),
            gid: 2000,
            limits: Default::default(),
        };
        let eve = peer(1003, 1003, &[]);
        assert_eq!(
            authorize(&eve, Action::Enter, None, Some(&rec)),
            authorize(&eve, Action::Enter, None, None)
        );
    }
}
