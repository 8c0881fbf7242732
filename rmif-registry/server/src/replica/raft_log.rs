//! raft-rs's own log (it logs through slog) as `tracing` events, under the target `raft`.

use std::fmt::Write as _;

/// A slog drain that emits every record as a `tracing` event with target `raft`, at the matching
/// level (critical as error), its key-value pairs (`raft_id=2 term=5 …`) after the message.
/// A record whose level `tracing` would drop is not formatted.
pub struct TracingDrain;

/// A logger for raft-rs that goes to `tracing`.
pub fn logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        macro_rules! emit {
            ($level:expr) => {
                if tracing::enabled!(target: "raft", $level) {
                    let text = text(record, values);
                    tracing::event!(target: "raft", $level, "{text}");
                }
            };
        }
        match record.level() {
            slog::Level::Critical | slog::Level::Error => emit!(tracing::Level::ERROR),
            slog::Level::Warning => emit!(tracing::Level::WARN),
            slog::Level::Info => emit!(tracing::Level::INFO),
            slog::Level::Debug => emit!(tracing::Level::DEBUG),
            slog::Level::Trace => emit!(tracing::Level::TRACE),
        }
        Ok(())
    }
}

/// The record's message, then its own key-value pairs, then its logger's.
fn text(record: &slog::Record<'_>, values: &slog::OwnedKVList) -> String {
    let mut text = record.msg().to_string();
    let mut pairs = Pairs(&mut text);
    let _ = slog::KV::serialize(&record.kv(), record, &mut pairs);
    let _ = slog::KV::serialize(values, record, &mut pairs);
    text
}

/// Writes each pair as ` key=value`.
struct Pairs<'a>(&'a mut String);

impl slog::Serializer for Pairs<'_> {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what a fmt subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn raft_records_become_tracing_events_with_their_pairs() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let logger = logger().new(slog::o!("raft_id" => 7));
            slog::info!(logger, "became leader at term 3"; "term" => 3);
            slog::warn!(logger, "rejected a vote");
            slog::crit!(logger, "critical record");
            slog::debug!(logger, "dropped below INFO");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains("INFO raft: became leader at term 3 term=3 raft_id=7"),
            "{text}"
        );
        assert!(
            lines[1].contains("WARN raft: rejected a vote raft_id=7"),
            "{text}"
        );
        assert!(lines[2].contains("ERROR raft: critical record"), "{text}");
    }
}
