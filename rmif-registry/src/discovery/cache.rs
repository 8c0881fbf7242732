//! The consumer's cache of provider lists: the lists the registry last confirmed, written
//! atomically to a file, and read back when a consumer starts while the registry cannot be
//! reached, so that it calls the providers it called before instead of failing.
//!
//! The file names the registry it came from; a file from another registry, a truncated one or
//! one that is not a cache at all is reported and ignored, never trusted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::metadata::{ProviderMetadata, now_ms};

/// What the file says it is.
const FORMAT: &str = "rmif-discovery-cache";
/// The file's layout version.
const VERSION: u32 = 1;
/// Writes are gathered for this long: a burst of changes costs one write.
const WRITE_DELAY: Duration = Duration::from_millis(200);

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct CacheFile {
    format: String,
    version: u32,
    /// The registry the lists came from (its members' addresses, sorted).
    registry: Vec<String>,
    /// Provider lists by service key.
    services: BTreeMap<String, CachedList>,
}

/// One service's confirmed provider list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CachedList {
    /// The zxid the registry confirmed it at.
    pub(crate) zxid: u64,
    /// When it was written, milliseconds since the Unix epoch.
    pub(crate) written_ms: u64,
    /// The providers, by address.
    pub(crate) providers: BTreeMap<SocketAddr, ProviderMetadata>,
}

/// A consumer's cache file and what it held at start.
#[derive(Debug)]
pub(crate) struct ListCache {
    path: PathBuf,
    state: Mutex<CacheFile>,
    /// The lists found in the file at start: the only ones ever served from it.
    loaded: BTreeMap<String, CachedList>,
    dirty: Arc<Notify>,
    writing: AtomicBool,
}

impl ListCache {
    /// The cache at `path` for the registry `registry`; its current content is read (and
    /// reported if unusable), and later writes go there.
    pub(crate) fn open(path: PathBuf, registry: &[String]) -> Arc<ListCache> {
        let mut registry = registry.to_vec();
        registry.sort();
        let loaded = match read(&path, &registry) {
            Ok(Some(file)) => file.services,
            Ok(None) => BTreeMap::new(),
            Err(reason) => {
                tracing::warn!(cache = %path.display(), "{reason}; the file is ignored");
                BTreeMap::new()
            }
        };
        Arc::new(ListCache {
            path,
            state: Mutex::new(CacheFile {
                format: FORMAT.to_owned(),
                version: VERSION,
                registry,
                services: loaded.clone(),
            }),
            loaded,
            dirty: Arc::new(Notify::new()),
            writing: AtomicBool::new(false),
        })
    }

    /// The file the lists go to.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The list of `service` the file held when the consumer started.
    pub(crate) fn loaded(&self, service: &str) -> Option<&CachedList> {
        self.loaded.get(service)
    }

    /// Records a list the registry confirmed; it reaches the file shortly.
    pub(crate) fn store(
        self: &Arc<Self>,
        service: &str,
        zxid: u64,
        providers: BTreeMap<SocketAddr, ProviderMetadata>,
    ) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.services.insert(
            service.to_owned(),
            CachedList {
                zxid,
                written_ms: now_ms(),
                providers,
            },
        );
        drop(state);
        // The writer starts with the first list (from a task, so inside a runtime).
        if !self.writing.swap(true, Ordering::AcqRel) {
            tokio::spawn(write_when_dirty(Arc::downgrade(self), self.dirty.clone()));
        }
        self.dirty.notify_one();
    }

    /// Writes the current lists to the file now.
    pub(crate) fn flush(&self) {
        let content = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            serde_json::to_vec_pretty(&*state).expect("the cache encodes as JSON")
        };
        if let Err(error) = write_atomically(&self.path, &content) {
            tracing::warn!(cache = %self.path.display(), %error, "cannot write the discovery cache");
        }
    }
}

/// Reads and checks the file: `None` if there is none.
fn read(path: &Path, registry: &[String]) -> Result<Option<CacheFile>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("the discovery cache cannot be read: {error}")),
    };
    let file: CacheFile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the discovery cache is damaged or not a cache ({e})"))?;
    if file.format != FORMAT || file.version != VERSION {
        return Err(format!(
            "the discovery cache is of another format ({} version {})",
            file.format, file.version
        ));
    }
    if file.registry != registry {
        return Err(format!(
            "the discovery cache is from another registry ({}; this consumer uses {})",
            file.registry.join(","),
            registry.join(",")
        ));
    }
    Ok(Some(file))
}

/// Replaces `path` with `content` so that a crash leaves the old file or the new one, never a
/// mix: a temporary file beside it, synced, then renamed over it.
fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cache".to_owned());
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(content)?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&temporary, path)
}

async fn write_when_dirty(cache: std::sync::Weak<ListCache>, dirty: Arc<Notify>) {
    loop {
        dirty.notified().await;
        tokio::time::sleep(WRITE_DELAY).await;
        let Some(cache) = cache.upgrade() else {
            return;
        };
        // Writing blocks (a file, an fsync): off the runtime's worker.
        let _ = tokio::task::spawn_blocking(move || cache.flush()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Vec<String> {
        vec!["10.0.0.2:7000".to_owned(), "10.0.0.1:7000".to_owned()]
    }

    fn providers() -> BTreeMap<SocketAddr, ProviderMetadata> {
        let mut providers = BTreeMap::new();
        providers.insert(
            "10.0.0.9:9000".parse().unwrap(),
            ProviderMetadata {
                weight: 7,
                ..ProviderMetadata::default()
            },
        );
        providers
    }

    #[tokio::test]
    async fn lists_written_by_one_consumer_are_read_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("calc.cache");
        let first = ListCache::open(path.clone(), &registry());
        assert!(first.loaded("calc").is_none());
        first.store("calc", 42, providers());
        first.flush();
        drop(first);

        // The same registry, its members named in another order.
        let mut reversed = registry();
        reversed.reverse();
        let second = ListCache::open(path, &reversed);
        let list = second.loaded("calc").expect("the list is cached");
        assert_eq!(list.zxid, 42);
        assert_eq!(list.providers, providers());
    }

    #[tokio::test]
    async fn a_foreign_damaged_or_truncated_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calc.cache");
        let writer = ListCache::open(path.clone(), &registry());
        writer.store("calc", 1, providers());
        writer.flush();
        let good = std::fs::read(&path).unwrap();

        let other_registry = ListCache::open(path.clone(), &["10.9.9.9:7000".to_owned()]);
        assert!(other_registry.loaded("calc").is_none());

        for bad in [
            good[..good.len() / 2].to_vec(),
            b"\x00\xffgarbage".to_vec(),
            br#"{"format":"something-else","version":1,"registry":[],"services":{}}"#.to_vec(),
            Vec::new(),
        ] {
            std::fs::write(&path, &bad).unwrap();
            let cache = ListCache::open(path.clone(), &registry());
            assert!(cache.loaded("calc").is_none(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn stored_lists_reach_the_file_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calc.cache");
        let cache = ListCache::open(path.clone(), &registry());
        cache.store("calc", 5, providers());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !path.exists() {
            assert!(tokio::time::Instant::now() < deadline, "never written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reopened = ListCache::open(path, &registry());
        assert_eq!(reopened.loaded("calc").map(|l| l.zxid), Some(5));
    }
}
