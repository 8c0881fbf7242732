//! A properties file read into case-insensitive keys that remember their line, so that every
//! configuration error can name the file, the line and the key.

use std::collections::HashMap;
use std::path::Path;

use java_properties::{LineContent, PropertiesIter};

use super::error::ConfigError;
use super::values::parse_millis;

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: String,
    origin: String,
    line: usize,
    used: bool,
}

/// Key/value pairs from a properties file plus command-line overrides.
///
/// Keys are case-insensitive. Each key that a role understands is taken with [`Properties::take`]
/// (or a typed variant); [`Properties::finish`] then rejects whatever was not taken, so a typo
/// such as `Tick_tme` is an error with its line number rather than a silently ignored setting.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    origin: String,
    entries: HashMap<String, Entry>,
}

impl Properties {
    /// No properties; everything takes its default.
    pub fn empty(origin: impl Into<String>) -> Self {
        Properties {
            origin: origin.into(),
            entries: HashMap::new(),
        }
    }

    /// Reads a properties file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: 0,
            key: String::new(),
            reason: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&text[..], origin)
    }

    /// Parses properties text; `origin` names it in errors.
    pub fn parse(text: impl std::io::Read, origin: impl Into<String>) -> Result<Self, ConfigError> {
        let mut properties = Properties::empty(origin);
        for line in PropertiesIter::new(text) {
            let line = line.map_err(|e| ConfigError {
                origin: properties.origin.clone(),
                line: e.line_number().unwrap_or(0),
                key: String::new(),
                reason: format!("not a valid properties line: {e}"),
            })?;
            let number = line.line_number();
            if let LineContent::KVPair(key, value) = line.consume_content() {
                properties.insert(key, value, None, number)?;
            }
        }
        Ok(properties)
    }

    /// Sets `key` from the command line, replacing the file's value.
    pub fn set_override(&mut self, key: &str, value: impl Into<String>) {
        let lower = key.to_ascii_lowercase();
        self.entries.insert(
            lower,
            Entry {
                key: key.to_owned(),
                value: value.into(),
                origin: "command line".to_owned(),
                line: 0,
                used: false,
            },
        );
    }

    fn insert(
        &mut self,
        key: String,
        value: String,
        origin: Option<&str>,
        line: usize,
    ) -> Result<(), ConfigError> {
        let lower = key.trim().to_ascii_lowercase();
        if lower.is_empty() {
            return Err(self.error_at(line, "", "a line has a value but no key"));
        }
        if let Some(previous) = self.entries.get(&lower) {
            return Err(self.error_at(
                line,
                &key,
                format!("set twice (first on line {})", previous.line),
            ));
        }
        self.entries.insert(
            lower,
            Entry {
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
                origin: origin.unwrap_or(&self.origin).to_owned(),
                line,
                used: false,
            },
        );
        Ok(())
    }

    fn error_at(&self, line: usize, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: self.origin.clone(),
            line,
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// Where these properties came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// True if `key` is present (not marking it used).
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(&key.to_ascii_lowercase())
    }

    /// Takes the raw value of `key` (case-insensitive), if present.
    pub fn take(&mut self, key: &str) -> Option<String> {
        let entry = self.entries.get_mut(&key.to_ascii_lowercase())?;
        entry.used = true;
        Some(entry.value.clone())
    }

    /// Takes `key` and converts it with `parse`; a conversion error names the line and key.
    pub fn take_with<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(entry) = self.entries.get_mut(&key.to_ascii_lowercase()) else {
            return Ok(None);
        };
        entry.used = true;
        parse(&entry.value).map(Some).map_err(|reason| ConfigError {
            origin: entry.origin.clone(),
            line: entry.line,
            key: entry.key.clone(),
            reason: format!("{reason} (value {:?})", entry.value),
        })
    }

    /// Takes every key that starts with `prefix` (case-insensitive): the rest of each key, as
    /// written, with its value, in file order.
    pub fn take_prefixed(&mut self, prefix: &str) -> Vec<(String, String)> {
        let prefix = prefix.to_ascii_lowercase();
        let mut taken: Vec<(usize, String, String)> = self
            .entries
            .iter_mut()
            .filter(|(lower, _)| lower.starts_with(&prefix) && lower.len() > prefix.len())
            .map(|(_, entry)| {
                entry.used = true;
                (
                    entry.line,
                    entry.key[prefix.len()..].to_owned(),
                    entry.value.clone(),
                )
            })
            .collect();
        taken.sort_by_key(|(line, _, _)| *line);
        taken
            .into_iter()
            .map(|(_, key, value)| (key, value))
            .collect()
    }

    /// Takes an unsigned integer.
    pub fn take_u64(&mut self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.take_with(key, |v| {
            v.parse::<u64>()
                .map_err(|_| "expected a non-negative integer".to_owned())
        })
    }

    /// Takes a duration in milliseconds: `3000`, `3000ms` or `3s`.
    pub fn take_millis(&mut self, key: &str) -> Result<Option<std::time::Duration>, ConfigError> {
        self.take_with(key, parse_millis)
    }

    /// Takes `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.take_with(key, |v| match v.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        })
    }

    /// Fails on the first key that no one took, naming its line and suggesting the closest
    /// known key in `known`.
    pub fn finish(self, known: &[&str]) -> Result<(), ConfigError> {
        let mut unused: Vec<&Entry> = self.entries.values().filter(|e| !e.used).collect();
        unused.sort_by_key(|e| e.line);
        match unused.first() {
            None => Ok(()),
            Some(entry) => {
                let hint = closest(&entry.key, known)
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                Err(ConfigError {
                    origin: entry.origin.clone(),
                    line: entry.line,
                    key: entry.key.clone(),
                    reason: format!("unknown key{hint}"),
                })
            }
        }
    }
}

fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&key, &k.to_ascii_lowercase()), *k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive_and_remember_lines() {
        let mut p = Properties::parse(
            &b"# comment\nTick_Time = 3000\nmonitor_log=yes\n"[..],
            "a.properties",
        )
        .unwrap();
        assert_eq!(
            p.take_millis("tick_time").unwrap(),
            Some(std::time::Duration::from_secs(3))
        );
        assert_eq!(p.take_bool("MONITOR_LOG").unwrap(), Some(true));
        p.finish(&[]).unwrap();
    }

    #[test]
    fn bad_value_names_file_line_and_key() {
        let mut p = Properties::parse(&b"a=1\nTick_time=soon\n"[..], "conf/x.properties").unwrap();
        let err = p.take_millis("tick_time").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(
            err.to_string(),
            "conf/x.properties:2: key `Tick_time`: expected milliseconds, like 3000, 3000ms or 3s (value \"soon\")"
        );
    }

    #[test]
    fn unknown_key_suggests_the_closest_known_one() {
        let p = Properties::parse(&b"Provider_post=9999\n"[..], "f").unwrap();
        let err = p.finish(&["Provider_port", "Tick_time"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f:1: key `Provider_post`: unknown key; did you mean `Provider_port`?"
        );
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = Properties::parse(&b"a=1\nA=2\n"[..], "f").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("set twice (first on line 1)"), "{err}");
    }

    #[test]
    fn overrides_replace_file_values() {
        let mut p = Properties::parse(&b"port=1\n"[..], "f").unwrap();
        p.set_override("PORT", "2");
        assert_eq!(p.take_u64("port").unwrap(), Some(2));
    }
}
