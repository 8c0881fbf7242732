//! Helper processes: a bench binary runs itself again (with flags of its own) to put a server or
//! a session holder in a process of its own. The helper announces itself with one line on its
//! stdout, and lives as long as its stdin stays open, which is as long as the parent holds it.

use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

/// The command that runs this binary again with `args`, its stdin and stdout piped to us.
pub fn command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(std::env::current_exe().expect("current_exe"));
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Waits for a helper started from [`command`] to announce itself; returns the line it printed.
pub fn announcement(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read the helper's announcement");
    line
}

/// In the helper: exit as soon as the parent goes away, however it goes (its end of our stdin
/// closes), so that no helper outlives a bench.
pub fn exit_with_parent() {
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
}

/// In the helper: tell the parent that it is ready, and what it needs to know.
pub fn announce(line: impl Display) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .expect("stdout");
}
