//! Task definitions: what `lanco NS start TASK` runs. One TOML file per
//! member and namespace (`defs.toml` in the member's state directory, its
//! own and read-only to the other members), one `[task.NAME]` table per
//! task; a name is defined by at most one member, who also owns the name
//! (a definition claims it, as a first run does), and only that member
//! starts it.
//!
//! A definition is self-contained: its environment is the definer's login
//! basics (HOME, USER, LOGNAME, SHELL from the user database, a default
//! PATH) with its `env` over them, nothing of whoever starts it; its working
//! directory its `cwd` or else the definer's home directory; its paths
//! absolute.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lanco_proto::files::{self, Dir};
use lanco_proto::limits::Key as LimitKey;
use lanco_proto::{layout, Limits, TaskName};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{Error, Result};
use crate::graph::{self, Deps, Kind};
use crate::namespace::Namespace;
use crate::spec::{TaskSpec, DEFAULT_STOP_TIMEOUT};
use crate::supervision::{parse_duration, Dur, RestartLimit, Supervision};

/// The largest definitions file read.
const MAX_BYTES: u64 = 1 << 20;
const KEYS: &str = "cmd, cwd, env, log, on_exit, stop_timeout, restart, restart_delay, \
                    restart_delay_max, restart_limit, ready, start_timeout, needs, milestone, \
                    waits_for, wants, after, memory, memory_high, pids, cpu, cpu_weight, \
                    io_weight, enable";

/// One task's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Definition {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Absolute; `None`: the definer's home directory.
    pub cwd: Option<String>,
    /// The task's whole environment.
    pub env: BTreeMap<String, String>,
    /// Absolute; `None`: the namespace's log of the task.
    pub log: Option<String>,
    pub on_exit: Option<String>,
    pub stop_timeout: Duration,
    pub supervision: Supervision,
    /// What it depends on (sorted, each once).
    pub deps: Deps,
    /// Its own resource limits.
    pub limits: Limits,
    /// Started at boot, as the definer (`lancod restore` runs `lanco NS
    /// start --enabled` for each member), or by that command.
    pub enable: bool,
}

/// A member's definitions, by task.
pub(crate) type Defs = BTreeMap<TaskName, Definition>;

impl Definition {
    pub fn new(cmd: Vec<String>) -> Self {
        Definition {
            cmd,
            cwd: None,
            env: BTreeMap::new(),
            log: None,
            on_exit: None,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            supervision: Supervision::default(),
            deps: Deps::default(),
            limits: Limits::default(),
            enable: false,
        }
    }

    /// What cannot be run as written: `Err((key, why))`, key `""` for the
    /// definition as a whole.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let nul = |key, s: &str| {
            if s.contains('\0') {
                Err((key, "contains a NUL byte".to_string()))
            } else {
                Ok(())
            }
        };
        match self.cmd.first() {
            None => return Err(("cmd", "names no command".into())),
            Some(p) if p.is_empty() => return Err(("cmd", "has an empty program name".into())),
            _ => {}
        }
        for a in &self.cmd {
            nul("cmd", a)?;
        }
        for (key, path) in [("cwd", &self.cwd), ("log", &self.log)] {
            if let Some(p) = path {
                nul(key, p)?;
                if !Path::new(p).is_absolute() {
                    return Err((key, format!("must be an absolute path, not {p:?}")));
                }
            }
        }
        if let Some(c) = &self.on_exit {
            nul("on_exit", c)?;
        }
        for (k, v) in &self.env {
            if let Some(why) = crate::spec::env_problem(k.as_bytes(), Some(v.as_bytes())) {
                return Err(("env", why));
            }
        }
        let s = &self.supervision;
        for (key, d) in [
            ("stop_timeout", self.stop_timeout),
            ("restart_delay", s.restart_delay),
            ("restart_delay_max", s.restart_delay_max),
            ("restart_limit", s.restart_limit.interval),
            ("start_timeout", s.start_timeout),
        ] {
            if d.subsec_nanos() % 1_000_000 != 0 {
                return Err((key, format!("{d:?} is finer than a millisecond")));
            }
        }
        s.check().map_err(|e| ("", e))
    }

    /// [`Definition::check`] as one error, `KEY: why`.
    pub fn checked(&self) -> Result<()> {
        self.check().map_err(|(key, why)| {
            Error::InvalidInput(if key.is_empty() {
                why
            } else {
                format!("{key}: {why}")
            })
        })
    }

    /// The table's lines, in the canonical form `show` prints.
    fn lines(&self, with_enable: bool) -> String {
        let mut out = String::new();
        let mut put = |key: &str, value: String| {
            out.push_str(key);
            out.push_str(" = ");
            out.push_str(&value);
            out.push('\n');
        };
        let list: Vec<String> = self.cmd.iter().map(|a| quote(a)).collect();
        put("cmd", format!("[{}]", list.join(", ")));
        if let Some(c) = &self.cwd {
            put("cwd", quote(c));
        }
        if !self.env.is_empty() {
            let vars: Vec<String> = self
                .env
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), quote(v)))
                .collect();
            put("env", format!("{{ {} }}", vars.join(", ")));
        }
        if let Some(l) = &self.log {
            put("log", quote(l));
        }
        if let Some(c) = &self.on_exit {
            put("on_exit", quote(c));
        }
        let dur = |d: Duration| quote(&Dur(d).to_string());
        let s = &self.supervision;
        put("stop_timeout", dur(self.stop_timeout));
        put("restart", quote(&s.restart.to_string()));
        put("restart_delay", dur(s.restart_delay));
        put("restart_delay_max", dur(s.restart_delay_max));
        put(
            "restart_limit",
            format!(
                "{{ count = {}, interval = {} }}",
                s.restart_limit.count,
                dur(s.restart_limit.interval)
            ),
        );
        put("ready", quote(&s.ready.to_string()));
        put("start_timeout", dur(s.start_timeout));
        for (kind, tasks) in Kind::ALL.map(|k| (k, self.deps.of(k))) {
            if !tasks.is_empty() {
                let list: Vec<String> = tasks.iter().map(|t| quote(t.as_str())).collect();
                put(kind.key(), format!("[{}]", list.join(", ")));
            }
        }
        for k in LimitKey::ALL {
            if let Some(v) = k.shown(&self.limits) {
                put(limit_key(k), quote(&v));
            }
        }
        if with_enable {
            put("enable", self.enable.to_string());
        }
        out
    }

    /// 16 hex digits that change with anything a run is started from
    /// (everything but `enable`): FNV-1a of the canonical text.
    pub fn digest(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.lines(false).bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// The spec to start `task` from, the same whoever starts it and when
    /// (a shell, `start --enabled` at boot): the definer's (the caller's)
    /// HOME, USER, LOGNAME and SHELL from the user database and a default
    /// PATH, as a login or systemd's `User=` gives them, then the
    /// definition's `env` over them, and nothing of the caller's
    /// environment; its cwd, or the definer's home directory.
    pub fn to_spec(&self, task: &TaskName) -> Result<TaskSpec> {
        let argv = self.cmd.iter().map(OsString::from).collect();
        let mut spec = TaskSpec::new(task.clone(), argv)?;
        let me = definer()?;
        spec.cwd = match &self.cwd {
            Some(c) => PathBuf::from(c),
            None => me.dir.clone(),
        };
        spec.env("HOME", &me.dir)
            .env("USER", &me.name)
            .env("LOGNAME", &me.name)
            .env("SHELL", &me.shell)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin");
        for (k, v) in &self.env {
            spec.env(k, v);
        }
        spec.log = self.log.as_ref().map(PathBuf::from);
        spec.on_exit = self.on_exit.clone();
        spec.stop_timeout = self.stop_timeout;
        spec.supervision = self.supervision;
        spec.definition = Some(self.digest());
        spec.deps = self.deps.clone();
        spec.limits = self.limits.clone();
        Ok(spec)
    }
}

/// The caller, who starts only its own definitions, from the user database.
fn definer() -> Result<nix::unistd::User> {
    let me = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(me) {
        Ok(Some(u)) => Ok(u),
        _ => Err(Error::InvalidInput(format!(
            "uid {} is not in the user database: its definitions have no HOME",
            me.as_raw()
        ))),
    }
}

/// A limit's key in a definition: its option's name, with `_`.
fn limit_key(k: LimitKey) -> &'static str {
    match k {
        LimitKey::MemoryHigh => "memory_high",
        LimitKey::CpuWeight => "cpu_weight",
        LimitKey::IoWeight => "io_weight",
        k => k.name(),
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML key: bare if it can be.
fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        k.to_owned()
    } else {
        quote(k)
    }
}

/// Definitions as a file `parse` reads back into the same.
pub(crate) fn to_toml(defs: &Defs) -> String {
    defs.iter()
        .map(|(task, d)| format!("[task.{}]\n{}", key(task.as_str()), d.lines(true)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where a definitions file is, for its errors: `FILE:LINE: KEY: why`.
struct Source<'a> {
    label: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, at: Range<usize>, key: &str, why: impl std::fmt::Display) -> Error {
        let line = self.text[..at.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        let key = if key.is_empty() {
            String::new()
        } else {
            format!("{key}: ")
        };
        Error::InvalidInput(format!("{}:{line}: {key}{why}", self.label))
    }
}

type Entry<'a, 'i> = (
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
);

/// A table's entries in the file's order, so the first error reported is
/// the first in the file.
fn entries<'a, 'i>(t: &'a DeTable<'i>) -> Vec<Entry<'a, 'i>> {
    let mut v: Vec<_> = t.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

fn type_error(v: &DeValue<'_>, want: &str) -> String {
    format!("must be {want}, not {}", v.type_str())
}

/// Reads and checks a whole definitions file; `label` names it in errors.
pub(crate) fn parse(label: &str, text: &str) -> Result<Defs> {
    let src = Source { label, text };
    let doc =
        DeTable::parse(text).map_err(|e| src.error(e.span().unwrap_or(0..0), "", e.message()))?;
    let mut defs = Defs::new();
    for (k, v) in entries(doc.get_ref()) {
        if k.get_ref() != "task" {
            return Err(src.error(
                k.span(),
                k.get_ref(),
                "unknown key (definitions are [task.NAME] tables)",
            ));
        }
        let DeValue::Table(tasks) = v.get_ref() else {
            return Err(src.error(
                k.span(),
                k.get_ref(),
                type_error(v.get_ref(), "a table of [task.NAME] tables"),
            ));
        };
        for (name, body) in entries(tasks) {
            let path = format!("task.{}", name.get_ref());
            let task: TaskName = name
                .get_ref()
                .parse()
                .map_err(|e: lanco_proto::NameError| src.error(name.span(), &path, e))?;
            let DeValue::Table(t) = body.get_ref() else {
                return Err(src.error(name.span(), &path, type_error(body.get_ref(), "a table")));
            };
            let def = read_one(&src, &path, t, name.span())?;
            def.check().map_err(|(key, why)| {
                let at = t
                    .iter()
                    .find(|(k, _)| k.get_ref() == key)
                    .map_or(name.span(), |(k, _)| k.span());
                let path = if key.is_empty() {
                    path.clone()
                } else {
                    format!("{path}.{key}")
                };
                src.error(at, &path, why)
            })?;
            defs.insert(task, def);
        }
    }
    Ok(defs)
}

fn read_one(src: &Source, path: &str, t: &DeTable, at: Range<usize>) -> Result<Definition> {
    let mut d = Definition::new(Vec::new());
    let mut has_cmd = false;
    for (k, v) in entries(t) {
        let key = k.get_ref().as_ref();
        let path = format!("{path}.{key}");
        let bad = |why: String| src.error(k.span(), &path, why);
        let v = v.get_ref();
        let s = || v.as_str().ok_or_else(|| bad(type_error(v, "a string")));
        let dur = || s().and_then(|s| parse_duration(s).map_err(bad));
        match key {
            "cmd" => {
                let DeValue::Array(a) = v else {
                    return Err(bad(type_error(v, "an array of strings")));
                };
                d.cmd = a
                    .iter()
                    .map(|x| x.get_ref().as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("must be an array of strings".into()))?;
                has_cmd = true;
            }
            "cwd" => d.cwd = Some(s()?.to_owned()),
            "log" => d.log = Some(s()?.to_owned()),
            "on_exit" => d.on_exit = Some(s()?.to_owned()),
            "env" => {
                let DeValue::Table(vars) = v else {
                    return Err(bad(type_error(v, "a table of strings")));
                };
                for (name, value) in entries(vars) {
                    let value = value.get_ref().as_str().ok_or_else(|| {
                        src.error(
                            name.span(),
                            &format!("{path}.{}", name.get_ref()),
                            type_error(value.get_ref(), "a string"),
                        )
                    })?;
                    d.env.insert(name.get_ref().to_string(), value.to_owned());
                }
            }
            "stop_timeout" => d.stop_timeout = dur()?,
            "restart" => d.supervision.restart = s()?.parse().map_err(bad)?,
            "restart_delay" => d.supervision.restart_delay = dur()?,
            "restart_delay_max" => d.supervision.restart_delay_max = dur()?,
            "restart_limit" => d.supervision.restart_limit = restart_limit(src, &path, k, v)?,
            "ready" => d.supervision.ready = s()?.parse().map_err(bad)?,
            "start_timeout" => d.supervision.start_timeout = dur()?,
            "enable" => {
                d.enable = v
                    .as_bool()
                    .ok_or_else(|| bad(type_error(v, "true or false")))?
            }
            k if Kind::ALL.iter().any(|x| x.key() == k) => {
                let kind = *Kind::ALL.iter().find(|x| x.key() == k).expect("found");
                let DeValue::Array(a) = v else {
                    return Err(bad(type_error(v, "an array of task names")));
                };
                let list = d.deps.of_mut(kind);
                for x in a {
                    let name = x
                        .get_ref()
                        .as_str()
                        .ok_or_else(|| bad("must be an array of task names".into()))?;
                    list.push(
                        name.parse()
                            .map_err(|e: lanco_proto::NameError| bad(e.to_string()))?,
                    );
                }
            }
            k if LimitKey::ALL.iter().any(|x| limit_key(*x) == k) => {
                let lk = *LimitKey::ALL
                    .iter()
                    .find(|x| limit_key(**x) == k)
                    .expect("found");
                let text = match v {
                    DeValue::String(t) => t.to_string(),
                    DeValue::Integer(i) => i.to_string(),
                    DeValue::Float(f) => f.to_string(),
                    _ => return Err(bad(type_error(v, "a string or a number"))),
                };
                lk.parse_into(&mut d.limits, &text).map_err(bad)?;
            }
            _ => return Err(bad(format!("unknown key (the keys are {KEYS})"))),
        }
    }
    if !has_cmd {
        return Err(src.error(at, path, "cmd is missing"));
    }
    d.deps.normalise();
    Ok(d)
}

fn restart_limit(
    src: &Source,
    path: &str,
    k: &Spanned<std::borrow::Cow<str>>,
    v: &DeValue,
) -> Result<RestartLimit> {
    let DeValue::Table(t) = v else {
        return Err(src.error(k.span(), path, type_error(v, "a table { count, interval }")));
    };
    let (mut count, mut interval) = (None, None);
    for (ik, iv) in entries(t) {
        let ipath = format!("{path}.{}", ik.get_ref());
        let bad = |why: String| src.error(ik.span(), &ipath, why);
        let iv = iv.get_ref();
        match ik.get_ref().as_ref() {
            "count" => {
                let n = iv
                    .as_integer()
                    .ok_or_else(|| bad(type_error(iv, "a number")))?;
                let n = u32::from_str_radix(n.as_str(), n.radix())
                    .map_err(|_| bad(format!("{} is not a count", n.as_str())))?;
                count = Some(n);
            }
            "interval" => {
                let s = iv.as_str().ok_or_else(|| bad(type_error(iv, "a string")))?;
                interval = Some(parse_duration(s).map_err(bad)?);
            }
            _ => return Err(bad("unknown key (the keys are count and interval)".into())),
        }
    }
    match (count, interval) {
        (Some(count), Some(interval)) => Ok(RestartLimit { count, interval }),
        _ => Err(src.error(k.span(), path, "needs both count and interval")),
    }
}

/// The caller's state directory in the namespace, made by lancod if this
/// is the caller's first use of it.
fn own_dir(ns: &Namespace) -> Result<Dir> {
    let me = nix::unistd::geteuid();
    if me.is_root() {
        return Err(Error::PermissionDenied(
            "root defines no tasks in a namespace (its directories are its members'); define as a member".into(),
        ));
    }
    let path = ns.layout().user_state_dir(ns.name(), me.as_raw());
    match Dir::open(&path) {
        Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => {
            crate::helper::join(&ns.config().socket, ns.name())?;
            Ok(Dir::open(&path)?)
        }
        r => Ok(r?),
    }
}

/// Member `uid`'s definitions in the directory `dir`.
fn read_in(dir: &Dir, uid: u32) -> Result<Defs> {
    match dir.read(layout::DEFINITIONS, uid, MAX_BYTES)? {
        None => Ok(Defs::new()),
        Some(bytes) => {
            let path = dir.join(layout::DEFINITIONS);
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::InvalidInput(format!("{}: not UTF-8", path.display())))?;
            parse(&path.display().to_string(), &text)
        }
    }
}

/// The caller's own definitions; none if it has no state directory in the
/// namespace yet. No other member's file is read.
pub(crate) fn mine(ns: &Namespace) -> Result<Defs> {
    let me = nix::unistd::geteuid().as_raw();
    match Dir::open(&ns.layout().user_state_dir(ns.name(), me)) {
        Err(e) if e.io_kind() == Some(ErrorKind::NotFound) => Ok(Defs::new()),
        r => read_in(&r?, me),
    }
}

/// Every member's definitions, by member.
pub(crate) fn all(ns: &Namespace) -> Result<BTreeMap<u32, Defs>> {
    let l = ns.layout();
    let nsd = Dir::open(&l.ns_state_dir(ns.name())).map_err(|e| match e.io_kind() {
        Some(ErrorKind::NotFound | ErrorKind::PermissionDenied) => {
            Error::NotMember(ns.name().clone())
        }
        _ => e.into(),
    })?;
    let me = nix::unistd::geteuid().as_raw();
    let mut out = BTreeMap::new();
    for uid in nsd
        .list()?
        .iter()
        .filter_map(|e| layout::uid_of_user_entry(e))
    {
        let read = Dir::open(&l.user_state_dir(ns.name(), uid))
            .map_err(Error::from)
            .and_then(|d| read_in(&d, uid));
        let defs = match read {
            Ok(d) => d,
            // Another member's file that cannot be read (broken by hand,
            // planted) must not stop anyone else's definitions: it is left
            // out. Its names stay claimed in `names/`, so none is taken
            // twice. The caller's own errors are the caller's to see.
            Err(_) if uid != me => continue,
            Err(e) => return Err(e),
        };
        if !defs.is_empty() {
            out.insert(uid, defs);
        }
    }
    Ok(out)
}

/// The definition of `task` and the member whose it is.
pub(crate) fn find(all: &BTreeMap<u32, Defs>, task: &TaskName) -> Result<(u32, Definition)> {
    all.iter()
        .find_map(|(uid, defs)| defs.get(task).map(|d| (*uid, d.clone())))
        .ok_or_else(|| Error::NotDefined(task.clone()))
}

/// The caller's own definition of `task` among `all`; another member's is
/// refused (exit 4), saying that only they may do `what`.
pub(crate) fn owned(all: &BTreeMap<u32, Defs>, task: &TaskName, what: &str) -> Result<Definition> {
    let (uid, d) = find(all, task)?;
    if uid != nix::unistd::geteuid().as_raw() {
        return Err(Error::PermissionDenied(format!(
            "task {task} is defined by {}; only they may {what}",
            files::user_name(uid)
        )));
    }
    Ok(d)
}

/// Reads and checks a definitions file the caller names.
pub(crate) fn read_file(path: &Path) -> Result<Defs> {
    use std::io::Read;
    let label = path.display().to_string();
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| Error::InvalidInput(format!("cannot read {label}: {e}")))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(Error::InvalidInput(format!(
            "{label} is larger than {MAX_BYTES} bytes"
        )));
    }
    parse(&label, &text)
}

/// Changes the caller's definitions: `change` gets them and the names it
/// defines anew must be free. The names are claimed (as by a first run),
/// then the file is replaced in one rename: a concurrent reader sees the
/// old set or the new. Changes of one member are serialised by a lock on
/// its state directory.
pub(crate) fn update(
    ns: &Namespace,
    change: impl FnOnce(&mut Defs) -> Result<Vec<TaskName>>,
) -> Result<()> {
    let dir = own_dir(ns)?;
    let me = nix::unistd::geteuid().as_raw();
    let lock = dir
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::system(format!("cannot lock {}", dir.path().display()), e))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::system(format!("cannot lock {}", dir.path().display()), e))?;
    let mut mine = read_in(&dir, me)?;
    let defined = change(&mut mine)?;
    let others = all(ns)?;
    for task in &defined {
        if let Some((uid, _)) = others
            .iter()
            .find(|(uid, defs)| **uid != me && defs.contains_key(task))
        {
            return Err(Error::Conflict(format!(
                "task {task} is defined by {}",
                files::user_name(*uid)
            )));
        }
        if let Some(owner) = ns.name_owner(task)?.filter(|o| *o != me) {
            return Err(Error::NameTaken {
                task: task.clone(),
                owner: files::user_name(owner),
            });
        }
    }
    check_graph(&others, me, &mine, &defined)?;
    for task in &defined {
        claim(ns, task, me)?;
    }
    dir.replace(layout::DEFINITIONS, to_toml(&mine).as_bytes(), 0o640)?;
    Ok(())
}

/// The namespace's definitions with the caller's as `mine`: each task
/// in `defined` depends only on defined tasks, and no cycle runs through
/// the ordering kinds.
fn check_graph(
    others: &BTreeMap<u32, Defs>,
    me: u32,
    mine: &Defs,
    defined: &[TaskName],
) -> Result<()> {
    let mut g: BTreeMap<TaskName, Deps> = BTreeMap::new();
    for (uid, defs) in others {
        if *uid != me {
            g.extend(defs.iter().map(|(t, d)| (t.clone(), d.deps.clone())));
        }
    }
    g.extend(mine.iter().map(|(t, d)| (t.clone(), d.deps.clone())));
    for task in defined {
        let mut deps = g.get(task).into_iter().flat_map(Deps::edges);
        if let Some((kind, dep)) = deps.find(|(_, dep)| !g.contains_key(*dep)) {
            return Err(Error::InvalidInput(format!(
                "{task}: {} {dep}, which is not defined",
                kind.key()
            )));
        }
    }
    graph::acyclic(&g).map_err(Error::InvalidInput)
}

/// Makes the caller the owner of `task`'s name, as a first run does; a
/// concurrent claim by another member wins the race and this one fails.
fn claim(ns: &Namespace, task: &TaskName, me: u32) -> Result<()> {
    let names = ns.names_dir()?;
    let lock = layout::lock_name(task);
    match names.create_new(&lock, 0o640) {
        Ok(_) => Ok(()),
        Err(e) if e.io_kind() == Some(ErrorKind::AlreadyExists) => match ns.name_owner(task)? {
            Some(owner) if owner == me => Ok(()),
            Some(owner) => Err(Error::NameTaken {
                task: task.clone(),
                owner: files::user_name(owner),
            }),
            None => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervision::{Ready, Restart};

    const EXAMPLE: &str = r#"
[task.db]
cmd = ["postgres", "-D", "/srv/pg"]
cwd = "/srv/pg"
env = { PGPORT = "5433", "odd key" = "a \"quoted\" value\n" }
log = "/srv/pg/pg.log"
on_exit = "logger db ended"
stop_timeout = "10s"
restart = "on-failure"
restart_delay = "200ms"
restart_delay_max = "30s"
restart_limit = { count = 3, interval = "10s" }
ready = "notify"
start_timeout = "60s"
enable = true

[task."web.1"]
cmd = ["sh", "-c", "echo 'é' \\ \t"]
ready = "fd:3"
stop_timeout = "1500ms"
needs = ["db"]
wants = ["metrics", "cache", "metrics"]
after = ["log"]
"#;

    fn err(text: &str) -> String {
        match parse("defs.toml", text) {
            Err(Error::InvalidInput(m)) => m,
            other => panic!("expected an input error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_file_reads_and_prints_back_unchanged() {
        let defs = parse("defs.toml", EXAMPLE).unwrap();
        let db = &defs[&"db".parse::<TaskName>().unwrap()];
        assert_eq!(db.cmd, ["postgres", "-D", "/srv/pg"]);
        assert_eq!(db.env["PGPORT"], "5433");
        assert_eq!(db.supervision.restart, Restart::OnFailure);
        assert_eq!(db.supervision.ready, Ready::Notify);
        assert!(db.enable);
        let web = &defs[&"web.1".parse::<TaskName>().unwrap()];
        assert_eq!(web.supervision.ready, Ready::Fd(3));
        assert_eq!(web.stop_timeout, Duration::from_millis(1500));
        assert!(!web.enable && web.cwd.is_none());
        assert_eq!(web.deps.needs, ["db".parse::<TaskName>().unwrap()]);
        assert_eq!(web.deps.wants.len(), 2, "sorted, each once");
        assert!(db.deps.is_empty());
        let shown = to_toml(&defs);
        assert_eq!(parse("x", &shown).unwrap(), defs, "{shown}");
        assert_eq!(to_toml(&parse("x", &shown).unwrap()), shown);
    }

    #[test]
    fn the_digest_follows_what_runs_not_enable() {
        let a = Definition::new(vec!["true".into()]);
        let mut b = a.clone();
        b.enable = true;
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.digest().len(), 16);
        b.env.insert("A".into(), "1".into());
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), Definition::new(vec!["true".into()]).digest());
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let head = "[task.db]\ncmd = [\"x\"]\n";
        for (body, want) in [
            (
                "restart_delay = \"10x\"\n",
                "defs.toml:3: task.db.restart_delay: invalid duration \"10x\"",
            ),
            ("colour = 1\n", "defs.toml:3: task.db.colour: unknown key"),
            ("needs = [\"-a\"]\n", "defs.toml:3: task.db.needs: "),
            (
                "wants = \"a\"\n",
                "defs.toml:3: task.db.wants: must be an array of task names, not string",
            ),
            (
                "cwd = \"rel\"\n",
                "defs.toml:3: task.db.cwd: must be an absolute path",
            ),
            (
                "log = \"rel\"\n",
                "defs.toml:3: task.db.log: must be an absolute path",
            ),
            (
                "restart = \"sometimes\"\n",
                "defs.toml:3: task.db.restart: invalid restart policy",
            ),
            (
                "ready = \"fd:1\"\n",
                "defs.toml:3: task.db.ready: invalid readiness fd",
            ),
            (
                "restart_delay = \"1m\"\n",
                "defs.toml:1: task.db: restart_delay (1m) is longer",
            ),
            (
                "restart_limit = { count = 3 }\n",
                "defs.toml:3: task.db.restart_limit: needs both",
            ),
            (
                "restart_limit = { count = -1, interval = \"1s\" }\n",
                "task.db.restart_limit.count: -1 is not a count",
            ),
            (
                "enable = \"yes\"\n",
                "defs.toml:3: task.db.enable: must be true or false, not string",
            ),
            (
                "env = { A = 1 }\n",
                "defs.toml:3: task.db.env.A: must be a string",
            ),
            (
                "stop_timeout = \"0.0001s\"\n",
                "task.db.stop_timeout: 100µs is finer than a millisecond",
            ),
        ] {
            let e = err(&format!("{head}{body}"));
            assert!(e.starts_with(want) || e.contains(want), "{e} lacks {want}");
            assert_eq!(e.lines().count(), 1);
        }
        assert!(
            err("[task.db]\ncmd = []\n").starts_with("defs.toml:2: task.db.cmd: names no command")
        );
        assert!(err("[task.db]\ncwd = \"/\"\n").starts_with("defs.toml:1: task.db: cmd is missing"));
        assert!(err("\n[task.\"-x\"]\ncmd = [\"x\"]\n").starts_with("defs.toml:2: task.-x: "));
        assert!(err("[tasks.db]\ncmd = [\"x\"]\n").starts_with("defs.toml:1: tasks: unknown key"));
        assert!(err("[task.db]\ncmd = [\"x\"\n").starts_with("defs.toml:"));
    }
}
