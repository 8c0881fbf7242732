//! Deletes the files a snapshot made useless (older segments, the previous snapshot) on a
//! thread of its own: unlinking a large file and its journal commit take the storage thread
//! several to twenty milliseconds, during which no write could become durable, on every member
//! at about the same moment.
//!
//! Nothing depends on a deletion being done, or durable: a restart removes snapshot files no
//! record names, and replays a leftover segment only to drop the entries the snapshot covers.
//! Deletions happen in the order asked, so segments still go oldest first.

use std::path::PathBuf;
use std::sync::mpsc;

/// Where files to delete are sent.
pub struct Remover {
    /// `None` where deletions are done at once: in unit tests, which look at the directory
    /// right after, or if the thread could not start.
    queue: Option<mpsc::Sender<PathBuf>>,
}

impl Remover {
    /// Starts the deleting thread.
    pub fn start() -> Remover {
        if cfg!(test) {
            return Remover { queue: None };
        }
        let (queue, paths) = mpsc::channel::<PathBuf>();
        let started = std::thread::Builder::new()
            .name("rmif-wal-remove".to_owned())
            .spawn(move || {
                for path in paths {
                    remove(&path);
                }
            });
        Remover {
            queue: started.is_ok().then_some(queue),
        }
    }

    /// Deletes `path`, soon.
    pub fn remove(&self, path: PathBuf) {
        match &self.queue {
            Some(queue) => {
                if let Err(mpsc::SendError(path)) = queue.send(path) {
                    remove(&path);
                }
            }
            None => remove(&path),
        }
    }
}

/// A file that cannot be deleted costs disk space, not correctness: it is logged, not fatal.
fn remove(path: &std::path::Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "could not delete a file the log no longer needs");
    }
}
