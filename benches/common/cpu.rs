//! CPU time a process has used, from /proc: where a bench's time went, per operation.

/// The CPU time (user and system) process `pid` has used so far, in ms (`/proc/PID/stat`, in
/// clock ticks, usually of 10 ms), if it runs. `pid` 0 is this process.
pub fn cpu_ms(pid: u32) -> Option<f64> {
    let path = if pid == 0 {
        "/proc/self/stat".to_owned()
    } else {
        format!("/proc/{pid}/stat")
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after its closing one.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 * 1000.0 / per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_cpu_time_that_grows() {
        let before = cpu_ms(0).expect("this process's /proc/self/stat");
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
        let mut spin = 0u64;
        while std::time::Instant::now() < deadline {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let after = cpu_ms(0).expect("still readable");
        assert!(
            after > before,
            "{before} ms then {after} ms after 100 ms of spinning"
        );
        assert_eq!(cpu_ms(u32::MAX), None, "no such process");
    }
}
