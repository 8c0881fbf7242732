//! Shared code of rmif's examples, benchmarks and cross-crate tests: the service contracts they
//! use (as an application would keep its API in a crate that providers and consumers share) and
//! small helpers.

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod calculator;

/// Sends `tracing` output to stderr. The level comes from `RMIF_LOG` (for example `info`,
/// `rmif_core=debug`), `warn` by default.
pub fn init_logging() {
    let filter = std::env::var("RMIF_LOG")
        .ok()
        .and_then(|spec| spec.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::WARN)
        });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours for a terminal only: escape codes make log files hard to read.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .try_init();
}

/// `error` and each of its sources, joined by ": ", as a command-line program prints a
/// failure.
///
/// ```
/// let error = std::io::Error::other("disk full");
/// assert_eq!(rmif_suite::error_chain(&error), "disk full");
/// ```
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Errors that are transparent wrappers repeat their source's text.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The registry an example talks to: the members given as its first argument
/// (`127.0.0.1:7000`, or several, comma-separated, as `rmif-registry --dev` prints), or else a
/// single member started in this process on a free loopback port, with its data in a
/// temporary directory.
#[derive(Debug)]
pub struct ExampleRegistry {
    /// The members' client addresses.
    pub members: Vec<std::net::SocketAddr>,
    /// The member this process runs, if it runs one (stopped when dropped).
    _embedded: Option<(rmif_registry_server::RegistryServer, tempfile::TempDir)>,
}

impl ExampleRegistry {
    /// Uses the registry named by the program's first argument, or starts one.
    pub async fn from_args() -> Result<Self, Box<dyn std::error::Error>> {
        if let Some(list) = std::env::args().nth(1) {
            let members = list
                .split(',')
                .map(|addr| addr.trim().parse())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| {
                    format!("{list:?} is not a list of host:port addresses: {error}")
                })?;
            return Ok(ExampleRegistry {
                members,
                _embedded: None,
            });
        }
        let data = tempfile::tempdir()?;
        let member = rmif_registry_server::RegistryServer::start(
            rmif_registry_server::RegistryConfig::single("127.0.0.1:0".parse()?, data.path()),
        )
        .await?;
        Ok(ExampleRegistry {
            members: vec![member.client_addr()],
            _embedded: Some((member, data)),
        })
    }

    /// A client of the registry.
    pub fn client(&self) -> rmif_registry::RegistryClient {
        rmif_registry::RegistryClient::connect(&self.members)
    }
}

/// The flag with which an example runs itself again as one of its worker processes.
const WORKER: &str = "--worker";

impl ExampleRegistry {
    /// The command that runs this example again as worker `name` of this registry (see
    /// [`worker_role`]); the worker ends when this process does (its stdin closes).
    pub fn worker_command(&self, name: &str) -> std::io::Result<std::process::Command> {
        let members: Vec<String> = self.members.iter().map(|m| m.to_string()).collect();
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command
            .args([WORKER, name, &members.join(",")])
            .stdin(std::process::Stdio::piped());
        Ok(command)
    }
}

/// When this process was started by [`ExampleRegistry::worker_command`]: its name and a client
/// of the registry; it exits once its parent's end of its stdin closes.
pub fn worker_role()
-> Result<Option<(String, rmif_registry::RegistryClient)>, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some(WORKER) {
        return Ok(None);
    }
    let usage = "--worker NAME MEMBERS";
    let name = args.next().ok_or(usage)?;
    let members = args
        .next()
        .ok_or(usage)?
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<std::net::SocketAddr>, _>>()?;
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    Ok(Some((
        name,
        rmif_registry::RegistryClient::connect(&members),
    )))
}
