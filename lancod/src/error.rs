//! Why lancod could not start or finish a command (as opposed to a denied or
//! failed request, which is answered on the socket and logged).

use std::path::PathBuf;

use lanco_proto::cgroupfs::CgroupError;
use lanco_proto::config::ConfigError;

use crate::namespace::NsError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Namespace(#[from] NsError),
    #[error(transparent)]
    Kept(#[from] crate::destroyed::KeptError),
    #[error(transparent)]
    Billing(#[from] crate::billing::BillingError),
    #[error("admin_group {0:?} does not exist")]
    NoAdminGroup(String),
    #[error("cannot {op} {path}: {error}")]
    Socket {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("another lancod is already serving {0}")]
    AlreadyServing(PathBuf),
    #[error("socket activation: {0}")]
    Activation(String),
    #[error("cannot run: {0}")]
    Runtime(std::io::Error),
    #[error("{0} namespace(s) could not be restored")]
    Restore(usize),
}
