//! What a build of rmif-core can leave out: the body formats and compression algorithms behind
//! cargo features. A build without one still knows its wire id and name, so that a peer or a
//! configuration file asking for it hears which feature is missing rather than "unknown".

/// A body format or compression algorithm that rmif defines but this build was compiled
/// without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeftOut {
    /// Its id in frame headers.
    pub(crate) id: u8,
    /// Its configuration name, which is also the name of the rmif-core feature that adds it.
    pub(crate) name: &'static str,
}

impl LeftOut {
    /// The entry of `table` with wire id `id`.
    pub(crate) fn by_id(table: &[LeftOut], id: u8) -> Option<LeftOut> {
        table.iter().copied().find(|left_out| left_out.id == id)
    }

    /// The entry of `table` with configuration name `name` (case-insensitive). Only
    /// configuration files name them.
    #[cfg(feature = "properties")]
    pub(crate) fn by_name(table: &[LeftOut], name: &str) -> Option<LeftOut> {
        table
            .iter()
            .copied()
            .find(|left_out| left_out.name.eq_ignore_ascii_case(name))
    }
}

/// `a`, `a or b`, `a, b or c` (with `conjunction` in place of "or").
pub(crate) fn list<S: AsRef<str>>(items: &[S], conjunction: &str) -> String {
    match items {
        [] => String::new(),
        [only] => only.as_ref().to_owned(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(AsRef::as_ref).collect();
            format!("{} {conjunction} {}", init.join(", "), last.as_ref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[LeftOut] = &[LeftOut {
        id: 2,
        name: "json",
    }];

    #[test]
    fn entries_are_found_by_id() {
        assert_eq!(LeftOut::by_id(TABLE, 2), Some(TABLE[0]));
        assert_eq!(LeftOut::by_id(TABLE, 1), None);
    }

    #[cfg(feature = "properties")]
    #[test]
    fn entries_are_found_by_name_in_any_case() {
        assert_eq!(LeftOut::by_name(TABLE, "JSON"), Some(TABLE[0]));
        assert_eq!(LeftOut::by_name(TABLE, "xml"), None);
    }

    #[test]
    fn lists_read_as_prose() {
        assert_eq!(list::<&str>(&[], "or"), "");
        assert_eq!(list(&["msgpack"], "or"), "msgpack");
        assert_eq!(list(&["msgpack", "json"], "or"), "msgpack or json");
        assert_eq!(list(&["a", "b", "c"], "and"), "a, b and c");
    }
}
