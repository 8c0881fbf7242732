//! A fair lock with fencing tokens: three workers share one printer. They get the lock in the
//! order they asked for it, each grant has a higher token, and the printer refuses a job whose
//! token is older than one it already printed for (here, a job that was held up on its way
//! while the lock went to someone else).
//!
//! `cargo run --example fair_lock` (an embedded registry), or
//! `cargo run --example fair_lock -- 127.0.0.1:7000` (a running one, e.g. `rmif-registry --dev`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmif_registry::recipes::lock::FairLock;
use rmif_suite::ExampleRegistry;

/// The shared resource: it remembers the highest token it saw and refuses older ones.
#[derive(Default)]
struct Printer {
    highest_token: Mutex<u64>,
}

impl Printer {
    fn print(&self, worker: &str, token: u64, job: &str) -> Result<(), String> {
        let mut highest = self.highest_token.lock().unwrap();
        if token < *highest {
            return Err(format!(
                "refused {worker}'s {job}: token {token} is older than {}",
                *highest
            ));
        }
        *highest = token;
        println!("printer     printed {worker}'s {job} (token {token})");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    rmif_suite::init_logging();
    let registry = ExampleRegistry::from_args().await?;
    let client = registry.client();
    let printer = Arc::new(Printer::default());

    // 1. Three workers ask for the lock one after the other, while "alice" holds it.
    let alice = FairLock::new(
        Arc::new(client.open_session(Duration::from_secs(5)).await?),
        "printer",
    )
    .await?;
    let held = alice.lock().await?;
    println!("alice       holds the lock (token {})", held.token());
    let mut workers = Vec::new();
    for name in ["bob", "carol", "dave"] {
        let lock = FairLock::new(
            Arc::new(client.open_session(Duration::from_secs(5)).await?),
            "printer",
        )
        .await?;
        // Wait until this worker is in line, so that the order below is the order asked.
        let waiting = lock.clone();
        let printer = printer.clone();
        workers.push(tokio::spawn(async move {
            let guard = waiting.lock().await?;
            println!("{name:<11} got the lock (token {})", guard.token());
            let printed = printer.print(name, guard.token(), "report");
            guard.unlock().await?;
            printed.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
        }));
        while lock_requests(&client).await? < workers.len() + 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("{name:<11} is waiting");
    }
    // alice prepares a job, which gets held up on the way, and lets go of the lock.
    let alice_token = held.token();
    printer.print("alice", alice_token, "first page")?;
    held.unlock().await?;
    for worker in workers {
        worker.await?.map_err(|e| e.to_string())?;
    }

    // 2. alice's held-up job arrives after the others printed: its token gives it away.
    match printer.print("alice", alice_token, "second page") {
        Err(refused) => println!("printer     {refused}"),
        Ok(()) => return Err("the printer took a job from an old holder".into()),
    }
    // 3. A try_lock on a free lock succeeds at once; on a held one it does not wait.
    let free = alice.try_lock().await?.expect("nobody holds it now");
    println!(
        "alice       try_lock on a free lock: granted (token {})",
        free.token()
    );
    let other = FairLock::new(
        Arc::new(client.open_session(Duration::from_secs(5)).await?),
        "printer",
    )
    .await?;
    let busy = other.try_lock().await?;
    println!(
        "erin        try_lock on a held lock: {}",
        if busy.is_some() {
            "granted?!"
        } else {
            "not granted"
        }
    );
    free.unlock().await?;
    Ok(())
}

/// Requests (held or waiting) of the printer lock.
async fn lock_requests(
    client: &rmif_registry::RegistryClient,
) -> Result<usize, Box<dyn std::error::Error>> {
    let path = format!("{}/printer", rmif_registry::recipes::lock::LOCKS_PATH);
    Ok(client
        .children(&path, rmif_registry::Consistency::Linearizable)
        .await?
        .children
        .len())
}
