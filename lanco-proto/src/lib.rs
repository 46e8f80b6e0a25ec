//! The contract between `lancod` and its clients: validated names, the wire
//! frames, the shared configuration file and where everything lives on disk and
//! in the cgroup tree. Both sides build paths only through [`layout::Layout`] and
//! touch cgroupfs only through [`cgroupfs`], so they cannot disagree. No async
//! runtime and no privilege policy lives here.

pub mod billing;
pub mod cgroupfs;
pub mod config;
pub mod files;
pub mod layout;
pub mod limits;
pub mod name;
pub mod sys;
pub mod time;
pub mod wire;

pub use config::Config;
pub use layout::Layout;
pub use limits::Limits;
pub use name::{NameError, NamespaceName, TaskName};
