//! The tree's nodes by path, in path order, with a digest of all of them that every change keeps
//! current, so that comparing members' states costs nothing however large the tree.

use std::hash::{Hash, Hasher};

use super::node::Node;

/// Nodes by path and their running digest: the wrapping sum of one hash per node, which does
/// not depend on order and is updated by subtracting a node's old hash and adding its new one.
/// The map is persistent: a clone shares it, and changes copy only what they touch. It is
/// ordered by path, the order a snapshot writes nodes in: a hash map had to be collected and
/// sorted for every snapshot, which took most of a snapshot's CPU (twice the encoding's), and
/// the ordered map walks in memory order, which makes encoding and freeing faster too. A
/// lookup compares paths instead of hashing one, a little slower (about a microsecond per
/// write at 400,000 nodes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Nodes {
    map: imbl::OrdMap<String, Node>,
    digest: u64,
}

/// One node's contribution to the digest. SipHash with fixed keys: the same on every member.
fn node_hash(path: &str, node: &Node) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    path.hash(&mut hasher);
    node.data.hash(&mut hasher);
    node.stat.hash(&mut hasher);
    node.next_sequence.hash(&mut hasher);
    hasher.finish()
}

/// The digest of every node in `map`, computed afresh.
fn digest_of(map: &imbl::OrdMap<String, Node>) -> u64 {
    map.iter().fold(0u64, |sum, (path, node)| {
        sum.wrapping_add(node_hash(path, node))
    })
}

impl Nodes {
    pub(crate) fn get(&self, path: &str) -> Option<&Node> {
        self.map.get(path)
    }

    pub(crate) fn contains(&self, path: &str) -> bool {
        self.map.contains_key(path)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Every node, in path order (byte order of the paths, as `str` compares them).
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &Node)> {
        self.map.iter()
    }

    /// The digest of every node (paths, data, stats, sequence counters).
    pub(crate) fn digest(&self) -> u64 {
        self.digest
    }

    /// Adds or replaces the node at `path`.
    pub(crate) fn insert(&mut self, path: String, node: Node) -> Option<Node> {
        let replaced = self.map.get(&path).map_or(0, |old| node_hash(&path, old));
        self.digest = self
            .digest
            .wrapping_add(node_hash(&path, &node))
            .wrapping_sub(replaced);
        self.map.insert(path, node)
    }

    /// Removes the node at `path`.
    pub(crate) fn remove(&mut self, path: &str) -> Option<Node> {
        let old = self.map.remove(path)?;
        self.digest = self.digest.wrapping_sub(node_hash(path, &old));
        Some(old)
    }

    /// Changes the node at `path` with `change`; `None` if there is none.
    pub(crate) fn update<R>(
        &mut self,
        path: &str,
        change: impl FnOnce(&mut Node) -> R,
    ) -> Option<R> {
        let node = self.map.get_mut(path)?;
        let before = node_hash(path, node);
        let result = change(node);
        let after = node_hash(path, node);
        self.digest = self.digest.wrapping_sub(before).wrapping_add(after);
        Some(result)
    }

    /// Digest recomputed from every node, to check the running one.
    #[cfg(test)]
    pub(crate) fn digest_from_scratch(&self) -> u64 {
        digest_of(&self.map)
    }
}

impl FromIterator<(String, Node)> for Nodes {
    fn from_iter<I: IntoIterator<Item = (String, Node)>>(items: I) -> Self {
        // Restoring a snapshot of hundreds of thousands of nodes is on a restart's critical
        // path: paths are unique there, so no lookup of a node to replace.
        let (mut digest, mut hashed) = (0u64, 0usize);
        let map = items
            .into_iter()
            .map(|(path, node)| {
                digest = digest.wrapping_add(node_hash(&path, &node));
                hashed += 1;
                (path, node)
            })
            .collect::<imbl::OrdMap<String, Node>>();
        if map.len() != hashed {
            // A repeated path: the digest also counted the nodes it replaced.
            digest = digest_of(&map);
        }
        Nodes { map, digest }
    }
}
