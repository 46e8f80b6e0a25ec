use lanco_proto::{Config, Limits, NamespaceName};

use crate::error::Result;

pub fn run(
    config: &Config,
    ns: NamespaceName,
    user: Option<String>,
    group: Option<String>,
    limits: Limits,
) -> Result<u8> {
    // `sudo lanco NS init` grants the namespace to the user who typed it.
    let user = user.or_else(|| {
        nix::unistd::geteuid()
            .is_root()
            .then(|| std::env::var("SUDO_USER").ok())
            .flatten()
    });
    let (created, uid, gid) =
        crate::helper::init(&config.socket, &ns, user, group, limits.clone())?;
    let (u, g) = (
        uzers::get_user_by_uid(uid)
            .map(|u| u.name().to_string_lossy().into_owned())
            .unwrap_or(uid.to_string()),
        uzers::get_group_by_gid(gid)
            .map(|g| g.name().to_string_lossy().into_owned())
            .unwrap_or(gid.to_string()),
    );
    let what = if created { "created" } else { "already exists" };
    crate::msg::log(
        "INFO",
        "init",
        &format_args!("namespace {ns} {what}, owned by {u}:{g}"),
    );
    if !limits.is_empty() {
        crate::msg::log(
            "INFO",
            "init",
            &format_args!("ceilings set: {}", limits.describe()),
        );
    }
    Ok(0)
}
