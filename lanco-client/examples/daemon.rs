//! A daemon that starts work through lanco and can restart without killing
//! it: the task lives in its own cgroup, watched by its own monitor, and the
//! daemon's next incarnation finds it again by name.
use std::time::Duration;

use lanco_client::{Config, Error, Namespace, Result, TaskSpec};

fn main() -> Result<()> {
    let ns = Namespace::open(Config::load()?, "ci".parse()?)?;
    let mut spec = TaskSpec::new("build-42".parse()?, vec!["make".into(), "-j2".into()])?;
    spec.cwd = "/srv/ci/build-42".into();
    spec.env("PATH", "/usr/bin:/bin"); // the environment starts empty
    match ns.run(&spec) {
        // Returns once `make` has been exec'd.
        Ok(started) => println!("build-42 runs as pid {}", started.pid),
        // Started by this daemon before a restart, and still going: re-attach.
        Err(Error::AlreadyRunning(_)) => println!("build-42 is still running"),
        // The job's failure, not the daemon's (no such directory, no make).
        Err(e @ Error::StartFailed { .. }) => {
            println!("build-42 failed: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    // ... this daemon may exit or be upgraded here; the build goes on ...
    // The record of the run going on now, whoever started it.
    match ns.wait(&spec.name, Some(Duration::from_secs(3600)))? {
        Some(rec) => println!("{}, {} µs of CPU", rec.exit, rec.cpu_usec),
        None => match ns.stop(&spec.name, None) {
            // SIGTERM, cgroup.kill after 10 s
            Ok(killed) => println!("build-42 timed out (killed: {killed})"),
            Err(Error::NotRunning(_)) => {} // it ended meanwhile
            Err(e) => return Err(e),
        },
    }
    Ok(())
}
