//! A linearizability checker in the style of Wing & Gong with Lowe's memoization (as in
//! Porcupine and Knossos): searches for an order of the operations that respects real time and
//! that a sequential model accepts.
//!
//! Operations whose outcome is unknown (the client timed out or lost its connection) may take
//! effect at any point after their invocation, or never; their output is not checked.

use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    type Output: PartialEq;

    fn init(&self) -> Self::State;

    /// The state after `input` if the model can produce `output` from `state`; `None` if it cannot.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// The state after `input` when its output is unknown (whatever it returned).
    fn apply(&self, state: &Self::State, input: &Self::Input) -> Self::State;
}

/// One operation as a client saw it.
#[derive(Debug, Clone)]
pub struct Operation<I, O> {
    pub client: usize,
    /// Invocation time (any monotonic unit).
    pub call: u64,
    /// Completion time; `None` when the outcome is unknown.
    pub ret: Option<u64>,
    pub input: I,
    /// `None` when the outcome is unknown.
    pub output: Option<O>,
}

/// Checks a history; on failure returns the longest prefix (in linearization order) that
/// could be explained, for the report.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
) -> Result<(), Vec<usize>>
where
    M::Output: std::fmt::Debug,
{
    let n = history.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| history[i].call);
    let completed: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| history[i].ret.is_some())
        .collect();
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut best: Vec<usize> = Vec::new();
    let mut linearized = vec![0u64; n.div_ceil(64)];
    let mut path = Vec::new();
    if search(
        model,
        history,
        &order,
        &completed,
        &mut linearized,
        model.init(),
        &mut seen,
        &mut path,
        &mut best,
    ) {
        Ok(())
    } else {
        Err(best)
    }
}

fn is_set(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn flip(bits: &mut [u64], i: usize) {
    bits[i / 64] ^= 1 << (i % 64);
}

#[allow(clippy::too_many_arguments)]
fn search<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    order: &[usize],
    completed: &[usize],
    linearized: &mut Vec<u64>,
    state: M::State,
    seen: &mut HashSet<(Vec<u64>, M::State)>,
    path: &mut Vec<usize>,
    best: &mut Vec<usize>,
) -> bool {
    if path.len() > best.len() {
        *best = path.clone();
    }
    // Done once every operation that completed is placed; unknown ones may never have happened.
    let Some(earliest_return) = completed
        .iter()
        .filter(|&&i| !is_set(linearized, i))
        .filter_map(|&i| history[i].ret)
        .min()
    else {
        return true;
    };
    if !seen.insert((linearized.clone(), state.clone())) {
        return false;
    }
    // Any operation invoked before the earliest pending return may go next.
    for &i in order {
        let op = &history[i];
        if op.call > earliest_return {
            break;
        }
        if is_set(linearized, i) {
            continue;
        }
        let next = match &op.output {
            Some(output) => model.step(&state, &op.input, output),
            None => Some(model.apply(&state, &op.input)),
        };
        if let Some(next) = next {
            flip(linearized, i);
            path.push(i);
            if search(
                model, history, order, completed, linearized, next, seen, path, best,
            ) {
                return true;
            }
            path.pop();
            flip(linearized, i);
        }
    }
    false
}

/// A versioned register as the registry keeps one node: absent, or data with a version.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeModel;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeInput {
    Create(u64),
    Set(u64, Option<u32>),
    Delete(Option<u32>),
    Get,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeOutput {
    Created,
    Exists,
    /// A set succeeded; the node's new version.
    Set(u32),
    Deleted,
    NoNode,
    BadVersion,
    /// A read saw this value at this version.
    Value(u64, u32),
}

impl Model for NodeModel {
    type State = Option<(u64, u32)>;
    type Input = NodeInput;
    type Output = NodeOutput;

    fn init(&self) -> Self::State {
        None
    }

    fn step(
        &self,
        state: &Self::State,
        input: &NodeInput,
        output: &NodeOutput,
    ) -> Option<Self::State> {
        let (expected, next) = self.run(state, input);
        (expected == *output).then_some(next)
    }

    fn apply(&self, state: &Self::State, input: &NodeInput) -> Self::State {
        self.run(state, input).1
    }
}

impl NodeModel {
    fn run(
        &self,
        state: &Option<(u64, u32)>,
        input: &NodeInput,
    ) -> (NodeOutput, Option<(u64, u32)>) {
        match (input, *state) {
            (NodeInput::Create(_), Some(_)) => (NodeOutput::Exists, *state),
            (NodeInput::Create(value), None) => (NodeOutput::Created, Some((*value, 0))),
            (NodeInput::Set(..) | NodeInput::Delete(_), None) => (NodeOutput::NoNode, None),
            (NodeInput::Set(_, Some(v)), Some((_, version))) if *v != version => {
                (NodeOutput::BadVersion, *state)
            }
            (NodeInput::Set(value, _), Some((_, version))) => {
                (NodeOutput::Set(version + 1), Some((*value, version + 1)))
            }
            (NodeInput::Delete(Some(v)), Some((_, version))) if *v != version => {
                (NodeOutput::BadVersion, *state)
            }
            (NodeInput::Delete(_), Some(_)) => (NodeOutput::Deleted, None),
            (NodeInput::Get, None) => (NodeOutput::NoNode, None),
            (NodeInput::Get, Some((value, version))) => (NodeOutput::Value(value, version), *state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        client: usize,
        call: u64,
        ret: Option<u64>,
        input: NodeInput,
        output: Option<NodeOutput>,
    ) -> Operation<NodeInput, NodeOutput> {
        Operation {
            client,
            call,
            ret,
            input,
            output,
        }
    }

    #[test]
    fn accepts_a_linearizable_history_with_overlap() {
        let history = vec![
            op(
                0,
                0,
                Some(10),
                NodeInput::Create(1),
                Some(NodeOutput::Created),
            ),
            // Overlaps the create: may see either state.
            op(1, 5, Some(15), NodeInput::Get, Some(NodeOutput::NoNode)),
            op(
                1,
                20,
                Some(30),
                NodeInput::Set(2, Some(0)),
                Some(NodeOutput::Set(1)),
            ),
            op(
                0,
                25,
                Some(40),
                NodeInput::Get,
                Some(NodeOutput::Value(2, 1)),
            ),
        ];
        assert!(check(&NodeModel, &history).is_ok());
    }

    #[test]
    fn rejects_a_stale_read_after_an_acknowledged_write() {
        let history = vec![
            op(
                0,
                0,
                Some(10),
                NodeInput::Create(1),
                Some(NodeOutput::Created),
            ),
            op(
                0,
                11,
                Some(20),
                NodeInput::Set(2, None),
                Some(NodeOutput::Set(1)),
            ),
            // Starts after the set completed, yet sees the old value: not linearizable.
            op(
                1,
                21,
                Some(30),
                NodeInput::Get,
                Some(NodeOutput::Value(1, 0)),
            ),
        ];
        assert!(check(&NodeModel, &history).is_err());
    }

    #[test]
    fn rejects_a_lost_acknowledged_write() {
        let history = vec![
            op(
                0,
                0,
                Some(10),
                NodeInput::Create(7),
                Some(NodeOutput::Created),
            ),
            op(1, 50, Some(60), NodeInput::Get, Some(NodeOutput::NoNode)),
        ];
        assert!(check(&NodeModel, &history).is_err());
    }

    #[test]
    fn an_unknown_write_may_or_may_not_have_happened() {
        let applied = vec![
            op(0, 0, None, NodeInput::Create(3), None),
            op(
                1,
                100,
                Some(110),
                NodeInput::Get,
                Some(NodeOutput::Value(3, 0)),
            ),
        ];
        assert!(check(&NodeModel, &applied).is_ok());
        let lost = vec![
            op(0, 0, None, NodeInput::Create(3), None),
            op(1, 100, Some(110), NodeInput::Get, Some(NodeOutput::NoNode)),
        ];
        assert!(check(&NodeModel, &lost).is_ok());
        // But not before it was invoked.
        let too_early = vec![
            op(
                1,
                0,
                Some(10),
                NodeInput::Get,
                Some(NodeOutput::Value(3, 0)),
            ),
            op(0, 20, None, NodeInput::Create(3), None),
        ];
        assert!(check(&NodeModel, &too_early).is_err());
    }

    #[test]
    fn versions_must_follow_the_order_of_writes() {
        let history = vec![
            op(
                0,
                0,
                Some(5),
                NodeInput::Create(1),
                Some(NodeOutput::Created),
            ),
            op(
                0,
                6,
                Some(10),
                NodeInput::Set(2, None),
                Some(NodeOutput::Set(1)),
            ),
            op(
                1,
                6,
                Some(10),
                NodeInput::Set(3, None),
                Some(NodeOutput::Set(1)),
            ),
        ];
        assert!(
            check(&NodeModel, &history).is_err(),
            "two sets cannot both produce version 1"
        );
    }
}
