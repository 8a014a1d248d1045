//! Leader hints: which server of a replicated service to ask after a failed attempt.
//!
//! A replicated service (the shard master, or one replica group) answers only at its
//! leader, and a server that is not the leader may say which node it believes leads.
//! Callers know servers by address, in a list; hints are Raft [`NodeId`]s. The
//! convention, shared by clients and servers, is that **NodeId `i + 1` is
//! `servers[i]`** (Raft reserves id 0 for "none").
//!
//! After a failed attempt at `servers[current]` the caller moves:
//!
//! - to the hinted server, when the hint names a server in the list other than the one
//!   just tried;
//! - otherwise to the next server in the list, wrapping around.
//!
//! A hint of 0, past the end of the list, or naming the server just tried is ignored:
//! the caller moves on as if there were no hint, so a stale or corrupt hint cannot keep
//! it on one server.

use crate::ids::NodeId;

/// The index into a list of `servers` servers of the server with Raft id `node`, under
/// the convention NodeId `i + 1` = `servers[i]`; `None` when `node` is 0 or past the
/// list's end.
pub fn node_index(node: NodeId, servers: usize) -> Option<usize> {
    let index = usize::try_from(node.checked_sub(1)?).ok()?;
    (index < servers).then_some(index)
}

/// The index of the server to ask after the attempt at index `current` of `servers`
/// servers failed with leader hint `hint`: the hinted server when the hint is usable,
/// else the next one (see the module docs).
///
/// # Panics
/// If `servers` is 0: there is no server to move to, and callers check for an empty
/// list before they make an attempt.
pub fn next_server(current: usize, servers: usize, hint: Option<NodeId>) -> usize {
    assert!(servers > 0, "next_server with no servers");
    hint.and_then(|node| node_index(node, servers))
        .filter(|&index| index != current)
        .unwrap_or((current % servers + 1) % servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node ids map to list indexes as id - 1, and ids outside the list map to nothing.
    #[test]
    fn node_index_maps_ids_to_positions() {
        let cases = [
            (0, 3, None),
            (1, 3, Some(0)),
            (3, 3, Some(2)),
            (4, 3, None),
            (u64::MAX, 3, None),
            (1, 0, None),
        ];
        for (node, servers, expected) in cases {
            assert_eq!(
                node_index(node, servers),
                expected,
                "node {node} of {servers}"
            );
        }
    }

    /// A usable hint is followed; without one the next server is asked, wrapping.
    #[test]
    fn follows_usable_hints_and_rotates_otherwise() {
        assert_eq!(next_server(0, 3, Some(3)), 2);
        assert_eq!(next_server(2, 3, Some(1)), 0);
        assert_eq!(next_server(0, 3, None), 1);
        assert_eq!(next_server(2, 3, None), 0);
        assert_eq!(next_server(0, 1, None), 0);
    }

    /// Out-of-range hints (0, past the list's end, huge) and a hint naming the server
    /// just tried are ignored: the next server is asked, as with no hint. A hint one past
    /// the end does not wrap around to the first server.
    #[test]
    fn ignores_out_of_range_and_self_hints() {
        for hint in [0, 4, 5, 7, u64::MAX] {
            assert_eq!(next_server(1, 3, Some(hint)), 2, "hint {hint}");
            assert_eq!(next_server(2, 3, Some(hint)), 0, "hint {hint}");
        }
        assert_eq!(
            next_server(1, 3, Some(2)),
            2,
            "hint names the server just tried"
        );
    }
}
