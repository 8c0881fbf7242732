//! Node paths: validation and the parent/name split every operation needs.

use crate::error::RegistryError;

/// Longest path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// Checks that `path` is absolute, normalized and printable: `/`, `/a`, `/a/b-1.x`.
pub fn validate(path: &str) -> Result<(), RegistryError> {
    let invalid = |reason: &str| {
        Err(RegistryError::InvalidPath {
            path: path.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if path.is_empty() {
        return invalid("it is empty");
    }
    if !path.starts_with('/') {
        return invalid("it must start with '/'");
    }
    if path.len() > MAX_PATH_LEN {
        return invalid("it is longer than 1024 bytes");
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return invalid("it must not end with '/'");
    }
    for name in path[1..].split('/') {
        if name.is_empty() {
            return invalid("it contains an empty name ('//')");
        }
        if name == "." || name == ".." {
            return invalid("'.' and '..' are not names");
        }
        if name.chars().any(char::is_control) {
            return invalid("it contains a control character");
        }
    }
    Ok(())
}

/// The parent of a valid path other than `/`.
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "/",
    }
}

/// The last name of a valid path other than `/`.
pub fn name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `parent` joined with `name`.
pub fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// True when `path` is `prefix` or lies under it.
pub fn is_within(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_paths() {
        for path in [
            "/",
            "/a",
            "/a/b",
            "/rmif/services/x.y:1.0/providers/127.0.0.1:9000",
        ] {
            validate(path).unwrap();
        }
    }

    #[test]
    fn rejects_malformed_paths_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("a/b", "start with '/'"),
            ("/a/", "end with '/'"),
            ("/a//b", "empty name"),
            ("/a/./b", "not names"),
            ("/..", "not names"),
            ("/a\u{0}b", "control character"),
            ("/a\nb", "control character"),
        ];
        for (path, reason) in cases {
            match validate(path) {
                Err(RegistryError::InvalidPath { reason: r, .. }) => {
                    assert!(r.contains(reason), "{path:?}: {r}")
                }
                other => panic!("{path:?}: {other:?}"),
            }
        }
        assert!(validate(&format!("/{}", "x".repeat(MAX_PATH_LEN))).is_err());
    }

    #[test]
    fn splits_and_joins() {
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(name("/a/b/c"), "c");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert!(is_within("/a/b", "/a"));
        assert!(is_within("/a", "/a"));
        assert!(!is_within("/ab", "/a"));
        assert!(is_within("/anything", "/"));
    }
}
