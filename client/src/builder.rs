//! [`ClientBuilder`]: a [`Client`] over tarpc with its options named, built once the
//! cluster answers:
//!
//! ```no_run
//! # async fn example() -> Result<(), shardkv_client::ClientError> {
//! use std::time::Duration;
//!
//! let client = shardkv_client::Client::builder(["127.0.0.1:7000", "127.0.0.1:7001"])
//!     .timeout(Duration::from_secs(5))
//!     .connect_timeout(Duration::from_secs(2))
//!     .build()
//!     .await?;
//! client.put("key", "value").await?;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use crate::retry::RetryPolicy;
use crate::tls::Tls;
use crate::{Client, ClientError, TarpcTransport};

/// How long [`ClientBuilder::build`] waits for a shard master's answer unless told
/// otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for a [`Client`] over tarpc; see the module docs. Made by
/// [`Client::builder`].
#[derive(Clone)]
pub struct ClientBuilder {
    masters: Vec<String>,
    policy: RetryPolicy,
    connect_timeout: Duration,
    connections_per_node: usize,
    tls: Option<Tls>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("masters", &self.masters)
            .field("policy", &self.policy)
            .field("connect_timeout", &self.connect_timeout)
            .field("connections_per_node", &self.connections_per_node)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Client<TarpcTransport> {
    /// Options for a client of the cluster whose shard masters are at `masters`; see
    /// [`ClientBuilder`].
    pub fn builder<S: Into<String>>(masters: impl IntoIterator<Item = S>) -> ClientBuilder {
        ClientBuilder {
            masters: masters.into_iter().map(Into::into).collect(),
            policy: RetryPolicy::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            connections_per_node: 1,
            tls: None,
        }
    }
}

impl ClientBuilder {
    /// How long one operation may take in all, retries included, before it fails with
    /// [`ClientError::Timeout`]. Default [`crate::DEFAULT_DEADLINE`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.policy.deadline = Some(timeout);
        self
    }

    /// Operations retry until an answer comes, however long that takes (6.824's clerk).
    pub fn no_timeout(mut self) -> Self {
        self.policy.deadline = None;
        self
    }

    /// How long one RPC may take before it counts as failed and the next server is
    /// tried. Default [`crate::DEFAULT_RPC_TIMEOUT`].
    pub fn rpc_timeout(mut self, timeout: Duration) -> Self {
        self.policy.rpc_timeout = timeout;
        self
    }

    /// The bounds of the sleep after the first round of failed attempts and of the
    /// longest sleep between rounds: each sleep is drawn between half its bound and the
    /// bound, which doubles from `initial` to `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.policy.backoff_initial = initial;
        self.policy.backoff_max = max;
        self
    }

    /// The whole retry policy at once (what the methods above set).
    pub fn policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How long [`ClientBuilder::build`] waits for a shard master to answer. Default
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connections to each node, shared by the handle's concurrent operations (1 to
    /// [`crate::tarpc_transport::MAX_CONNECTIONS_PER_NODE`]; clamped). Default 1.
    pub fn connections_per_node(mut self, n: usize) -> Self {
        self.connections_per_node = n;
        self
    }

    /// Mutual TLS with `tls` on every connection (see [`crate::tls`]); a cluster started
    /// without `--insecure` requires it.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The client, once a shard master has answered with the cluster's latest
    /// configuration (within the connect timeout): a cluster that cannot be reached
    /// fails here, with [`ClientError::Timeout`] naming the last failure, rather than at
    /// the first operation. Run it inside a tokio runtime.
    pub async fn build(self) -> Result<Client<TarpcTransport>, ClientError> {
        if self.masters.is_empty() {
            return Err(ClientError::NoMasters);
        }
        let transport = match self.tls {
            Some(tls) => TarpcTransport::with_tls(tls),
            None => TarpcTransport::new(),
        };
        let transport = transport.connections_per_node(self.connections_per_node);
        let connecting = RetryPolicy {
            deadline: Some(self.connect_timeout),
            ..self.policy.clone()
        };
        let mut client = Client::with_policy(transport, self.masters, connecting);
        client.refresh().await?;
        client.set_policy(self.policy);
        Ok(client)
    }
}
