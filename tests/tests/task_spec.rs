//! What a task is given, through the library and through `lanco run`: an
//! explicit environment (empty unless inherited, set/unset, never a name
//! twice), relative paths refused by the library and made absolute by the
//! CLI from the caller's directory, start failures that say which step
//! failed, and the monitor found from the installation's config, not beside
//! the caller's executable.
//!
//! The library's caller is `lanco-client/examples/spec_probe.rs`, run as a
//! real member from a directory with no lanco-monitor in it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::time::Duration;

use lanco_e2e::{setup, wait_for, Install, Out, ALICE, OPS};

/// The probe, built once per test process, installed into `{inst}/daemon/`,
/// a directory without a monitor.
fn install_probe(inst: &Install) -> PathBuf {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| lanco_e2e::cargo_build(&["-p", "lanco-client", "--example", "spec_probe"]));
    let dir = inst.dir.join("daemon");
    fs::create_dir_all(&dir).unwrap();
    let p = dir.join("spec_probe");
    lanco_e2e::install_file(&lanco_e2e::target_dir().join("examples/spec_probe"), &p);
    assert!(!dir.join("lanco-monitor").exists());
    p
}

/// A caller as a daemon's environment would have it: a secret, a FOO.
fn caller_env(c: &mut Command, config: &Path) {
    c.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANCO_CONFIG", config)
        .env("SECRET_TOKEN", "hunter2")
        .env("FOO", "b");
}

/// `cmd args…` as alice, with [`caller_env`], from `cwd`.
fn as_alice(inst: &Install, cwd: &Path, cmd: &Path, args: &[&str]) -> Out {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={ALICE}"),
        &format!("--regid={ALICE}"),
        "--init-groups",
        "--",
    ])
    .arg(cmd)
    .args(args)
    .current_dir(cwd)
    .stdin(Stdio::null());
    caller_env(&mut c, &inst.config);
    Out(c.output().expect("setpriv"))
}

/// Waits until `task` has ended, then its log.
fn log_after_end(inst: &Install, task: &str) -> String {
    assert!(
        wait_for(Duration::from_secs(10), || inst
            .lanco(Some(ALICE), &["ns", "check", task])
            .code()
            == 1),
        "{task} did not end"
    );
    inst.read_log("ns", task)
}

/// A directory of alice's under the installation.
fn alice_dir(inst: &Install, name: &str) -> PathBuf {
    let d = inst.dir.join(name);
    fs::create_dir_all(&d).unwrap();
    let alice = nix::unistd::User::from_name(ALICE).unwrap().unwrap();
    nix::unistd::chown(&d, Some(alice.uid), Some(alice.gid)).unwrap();
    d
}

fn lines_with(log: &str, prefix: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_library_gives_a_task_only_the_environment_asked_for() {
    let Some(inst) = setup("spec_env_library") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let probe = install_probe(&inst);
    let run = |task: &str, opts: &[&str]| {
        let mut args = vec!["ns", task];
        args.extend(opts);
        args.extend(["--", "env"]);
        as_alice(&inst, &inst.dir, &probe, &args).ok();
        log_after_end(&inst, task)
    };
    // By default: nothing of the caller's, not even PATH (`env` is found
    // in the default PATH).
    assert_eq!(run("empty", &[]), "", "a new spec's environment is empty");
    assert_eq!(run("only", &["--set", "ONLY=1"]), "ONLY=1\n");
    // Inherited: the caller's, as it is.
    let all = run("inherit", &["--inherit"]);
    assert_eq!(lines_with(&all, "SECRET_TOKEN="), ["SECRET_TOKEN=hunter2"]);
    assert_eq!(lines_with(&all, "FOO="), ["FOO=b"]);
    assert_eq!(
        lines_with(&all, "PATH="),
        ["PATH=/usr/local/bin:/usr/bin:/bin"]
    );
    // Set replaces (once, whatever the order of the calls), unset removes.
    let changed = run(
        "changed",
        &[
            "--set",
            "FOO=a",
            "--inherit",
            "--unset",
            "SECRET_TOKEN",
            "--set",
            "NEW=x",
            "--set",
            "NEW=y",
        ],
    );
    assert_eq!(lines_with(&changed, "FOO="), ["FOO=a"], "{changed}");
    assert_eq!(lines_with(&changed, "NEW="), ["NEW=y"], "{changed}");
    assert!(lines_with(&changed, "SECRET_TOKEN").is_empty(), "{changed}");
    // Cleared again: only what is set after.
    assert_eq!(
        run(
            "cleared",
            &["--inherit", "--set", "A=1", "--clear", "--set", "B=2"]
        ),
        "B=2\n"
    );
    // A name execve could not carry is refused before anything starts.
    as_alice(
        &inst,
        &inst.dir,
        &probe,
        &["ns", "bad", "--set", "=x", "--", "env"],
    )
    .fails(2, "bad environment variable name");
    assert!(!inst.task_cgroup("ns", "bad").exists());
}

#[test]
fn the_cli_keeps_the_callers_environment_with_env_on_top() {
    let Some(inst) = setup("spec_env_cli") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let lanco = inst.bin.join("lanco");
    let run = |task: &str, opts: &[&str]| {
        let mut args = vec!["ns", "run", "-f"];
        args.extend(opts);
        args.extend([task, "env"]);
        as_alice(&inst, &inst.dir, &lanco, &args).ok();
        inst.read_log("ns", task)
    };
    // As nohup: the caller's environment; --env replaces, never a duplicate.
    let log = run("over", &["--env", "FOO=a", "--env", "X=1=2"]);
    assert_eq!(lines_with(&log, "FOO="), ["FOO=a"], "{log}");
    assert_eq!(lines_with(&log, "X="), ["X=1=2"], "{log}");
    assert_eq!(lines_with(&log, "SECRET_TOKEN="), ["SECRET_TOKEN=hunter2"]);
    // --clear-env: only the --env variables.
    assert_eq!(run("clear", &["--clear-env", "--env", "FOO=a"]), "FOO=a\n");
    as_alice(
        &inst,
        &inst.dir,
        &lanco,
        &["ns", "run", "--env", "=x", "t", "env"],
    )
    .fails(2, "--env takes KEY=VALUE");
}

#[test]
fn relative_paths_are_the_callers_in_the_cli_and_refused_by_the_library() {
    let Some(inst) = setup("spec_paths") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let probe = install_probe(&inst);
    let lanco = inst.bin.join("lanco");
    let here = alice_dir(&inst, "here");
    let sub = alice_dir(&inst, "here/sub");
    fs::create_dir_all(sub.join("bin")).unwrap();
    let hello = sub.join("bin/hello");
    fs::write(&hello, "#!/bin/sh\necho hello from $(pwd)\n").unwrap();
    fs::set_permissions(&hello, fs::Permissions::from_mode(0o755)).unwrap();

    // The CLI: --cwd and -l both from the caller's directory (-l not from
    // --cwd); a relative argv[0] and PATH entry from the task's cwd, as
    // execvp would after the chdir.
    as_alice(
        &inst,
        &here,
        &lanco,
        &[
            "ns",
            "run",
            "-f",
            "--cwd",
            "sub",
            "-l",
            "out.log",
            "rel",
            "./bin/hello",
        ],
    )
    .ok();
    let sub_shown = sub.display().to_string();
    assert_eq!(
        fs::read_to_string(here.join("out.log")).unwrap(),
        format!("hello from {sub_shown}\n")
    );
    assert!(!sub.join("out.log").exists());
    as_alice(
        &inst,
        &here,
        &lanco,
        &[
            "ns", "run", "-f", "--cwd", "sub", "--env", "PATH=bin", "path", "hello",
        ],
    )
    .ok();
    assert_eq!(
        inst.read_log("ns", "path"),
        format!("hello from {sub_shown}\n")
    );

    // The library: relative paths are refused, naming the path; nothing starts.
    as_alice(
        &inst,
        &here,
        &probe,
        &["ns", "lib", "--cwd", "sub", "--", "pwd"],
    )
    .fails(2, "the working directory must be an absolute path, not sub");
    as_alice(
        &inst,
        &here,
        &probe,
        &["ns", "lib", "--log", "out.log", "--", "pwd"],
    )
    .fails(2, "the log file must be an absolute path, not out.log");
    assert!(!inst.task_cgroup("ns", "lib").exists());
    // Its default cwd is the caller's, absolute.
    as_alice(&inst, &here, &probe, &["ns", "lib", "--", "pwd"]).ok();
    assert_eq!(log_after_end(&inst, "lib"), format!("{}\n", here.display()));
}

#[test]
fn a_start_failure_says_which_step_failed() {
    let Some(inst) = setup("spec_failures") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let probe = install_probe(&inst);
    let lanco = inst.bin.join("lanco");
    let not_exec = inst.dir.join("not-executable");
    fs::write(&not_exec, "data").unwrap();
    let not_exec = not_exec.display().to_string();
    let in_dir = format!("PATH={}", inst.dir.display());
    // Executable, but neither a binary nor a script: execve's ENOEXEC.
    let garbage = inst.dir.join("no-shebang");
    fs::write(&garbage, "just text\n").unwrap();
    fs::set_permissions(&garbage, fs::Permissions::from_mode(0o755)).unwrap();
    let garbage = garbage.display().to_string();
    let cases: &[(&[&str], String)] = &[
        (
            &["--cwd", "/root", "true"],
            "cannot change directory to /root: Permission denied".into(),
        ),
        (
            &["--cwd", "/nonexistent", "true"],
            "cannot change directory to /nonexistent: No such file or directory".into(),
        ),
        (
            &["/nonexistent/prog"],
            "cannot execute /nonexistent/prog: No such file or directory".into(),
        ),
        (
            &["nosuchcmd"],
            "cannot execute nosuchcmd: No such file or directory".into(),
        ),
        (
            &[&not_exec],
            format!("cannot execute {not_exec}: Permission denied"),
        ),
        // Searched for: found but not executable is "Permission denied"; a
        // PATH directory alice cannot search (/root) hides nothing.
        (
            &["--env", &in_dir, "not-executable"],
            "cannot execute not-executable: Permission denied".into(),
        ),
        (
            &["--env", "PATH=/root:/usr/bin", "nosuchcmd"],
            "cannot execute nosuchcmd: No such file or directory".into(),
        ),
        (
            &[&garbage],
            format!("cannot execute {garbage}: Exec format error"),
        ),
        // Not found in a PATH relative to a cwd that is not there: the cwd
        // is what failed.
        (
            &["--cwd", "/nonexistent", "--env", "PATH=.", "prog"],
            "cannot change directory to /nonexistent: No such file or directory".into(),
        ),
    ];
    for (args, message) in cases {
        // Through the CLI …
        let mut cli = vec!["ns", "run"];
        let (opts, cmd) = args.split_at(args.len() - 1);
        cli.extend(opts);
        cli.extend(["t", cmd[0]]);
        as_alice(&inst, &inst.dir, &lanco, &cli).fails(6, message);
        // … and the library, with the same words and status.
        let mut lib = vec!["ns", "t"];
        for o in opts.chunks(2) {
            match o {
                ["--env", kv] => lib.extend(["--set", kv]),
                [k, v] => lib.extend([*k, *v]),
                _ => unreachable!(),
            }
        }
        lib.extend(["--", cmd[0]]);
        as_alice(&inst, &inst.dir, &probe, &lib).fails(6, message);
    }
    assert!(!inst.task_cgroup("ns", "t").exists(), "no half-made task");
    // (A monitor exits right after it reported the failure.)
    assert!(
        wait_for(Duration::from_secs(5), || inst.monitors("ns").is_empty()),
        "no monitor left"
    );
}

#[test]
fn the_monitor_is_the_installations_not_the_callers_neighbour() {
    let Some(inst) = setup("spec_monitor") else {
        return;
    };
    inst.init("ns", ALICE, OPS);
    let probe = install_probe(&inst);
    // A daemon in a directory without lanco-monitor starts tasks: the
    // config names the monitor.
    as_alice(&inst, &inst.dir, &probe, &["ns", "d", "--", "true"]).ok();
    log_after_end(&inst, "d");

    let config = fs::read_to_string(&inst.config).unwrap();
    let line = config
        .lines()
        .find(|l| l.starts_with("monitor = "))
        .expect("the harness names the monitor")
        .to_owned();
    let variant = |name: &str, monitor: &str| {
        let p = inst.dir.join(name);
        fs::write(&p, config.replace(&line, monitor)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        p
    };
    let run_with = |config: &Path| {
        let mut c = inst.cmd(Some(ALICE), &["ns", "run", "m", "true"]);
        c.env("LANCO_CONFIG", config);
        Out(c.output().unwrap())
    };
    // A missing monitor: one line naming the path and the key.
    let missing = variant("missing.toml", "monitor = \"/nonexistent/lanco-monitor\"");
    run_with(&missing)
        .fails(8, "/nonexistent/lanco-monitor")
        .fails(8, "config key `monitor`");
    let relative = variant("relative.toml", "monitor = \"bin/lanco-monitor\"");
    run_with(&relative).fails(2, "config key `monitor` must be an absolute path");
    // Without the key, the package's path — never the one beside `lanco`,
    // although the installation has a lanco-monitor there.
    let packaged = Path::new("/usr/libexec/lanco/lanco-monitor");
    assert!(inst.bin.join("lanco-monitor").exists());
    if !packaged.exists() {
        let unset = variant("unset.toml", "");
        run_with(&unset).fails(
            8,
            "the task monitor /usr/libexec/lanco/lanco-monitor does not exist",
        );
    }
    // A monitor setting naming a program that never reads the spec (here
    // /bin/true), with a spec larger than the socket's buffer: `lanco`,
    // which keeps SIGPIPE's default, gets an error, not a SIGPIPE.
    let not_monitor = variant("true.toml", "monitor = \"/bin/true\"");
    let big = "x".repeat(100_000);
    let mut args = vec!["ns".to_owned(), "run".into()];
    for i in 0..12 {
        args.push("--env".into());
        args.push(format!("BIG{i}={big}"));
    }
    args.extend(["m".into(), "true".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = inst.cmd(Some(ALICE), &args);
    c.env("LANCO_CONFIG", &not_monitor);
    let o = Out(c.output().unwrap());
    assert_eq!(
        o.0.status.code(),
        Some(8),
        "killed by a signal? {:?}",
        o.0.status
    );
    assert!(o.stderr().contains("/bin/true"), "{o}");
    assert!(!inst.task_cgroup("ns", "m").exists());
}
