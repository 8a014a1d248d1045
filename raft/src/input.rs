//! Raft messages from peers, checked before raft-rs sees them.
//!
//! raft-rs trusts its peers: a message it cannot take makes it panic (it asserts its own
//! invariants on what arrives), and a message of a kind only a node sends itself does
//! what that node asked for. A forged or corrupted message must not take a node down or
//! move the group, so [`check`] refuses, before raft-rs, every message that:
//!
//! - is of a kind no shardkv peer sends: proposals (only a leader proposes here, so a
//!   proposal from the network would be appended as if a client had asked), leadership
//!   transfer and read-index requests and answers (a leader starts its own transfers and
//!   reads; a read request without entries panics raft-rs), and raft-rs's local kinds
//!   (raft-rs refuses those itself, but only after taking the message apart);
//! - asks for a snapshot (`request_snapshot`: shardkv never does);
//! - is addressed to another node, or comes from node 0 or from this node, or carries no
//!   term (raft-rs would take it as the node's own and skip its term checks);
//! - carries a term past [`MAX_TERM`] or an index past [`MAX_INDEX`] (raft-rs adds one
//!   to terms and indexes, and at the edge of `u64` that overflows), or an entry, log or
//!   snapshot term past the message's own (no leader sends entries of a later term than
//!   its own);
//! - appends entries whose indexes do not follow the message's index one by one, or whose
//!   terms go down, or appends after an index with log term 0 (raft-rs would find a
//!   "conflict" with its committed log, or leave a gap in it, and panic);
//! - is a heartbeat of this node's term or later committing past its last log index
//!   (raft-rs panics committing beyond its log), or, to a leader, such an append answer
//!   claiming entries past its log (it never sent them; raft-rs would then send that
//!   follower nothing more). Honest peers never send these: a commit index covers only
//!   entries a follower acknowledged as durable, and those it keeps; a leader's log only
//!   grows while it leads (a node that lost unsynced entries of its own in a power
//!   failure may hear late answers about them, but leads again only in a later term).
//!   A replica that lost what it acknowledged (a disk that lied about a sync, a data
//!   directory deleted) refuses them rather than panic, and stays behind until a new
//!   leader learns where its log ends;
//! - hands leadership over (`MsgTimeoutNow`: campaign now) at a later term than this
//!   node's, or at its term from a node other than the leader it knows (any peer could
//!   otherwise keep the group electing);
//! - is a snapshot at index or term 0, or with a configuration raft-rs cannot restore
//!   (no voters, a node twice, a learner that is also a voter, learners-next outside a
//!   joint configuration).
//!
//! This holds message by message, which is all a check at the door can do: no single
//! message it lets through panics raft-rs. A forger who can speak as a peer can still
//! send a sequence within these rules that breaks raft's safety (a heartbeat from a
//! made-up leader commits a follower's uncommitted tail, and the real leader's next append
//! then conflicts with it, which raft-rs treats as fatal). Only authenticating peers
//! (the transport's job) closes that; this is what any message, even from an
//! authenticated peer, must satisfy.

use std::collections::BTreeSet;

use raft::eraftpb::{ConfState, Message, MessageType};

use crate::{Index, NodeId, Term};

/// The largest term a message may carry. No group reaches it (an election every
/// millisecond would take 292 million years), and everything up to it leaves raft-rs
/// room to count up.
pub const MAX_TERM: Term = u64::MAX / 2;

/// The largest log index a message may carry, for the same reason: raft-rs counts up
/// from indexes (a next index is a match plus one), and no log reaches this.
pub const MAX_INDEX: Index = u64::MAX / 2;

/// What the receiving node knows that a message is checked against.
pub(crate) struct Receiver {
    pub(crate) id: NodeId,
    pub(crate) term: Term,
    pub(crate) leader: bool,
    /// The leader this node follows in its term (0: none known).
    pub(crate) leader_id: NodeId,
    pub(crate) last_index: Index,
    /// The peer the message arrived from, when the transport knows it (a raft stream's
    /// hello): the message must name it as its sender.
    pub(crate) sender: Option<NodeId>,
}

/// Refuses what raft-rs must not see; see the module docs.
pub(crate) fn check(message: &Message, receiver: &Receiver) -> Result<(), String> {
    use MessageType::*;
    let kind = message.get_msg_type();
    match kind {
        MsgAppend
        | MsgAppendResponse
        | MsgRequestVote
        | MsgRequestVoteResponse
        | MsgRequestPreVote
        | MsgRequestPreVoteResponse
        | MsgSnapshot
        | MsgHeartbeat
        | MsgHeartbeatResponse
        | MsgTimeoutNow => {}
        MsgHup | MsgBeat | MsgPropose | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum
        | MsgTransferLeader | MsgReadIndex | MsgReadIndexResp => {
            return Err(format!("{kind:?} is not sent between peers"));
        }
    }
    if message.to != receiver.id {
        return Err(format!(
            "message for node {} delivered to node {}",
            message.to, receiver.id
        ));
    }
    if message.from == 0 || message.from == receiver.id {
        return Err(format!("{kind:?} from node {}", message.from));
    }
    if let Some(sender) = receiver.sender.filter(|&sender| sender != message.from) {
        return Err(format!(
            "{kind:?} from node {} arrived from node {sender}",
            message.from
        ));
    }
    // raft-rs takes a message of term 0 as the node's own and skips its term checks; it
    // gives every message it sends to a peer a term.
    if message.term == 0 {
        return Err(format!("{kind:?} without a term"));
    }
    // Only a follower that asked for a snapshot (`request_snapshot`, which shardkv never
    // calls) sets this; a forged one would stop the leader sending that follower anything.
    if message.request_snapshot != 0 {
        return Err(format!("{kind:?} asking for a snapshot"));
    }
    check_terms(message)?;
    check_indexes(message)?;
    match kind {
        MsgAppend => {
            // raft-rs reads the term of an index past its log as 0, so an append "after"
            // such an index with log term 0 would match, and leave a gap in its log.
            if message.index > 0 && message.log_term == 0 {
                return Err(format!("append after index {} of term 0", message.index));
            }
            let (mut index, mut term) = (message.index, message.log_term.max(1));
            for entry in message.get_entries() {
                index = index.checked_add(1).ok_or("entry index overflows")?;
                if entry.index != index || entry.term < term {
                    return Err(format!(
                        "append after index {} (term {}): entry {} of term {} where index                          {index} of term {term} or later belongs",
                        message.index, message.log_term, entry.index, entry.term
                    ));
                }
                term = entry.term;
            }
        }
        // raft-rs ignores a message of an earlier term (a late one, whatever it holds).
        MsgHeartbeat if message.term >= receiver.term && message.commit > receiver.last_index => {
            return Err(format!(
                "heartbeat commits {} past the last index {}",
                message.commit, receiver.last_index
            ));
        }
        MsgAppendResponse
            if receiver.leader
                && message.term >= receiver.term
                && !message.reject
                && message.index > receiver.last_index =>
        {
            return Err(format!(
                "append answer claims index {} past the last index {}",
                message.index, receiver.last_index
            ));
        }
        // Only the leader hands its leadership over, to a follower it leads (so in the
        // follower's term). A late copy of an earlier term is ignored by raft-rs; a
        // follower that knows no leader yet (just restarted, or pre-campaigning) takes it.
        MsgTimeoutNow
            if message.term > receiver.term
                || (message.term == receiver.term
                    && receiver.leader_id != 0
                    && message.from != receiver.leader_id) =>
        {
            return Err(format!(
                "leadership handed over by node {} at term {}, where node {} leads at term {}",
                message.from, message.term, receiver.leader_id, receiver.term
            ));
        }
        MsgSnapshot => {
            let meta = message.get_snapshot().get_metadata();
            if meta.index == 0 || meta.term == 0 {
                return Err(format!(
                    "snapshot at index {} of term {}",
                    meta.index, meta.term
                ));
            }
            check_conf_state(meta.get_conf_state())?;
        }
        _ => {}
    }
    Ok(())
}

/// Every term within [`MAX_TERM`], none past the message's own.
fn check_terms(message: &Message) -> Result<(), String> {
    if message.term > MAX_TERM {
        return Err(format!("term {} past {MAX_TERM}", message.term));
    }
    let snapshot = message.get_snapshot().get_metadata().term;
    let entries = message.get_entries().iter().map(|entry| entry.term);
    let later = std::iter::once(message.log_term)
        .chain(std::iter::once(snapshot))
        .chain(entries)
        .find(|term| *term > message.term);
    match later {
        Some(term) => Err(format!(
            "term {term} inside a message of term {}",
            message.term
        )),
        None => Ok(()),
    }
}

/// Every index within [`MAX_INDEX`].
fn check_indexes(message: &Message) -> Result<(), String> {
    let snapshot = message.get_snapshot().get_metadata().index;
    let entries = message.get_entries().iter().map(|entry| entry.index);
    let indexes = [message.index, message.commit, message.reject_hint, snapshot];
    match indexes
        .into_iter()
        .chain(entries)
        .find(|index| *index > MAX_INDEX)
    {
        Some(index) => Err(format!("index {index} past {MAX_INDEX}")),
        None => Ok(()),
    }
}

/// A configuration raft-rs can restore from a snapshot.
fn check_conf_state(conf: &ConfState) -> Result<(), String> {
    let set = |ids: &[u64], name: &str| -> Result<BTreeSet<u64>, String> {
        let set: BTreeSet<u64> = ids.iter().copied().collect();
        match set.len() == ids.len() && !set.contains(&0) {
            true => Ok(set),
            false => Err(format!("snapshot {name} {ids:?}: a node twice, or node 0")),
        }
    };
    let voters = set(conf.get_voters(), "voters")?;
    let outgoing = set(conf.get_voters_outgoing(), "outgoing voters")?;
    let learners = set(conf.get_learners(), "learners")?;
    let learners_next = set(conf.get_learners_next(), "learners-next")?;
    if voters.is_empty() {
        return Err("snapshot configuration without voters".into());
    }
    if !voters.is_disjoint(&learners) || !outgoing.is_disjoint(&learners) {
        return Err("a snapshot learner is also a voter".into());
    }
    let joint = !outgoing.is_empty();
    if !joint && (!learners_next.is_empty() || conf.auto_leave) {
        return Err("snapshot learners-next or auto-leave outside a joint configuration".into());
    }
    if !learners_next.is_subset(&outgoing) || !learners_next.is_disjoint(&voters) {
        return Err("snapshot learners-next must be outgoing voters only".into());
    }
    if !learners_next.is_disjoint(&learners) {
        return Err("a snapshot learner is also in learners-next".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use raft::eraftpb::{Entry, HardState, Snapshot};
    use raft::storage::MemStorage;
    use raft::RawNode;
    use rand::{RngExt, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    use super::*;

    const LAST: Index = 20;
    const COMMITTED: Index = 15;
    const TERM: Term = 3;

    /// Node 1 of voters 1, 2, 3 with entries 1..=20 (terms 1 to 3), 15 committed, at
    /// term 3; a leader if `lead`.
    fn node(lead: bool) -> RawNode<MemStorage> {
        let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        let entries: Vec<Entry> = (1..=LAST)
            .map(|index| Entry {
                index,
                term: 1 + index / 8,
                ..Entry::default()
            })
            .collect();
        storage.wl().append(&entries).expect("append");
        storage.wl().set_hardstate(HardState {
            term: TERM,
            commit: COMMITTED,
            ..HardState::default()
        });
        let config = raft::Config {
            id: 1,
            applied: COMMITTED,
            ..raft::Config::default()
        };
        let logger = crate::discard_logger();
        let mut node = RawNode::new(&config, storage.clone(), &logger).expect("a node");
        if lead {
            // A leader at term 4 whose no-op (index 21) is durable and acknowledged by
            // node 2, so committed in its term: reads and transfers take their full paths.
            node.raft.become_candidate();
            node.raft.become_leader();
            let ready = node.ready();
            storage
                .wl()
                .append(ready.entries())
                .expect("append the no-op");
            let _ = node.advance(ready);
            let mut ack = message(MessageType::MsgAppendResponse, node.raft.term);
            ack.index = node.raft.raft_log.last_index();
            node.step(ack).expect("the acknowledgement");
            assert!(node.raft.commit_to_current_term(), "committed in its term");
        }
        node
    }

    fn receiver(node: &RawNode<MemStorage>) -> Receiver {
        Receiver {
            id: 1,
            term: node.raft.term,
            leader: node.raft.state == raft::StateRole::Leader,
            leader_id: node.raft.leader_id,
            last_index: node.raft.raft_log.last_index(),
            sender: None,
        }
    }

    /// Steps `messages` and runs the Ready they make, as a replica would; false if
    /// raft-rs panicked.
    fn survives(mut node: RawNode<MemStorage>, messages: &[Message]) -> bool {
        catch_unwind(AssertUnwindSafe(move || {
            for message in messages {
                let _ = node.step(message.clone());
            }
            if node.has_ready() {
                let mut ready = node.ready();
                let store = node.raft.raft_log.store.clone();
                if !ready.snapshot().is_empty() {
                    let _ = store.wl().apply_snapshot(ready.snapshot().clone());
                }
                let _ = store.wl().append(ready.entries());
                if let Some(hs) = ready.hs() {
                    store.wl().set_hardstate(hs.clone());
                }
                let _ = ready.take_committed_entries();
                let mut light = node.advance(ready);
                let _ = light.take_committed_entries();
                node.advance_apply();
            }
        }))
        .is_ok()
    }

    fn message(kind: MessageType, term: Term) -> Message {
        let mut message = Message::default();
        message.set_msg_type(kind);
        message.to = 1;
        message.from = 2;
        message.term = term;
        message
    }

    fn entry(index: Index, term: Term) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    /// Each rule's forged message is one raft-rs panics on (so the rule is needed), and
    /// the check refuses it; the honest version of each is accepted.
    #[test]
    fn each_rule_stops_a_message_that_panics_raft_rs() {
        let mut heartbeat = message(MessageType::MsgHeartbeat, TERM);
        heartbeat.commit = 1_000_000_000;
        // An answer claiming entries this leader never sent: refused, though raft-rs would
        // not panic on it.
        let mut answer = message(MessageType::MsgAppendResponse, TERM + 1);
        answer.index = 1_000_000;
        assert!(check(&answer, &receiver(&node(true))).is_err());
        let mut append = message(MessageType::MsgAppend, TERM);
        append.index = COMMITTED;
        append.log_term = 2;
        append.set_entries(vec![entry(3, TERM)].into());
        let mut snapshot = message(MessageType::MsgSnapshot, TERM);
        let meta = snapshot.mut_snapshot().mut_metadata();
        meta.index = 30;
        meta.term = TERM;
        meta.set_conf_state(ConfState::from((vec![1, 2], vec![2])));
        let mut vote = message(MessageType::MsgRequestVote, u64::MAX);
        vote.log_term = TERM;
        vote.index = LAST;
        let mut gap = message(MessageType::MsgAppend, TERM);
        gap.index = 1_000;
        gap.set_entries(vec![entry(1_001, TERM)].into());
        let forged = [
            (false, vec![heartbeat.clone()]),
            (false, vec![gap]),
            (false, vec![append.clone()]),
            (false, vec![snapshot.clone()]),
        ];
        for (lead, forged) in forged {
            for message in &forged {
                assert!(
                    check(message, &receiver(&node(lead))).is_err(),
                    "{message:?}"
                );
            }
            assert!(!survives(node(lead), &forged), "{forged:?}");
        }
        // A term at the edge: raft-rs takes it, then overflows when it next campaigns.
        assert!(check(&vote, &receiver(&node(false))).is_err());
        let mut at_edge = node(false);
        let _ = at_edge.step(vote);
        assert!(catch_unwind(AssertUnwindSafe(|| at_edge.campaign())).is_err());

        heartbeat.commit = COMMITTED;
        answer.index = LAST + 1;
        append.set_entries(vec![entry(COMMITTED + 1, TERM)].into());
        let meta = snapshot.mut_snapshot().mut_metadata();
        meta.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        for (lead, honest) in [
            (false, heartbeat),
            (true, answer),
            (false, append),
            (false, snapshot),
        ] {
            assert_eq!(check(&honest, &receiver(&node(lead))), Ok(()), "{honest:?}");
            assert!(survives(node(lead), &[honest]));
        }
    }

    /// Kinds no peer sends, and misaddressed messages, are refused whatever they hold.
    #[test]
    fn local_kinds_and_strangers_are_refused() {
        let receiver = receiver(&node(false));
        for kind in [
            MessageType::MsgHup,
            MessageType::MsgPropose,
            MessageType::MsgTransferLeader,
            MessageType::MsgReadIndex,
            MessageType::MsgReadIndexResp,
            MessageType::MsgCheckQuorum,
        ] {
            assert!(check(&message(kind, TERM), &receiver).is_err(), "{kind:?}");
        }
        let mut handover = message(MessageType::MsgTimeoutNow, TERM);
        let mut led = node(false);
        led.raft.leader_id = 2;
        let follower = super::tests::receiver(&led);
        assert_eq!(check(&handover, &follower), Ok(()));
        handover.from = 3;
        assert!(check(&handover, &follower).is_err(), "not the leader");
        handover.from = 2;
        handover.term = TERM + 1;
        assert!(check(&handover, &follower).is_err(), "a later term");
        handover.term = TERM - 1;
        assert_eq!(
            check(&handover, &follower),
            Ok(()),
            "a late copy: raft-rs ignores it"
        );
        handover.term = TERM;
        handover.from = 3;
        led.raft.leader_id = 0;
        let restarted = super::tests::receiver(&led);
        assert_eq!(check(&handover, &restarted), Ok(()), "no leader known yet");
        let mut other = message(MessageType::MsgHeartbeatResponse, TERM);
        assert_eq!(check(&other, &receiver), Ok(()));
        other.to = 2;
        assert!(check(&other, &receiver).is_err());
        other.to = 1;
        other.from = 1;
        assert!(check(&other, &receiver).is_err());
        other.from = 0;
        assert!(check(&other, &receiver).is_err());

        // A message must name the peer it arrived from, when the transport knows it.
        let mut heard = message(MessageType::MsgHeartbeatResponse, TERM);
        let from_two = Receiver {
            sender: Some(2),
            ..super::tests::receiver(&node(false))
        };
        assert_eq!(check(&heard, &from_two), Ok(()));
        heard.from = 3;
        let refused = check(&heard, &from_two).expect_err("another sender");
        assert!(
            refused.contains("from node 3 arrived from node 2"),
            "{refused}"
        );
    }

    fn pick(rng: &mut Xoshiro256PlusPlus, values: &[u64]) -> u64 {
        values[rng.random_range(0..values.len())]
    }

    fn ids(rng: &mut Xoshiro256PlusPlus) -> Vec<u64> {
        (0..rng.random_range(0..4usize))
            .map(|_| rng.random_range(0..5u64))
            .collect()
    }

    /// Random messages of every kind, with values around and far past this node's log,
    /// stepped into a follower and a leader: no message the check lets through makes
    /// raft-rs panic, and some it refuses would have (the check is not idle).
    #[test]
    fn nothing_the_check_accepts_panics_raft_rs() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        // Mostly values an honest peer could send, some far past them.
        let terms = [0, 1, 2, 2, TERM, TERM, TERM, TERM + 1, MAX_TERM, u64::MAX];
        let indexes = [
            0,
            1,
            7,
            7,
            COMMITTED - 1,
            COMMITTED,
            COMMITTED,
            LAST - 1,
            LAST,
            LAST,
            LAST + 1,
            1_000,
            u64::MAX,
        ];
        let (mut accepted, mut refused_panics) = (0, 0);
        for _ in 0..20_000 {
            let mut m = Message::default();
            m.set_msg_type(match rng.random_range(0..19) {
                0 => MessageType::MsgHup,
                1 => MessageType::MsgBeat,
                2 => MessageType::MsgPropose,
                3 | 4 => MessageType::MsgAppend,
                5 => MessageType::MsgAppendResponse,
                6 => MessageType::MsgRequestVote,
                7 => MessageType::MsgRequestVoteResponse,
                8 | 9 => MessageType::MsgSnapshot,
                10 | 11 => MessageType::MsgHeartbeat,
                12 => MessageType::MsgHeartbeatResponse,
                13 => MessageType::MsgTransferLeader,
                14 => MessageType::MsgTimeoutNow,
                15 => MessageType::MsgReadIndex,
                16 => MessageType::MsgReadIndexResp,
                17 => MessageType::MsgRequestPreVote,
                _ => MessageType::MsgRequestPreVoteResponse,
            });
            m.to = pick(&mut rng, &[1, 1, 1, 1, 1, 1, 1, 2]);
            m.from = pick(&mut rng, &[0, 1, 2, 2, 2, 3, 3, 3, 4]);
            m.term = pick(&mut rng, &terms);
            m.log_term = pick(&mut rng, &terms);
            m.index = pick(&mut rng, &indexes);
            m.commit = pick(&mut rng, &indexes);
            m.reject = rng.random_bool(0.3);
            m.reject_hint = pick(&mut rng, &indexes);
            let contiguous = rng.random_bool(0.7);
            let entries: Vec<Entry> = (0..rng.random_range(0..4u64))
                .map(|i| {
                    let index = match contiguous {
                        true => m.index.wrapping_add(1 + i),
                        false => pick(&mut rng, &indexes),
                    };
                    entry(index, pick(&mut rng, &terms))
                })
                .collect();
            m.set_entries(entries.into());
            if m.get_msg_type() == MessageType::MsgSnapshot {
                let mut snapshot = Snapshot::default();
                let meta = snapshot.mut_metadata();
                meta.index = pick(&mut rng, &indexes);
                meta.term = pick(&mut rng, &terms);
                let mut conf = ConfState::from((ids(&mut rng), ids(&mut rng)));
                if rng.random_bool(0.2) {
                    conf.set_voters_outgoing(ids(&mut rng));
                    conf.set_learners_next(ids(&mut rng));
                    conf.auto_leave = rng.random_bool(0.5);
                }
                meta.set_conf_state(conf);
                m.set_snapshot(snapshot);
            }
            let lead = rng.random_bool(0.5);
            let target = node(lead);
            let verdict = check(&m, &receiver(&target));
            let survived = survives(target, std::slice::from_ref(&m));
            match verdict {
                Ok(()) => {
                    accepted += 1;
                    assert!(
                        survived,
                        "accepted, and raft-rs panicked (leader: {lead}): {m:?}"
                    );
                }
                Err(_) if !survived => refused_panics += 1,
                Err(_) => {}
            }
        }
        assert!(
            accepted > 1_000,
            "too few messages accepted to mean much: {accepted}"
        );
        assert!(
            refused_panics > 100,
            "refused messages that panic raft-rs: {refused_panics}"
        );
    }
}
