//! [`KvClerk`]: the real data client (`shardkv_client::Client`) over the simulator, with
//! every operation recorded in the run's linearizability [`History`]: its call time
//! before the first attempt, its answer and return time once the client has one. An
//! operation the client gives up on (its deadline passed) stays open, with no answer,
//! which the checker reads as "may have taken effect, at any time after its call".

use std::time::Duration;

use labrpc_sim::SimNode;

use crate::linearizability::history::show_bytes;
use crate::linearizability::{ClientId, History, KvInput, KvOutput};
use crate::sim_transport::SimTransport;
use shardkv_client::{Client, RetryPolicy};

/// One simulated application client.
pub struct KvClerk {
    id: ClientId,
    client: Client<SimTransport>,
    history: History,
    node: SimNode,
    sim: labrpc_sim::Sim,
}

impl KvClerk {
    /// A clerk over `transport` (its own endpoint), recording into `history`; it gives
    /// up on an operation after `deadline` when given.
    pub fn new(
        sim: labrpc_sim::Sim,
        id: ClientId,
        transport: SimTransport,
        masters: Vec<String>,
        deadline: Option<Duration>,
        history: History,
    ) -> Self {
        let node = transport.node();
        let policy = RetryPolicy {
            deadline,
            ..RetryPolicy::default()
        };
        let client = Client::with_policy(transport, masters, policy);
        KvClerk {
            id,
            client,
            history,
            node,
            sim,
        }
    }

    /// The simulator node of this clerk's endpoint (to partition it).
    pub fn node(&self) -> SimNode {
        self.node
    }

    /// Read `key`: its value, or `None` when absent.
    pub async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let key = key.as_bytes().to_vec();
        let op = self
            .history
            .begin(self.id, KvInput::Get { key: key.clone() }, self.sim.now());
        let value = self
            .client
            .get(key.clone())
            .await
            .map_err(|e| failed("get", &key, e))?;
        self.history
            .end(op, KvOutput::Value(value.clone()), self.sim.now());
        Ok(value)
    }

    /// Set `key` to `value`.
    pub async fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        let (key, value) = (key.as_bytes().to_vec(), value.as_bytes().to_vec());
        let input = KvInput::Put {
            key: key.clone(),
            value: value.clone(),
        };
        let op = self.history.begin(self.id, input, self.sim.now());
        self.client
            .put(key.clone(), value)
            .await
            .map_err(|e| failed("put", &key, e))?;
        self.history.end(op, KvOutput::Done, self.sim.now());
        Ok(())
    }

    /// Append `value` to `key`.
    pub async fn append(&mut self, key: &str, value: &str) -> Result<(), String> {
        let (key, value) = (key.as_bytes().to_vec(), value.as_bytes().to_vec());
        let input = KvInput::Append {
            key: key.clone(),
            value: value.clone(),
        };
        let op = self.history.begin(self.id, input, self.sim.now());
        (self.client.append(key.clone(), value).await).map_err(|e| failed("append", &key, e))?;
        self.history.end(op, KvOutput::Done, self.sim.now());
        Ok(())
    }

    /// Remove `key`.
    pub async fn delete(&mut self, key: &str) -> Result<(), String> {
        let key = key.as_bytes().to_vec();
        let op = self.history.begin(
            self.id,
            KvInput::Delete { key: key.clone() },
            self.sim.now(),
        );
        self.client
            .delete(key.clone())
            .await
            .map_err(|e| failed("delete", &key, e))?;
        self.history.end(op, KvOutput::Done, self.sim.now());
        Ok(())
    }

    /// 6.824 `check(ck, key, value)`: `key` reads exactly `want`.
    pub async fn check(&mut self, key: &str, want: &str) -> Result<(), String> {
        let got = self.get(key).await?;
        if got.as_deref() != Some(want.as_bytes()) {
            let got = got.map_or("absent".to_string(), |v| show_bytes(&v, 80));
            let want = show_bytes(want.as_bytes(), 80);
            return Err(format!("get({key:?}) read {got}, wanted {want}"));
        }
        Ok(())
    }
}

fn failed(what: &str, key: &[u8], error: impl std::fmt::Display) -> String {
    format!("{what}({}) failed: {error}", show_bytes(key, 24))
}
