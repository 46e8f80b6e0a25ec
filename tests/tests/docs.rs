//! The man pages and shell completions that `lanco-gen` writes for the
//! package: each page rendered by man(1) as a reader would see it, and the
//! bash completion run in a real bash as a member of a namespace with tasks.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lanco_e2e::{as_user, setup, target_dir, ALICE, EVE, OPS};

/// Runs `lanco-gen` into a fresh directory under `parent`; returns it.
fn generate(parent: &Path) -> PathBuf {
    lanco_e2e::cargo_build(&["-p", "lanco-client", "--bins"]);
    let out = parent.join("gen");
    let _ = fs::remove_dir_all(&out);
    let st = Command::new(target_dir().join("lanco-gen"))
        .arg(&out)
        .status()
        .expect("lanco-gen");
    assert!(st.success(), "lanco-gen failed");
    out
}

/// A tool a test needs: CI installs it (.ci/run); elsewhere its absence
/// skips the check.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("LANCO_E2E_REQUIRED").as_deref() != Ok("1"),
            "{tool} is not installed and LANCO_E2E_REQUIRED=1"
        );
        eprintln!("SKIP: {tool} is not installed");
    }
    found
}

/// The page as man(1) renders it (ASCII, lines long enough that no name is
/// broken), asserting groff had nothing to warn about.
fn render(page: &Path) -> String {
    let o = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("LC_ALL", "C")
        .env("MANWIDTH", "200")
        .env("MANPAGER", "cat")
        .output()
        .expect("man");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.trim().is_empty(),
        "man -l {}: {}",
        page.display(),
        err
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The text of section `name` (up to the next heading).
fn section(page: &str, name: &str) -> String {
    let mut lines = page.lines().skip_while(|l| *l != name).skip(1);
    let mut out = String::new();
    for l in lines.by_ref() {
        if !l.is_empty() && !l.starts_with(' ') {
            break;
        }
        out.push_str(l.trim());
        out.push('\n');
    }
    out
}

/// The commands `lanco --help` lists (clap's own `help` left out).
fn commands() -> Vec<String> {
    let o = Command::new(target_dir().join("lanco"))
        .arg("--help")
        .output()
        .expect("lanco --help");
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    let list: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // a wrapped description
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(list.len() >= 20, "commands from --help: {list:?}\n{help}");
    list
}

#[test]
fn man_pages_render_with_the_namespace_in_each_synopsis() {
    if !have("man") {
        return;
    }
    let dir = PathBuf::from(format!("/tmp/lanco-e2e-docs-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("dir");
    let man = generate(&dir).join("man");

    let main = render(&man.join("lanco.1"));
    let synopsis = section(&main, "SYNOPSIS");
    assert!(
        synopsis.contains("lanco [OPTIONS] NAMESPACE COMMAND")
            && synopsis.contains("lanco [OPTIONS] namespaces")
            && synopsis.contains("--all-namespaces accounting"),
        "{synopsis}"
    );
    let name = section(&main, "NAME");
    let description = section(&main, "DESCRIPTION");
    let about = name.split(" - ").nth(1).expect("NAME: lanco - ...").trim();
    assert!(
        !description.contains(
            about
                .split_whitespace()
                .take(4)
                .collect::<Vec<_>>()
                .join(" ")
                .as_str()
        ),
        "DESCRIPTION repeats NAME: {description}"
    );
    // The exit statuses as a table: one row per status, its number first
    // and the meaning in a column of its own.
    let exit = section(&main, "EXIT STATUS");
    for code in 0..=8 {
        assert!(
            exit.lines().any(|l| {
                l.strip_prefix(&code.to_string())
                    .is_some_and(|rest| rest.starts_with("   ") && rest.trim().len() > 5)
            }),
            "no row for exit status {code}:\n{exit}"
        );
    }
    let files = section(&main, "FILES");
    assert!(
        files.contains("/var/log/lanco-NS/task-NAME.log")
            && files.contains("/etc/lanco/lanco.toml")
            && files.contains("/var/lib/lanco/ns/NS/user-UID/"),
        "{files}"
    );
    assert!(section(&main, "ENVIRONMENT").contains("LANCO_CONFIG"));
    let examples = section(&main, "EXAMPLES");
    assert!(
        examples.contains("lanco testns run first-task openssl speed aes"),
        "the quick tour: {examples}"
    );

    for c in commands() {
        let page = man.join(format!("lanco-{c}.1"));
        assert!(page.exists(), "no man page for {c}");
        let text = render(&page);
        let synopsis = section(&text, "SYNOPSIS");
        let expected = if c == "namespaces" {
            "lanco namespaces".to_owned()
        } else {
            format!("lanco NAMESPACE {c}")
        };
        assert!(synopsis.starts_with(&expected), "lanco-{c}(1): {synopsis}");
        if c == "accounting" {
            assert!(
                synopsis.contains("lanco --all-namespaces accounting"),
                "{synopsis}"
            );
        }
        for s in ["DESCRIPTION", "EXIT STATUS", "EXAMPLES", "SEE ALSO"] {
            assert!(
                !section(&text, s).trim().is_empty(),
                "lanco-{c}(1) has no {s}"
            );
        }
        assert!(
            section(&text, "EXAMPLES").contains(&format!(" {c}")),
            "lanco-{c}(1)'s examples"
        );
        assert!(
            main.contains(&format!("lanco-{c}(1)")),
            "lanco(1) does not point to lanco-{c}(1)"
        );
    }

    // Every key the parser accepts (the fields of Config, as serde sees
    // them) is in lanco.toml(5), with its default.
    let toml5 = render(&man.join("lanco.toml.5"));
    let keys = section(&toml5, "KEYS");
    let config = serde_json::to_value(lanco_proto::Config::default()).expect("config");
    let fields = config.as_object().expect("an object");
    assert!(fields.len() >= 14);
    for key in fields.keys() {
        assert!(
            keys.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "lanco.toml(5) does not document {key}:\n{keys}"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

/// `_lanco` in a real bash as `user`: one line per call, `WORDS|CANDIDATES`.
const BASH_DRIVER: &str = r#"
. "$COMPLETION"
c() {
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
    _lanco
    printf '%s|%s\n' "$*" "${COMPREPLY[*]}"
}
"#;

fn candidates(out: &str, words: &str) -> Vec<String> {
    let line = out
        .lines()
        .find(|l| l.split('|').next() == Some(words))
        .unwrap_or_else(|| panic!("no completion of {words:?} in:\n{out}"));
    let mut c: Vec<String> = line
        .split('|')
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    c.sort();
    c
}

#[test]
fn bash_completes_namespaces_tasks_and_signals_as_a_member() {
    let Some(mut inst) = setup("bash_completion") else {
        return;
    };
    inst.init("cns", ALICE, OPS);
    inst.init("closed", EVE, &lanco_e2e_group_of(EVE));
    let a = Some(ALICE);
    inst.lanco(a, &["cns", "run", "alpha", "sleep", "1000"])
        .ok();
    inst.lanco(a, &["cns", "run", "beta", "sleep", "1000"]).ok();
    inst.lanco(a, &["cns", "run", "done", "true"]).ok();
    inst.lanco(a, &["cns", "define", "gamma", "sleep", "5"])
        .ok();
    inst.lanco(a, &["cns", "wait", "done"]).ok();

    let gen = generate(&inst.dir);
    let script = gen.join("completions/lanco.bash");
    fs::set_permissions(&gen, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(gen.join("completions"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).expect("chmod");

    // Names come from what the member can read: lancod is not asked.
    inst.kill_lancod(nix::sys::signal::Signal::SIGTERM);

    let calls = [
        "c lanco ''",
        "c lanco cns ''",
        "c lanco cns st",
        "c lanco cns stop ''",
        "c lanco cns kill -s ''",
        "c lanco cns kill -s SIGT",
        "c lanco cns kill -s HUP ''",
        "c lanco cns start ''",
        "c lanco cns show ''",
        "c lanco cns logs ''",
        "c lanco cns stop --",
        "c lanco --all-namespaces ''",
        "c lanco closed stop ''",
    ];
    let script_text = format!("{BASH_DRIVER}\n{}\n", calls.join("\n"));
    let o = as_user(ALICE, "bash")
        .args(["-c", &script_text])
        .env("COMPLETION", &script)
        .env("LANCO_CONFIG", &inst.config)
        .env("PATH", format!("{}:/usr/bin:/bin", inst.bin.display()))
        .current_dir(&inst.dir)
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success() && err.is_empty(), "bash: {err}\n{out}");

    // Where the namespace goes: alice's namespaces (not eve's), and the
    // one command that takes none.
    assert_eq!(candidates(&out, "lanco "), ["cns", "namespaces"], "{out}");
    let subs = candidates(&out, "lanco cns ");
    for c in [
        "run",
        "stop",
        "kill",
        "limit",
        "top",
        "accounting",
        "status",
    ] {
        assert!(subs.contains(&c.to_owned()), "{c} not offered: {subs:?}");
    }
    assert!(!subs.contains(&"namespaces".to_owned()) && !subs.contains(&"cns".to_owned()));
    assert_eq!(
        candidates(&out, "lanco cns st"),
        ["start", "status", "stop"]
    );
    // stop: the running tasks; start and show: the definitions; logs: every name.
    assert_eq!(candidates(&out, "lanco cns stop "), ["alpha", "beta"]);
    assert_eq!(candidates(&out, "lanco cns start "), ["gamma"]);
    assert_eq!(candidates(&out, "lanco cns show "), ["gamma"]);
    assert_eq!(
        candidates(&out, "lanco cns logs "),
        ["alpha", "beta", "done", "gamma"]
    );
    let signals = candidates(&out, "lanco cns kill -s ");
    for s in ["HUP", "TERM", "KILL", "USR1"] {
        assert!(
            signals.contains(&s.to_owned()),
            "{s} not offered: {signals:?}"
        );
    }
    assert_eq!(
        candidates(&out, "lanco cns kill -s SIGT"),
        ["SIGTERM", "SIGTRAP", "SIGTSTP", "SIGTTIN", "SIGTTOU"]
    );
    assert_eq!(
        candidates(&out, "lanco cns kill -s HUP "),
        ["alpha", "beta"]
    );
    let opts = candidates(&out, "lanco cns stop --");
    assert!(opts.contains(&"--timeout".to_owned()) && opts.contains(&"--force".to_owned()));
    assert_eq!(candidates(&out, "lanco --all-namespaces "), ["accounting"]);
    // A namespace alice is not in: nothing, and no error in the shell.
    assert!(candidates(&out, "lanco closed stop ").is_empty());

    // The helper itself never writes to stderr, whatever it is given.
    for args in [
        &["__complete", "3", "lanco", "closed", "stop", ""][..],
        &["__complete", "9", "lanco"],
        &["__complete", "x"],
        &["__complete"],
        &["__complete", "2", "lanco", "--config", "/nonexistent", ""],
    ] {
        let o = inst.lanco(a, args);
        assert!(o.code() == 0 && o.stderr().is_empty(), "{args:?}: {o}");
    }
}

/// The primary group of `user`.
fn lanco_e2e_group_of(user: &str) -> String {
    let u = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .expect("user");
    nix::unistd::Group::from_gid(u.gid)
        .ok()
        .flatten()
        .expect("group")
        .name
}

#[test]
fn zsh_and_fish_scripts_parse() {
    let dir = PathBuf::from(format!("/tmp/lanco-e2e-docs-sh-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("dir");
    let gen = generate(&dir).join("completions");
    for (shell, file) in [
        ("bash", "lanco.bash"),
        ("zsh", "_lanco"),
        ("fish", "lanco.fish"),
    ] {
        if !have(shell) {
            continue;
        }
        let o = Command::new(shell)
            .arg("-n")
            .arg(gen.join(file))
            .output()
            .expect(shell);
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{shell} -n {file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // fish can also run it here: `complete -C` completes a command line.
    if have("fish") {
        let o = Command::new("fish")
            .arg("-c")
            .arg(format!(
                "source {}; complete -C 'lanco --all-namespaces '; complete -C 'lanco x kill -s SIGH'",
                gen.join("lanco.fish").display()
            ))
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", target_dir().display()),
            )
            .output()
            .expect("fish");
        let out = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = out
            .lines()
            .map(|l| l.split('\t').next().unwrap_or(""))
            .collect();
        assert_eq!(lines, ["accounting", "SIGHUP"], "fish: {out}");
    }
    let _ = fs::remove_dir_all(&dir);
}
