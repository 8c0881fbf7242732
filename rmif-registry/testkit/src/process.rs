//! Processes under test: where their programs are, free ports for them, and signals.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free loopback port (bound and released; the process binds it again moments later), never
/// one this test process handed out before.
///
/// Drawn at random below the kernel's ephemeral range (32768 and up here): a port the kernel
/// handed out for `127.0.0.1:0` can be reused at once as the source port of some outgoing
/// connection of a parallel test, and the process then fails to bind it. Released ports are
/// free again at once, so without the record two draws for one member (its client and peer
/// ports) could agree, and the member then fails to bind the second.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = fastrand::u16(20_000..32_000);
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
}

/// The program `name` built in this workspace: a binary (`rmif-registry`) or an example
/// (`examples/calculator_provider`), found beside the running test in the target directory.
///
/// # Panics
/// If it was not built, naming the command that builds it.
pub fn program(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from the target directory");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: `cargo test --workspace` builds it (or `cargo build --workspace \
         --bins --examples`)",
        path.display()
    );
    path
}

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a pid the test spawned; no memory is involved.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// A running process with its output going to a log file. Dropping it kills it.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Process {
    /// Starts `program` with `args` and `envs`, its output appended to `log`.
    pub fn start(program: &Path, args: &[&str], envs: &[(&str, &str)], log: PathBuf) -> Process {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("the process's log file");
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Process {
            child: Some(child),
            log,
        }
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: it dies at once, without withdrawing or flushing anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` for it to exit on its own; returns whether it exited
    /// successfully. Panics (after a SIGKILL) if it did not exit in time.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        send_signal(child.id(), libc::SIGTERM);
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the process did not exit within {limit:?} of SIGTERM; log: {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit` for it to exit on its own; its exit status, or `None` if it still
    /// runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it wrote so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
