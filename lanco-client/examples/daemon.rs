//! A daemon that starts work through lanco and can restart without killing
//! it: the task lives in its own cgroup, watched by its own monitor.
use lanco_client::{Config, Namespace, Status, TaskSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ns = Namespace::open(Config::load()?, "ci".parse()?)?;
    let mut spec = TaskSpec::new("build-42".parse()?, vec!["make".into(), "-j2".into()])?;
    spec.cwd = "/srv/ci/build-42".into();
    let started = ns.run(&spec)?; // returns once `make` has been exec'd
    println!("build-42 runs as pid {}", started.pid);
    // ... this daemon may exit or be upgraded here; the build goes on ...
    if ns.check(&spec.name)? {
        ns.stop(&spec.name, None)?; // SIGTERM, cgroup.kill after 10 s
    }
    if let Status::NotRunning { last: Some(rec) } = ns.status(&spec.name)? {
        println!("{}, {} µs of CPU", rec.exit, rec.cpu_usec);
    }
    Ok(())
}
