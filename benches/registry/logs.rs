//! What the members logged: snapshots, start-up replay and leadership changes, with their
//! wall-clock times, read from the members' log files (rmif's `tracing` lines, etcd's JSON
//! lines), for the scenarios that say what a stall coincided with or what a restart replayed.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::System;

/// One line of a member's log that matters to the scenarios.
#[derive(Debug, Clone)]
pub struct Event {
    /// The member (0-based) that logged it.
    pub member: usize,
    /// When what it reports began: the time it was logged less its `took_ms` where it has one
    /// (an rmif snapshot is logged when it is taken, with how long it took).
    pub started: SystemTime,
    /// When the member logged it (for an event with a duration, when that ended).
    pub ended: SystemTime,
    /// The message, e.g. "snapshot taken".
    pub message: String,
    /// The fields after the message (rmif) or the JSON line's other fields (etcd), as logged.
    pub fields: String,
}

impl Event {
    /// What kind of event it is, for counting and display; `None` for lines that do not matter.
    pub fn kind(&self) -> Option<Kind> {
        kind_of(&self.message)
    }

    /// The value of `key=N` (rmif) or `"key":N` (etcd) in the line's fields.
    pub fn number(&self, key: &str) -> Option<u64> {
        let rest = self
            .fields
            .split_once(&format!("{key}="))
            .or_else(|| self.fields.split_once(&format!("\"{key}\":")))?
            .1;
        let digits: String = rest
            .trim_start_matches('"')
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }

    /// `message (fields)`, for a report line.
    pub fn describe(&self) -> String {
        let fields: String = self.fields.chars().take(160).collect();
        format!(
            "member {} {} ({})",
            self.member + 1,
            self.message,
            fields.trim()
        )
    }
}

/// The events the scenarios look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The member began or finished a snapshot of its own state (rmif "snapshot taken"; etcd
    /// "triggering snapshot", "saved snapshot").
    SnapshotTaken,
    /// The leader sent a snapshot to a follower (rmif "snapshot sent"; etcd "sent database
    /// snapshot").
    SnapshotSent,
    /// A follower installed a snapshot from the leader (rmif "snapshot installed"; etcd
    /// "applied snapshot").
    SnapshotInstalled,
    /// Log compaction (etcd "compacted Raft logs").
    Compaction,
    /// Leadership changed: became leader, stepped down, a new leader followed or none known
    /// (etcd's raft "elected leader", "lost leader", "changed leader").
    Leadership,
    /// The member recovered its state at start-up (rmif "start-up replay"; etcd "recovered …").
    Replay,
}

fn kind_of(message: &str) -> Option<Kind> {
    let has = |needle: &str| message.contains(needle);
    Some(
        if has("snapshot taken") || has("triggering snapshot") || has("saved snapshot") {
            Kind::SnapshotTaken
        } else if has("snapshot sent") || has("sent database snapshot") {
            Kind::SnapshotSent
        } else if has("snapshot installed") || has("applied snapshot") {
            Kind::SnapshotInstalled
        } else if has("compacted Raft logs") {
            Kind::Compaction
        } else if has("became leader")
            || has("stepped down")
            || has("following leader")
            || has("no leader known")
            || has("elected leader")
            || has("lost leader")
            || has("changed leader")
        {
            Kind::Leadership
        } else if has("start-up replay") || (has("recovered") && !has("member")) {
            Kind::Replay
        } else {
            return None;
        },
    )
}

/// The events of `member`'s log from byte `from` on (a restart appends to the same file).
pub fn events(system: System, member: usize, log: &Path, from: u64) -> Vec<Event> {
    let Ok(bytes) = std::fs::read(log) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes[(from as usize).min(bytes.len())..]).into_owned();
    text.lines()
        .filter_map(|line| match system {
            System::Etcd => etcd_line(line),
            _ => rmif_line(line),
        })
        .filter(|(_, message, _)| kind_of(message).is_some())
        .map(|(logged, message, fields)| {
            let took = Event {
                member,
                started: logged,
                ended: logged,
                message: message.clone(),
                fields: fields.clone(),
            }
            .number("took_ms")
            .unwrap_or(0);
            Event {
                member,
                started: logged - Duration::from_millis(took),
                ended: logged,
                message,
                fields,
            }
        })
        .collect()
}

/// The size of `log` now: where the lines of a process started after this begin.
pub fn length(log: &Path) -> u64 {
    std::fs::metadata(log).map_or(0, |m| m.len())
}

/// `2026-12-01T00:11:00.672345Z  INFO rmif_registry_server::replica::driver: snapshot taken
/// index=100000 bytes=…`: the time, and the message split from its `key=value` fields.
fn rmif_line(line: &str) -> Option<(SystemTime, String, String)> {
    let (time, rest) = line.split_once(char::is_whitespace)?;
    let logged = parse_time(time)?;
    let (_, after_target) = rest.split_once(": ")?;
    // The message ends where the first `key=` field begins.
    let cut = after_target
        .match_indices(' ')
        .map(|(i, _)| i)
        .find(|&i| {
            let word = after_target[i + 1..].split(' ').next().unwrap_or("");
            word.split_once('=').is_some_and(|(key, _)| {
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .unwrap_or(after_target.len());
    Some((
        logged,
        after_target[..cut].trim().to_owned(),
        after_target[cut..].trim().to_owned(),
    ))
}

/// `{"level":"info","ts":"2026-12-01T00:11:00.672Z","caller":"…","msg":"…",…}`: the time, the
/// message, and the fields after it.
fn etcd_line(line: &str) -> Option<(SystemTime, String, String)> {
    // The start and end of a string field's value.
    let field = |key: &str| -> Option<(usize, usize)> {
        let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
        let end = line[start..].find('"')? + start;
        Some((start, end))
    };
    let (ts_start, ts_end) = field("ts")?;
    let logged = parse_time(&line[ts_start..ts_end])?;
    let (msg_start, msg_end) = field("msg")?;
    let rest = line[msg_end + 1..]
        .trim_start_matches(',')
        .trim_end_matches('}');
    Some((logged, line[msg_start..msg_end].to_owned(), rest.to_owned()))
}

/// An RFC 3339 time in UTC (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`, or with a `+HH:MM`/`+HHMM`
/// offset, as etcd writes under a local time zone).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let number = |s: &str| s.parse::<i64>().ok();
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-');
    let (year, month, day) = (
        number(date_parts.next()?)?,
        number(date_parts.next()?)?,
        number(date_parts.next()?)?,
    );
    let (clock, offset_seconds) = if let Some(clock) = time.strip_suffix('Z') {
        (clock, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (clock, offset) = time.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let digits: String = offset[1..].chars().filter(char::is_ascii_digit).collect();
        if digits.len() != 4 {
            return None;
        }
        let minutes = number(&digits[..2])? * 60 + number(&digits[2..])?;
        (clock, sign * minutes * 60)
    };
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock_parts = whole.splitn(3, ':');
    let (hour, minute, second) = (
        number(clock_parts.next()?)?,
        number(clock_parts.next()?)?,
        number(clock_parts.next()?)?,
    );
    let nanos = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().take(9).collect();
        number(&digits)? * 10i64.pow(9 - digits.len() as u32)
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    let seconds = u64::try_from(seconds).ok()?;
    Some(UNIX_EPOCH + Duration::new(seconds, nanos as u32))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
