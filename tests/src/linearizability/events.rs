//! The call and return events of one key's operations in time order, in a doubly linked
//! list that the search lifts operations out of and puts back ("dancing links").
//!
//! # The tie rule
//!
//! Events are sorted by virtual time; an answer that never came is at +infinity. When a
//! return and a call share an instant, **the return comes first**: an operation called at
//! the instant another returned is taken to have started after it, so the first must be
//! linearized before the second. This is the rule a client sees (it issues its next
//! request the instant the previous answer arrives) and it is sound in the simulator:
//! every message takes at least `SimConfig::min_latency` (> 0), so an operation that
//! returns at `t` took effect strictly before `t`, and one called at `t` takes effect
//! strictly after `t`. Porcupine breaks ties the other way (calls first), which is
//! weaker; with a zero minimum latency, use that.
//!
//! One exception keeps every operation's call before its own return: an operation that
//! returns at the very instant it was called sorts its return after the calls of that
//! instant, so it is concurrent with them. Remaining ties (two calls, or two returns, at
//! one instant) are broken by operation index; their order does not change the outcome.
//!
//! # The list
//!
//! Node 0 is the head sentinel; operation `i` owns nodes `2i + 1` (its call) and `2i + 2`
//! (its return). [`Events::lift`] unlinks both nodes of an operation once the search has
//! linearized it, and [`Events::unlift`] relinks them when it backtracks. Unlifts come
//! in the reverse order of lifts, which is what makes relinking by the removed nodes' own
//! stale links correct.

use std::time::Duration;

/// The link of a node that has no successor.
const NIL: usize = usize::MAX;

/// A node of the list: an index into [`Events`]' link arrays.
pub type Node = usize;

/// One key's events in time order, as a doubly linked list over operation indices.
#[derive(Debug)]
pub struct Events {
    next: Vec<Node>,
    prev: Vec<Node>,
}

/// Where an event sorts: whether its time is +infinity, the time, the tie rank of the
/// module docs, then the operation index.
type SortKey = (bool, Duration, u8, usize);

/// The sort key of operation `op`'s call (`is_call`) or return.
fn sort_key(op: usize, call: Duration, return_time: Option<Duration>, is_call: bool) -> SortKey {
    const RETURN_FIRST: u8 = 0;
    const CALL: u8 = 1;
    const RETURN_AT_CALL: u8 = 2;
    match (is_call, return_time) {
        (true, _) => (false, call, CALL, op),
        (false, None) => (true, Duration::ZERO, RETURN_FIRST, op),
        (false, Some(ret)) if ret == call => (false, ret, RETURN_AT_CALL, op),
        (false, Some(ret)) => (false, ret, RETURN_FIRST, op),
    }
}

impl Events {
    /// The list of the events of operations given as `(call, return_time)` pairs.
    pub fn new(times: &[(Duration, Option<Duration>)]) -> Events {
        let mut order: Vec<(SortKey, Node)> = Vec::with_capacity(2 * times.len());
        for (op, &(call, ret)) in times.iter().enumerate() {
            assert!(
                ret.is_none_or(|ret| ret >= call),
                "operation {op} returns before its call"
            );
            order.push((sort_key(op, call, ret, true), 2 * op + 1));
            order.push((sort_key(op, call, ret, false), 2 * op + 2));
        }
        order.sort_unstable();
        let nodes = 2 * times.len() + 1;
        let (mut next, mut prev) = (vec![NIL; nodes], vec![NIL; nodes]);
        let mut last = 0;
        for &(_, node) in &order {
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        Events { next, prev }
    }

    /// The earliest event still in the list, or `None` once every operation is lifted.
    pub fn first(&self) -> Option<Node> {
        self.next(0)
    }

    /// Operation `op`'s call event.
    pub fn call(op: usize) -> Node {
        2 * op + 1
    }

    /// The event after `node`, if any.
    pub fn next(&self, node: Node) -> Option<Node> {
        Some(self.next[node]).filter(|&n| n != NIL)
    }

    /// The operation the event belongs to.
    pub fn op(node: Node) -> usize {
        assert!(node > 0, "the head sentinel belongs to no operation");
        (node - 1) / 2
    }

    /// Whether the event is a call (otherwise it is a return).
    pub fn is_call(node: Node) -> bool {
        node % 2 == 1
    }

    /// Unlinks operation `op`'s call and return.
    pub fn lift(&mut self, op: usize) {
        let (call, ret) = (2 * op + 1, 2 * op + 2);
        let (next, prev) = (&mut self.next, &mut self.prev);
        next[prev[call]] = next[call];
        prev[next[call]] = prev[call]; // a call is always followed, at least by its return
        next[prev[ret]] = next[ret];
        if next[ret] != NIL {
            prev[next[ret]] = prev[ret];
        }
    }

    /// Relinks operation `op`, which must be the operation lifted last and not yet unlifted.
    pub fn unlift(&mut self, op: usize) {
        let (call, ret) = (2 * op + 1, 2 * op + 2);
        let (next, prev) = (&mut self.next, &mut self.prev);
        next[prev[ret]] = ret;
        if next[ret] != NIL {
            prev[next[ret]] = ret;
        }
        next[prev[call]] = call;
        prev[next[call]] = call;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn order(events: &Events) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        let mut node = events.first();
        while let Some(n) = node {
            out.push((Events::op(n), Events::is_call(n)));
            node = events.next(n);
        }
        out
    }

    /// A return and a call at one instant sort return first; an answer that never came
    /// sorts last; a zero-length operation stays concurrent with calls at its instant.
    #[test]
    fn events_follow_the_tie_rule() {
        let events = Events::new(&[(ms(0), Some(ms(5))), (ms(5), None), (ms(5), Some(ms(5)))]);
        let expected = [
            (0, true),
            (0, false),
            (1, true),
            (2, true),
            (2, false),
            (1, false),
        ];
        assert_eq!(order(&events), expected);
    }

    /// Lifting operations and unlifting them in reverse order restores the list.
    #[test]
    fn unlift_undoes_lift() {
        let times = [(ms(0), Some(ms(3))), (ms(1), Some(ms(2))), (ms(2), None)];
        let mut events = Events::new(&times);
        let before = order(&events);
        events.lift(1);
        assert_eq!(
            order(&events),
            [(0, true), (2, true), (0, false), (2, false)]
        );
        events.lift(2);
        events.lift(0);
        assert_eq!(events.first(), None);
        events.unlift(0);
        events.unlift(2);
        events.unlift(1);
        assert_eq!(order(&events), before);
    }
}
