//! Deletes the files a snapshot made useless (older segments, the previous snapshot) on a
//! thread of its own: unlinking a large file and its journal commit take the storage thread
//! several to twenty milliseconds, during which no write could become durable, on every member
//! at about the same moment.
//!
//! Off the storage thread is not enough for a snapshot file (tens of megabytes): the journal
//! commit that frees its blocks at once holds up every fsync on the file system for as long,
//! this member's log writes among them (and other members' where they share a disk). A
//! snapshot file is therefore shrunk in steps first, each freeing a few megabytes. On this
//! machine's ext4, 4-KiB fdatasyncs next to a writer of 50 MB files peaked at 14-23 ms while
//! those files were unlinked whole, and at 5.5 ms (as with no deletions) when shrunk first.
//! Segments are unlinked whole: a closed segment cut short would read back as damage.
//!
//! Nothing depends on a deletion being done, or durable: a restart removes snapshot files no
//! record names, and replays a leftover segment only to drop the entries the snapshot covers.
//! Deletions happen in the order asked, so segments still go oldest first.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Where files to delete are sent.
pub struct Remover {
    /// `None` where deletions are done at once: in unit tests, which look at the directory
    /// right after, or if the thread could not start.
    queue: Option<mpsc::Sender<Removal>>,
}

/// A file to delete, and how.
struct Removal {
    path: PathBuf,
    /// Shrunk in steps before it is unlinked.
    shrink_first: bool,
}

/// How much of a file one step frees.
const SHRINK_STEP: u64 = 4 << 20;

impl Remover {
    /// Starts the deleting thread.
    pub fn start() -> Remover {
        if cfg!(test) {
            return Remover { queue: None };
        }
        let (queue, removals) = mpsc::channel::<Removal>();
        let started = std::thread::Builder::new()
            .name("rmif-wal-remove".to_owned())
            .spawn(move || {
                for removal in removals {
                    remove(&removal);
                }
            });
        Remover {
            queue: started.is_ok().then_some(queue),
        }
    }

    /// Deletes the segment at `path`, soon.
    pub fn remove_segment(&self, path: PathBuf) {
        self.send(Removal {
            path,
            shrink_first: false,
        });
    }

    /// Deletes the snapshot file at `path`, soon, shrinking it in steps first. No record may
    /// name it: a crash midway leaves a shorter file, which the next start removes with the
    /// other snapshot files no record names.
    pub fn remove_snapshot(&self, path: PathBuf) {
        self.send(Removal {
            path,
            shrink_first: true,
        });
    }

    fn send(&self, removal: Removal) {
        match &self.queue {
            Some(queue) => {
                if let Err(mpsc::SendError(removal)) = queue.send(removal) {
                    remove(&removal);
                }
            }
            None => remove(&removal),
        }
    }
}

/// A file that cannot be deleted costs disk space, not correctness: it is logged, not fatal.
fn remove(removal: &Removal) {
    let path = &removal.path;
    if removal.shrink_first {
        // Should a step fail, unlinking the rest whole still frees the space.
        let _ = shrink(path, SHRINK_STEP);
    }
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "could not delete a file the log no longer needs");
    }
}

/// Cuts the file at `path` down to nothing, `step` bytes at a time from its end.
fn shrink(path: &Path, step: u64) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let mut len = file.metadata()?.len();
    while len > 0 {
        len = len.saturating_sub(step);
        file.set_len(len)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_file_is_shrunk_then_deleted_and_a_missing_one_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot-00000000000000000007.snap");
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        shrink(&path, 4096).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let remover = Remover::start();
        remover.remove_snapshot(path.clone());
        assert!(!path.exists());
        remover.remove_snapshot(path.clone());
        assert!(shrink(&path, 4096).is_err(), "nothing to shrink");

        let segment = dir.path().join("00000000000000000003.wal");
        std::fs::write(&segment, b"records").unwrap();
        remover.remove_segment(segment.clone());
        assert!(!segment.exists());
    }
}
