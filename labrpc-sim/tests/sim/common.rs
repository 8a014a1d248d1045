//! Test hosts shared by the scenario tests.

use std::time::Duration;

use labrpc_sim::{CallId, Context, Host, Persister, Sim, SimNode};

/// A host that echoes requests, records what it receives, and (if it has peers) chats:
/// every tick it sends each peer a message and every third tick it calls one peer.
#[derive(Default)]
pub struct Node {
    pub peers: Vec<SimNode>,
    pub silent: bool,
    pub ticks: u64,
    pub messages: Vec<(SimNode, Vec<u8>)>,
    pub requests: u64,
    pub responses: Vec<(CallId, Option<Vec<u8>>)>,
    pub persister: Persister,
}

impl Node {
    pub fn new(persister: Persister) -> Self {
        Node {
            persister,
            ..Node::default()
        }
    }
}

impl Host for Node {
    fn on_message(&mut self, cx: &mut Context<'_>, from: SimNode, payload: Vec<u8>) {
        cx.trace("msg", format!("from {from} {payload:?}"));
        self.messages.push((from, payload));
    }

    fn on_request(&mut self, cx: &mut Context<'_>, id: u64, payload: Vec<u8>) {
        self.requests += 1;
        if !self.silent {
            cx.reply(id, payload);
        }
    }

    fn on_response(&mut self, cx: &mut Context<'_>, call: CallId, response: Option<Vec<u8>>) {
        cx.trace("resp", format!("{call} {response:?}"));
        self.responses.push((call, response));
    }

    fn on_tick(&mut self, cx: &mut Context<'_>) {
        self.ticks += 1;
        let tick = self.ticks.to_le_bytes().to_vec();
        for &peer in &self.peers {
            cx.send(peer, tick.clone());
        }
        if self.ticks.is_multiple_of(3) && !self.peers.is_empty() {
            let peer = self.peers[(self.ticks as usize / 3) % self.peers.len()];
            cx.call(peer, tick, Duration::from_millis(200));
        }
    }
}

/// Adds a plain echo host (no peers).
pub fn add_echo(sim: &Sim, name: &str) -> SimNode {
    sim.add_host(name, |_, persister| Box::new(Node::new(persister)))
}

/// Adds a host that receives requests but never answers them.
pub fn add_silent(sim: &Sim, name: &str) -> SimNode {
    sim.add_host(name, |_, persister| {
        Box::new(Node {
            silent: true,
            ..Node::new(persister)
        })
    })
}

/// Adds `n` hosts (ids must be the next `n` ids) that chat with each other.
pub fn add_chatty(sim: &Sim, first: SimNode, n: usize) -> Vec<SimNode> {
    (0..n)
        .map(|i| {
            let peers: Vec<SimNode> = (0..n).filter(|&j| j != i).map(|j| first + j).collect();
            let id = sim.add_host(&format!("chatty{i}"), move |_, persister| {
                Box::new(Node {
                    peers: peers.clone(),
                    ..Node::new(persister)
                })
            });
            assert_eq!(id, first + i, "chatty hosts must get consecutive ids");
            id
        })
        .collect()
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
