//! Server processes: each in its own process group, SIGKILLed as a group when dropped, and by
//! the kernel if the bench itself dies; the loopback ports they bind, the memory and CPU time
//! they use, and the file descriptors the bench and they may open.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How to start one member (again, after a kill).
#[derive(Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

/// A running process in its own process group; dropping it SIGKILLs the whole group.
pub struct Process {
    pub child: Child,
}

/// Spawns `command` in a new process group that the kernel SIGKILLs if this process dies.
/// Call from the main thread only: the parent-death signal fires when the *spawning thread*
/// exits, and only the main thread lives as long as the bench.
pub fn spawn_grouped(mut command: Command) -> std::io::Result<Child> {
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

impl Process {
    /// Starts `launch` with its stdout and stderr appended to `log`.
    pub fn start(launch: &Launch, log: &Path) -> Process {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("server log file");
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        let child = spawn_grouped(command)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", launch.program.display()));
        Process { child }
    }

    /// SIGTERM to the process (not its group: the member decides how to stop), then waits for it
    /// up to `patience`; SIGKILLs the group if it is still there then (`Err`).
    pub fn terminate(&mut self, patience: Duration) -> Result<ExitStatus, ()> {
        // SAFETY: kill(2) on the process this bench started; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.kill();
        Err(())
    }

    /// SIGKILL to the process group, then reap.
    pub fn kill(&mut self) {
        // SAFETY: kill(2) on the group this bench created; no memory is involved.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `count` distinct free loopback ports: all bound at once (so that none is handed out twice),
/// then released for the members to bind moments later.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound address").port())
        .collect()
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Raises this process's soft limit on open files to its hard limit: the discovery scenario
/// holds a thousand client connections at once, and the members (which inherit the limit) as
/// many again.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the one struct passed; nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // Failing leaves the limit as it was; a scenario that needs more then says so.
            libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
        }
    }
}

/// The resident set size of process `pid` in KiB (`VmRSS` of /proc/PID/status), if it runs.
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

pub use rmif_bench::cpu::cpu_ms;
