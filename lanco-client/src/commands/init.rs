use lanco_proto::wire::{Request, Response};
use lanco_proto::{Config, NamespaceName};

use crate::error::{Error, Result};

pub fn run(
    config: &Config,
    ns: NamespaceName,
    user: Option<String>,
    group: Option<String>,
) -> Result<u8> {
    // `sudo lanco NS init` grants the namespace to the user who typed it.
    let user = user.or_else(|| {
        nix::unistd::geteuid()
            .is_root()
            .then(|| std::env::var("SUDO_USER").ok())
            .flatten()
    });
    match crate::helper::request(
        &config.socket,
        &Request::Init {
            ns: ns.clone(),
            owner: user,
            group,
        },
    )? {
        Response::Initialized { created, uid, gid } => {
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
            Ok(0)
        }
        other => Err(Error::Helper(format!(
            "unexpected answer from lancod: {other:?}"
        ))),
    }
}
