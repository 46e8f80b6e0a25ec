//! `lanco __complete INDEX WORD…`: the candidates for the word at INDEX of
//! the command line WORD… (WORD 0 is `lanco`), one per line, for the shell
//! completion scripts (`complete/lanco.{bash,zsh,fish}`). Hidden: not in
//! the clap definition, never in a man page.
//!
//! Options, subcommands and which argument comes next are read from the clap
//! definition, so a new option completes without a change here. Names come
//! from what the caller can read itself — namespaces from the log
//! directories (`{log_dir}/lanco-NS`, root:G 3770: open to members only),
//! task names from the namespace's `names/`, cgroups and definitions — and
//! lancod is asked only when those cannot answer (an administrator outside
//! a namespace's group, a log directory the caller cannot list). It prints
//! no error, ever: a shell would paste it into the command line.
//!
//! A line `NAME\tDESCRIPTION` carries a description (zsh and fish show it;
//! bash drops it). A first line starting with `:` asks the shell to complete
//! by itself: `:files`, `:dirs`, `:commands` (a program to run).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write;

use clap::{Arg, Command};
use lanco_proto::files::Dir;
use lanco_proto::{layout, Config, NamespaceName, TaskName};

use crate::namespace::Namespace;

/// What the shell should offer.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// These words (with a description, maybe), filtered by the prefix typed.
    Words(Vec<(String, String)>),
    Files,
    Dirs,
    Commands,
}

/// Which task names an argument takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tasks {
    /// Running tasks (a cgroup): stop, kill, release.
    Running,
    /// The caller's own definitions: start, restart, enable, disable, undefine.
    MyDefinitions,
    /// Every member's definitions: show.
    Definitions,
    /// Every name used or defined in the namespace.
    Any,
}

/// The entry point; `args` are the words after `__complete`. Always 0.
pub fn run(args: Vec<OsString>) -> u8 {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let Some((index, words)) = args.split_first() else {
        return 0;
    };
    let Ok(index) = index.parse::<usize>() else {
        return 0;
    };
    // Word 0 is the command itself; a shell may put the cursor past the
    // last word (an empty word to complete).
    if index == 0 || index > words.len() {
        return 0;
    }
    let before = &words[1..index];
    let current = words.get(index).map(String::as_str).unwrap_or("");
    let reply = complete(before, current, &Sources);
    let mut out = std::io::stdout().lock();
    let _ = match reply {
        Reply::Files => writeln!(out, ":files"),
        Reply::Dirs => writeln!(out, ":dirs"),
        Reply::Commands => writeln!(out, ":commands"),
        Reply::Words(words) => words
            .iter()
            .filter(|(w, _)| w.starts_with(current))
            .try_for_each(|(w, d)| {
                if d.is_empty() {
                    writeln!(out, "{w}")
                } else {
                    writeln!(out, "{w}\t{d}")
                }
            }),
    };
    0
}

/// Where names come from: the system, or a test's fixed lists.
trait Names {
    fn namespaces(&self, config: &Config) -> Vec<String>;
    fn tasks(&self, config: &Config, ns: &NamespaceName, which: Tasks) -> Vec<String>;
}

/// The candidates for `current`, after the words `before` (without `lanco`).
fn complete(before: &[String], current: &str, names: &dyn Names) -> Reply {
    let mut cmd = crate::cli_command();
    cmd.build();
    let mut config_path: Option<String> = None;
    let mut namespace: Option<String> = None;
    let mut all_namespaces = false;
    let mut i = 0;
    // The words before the subcommand: global options and the namespace.
    let sub_name = loop {
        let Some(w) = before.get(i) else {
            // The current word is the namespace or the subcommand.
            if current.starts_with('-') {
                return Reply::Words(options_of(&cmd));
            }
            let config = load_config(&config_path);
            let mut words = Vec::new();
            if namespace.is_none() && !all_namespaces {
                words.extend(
                    names
                        .namespaces(&config)
                        .into_iter()
                        .map(|n| (n, String::new())),
                );
            }
            // `namespaces` takes no namespace, `--all-namespaces` goes with
            // `accounting` only, every other command needs a namespace.
            let fits = |name: &str| match (all_namespaces, namespace.is_some()) {
                (true, _) => name == "accounting",
                (false, false) => name == "namespaces",
                (false, true) => name != "namespaces",
            };
            words.extend(
                cmd.get_subcommands()
                    .filter(|s| !s.is_hide_set() && fits(s.get_name()))
                    .map(|s| (s.get_name().to_owned(), about(s))),
            );
            return Reply::Words(words);
        };
        i += 1;
        if w == "--" {
            return Reply::Words(Vec::new());
        }
        if w.starts_with('-') {
            match option_of(&cmd, w) {
                Some((arg, None)) if takes_value(arg) => match before.get(i) {
                    Some(v) => {
                        if arg.get_id() == "config" {
                            config_path = Some(v.clone());
                        }
                        i += 1;
                    }
                    None => return value_of(arg, None, &load_config(&config_path), None, names),
                },
                Some((arg, Some(v))) if arg.get_id() == "config" => config_path = Some(v),
                Some((arg, _)) if arg.get_id() == "all_namespaces" => all_namespaces = true,
                _ => {}
            }
            continue;
        }
        if namespace.is_none() && !all_namespaces && cmd.find_subcommand(w).is_none() {
            namespace = Some(w.clone());
            continue;
        }
        break w;
    };
    let Some(sub) = cmd.find_subcommand(sub_name) else {
        return Reply::Words(Vec::new());
    };
    let config = load_config(&config_path);
    let ns = namespace.and_then(|n| NamespaceName::try_from(n.as_str()).ok());
    let positionals: Vec<&Arg> = sub.get_positionals().collect();
    let mut position = 0;
    let mut trailing = false;
    while let Some(w) = before.get(i) {
        i += 1;
        if trailing {
            continue;
        }
        if w == "--" {
            trailing = true;
            continue;
        }
        if w.starts_with('-') && w.len() > 1 {
            if let Some((arg, None)) = option_of(sub, w) {
                if takes_value(arg) {
                    match before.get(i) {
                        Some(v) if arg.get_id() == "config" => {
                            config_path = Some(v.clone());
                            i += 1;
                        }
                        Some(_) => i += 1,
                        None => {
                            let config = load_config(&config_path);
                            return value_of(arg, Some(sub), &config, ns.as_ref(), names);
                        }
                    }
                }
            }
            continue;
        }
        // A positional: the next one, unless this one takes many.
        if let Some(p) = positionals.get(position) {
            if p.is_trailing_var_arg_set() {
                // The command's own arguments follow: lanco's options end.
                trailing = true;
                position += 1;
                continue;
            }
            if !multiple(p) {
                position += 1;
            }
        }
    }
    if trailing {
        return Reply::Files;
    }
    // `--opt=VALUE`: bash splits the word at `=`, so what it would replace
    // is not the word the other shells see; not completed (`--opt VALUE` is).
    if current.contains('=') || before.last().is_some_and(|w| w == "=") {
        return Reply::Words(Vec::new());
    }
    if current.starts_with('-') {
        return Reply::Words(options_of(sub));
    }
    match positionals.get(position) {
        Some(p) => value_of(p, Some(sub), &config, ns.as_ref(), names),
        None => Reply::Words(Vec::new()),
    }
}

fn load_config(path: &Option<String>) -> Config {
    let loaded = match path {
        Some(p) => Config::from_file(std::path::Path::new(p)),
        None => Config::load(),
    };
    loaded.unwrap_or_default()
}

/// The first line of a command's description.
fn about(c: &Command) -> String {
    c.get_about()
        .map(|a| a.to_string())
        .and_then(|a| a.lines().next().map(str::to_owned))
        .unwrap_or_default()
}

/// `--long`, `-s` of a command, with their help's first line.
fn options_of(cmd: &Command) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for a in cmd
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_hide_set())
    {
        let help = a
            .get_help()
            .map(|h| h.to_string())
            .and_then(|h| h.lines().next().map(str::to_owned))
            .unwrap_or_default();
        if let Some(l) = a.get_long() {
            out.push((format!("--{l}"), help.clone()));
        }
        if let Some(s) = a.get_short() {
            out.push((format!("-{s}"), help));
        }
    }
    out
}

/// The option `word` names (`--long`, `--long=VALUE`, `-s`, `-sVALUE`, or
/// a cluster of short flags whose last takes a value), and the value given
/// in the same word.
fn option_of<'c>(cmd: &'c Command, word: &str) -> Option<(&'c Arg, Option<String>)> {
    if let Some(long) = word.strip_prefix("--") {
        let (name, value) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (long, None),
        };
        return cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .map(|a| (a, value));
    }
    let shorts = word.strip_prefix('-')?;
    for (at, c) in shorts.char_indices() {
        let arg = cmd.get_arguments().find(|a| a.get_short() == Some(c))?;
        if takes_value(arg) {
            let rest = &shorts[at + c.len_utf8()..];
            return Some((arg, (!rest.is_empty()).then(|| rest.to_owned())));
        }
        if at + c.len_utf8() == shorts.len() {
            return Some((arg, None));
        }
    }
    None
}

fn takes_value(a: &Arg) -> bool {
    a.get_action().takes_values()
}

fn multiple(a: &Arg) -> bool {
    a.get_num_args().is_some_and(|r| r.max_values() > 1)
}

/// The values `arg` of `sub` takes.
fn value_of(
    arg: &Arg,
    sub: Option<&Command>,
    config: &Config,
    ns: Option<&NamespaceName>,
    names: &dyn Names,
) -> Reply {
    let words = |v: Vec<String>| Reply::Words(v.into_iter().map(|w| (w, String::new())).collect());
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|p| !p.is_hide_set())
        .map(|p| p.get_name().to_owned())
        .collect();
    if !possible.is_empty() {
        return words(possible);
    }
    let value_name = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| v.as_str())
        .unwrap_or("");
    match value_name {
        "FILE" | "LOGFILE" => Reply::Files,
        "DIR" => Reply::Dirs,
        "CMD" => Reply::Commands,
        "SIGNAL" => words(signals()),
        "POLICY" => words(["no", "on-failure", "always"].map(String::from).to_vec()),
        "HOW" => words(["exec", "notify", "fd:"].map(String::from).to_vec()),
        "BY" => words(["task", "user", "day"].map(String::from).to_vec()),
        "KEY" => words(
            lanco_proto::limits::Key::ALL
                .iter()
                .map(|k| k.name().to_owned())
                .collect(),
        ),
        "TASK" => {
            let Some(ns) = ns else {
                return Reply::Words(Vec::new());
            };
            // The positional TASK of these commands; a TASK of an option
            // (--needs …) may be any name.
            let which = match (sub.map(Command::get_name), arg.is_positional()) {
                (Some("stop" | "kill" | "release"), true) => Tasks::Running,
                (Some("start" | "restart" | "enable" | "disable" | "undefine"), true) => {
                    Tasks::MyDefinitions
                }
                (Some("show"), true) => Tasks::Definitions,
                _ => Tasks::Any,
            };
            words(names.tasks(config, ns, which))
        }
        _ => Reply::Words(Vec::new()),
    }
}

/// `HUP`, `INT`, … and the same with `SIG` (offered when it was typed).
fn signals() -> Vec<String> {
    let short = nix::sys::signal::Signal::iterator()
        .map(|s| s.as_str().trim_start_matches("SIG").to_owned())
        .collect::<Vec<_>>();
    let long = short.iter().map(|s| format!("SIG{s}"));
    short.iter().cloned().chain(long).collect()
}

/// Names as the caller can find them on this system.
struct Sources;

impl Names for Sources {
    fn namespaces(&self, config: &Config) -> Vec<String> {
        use nix::unistd::{access, AccessFlags};
        let mut out = BTreeSet::new();
        let listed = Dir::open(&config.log_dir).and_then(|d| d.list());
        if let Ok(entries) = &listed {
            let layout = layout::Layout::of(config, Default::default());
            for ns in entries.iter().filter_map(|e| layout::ns_of_log_entry(e)) {
                // Only a member (or root) may enter a namespace's log
                // directory.
                let dir = layout.ns_log_dir(&ns);
                if access(&dir, AccessFlags::R_OK | AccessFlags::X_OK).is_ok() {
                    out.insert(ns.to_string());
                }
            }
        }
        // An administrator may use namespaces whose group it is not in
        // (init, limit, destroy); lancod knows them all.
        let root = nix::unistd::geteuid().is_root();
        if listed.is_err() || (!root && super::accounting::is_admin(config)) {
            if let Ok(list) = crate::helper::namespaces(&config.socket) {
                out.extend(list.into_iter().map(|n| n.name.to_string()));
            }
        }
        out.into_iter().collect()
    }

    fn tasks(&self, config: &Config, ns: &NamespaceName, which: Tasks) -> Vec<String> {
        let Ok(ns) = Namespace::open(config.clone(), ns.clone()) else {
            return Vec::new();
        };
        let mut out: BTreeSet<TaskName> = BTreeSet::new();
        match which {
            Tasks::Running => {
                if let Ok(cgs) = layout::task_cgroups(ns.layout(), ns.name()) {
                    out.extend(cgs.into_iter().map(|c| c.task));
                }
            }
            Tasks::MyDefinitions => {
                if let Ok(d) = crate::defs::mine(&ns) {
                    out.extend(d.into_keys());
                }
            }
            Tasks::Definitions | Tasks::Any => {
                if let Ok(all) = crate::defs::all(&ns) {
                    out.extend(all.into_values().flat_map(|d| d.into_keys()));
                }
                if which == Tasks::Any {
                    if let Ok(names) = ns.names_dir().and_then(|d| Ok(d.list()?)) {
                        out.extend(names.iter().filter_map(|e| layout::task_of_lock_entry(e)));
                    }
                    if let Ok(cgs) = layout::task_cgroups(ns.layout(), ns.name()) {
                        out.extend(cgs.into_iter().map(|c| c.task));
                    }
                }
            }
        }
        out.into_iter().map(|t| t.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed names: namespaces `web`, `shop`; tasks named after `which`.
    struct Fixed;

    impl Names for Fixed {
        fn namespaces(&self, _: &Config) -> Vec<String> {
            vec!["shop".into(), "web".into()]
        }
        fn tasks(&self, _: &Config, ns: &NamespaceName, which: Tasks) -> Vec<String> {
            vec![format!("{ns}-{which:?}").to_lowercase()]
        }
    }

    fn words(line: &str) -> Vec<String> {
        let mut w: Vec<String> = line.split(' ').map(String::from).collect();
        let current = w.pop().unwrap_or_default();
        match complete(&w, &current, &Fixed) {
            Reply::Words(ws) => ws
                .into_iter()
                .map(|(w, _)| w)
                .filter(|w| w.starts_with(&current))
                .collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn namespace_first_then_subcommands() {
        assert_eq!(words(""), ["shop", "web", "namespaces"]);
        let subs = words("web ");
        assert!(subs.contains(&"run".into()) && subs.contains(&"top".into()));
        assert!(!subs.contains(&"namespaces".into()) && !subs.contains(&"web".into()));
        assert_eq!(words("--all-namespaces "), ["accounting"]);
        assert_eq!(words("--config /x w"), ["web"]);
        assert!(words("--").contains(&"--all-namespaces".into()));
    }

    #[test]
    fn tasks_by_command() {
        assert_eq!(words("web stop "), ["web-running"]);
        assert_eq!(words("web kill -s HUP "), ["web-running"]);
        assert_eq!(words("web start a "), ["web-mydefinitions"]);
        assert_eq!(words("web show "), ["web-definitions"]);
        assert_eq!(words("web logs -n 5 "), ["web-any"]);
        assert_eq!(words("web run --needs "), ["web-any"]);
        assert_eq!(words("web status "), ["web-any"]);
    }

    #[test]
    fn values_and_options() {
        assert!(words("web kill -s ").contains(&"HUP".into()));
        assert_eq!(words("web kill -s SIGHU"), ["SIGHUP"]);
        assert!(words("web kill --signal=TE").is_empty());
        assert_eq!(words("web run --restart "), ["no", "on-failure", "always"]);
        assert_eq!(words("web accounting --by "), ["task", "user", "day"]);
        assert_eq!(words("web apply "), ["Files"]);
        assert_eq!(words("web run --cwd "), ["Dirs"]);
        assert_eq!(words("web run t "), ["Commands"]);
        assert_eq!(words("web run t ls -"), ["Files"]);
        assert!(words("web stop --").contains(&"--timeout".into()));
        assert!(words("web run -").contains(&"-f".into()));
        assert_eq!(words("web stop t "), Vec::<String>::new());
    }

    #[test]
    fn listed_values_parse() {
        use std::str::FromStr;
        for p in ["no", "on-failure", "always"] {
            crate::supervision::Restart::from_str(p).unwrap();
        }
        for b in ["task", "user", "day"] {
            crate::accounting::By::from_str(b).unwrap();
        }
        for s in signals() {
            crate::signal::Signal::from_str(&s).unwrap();
        }
    }
}
