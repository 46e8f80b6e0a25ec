//! lancod: the one privileged piece of lanco. It initialises, restores and
//! destroys namespaces and admits a caller's process into a namespace's monitor
//! cgroup; it never starts, stops or reads tasks. Every request is authorised
//! from the kernel's view of the peer (SO_PEERCRED, SO_PEERGROUPS, SO_PEERPIDFD).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod auth;
pub mod billing;
pub mod boot;
pub mod destroyed;
pub mod error;
pub mod namespace;
pub mod reload;
mod request;
pub mod server;
mod slots;
mod socket;
pub mod stop_all;
mod sys;
