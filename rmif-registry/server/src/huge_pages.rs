//! Transparent huge pages, turned off for a member's process.
//!
//! With them on, the first touch of fresh memory makes the kernel zero a whole 2 MiB page, and
//! on a virtual machine the host may have to back it first. A member under write load takes
//! fresh memory all the time: its allocator returns freed pages to the system and maps them
//! again, and every snapshot fills a buffer of tens of megabytes. Measured on a 2-vCPU VM
//! (docs/BENCHMARKS.md, the stall scenario), the thread that commits writes spent up to 9 ms
//! of a 17 ms write gap zeroing huge pages, and in the first seconds of a cluster the whole VM
//! stood still for 20-100 ms (the host took its CPUs: steal), which stopped with huge pages
//! off. With 4 KiB pages the runs' longest gaps fell from 11-37 ms to 5-8 ms; writes per
//! second stayed within the machine's noise.

/// Turns transparent huge pages off for this process and the processes it starts, for memory
/// touched from now on (Linux's `PR_SET_THP_DISABLE`). The `rmif-registry` program does so as
/// it starts; an application that embeds a [`crate::RegistryServer`] under heavy write load
/// may want to as well, before it allocates much. Other systems have nothing to turn off.
///
/// # Errors
///
/// The system call's error, on a kernel without the setting (before Linux 3.15).
///
/// # Examples
///
/// ```
/// if let Err(error) = rmif_registry_server::disable_transparent_huge_pages() {
///     eprintln!("transparent huge pages stay on: {error}");
/// }
/// ```
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a plain system call on this process's own flags, with the arguments its
        // documentation asks for (the three unused ones zero).
        let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
