//! Where each system's server programs are: from the environment that `benches/registry.sh`
//! sets, with Debian's paths as defaults.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::System;

/// The programs that run each system's members.
pub struct Servers {
    pub rmif: Option<PathBuf>,
    pub etcd: Option<PathBuf>,
    pub java: PathBuf,
    pub zk_classpath: Option<String>,
    /// Extra settings of every rmif member (`--rmif-set`).
    pub rmif_set: Vec<String>,
}

impl Servers {
    /// The programs the environment names; rmif members get `rmif_set` as extra settings.
    pub fn from_env(rmif_set: Vec<String>) -> Servers {
        let existing = |path: PathBuf| path.is_file().then_some(path);
        // `cargo bench` runs the bench in its package's directory: a relative path is taken
        // from the workspace root, where the command is typed.
        let rmif = std::env::var_os("RMIF_REGISTRY_BIN")
            .map(|path| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path))
            .and_then(existing);
        let etcd = existing(
            std::env::var_os("ETCD_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd")),
        );
        let java = std::env::var_os("JAVA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("java"));
        // Debian's jar lists its dependencies in its manifest; slf4j-simple makes it log.
        let zk_classpath = std::env::var("ZOOKEEPER_CLASSPATH").unwrap_or_else(|_| {
            "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar".to_owned()
        });
        let zk_classpath = zk_classpath
            .split(':')
            .all(|jar| Path::new(jar).is_file())
            .then_some(zk_classpath);
        Servers {
            rmif,
            etcd,
            java,
            zk_classpath,
            rmif_set,
        }
    }

    /// Whether `system` can run here, or what to set so that it can.
    pub fn available(&self, system: System) -> Result<(), &'static str> {
        match system {
            System::Rmif if self.rmif.is_none() => {
                Err("set RMIF_REGISTRY_BIN to the release rmif-registry binary")
            }
            System::Etcd if self.etcd.is_none() => Err("no etcd binary (set ETCD_BIN)"),
            System::Zk if self.zk_classpath.is_none() => {
                Err("no ZooKeeper jars (set ZOOKEEPER_CLASSPATH)")
            }
            _ => Ok(()),
        }
    }

    /// One line naming each system's version, for the report.
    pub fn versions(&self) -> String {
        let first_line = |program: &Path, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .and_then(|out| {
                    let text = String::from_utf8_lossy(&out.stdout).into_owned()
                        + &String::from_utf8_lossy(&out.stderr);
                    text.lines().next().map(|l| l.trim().to_owned())
                })
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let etcd = self
            .etcd
            .as_ref()
            .map_or("absent".to_owned(), |etcd| first_line(etcd, &["--version"]));
        let zk = self
            .zk_classpath
            .as_ref()
            .map_or("absent".to_owned(), |cp| {
                first_line(
                    &self.java,
                    &["-cp", cp, "org.apache.zookeeper.version.VersionInfoMain"],
                )
            });
        let java = first_line(&self.java, &["-version"]);
        format!("{etcd}; ZooKeeper {zk} on {java}")
    }
}
