//! The transport the client library is generic over: call a server, sleep, read the
//! clock, draw a random number.
//!
//! The client library holds all the logic of a shardkv client (leader search, retries,
//! backoff, deadlines, duplicate-safe sequence numbers) and none of the IO. It reaches
//! the world only through [`Transport`], which has two implementations:
//!
//! ```text
//!   Admin / Client (this crate)
//!          | call(to, bytes, timeout) / sleep(d) / now() / random_u64()
//!          v
//!   +------------------------------+------------------------------+
//!   | simulator adapter (tests/)   | tarpc adapter (server/)      |
//!   | virtual clock, seeded RNG,   | TCP, tokio timers,           |
//!   | address -> sim NodeId        | OS randomness                |
//!   +------------------------------+------------------------------+
//! ```
//!
//! The same client code therefore runs deterministically in the simulator (same seed,
//! same trace) and for real over TCP.
//!
//! # Contract
//!
//! - **Addresses are strings**, exactly as a [`shardkv_proto::Config`] lists a group's
//!   servers and as an operator lists the shard masters. The simulator adapter maps
//!   names to its node ids; the tarpc adapter dials them as `host:port`.
//! - **Bytes in, bytes out.** The client encodes requests and decodes replies itself
//!   (bincode 1.3); a transport neither inspects nor validates payloads, and the client
//!   treats a reply it cannot decode like a lost one.
//! - **Every [`TransportError`] is retryable.** A failed call may or may not have
//!   reached the server, so the client retries with the same `(client, seq)` and the
//!   server's duplicate detection makes the retry safe; only
//!   [`TransportError::Unreachable`] promises that the request was not delivered, and
//!   an implementation must return it for nothing else (the client then knows the
//!   attempt changed nothing, see `shardkv_proto::session`).
//! - **Dropping a future cancels it.** The client drops an in-flight call when its
//!   caller's overall deadline passes; a transport must tolerate that (the request may
//!   still be delivered, which duplicate detection also covers).
//!
//! # Caveats
//!
//! - **No `Send` bounds.** The simulator is single-threaded and its futures hold `Rc`s,
//!   so the trait does not require `Send` futures; the client's futures are `Send`
//!   whenever the transport's are, as [`crate::TarpcTransport`]'s are
//!   (`client/tests/send.rs`), so a production caller may run them on any tokio runtime.
//!   (Stable Rust cannot yet let a caller demand `Send` of a trait's `impl Future`
//!   returns, so making this generic over `Send` would mean two traits.)
//! - **A monotonic clock only.** Overall deadlines are enforced by racing the work
//!   against [`Transport::sleep`]; [`Transport::now`] only tells the client how old a
//!   shard's clock reading is (`seen`, see `shardkv_proto::session`). Nothing depends on
//!   the wall clock.
//! - **No connection management.** Connecting, reconnecting and caching connections
//!   are the transport's business, hidden behind `call`.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// How the client library reaches servers and time. See the module docs for the
/// contract an implementation must keep.
pub trait Transport {
    /// Sends `request` to the server at `to` and resolves to its reply bytes, or to a
    /// [`TransportError`]: [`TransportError::Timeout`] when no reply came within
    /// `timeout` (an implementation should resolve by then), or
    /// [`TransportError::Unreachable`] when the request could not be delivered.
    ///
    /// The call need not start before the future is first polled; dropping the future
    /// abandons the call.
    fn call(
        &self,
        to: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>>;

    /// Resolves once `d` has passed on the transport's clock (virtual time in the
    /// simulator, the tokio timer in production). `Duration::ZERO` may resolve at once.
    fn sleep(&self, d: Duration) -> impl Future<Output = ()>;

    /// The time on the transport's clock since some fixed start, never moving back: how
    /// the client tells how old what it learned from the servers is.
    fn now(&self) -> Duration;

    /// A random number: from the simulator's seeded RNG (so runs replay exactly), or
    /// from the operating system in production. Used for client ids and for spreading
    /// load, never for anything security-sensitive.
    fn random_u64(&self) -> u64;
}

/// Why a [`Transport::call`] produced no reply. Every variant is retryable: the client
/// retries with the same `(client, seq)` and relies on the server's duplicate detection.
/// The request may or may not have been executed, except after
/// [`TransportError::Unreachable`], which promises it was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No reply within the call's timeout: the request or the reply may have been lost,
    /// or the server may be slow or partitioned away.
    #[error("rpc timed out")]
    Timeout,
    /// The request was certainly not delivered: the server is down, unknown, or refused
    /// the connection before the request was sent. (A connection lost with the request
    /// on it is [`TransportError::Other`]: it may have been executed.)
    #[error("server unreachable")]
    Unreachable,
    /// Any other failure of the transport (a broken connection mid-call, a frame the
    /// transport itself rejected), described for logs.
    #[error("transport failure: {0}")]
    Other(String),
}

impl TransportError {
    /// Whether the call may succeed if made again, here or at another server: always.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

/// A shared reference to a transport is a transport, so one transport can serve an
/// `Admin` and a `Client` at once.
impl<T: Transport + ?Sized> Transport for &T {
    fn call(
        &self,
        to: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        (**self).call(to, request, timeout)
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        (**self).sleep(d)
    }

    fn now(&self) -> Duration {
        (**self).now()
    }

    fn random_u64(&self) -> u64 {
        (**self).random_u64()
    }
}

/// A reference-counted transport is a transport (the simulator's handles are `Rc`s).
impl<T: Transport + ?Sized> Transport for Rc<T> {
    fn call(
        &self,
        to: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        (**self).call(to, request, timeout)
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        (**self).sleep(d)
    }

    fn now(&self) -> Duration {
        (**self).now()
    }

    fn random_u64(&self) -> u64 {
        (**self).random_u64()
    }
}

/// An atomically reference-counted transport is a transport (production handles).
impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn call(
        &self,
        to: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        (**self).call(to, request, timeout)
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        (**self).sleep(d)
    }

    fn now(&self) -> Duration {
        (**self).now()
    }

    fn random_u64(&self) -> u64 {
        (**self).random_u64()
    }
}
