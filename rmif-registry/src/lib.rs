//! rmif-registry: the Raft-replicated registry that keeps every consumer's provider list
//! current, and its client.
