//! The man pages: lanco(1), one lanco-COMMAND(1) per subcommand, and
//! lanco.toml(5), as roff. Options, descriptions and synopses come from the
//! clap definition ([`crate::cli`]), the exit statuses from
//! `EXIT_STATUS_HELP`, the configuration keys' defaults from
//! [`Config::default`]; the prose around them (examples, files,
//! environment, what each key means) is written here. Only `lanco-gen`
//! and the tests call it.

use std::fmt::Write as _;

use clap::{Arg, Command};
use lanco_proto::Config;

use crate::cli::EXIT_STATUS_HELP;

/// Every page: (file name, roff source).
pub fn pages() -> Vec<(String, String)> {
    let mut cmd = crate::cli_command();
    cmd.build();
    let version = cmd.get_version().unwrap_or("").to_owned();
    let mut out = vec![("lanco.1".to_owned(), main_page(&cmd, &version))];
    for sub in cmd.get_subcommands().filter(|s| shown(s)) {
        out.push((
            format!("lanco-{}.1", sub.get_name()),
            command_page(sub, &version),
        ));
    }
    out.push(("lanco.toml.5".to_owned(), config_page(&version)));
    out
}

/// A command with a page: not hidden, not clap's `help`.
fn shown(c: &Command) -> bool {
    !c.is_hide_set() && c.get_name() != "help"
}

/// Text for roff: backslashes escaped, no line starting with a control
/// character, dashes as minus signs (so option names can be searched and
/// copied).
fn esc(s: &str) -> String {
    let mut t = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => t.push_str("\\e"),
            '-' => t.push_str("\\-"),
            // Readable on an ASCII terminal too.
            '…' => t.push_str("..."),
            '→' => t.push_str("->"),
            c if c.is_ascii() => t.push(c),
            c => {
                let _ = write!(t, "\\[u{:04X}]", u32::from(c));
            }
        }
    }
    if t.starts_with('.') || t.starts_with('\'') {
        t.insert_str(0, "\\&");
    }
    t.replace("\n.", "\n\\&.").replace("\n'", "\n\\&'")
}

fn header(out: &mut String, title: &str, section: u8, version: &str) {
    // The first line asks man to run tbl (the tables below).
    let _ = writeln!(out, "'\\\" t");
    let _ = writeln!(
        out,
        ".TH {} {section} \"\" \"lanco {version}\" \"{}\"",
        esc(&title.to_uppercase()),
        if section == 5 {
            "File Formats"
        } else {
            "User Commands"
        }
    );
}

/// Paragraphs of `text` (separated by blank lines).
fn paragraphs(out: &mut String, text: &str) {
    for (i, p) in text.split("\n\n").enumerate() {
        if i > 0 {
            out.push_str(".PP\n");
        }
        let joined: Vec<&str> = p.split_whitespace().collect();
        let _ = writeln!(out, "{}", code_spans(&esc(&joined.join(" "))));
    }
}

/// `` `start` `` (Markdown's code, in the clap help) in bold.
fn code_spans(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    if parts.len().is_multiple_of(2) {
        return s.to_owned(); // unpaired: left as it is
    }
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "\\fB{p}\\fR");
        } else {
            out.push_str(p);
        }
    }
    out
}

/// Help and version: every command has them; not worth `[OPTIONS]`.
fn is_help(a: &Arg) -> bool {
    use clap::ArgAction::*;
    matches!(a.get_action(), Help | HelpShort | HelpLong | Version)
}

/// `\fBlanco\fR \fINAMESPACE\fR \fBrun\fR [\fIOPTIONS\fR] \fITASK\fR \fICMD\fR...`
fn synopsis(sub: &Command) -> Vec<String> {
    let name = sub.get_name();
    let has_options = sub
        .get_arguments()
        .any(|a| !a.is_positional() && !a.is_hide_set() && !is_help(a));
    let options = if has_options {
        " [\\fIOPTIONS\\fR]"
    } else {
        ""
    };
    let mut args = String::new();
    for p in sub.get_positionals() {
        let v = p
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string())
            .unwrap_or_else(|| p.get_id().to_string().to_uppercase());
        let many = p.get_num_args().is_some_and(|r| r.max_values() > 1);
        let dots = if many { "..." } else { "" };
        if p.is_required_set() {
            let _ = write!(args, " \\fI{}\\fR{dots}", esc(&v));
        } else {
            let _ = write!(args, " [\\fI{}\\fR{dots}]", esc(&v));
        }
    }
    let tail = format!("\\fB{}\\fR{options}{args}", esc(name));
    match name {
        "namespaces" => vec![format!("\\fBlanco\\fR {tail}")],
        "accounting" => vec![
            format!("\\fBlanco\\fR \\fINAMESPACE\\fR {tail}"),
            format!("\\fBlanco \\-\\-all\\-namespaces\\fR {tail}"),
        ],
        _ => vec![format!("\\fBlanco\\fR \\fINAMESPACE\\fR {tail}")],
    }
}

fn synopsis_section(out: &mut String, lines: &[String]) {
    out.push_str(".SH SYNOPSIS\n");
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str(".br\n");
        }
        let _ = writeln!(out, "{l}");
    }
}

/// `-s`, `--signal SIGNAL` and its help, grouped under their headings.
fn options_section(out: &mut String, cmd: &Command) {
    let args: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_hide_set())
        .collect();
    if args.is_empty() {
        return;
    }
    out.push_str(".SH OPTIONS\n");
    let mut heading: Option<&str> = None;
    // Ungrouped options first, then each heading's, in definition order.
    let mut headings: Vec<Option<&str>> = Vec::new();
    for a in &args {
        if !headings.contains(&a.get_help_heading()) {
            headings.push(a.get_help_heading());
        }
    }
    headings.sort_by_key(|h| h.is_some());
    for h in headings {
        if h != heading {
            if let Some(h) = h {
                let _ = writeln!(out, ".SS {}", esc(h));
            }
            heading = h;
        }
        for a in args.iter().filter(|a| a.get_help_heading() == h) {
            option(out, a);
        }
    }
}

fn option(out: &mut String, a: &Arg) {
    let mut names = Vec::new();
    if let Some(s) = a.get_short() {
        names.push(format!("\\fB\\-{}\\fR", esc(&s.to_string())));
    }
    if let Some(l) = a.get_long() {
        names.push(format!("\\fB\\-\\-{}\\fR", esc(l)));
    }
    let mut line = names.join(", ");
    if a.get_action().takes_values() {
        if let Some(v) = a.get_value_names().and_then(|v| v.first()) {
            let _ = write!(line, " \\fI{}\\fR", esc(v));
        }
    }
    let _ = writeln!(out, ".TP\n{line}");
    let help = a
        .get_long_help()
        .or(a.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut help = help;
    let defaults: Vec<String> = a
        .get_default_values()
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    if a.get_action().takes_values() && !defaults.is_empty() && !help.contains("[default") {
        let _ = write!(help, " [default: {}]", defaults.join(", "));
    }
    paragraphs(out, &help);
}

/// The positionals that have a help of their own.
fn arguments_section(out: &mut String, cmd: &Command) {
    let args: Vec<&Arg> = cmd
        .get_positionals()
        .filter(|a| a.get_help().is_some())
        .collect();
    if args.is_empty() {
        return;
    }
    out.push_str(".SH ARGUMENTS\n");
    for a in args {
        let v = a
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string())
            .unwrap_or_default();
        let _ = writeln!(out, ".TP\n\\fI{}\\fR", esc(&v));
        paragraphs(
            out,
            &a.get_help().map(|h| h.to_string()).unwrap_or_default(),
        );
    }
}

/// `EXIT_STATUS_HELP` as rows (status, meaning) and the notes after them.
pub(crate) fn exit_statuses() -> (Vec<(String, String)>, String) {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut notes = String::new();
    for line in EXIT_STATUS_HELP.lines().skip(1) {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        let code: String = t.chars().take_while(char::is_ascii_digit).collect();
        if !code.is_empty() && t[code.len()..].starts_with(' ') {
            rows.push((code.clone(), t[code.len()..].trim().to_owned()));
        } else if indent > 2 && notes.is_empty() && !rows.is_empty() {
            let last = rows.len() - 1;
            rows[last].1.push(' ');
            rows[last].1.push_str(t);
        } else {
            if !notes.is_empty() {
                notes.push(' ');
            }
            notes.push_str(t);
        }
    }
    (rows, notes)
}

fn exit_status_section(out: &mut String) {
    let (rows, notes) = exit_statuses();
    out.push_str(".SH EXIT STATUS\n");
    table(
        out,
        &["STATUS", "MEANING"],
        &rows
            .iter()
            .map(|(c, m)| vec![c.clone(), m.clone()])
            .collect::<Vec<_>>(),
    );
    if !notes.is_empty() {
        out.push_str(".PP\n");
        paragraphs(out, &notes);
    }
}

/// A tbl table; the last column wraps.
fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let n = head.len();
    out.push_str(".TS\ntab(@);\n");
    let mut fmt = vec!["lb"; n].join(" ");
    fmt.push('\n');
    let mut body = vec!["l"; n - 1];
    body.push("lx");
    fmt.push_str(&body.join(" "));
    let _ = writeln!(out, "{fmt}.");
    let _ = writeln!(out, "{}", head.join("@"));
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == n - 1 {
                    format!("T{{\n{}\nT}}", esc(c))
                } else {
                    esc(c)
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("@"));
    }
    out.push_str(".TE\n");
}

/// `command  # comment` lines as an indented, unfilled example.
fn examples(out: &mut String, lines: &[&str]) {
    out.push_str(".SH EXAMPLES\n.PP\n.RS 4\n.nf\n");
    for l in lines {
        let _ = writeln!(out, "{}", esc(l));
    }
    out.push_str(".fi\n.RE\n");
}

fn see_also(out: &mut String, pages: &[&str]) {
    out.push_str(".SH SEE ALSO\n");
    let refs: Vec<String> = pages
        .iter()
        .map(|p| {
            let (name, section) = p.split_once('(').unwrap_or((p, "1)"));
            // \%: not broken at its hyphens.
            format!("\\%\\fB{}\\fR({section}", esc(name))
        })
        .collect();
    let _ = writeln!(out, "{}", refs.join(",\n"));
}

const DESCRIPTION: &str = "\
Starts long-running tasks for ordinary users and daemons, gives each a name \
in a namespace, logs its output, and lets the namespace's members check, \
list, measure and stop it by that name. Each task is a cgroup v2 directory, \
so a task that forks, double-forks, calls setsid(2) or changes its process \
group is still one task, and stopping it leaves nothing behind.

There is no long-lived daemon: a small monitor process per task starts it, \
records its end (exit record, accounting journal) and restarts it if asked. \
A task keeps running when the program that started it exits or is upgraded, \
and when lanco itself is upgraded. The one privileged step, admission into a \
namespace's cgroup, is a request to lancod(8), which root and the admin group \
also use to create, limit and remove namespaces.

Namespaces are created by root or the admin group with init. Their members \
are the owner and the members of the namespace's group: any member may check, \
list, stop, kill, and read the status and logs of any task; a task runs as the \
member who started it, and its name belongs to that member. Names of \
namespaces and tasks are [A-Za-z0-9][A-Za-z0-9._-]*, at most 64 bytes.

Errors and refusals are one line on standard error, and the exit status says \
which kind (EXIT STATUS below).";

const TOUR: &[&str] = &[
    "# as root, once: a namespace owned by alice, shared with group ops",
    "sudo lanco testns init -u alice -g ops",
    "",
    "# as alice, or any member of ops",
    "lanco testns run first-task openssl speed aes  # returns once exec'd",
    "lanco testns check first-task && echo \"Still running\"",
    "lanco testns ls                 # the task, then each process: PID and command line",
    "head -3 /var/log/lanco-testns/task-first-task.log",
    "lanco testns run first-task openssl speed aes  # refused: already running",
    "lanco testns stop second-task  # refused: not running",
    "lanco testns run second-task sh -c \"while true; do (sleep 30 &)& sleep 1; done\"",
    "lanco testns ls                 # every sleep 30 is listed under second-task",
    "lanco testns stop second-task  # all of them end",
    "lanco testns check second-task || echo \"Killed!\"",
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "LANCO_CONFIG",
        "The configuration file to read instead of /etc/lanco/lanco.toml (it must exist); --config overrides it. lancod and the monitors read the same variable.",
    ),
    (
        "SUDO_USER",
        "Under sudo(8), init's default owner (otherwise the caller).",
    ),
    (
        "NOTIFY_SOCKET",
        "Given to a task whose readiness is notify: it sends READY=1 there (sd_notify(3)). Not taken from the caller.",
    ),
    (
        "LANCO_NAMESPACE, LANCO_TASK, LANCO_EXIT_STATUS, LANCO_EXIT",
        "Given to the on-exit command (run -c): the namespace, the task, its exit status as a number (128+N for signal N), and the end in words.",
    ),
];

/// (path, what it is); `{log_dir}` and `{state_dir}` are the defaults.
fn files_rows() -> Vec<Vec<String>> {
    let c = Config::default();
    let (s, l) = (c.state_dir.display(), c.log_dir.display());
    [
        ("/etc/lanco/lanco.toml".to_owned(), "the configuration (lanco.toml(5)); $LANCO_CONFIG or --config names another".to_owned()),
        (c.socket.display().to_string(), "lancod's socket".to_owned()),
        (format!("{l}/lanco-NS/task-NAME.log"), "task NAME's output (stdout and stderr), unless run -l named another file; rotated to .1 … .log_keep".to_owned()),
        (format!("{s}/ns/NS/names/"), "who owns which task name of namespace NS".to_owned()),
        (format!("{s}/ns/NS/user-UID/"), "a member's state: running tasks' state files, exit records (task-NAME.exit.json), control sockets".to_owned()),
        (format!("{s}/ns/NS/user-UID/defs.toml"), "a member's task definitions (define, apply; show prints them)".to_owned()),
        (format!("{s}/ns/NS/user-UID/accounting.jsonl"), "one JSON line per finished run of the member's tasks (accounting reads them)".to_owned()),
        (format!("{s}/namespaces/NS.toml"), "namespace NS's registration (root only)".to_owned()),
        (format!("{s}/billing/usage.jsonl"), "root's billing journal (accounting --all-namespaces --by user)".to_owned()),
        (format!("{s}/destroyed/, {l}/lanco.destroyed/"), "state and logs of destroyed namespaces (root only)".to_owned()),
        ("/sys/fs/cgroup/system.slice/lanco-tasks.service/ns-NS/user-UID/task-NAME/".to_owned(), "task NAME's cgroup (under systemd; cgroup_root says where otherwise)".to_owned()),
    ]
    .into_iter()
    .map(|(a, b)| vec![a, b])
    .collect()
}

fn main_page(cmd: &Command, version: &str) -> String {
    let mut out = String::new();
    header(&mut out, "lanco", 1, version);
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    let _ = writeln!(out, ".SH NAME\nlanco \\- {}", esc(&lower_first(&about)));
    synopsis_section(
        &mut out,
        &[
            "\\fBlanco\\fR [\\fIOPTIONS\\fR] \\fINAMESPACE\\fR \\fICOMMAND\\fR [\\fIARGS\\fR...]".into(),
            "\\fBlanco\\fR [\\fIOPTIONS\\fR] \\fBnamespaces\\fR [\\fB\\-\\-json\\fR]".into(),
            "\\fBlanco\\fR [\\fIOPTIONS\\fR] \\fB\\-\\-all\\-namespaces accounting\\fR [\\fIACCOUNTING OPTIONS\\fR]".into(),
        ],
    );
    out.push_str(".SH DESCRIPTION\n");
    paragraphs(&mut out, DESCRIPTION);
    options_section(&mut out, cmd);
    out.push_str(".SH COMMANDS\nEach has a page of its own: lanco\\-run(1) for run, and so on.\n");
    for sub in cmd.get_subcommands().filter(|s| shown(s)) {
        let first = synopsis(sub).remove(0);
        let _ = writeln!(out, ".TP\n{first}");
        paragraphs(
            &mut out,
            &sub.get_about().map(|a| a.to_string()).unwrap_or_default(),
        );
    }
    exit_status_section(&mut out);
    out.push_str(".SH ENVIRONMENT\n");
    for (name, what) in ENVIRONMENT {
        let _ = writeln!(out, ".TP\n\\fB{}\\fR", esc(name));
        paragraphs(&mut out, what);
    }
    out.push_str(".SH FILES\nWith the default configuration (NS: a namespace, UID: a member, NAME: a task):\n");
    for row in files_rows() {
        // \% : a path is not hyphenated.
        let _ = writeln!(out, ".TP\n\\%{}", esc(&row[0]));
        paragraphs(&mut out, &row[1]);
    }
    examples(&mut out, TOUR);
    let mut also: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| shown(s))
        .map(|s| format!("lanco-{}(1)", s.get_name()))
        .collect();
    also.extend([
        "lanco.toml(5)".into(),
        "lancod(8)".into(),
        "systemd-run(1)".into(),
    ]);
    let refs: Vec<&str> = also.iter().map(String::as_str).collect();
    see_also(&mut out, &refs);
    out
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A few examples per command; `NS` is the namespace.
fn command_examples(name: &str) -> &'static [&'static str] {
    match name {
        "namespaces" => &["lanco namespaces", "lanco namespaces --json | jq -r '.[].namespace'"],
        "init" => &[
            "sudo lanco web init -u www-data -g webteam   # www-data must be in webteam",
            "sudo lanco ci init -u alice --memory 8G --pids 2000",
        ],
        "destroy" => &["sudo lanco web destroy", "sudo lanco web destroy --force   # stop its tasks first"],
        "run" => &[
            "lanco web run backup rsync -a /srv/data /mnt/backup",
            "lanco web run -f --memory 2G build make -j4   # wait; exit with make's status",
            "lanco web run --restart on-failure --ready notify api ./api --port 8080",
            "lanco web run -c 'echo \"$LANCO_TASK: $LANCO_EXIT_STATUS\" | mail -s done me' job ./job",
        ],
        "define" => &[
            "lanco web define --enable --restart always web ./server --port 8080",
            "lanco web define --needs db --cwd /srv/app app ./app",
        ],
        "apply" => &["lanco shop apply services.toml && lanco shop start db web"],
        "undefine" => &["lanco web undefine old-job", "lanco web undefine --stop web"],
        "defs" => &["lanco web defs", "lanco web defs --json"],
        "show" => &["lanco web show db > db.toml   # edit, then: lanco web apply db.toml"],
        "enable" => &["lanco web enable db   # started again at boot"],
        "disable" => &["lanco web disable db"],
        "start" => &["lanco shop start db web", "lanco shop start --enabled", "lanco shop start --no-wait db"],
        "limit" => &[
            "lanco web limit                  # show the ceilings",
            "sudo lanco web limit --memory 4G --cpu 2",
            "sudo lanco web limit --clear memory",
        ],
        "restart" => &["lanco shop restart web", "lanco shop restart --force db   # its dependents stop and start again"],
        "check" => &["lanco web check backup && echo running", "until lanco web check api; do sleep 1; done"],
        "stop" => &["lanco web stop backup", "lanco web stop --timeout 30 db", "lanco web stop --force db"],
        "release" => &["lanco shop release db   # stops once nothing needs it"],
        "deps" => &["lanco shop deps web", "lanco shop deps --json web"],
        "kill" => &["lanco web kill -s HUP nginx", "lanco web kill -s USR1 worker"],
        "wait" => &["lanco ci wait build-42; echo \"exit $?\"", "lanco ci wait --timeout 600 a b c"],
        "ls" => &["lanco web ls", "lanco web ls -l", "lanco web ls --json"],
        "status" => &["lanco web status api", "lanco web status --json api | jq .state"],
        "accounting" => &[
            "lanco web accounting --since -7d",
            "lanco web accounting --by day --csv > web.csv",
            "sudo lanco --all-namespaces accounting --since 2026-11-01 --until 2026-12-01",
        ],
        "logs" => &["lanco web logs -n 20 api", "lanco web logs -f build"],
        "top" => &["lanco web top", "lanco web top -b -d 2", "lanco web top --json"],
        _ => &[],
    }
}

fn command_page(sub: &Command, version: &str) -> String {
    let name = sub.get_name();
    let mut out = String::new();
    header(&mut out, &format!("lanco-{name}"), 1, version);
    let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
    let short = about.split("\n\n").next().unwrap_or("").trim();
    let short: Vec<&str> = short.split_whitespace().collect();
    let _ = writeln!(
        out,
        ".SH NAME\nlanco\\-{} \\- {}",
        esc(name),
        esc(&lower_first(&short.join(" ")))
    );
    synopsis_section(&mut out, &synopsis(sub));
    out.push_str(".SH DESCRIPTION\n");
    let long = sub
        .get_long_about()
        .or(sub.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    paragraphs(&mut out, &long);
    if name != "namespaces" {
        out.push_str(
            ".PP\nNAMESPACE is the namespace the command acts in; \\fBlanco namespaces\\fR lists those you may use.\n",
        );
    }
    arguments_section(&mut out, sub);
    options_section(&mut out, sub);
    let after = sub
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    if !after.is_empty() && after != EXIT_STATUS_HELP {
        out.push_str(".SH NOTES\n");
        paragraphs(&mut out, &after);
    }
    exit_status_section(&mut out);
    let ex = command_examples(name);
    if !ex.is_empty() {
        examples(&mut out, ex);
    }
    see_also(&mut out, &["lanco(1)", "lanco.toml(5)"]);
    out
}

/// Every key of lanco.toml and what it means; the defaults come from
/// [`Config::default`].
pub(crate) const CONFIG_KEYS: &[(&str, &str)] = &[
    ("socket", "lancod's socket. Must match ListenStream= of lancod.socket."),
    ("cgroup_root", "Where tasks' cgroups live. \"auto\": the delegated cgroup of lanco-tasks.service when systemd runs the machine (<cgroup2 mount>/system.slice/lanco-tasks.service), else lanco/ under the cgroup2 mount. An explicit directory must be absolute and lie inside the cgroup2 mount (and needs a ReadWritePaths= drop-in for lancod.service)."),
    ("state_dir", "The namespace registry (root's), each namespace's state, members' exit records, definitions and accounting journals, root's billing journal. Absolute."),
    ("log_dir", "Task logs go to {log_dir}/lanco-NS/task-TASK.log. Absolute."),
    ("admin_group", "Members of this group may init, limit and destroy namespaces and read every namespace's accounting; empty: root only."),
    ("idle_timeout", "Seconds lancod lingers after its last request; 0: it never exits by itself."),
    ("log_keep", "Rotated logs kept per task (task-T.log.1 … .N)."),
    ("log_max_bytes", "Size in bytes past which the monitor rotates a running task's log (copy, then truncate in place); 0: never rotate a running task's log."),
    ("accounting_keep", "Rotated parts kept of each member's accounting journal (accounting.jsonl.1 … .N; older ones are removed); 0: never rotate."),
    ("accounting_max_bytes", "Size in bytes past which the journal is rotated before the next line is appended; 0: never rotate."),
    ("user_max_cgroups", "Most cgroups one member's subtree of a namespace may hold (its tasks, the cgroups they make, its monitors' leaf): bounds the kernel memory a tenant can pin (cgroup.max.descendants). Applied when lancod next admits that member."),
    ("monitor", "The per-task monitor binary (absolute); empty: /usr/libexec/lanco/lanco-monitor."),
    ("lanco", "The lanco command (absolute) that lancod runs at boot, as each member, to start the member's enabled definitions (lanco NS start --enabled); empty: /usr/bin/lanco."),
    ("spawner_idle_secs", "Seconds a member's warm spawner (the fast start path: later runs are forked in the member's monitors cgroup instead of admitted by lancod) lingers after its last start; 0: no spawner, every run is admitted."),
];

/// `key = value` of every key of the default configuration, as TOML.
pub(crate) fn config_defaults() -> Vec<(String, String)> {
    let text = toml::to_string(&Config::default()).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn config_page(version: &str) -> String {
    let mut out = String::new();
    header(&mut out, "lanco.toml", 5, version);
    out.push_str(
        ".SH NAME\nlanco.toml \\- configuration of lanco, lancod and the per\\-task monitors\n",
    );
    out.push_str(".SH SYNOPSIS\n/etc/lanco/lanco.toml, or the file $LANCO_CONFIG names\n");
    out.push_str(".SH DESCRIPTION\n");
    paragraphs(
        &mut out,
        "A TOML file of keys at the top level; every key is optional. The file is \
         read by lanco(1) at each command, by each task's monitor when it starts, and by \
         lancod(8). A key that is not listed here is an error, so that a typo never falls \
         back to a default silently; so is a relative path where an absolute one is \
         needed. Without the file (and without $LANCO_CONFIG) every key has its default.",
    );
    paragraphs(
        &mut out,
        "Changes apply without a restart or reload: lancod looks at the file (one stat)          before each request and reads it again when it changed; an edit it cannot use          (a syntax error, an unknown key, an admin_group that does not exist) is logged          and the previous configuration stays in force. socket and idle_timeout apply          when lancod next starts (it exits when idle). lanco and the monitors read the          file at every start.",
    );
    out.push_str(".SH KEYS\n");
    let defaults = config_defaults();
    for (key, what) in CONFIG_KEYS {
        let default = defaults
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let _ = writeln!(out, ".TP\n\\fB{}\\fR = \\fI{}\\fR", esc(key), esc(default));
        paragraphs(&mut out, what);
    }
    examples(
        &mut out,
        &[
            "# /etc/lanco/lanco.toml",
            "admin_group = \"lanco-admins\"   # they may init and destroy namespaces too",
            "idle_timeout = 60",
            "log_max_bytes = 268435456      # rotate running tasks' logs at 256 MiB",
        ],
    );
    out.push_str(".SH FILES\n.TP\n/etc/lanco/lanco.toml\nThe configuration, unless $LANCO_CONFIG names another file.\n");
    see_also(&mut out, &["lanco(1)", "lancod(8)"]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_key_is_documented() {
        let keys: Vec<String> = config_defaults().into_iter().map(|(k, _)| k).collect();
        let documented: Vec<&str> = CONFIG_KEYS.iter().map(|(k, _)| *k).collect();
        assert!(keys.len() >= 14, "{keys:?}");
        for k in &keys {
            assert!(
                documented.contains(&k.as_str()),
                "key {k} is not in lanco.toml(5)"
            );
        }
        for k in &documented {
            assert!(
                keys.iter().any(|x| x == k),
                "lanco.toml(5) documents {k}, which is no key"
            );
        }
    }

    #[test]
    fn every_command_has_a_page_with_examples() {
        let pages = pages();
        let cmd = crate::cli_command();
        for sub in cmd.get_subcommands().filter(|s| shown(s)) {
            let file = format!("lanco-{}.1", sub.get_name());
            let page = pages
                .iter()
                .find(|(f, _)| *f == file)
                .unwrap_or_else(|| panic!("no {file}"));
            assert!(page.1.contains(".SH EXAMPLES"), "{file} has no examples");
        }
    }

    #[test]
    fn exit_statuses_are_rows() {
        let (rows, notes) = exit_statuses();
        let codes: Vec<&str> = rows.iter().map(|(c, _)| c.as_str()).collect();
        for c in ["0", "1", "2", "3", "4", "5", "6", "7", "8"] {
            assert!(codes.contains(&c), "{codes:?}");
        }
        assert!(rows.iter().all(|(_, m)| !m.is_empty() && !m.contains("  ")));
        assert!(notes.contains("128+N"), "{notes}");
    }
}
