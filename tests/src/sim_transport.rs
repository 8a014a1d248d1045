//! [`SimTransport`]: the client library's [`Transport`] over the simulator, so the real
//! `Admin` (and later the data `Client`) runs inside a seeded simulation.
//!
//! ```text
//!   Admin / Client --call("master-1", bytes, timeout)--> SimTransport
//!                                                          | AddressBook: "master-1" -> SimNode 1
//!                                                          v
//!                                       ClientEnd::call(1, bytes, timeout) --> sim network --> host
//! ```
//!
//! Clients know servers by address strings (as a `Config` lists a group's servers); the
//! simulator knows nodes by [`SimNode`]. An [`AddressBook`] shared by a harness and all its
//! transports maps one to the other; a suite registers every host it creates under the
//! address its clients use. Each transport owns one [`ClientEnd`], a node of its own, so a
//! scenario can cut one client off (or put it in a partition) without touching the others.
//!
//! Time and randomness come from the simulator: [`Transport::sleep`] is a virtual-time
//! sleep and [`Transport::random_u64`] draws from the simulator's one seeded RNG, so a
//! client's id and first server are part of the seed's run.
//!
//! Caveats:
//! - An address missing from the book fails as [`TransportError::Unreachable`] after
//!   [`UNKNOWN_ADDRESS_DELAY`] of virtual time (a real dial to a dead name also takes a
//!   moment), so a client retrying an unknown address cannot spin in zero time.
//! - The simulator's futures are not `Send`; neither are these (the trait allows it).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use labrpc_sim::{ClientEnd, RpcError, Sim, SimNode};
use shardkv_client::{Transport, TransportError};

/// How long a call to an address the book does not know takes to fail.
pub const UNKNOWN_ADDRESS_DELAY: Duration = Duration::from_millis(10);

/// Address strings to simulator node ids, shared (cheap clones) by a harness and every
/// transport it hands out.
#[derive(Clone, Default)]
pub struct AddressBook {
    entries: Rc<RefCell<BTreeMap<String, SimNode>>>,
}

impl AddressBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names node `id` `address`; a later registration of the same address replaces it.
    pub fn register(&self, address: impl Into<String>, id: SimNode) {
        self.entries.borrow_mut().insert(address.into(), id);
    }

    /// The node registered under `address`.
    pub fn resolve(&self, address: &str) -> Option<SimNode> {
        self.entries.borrow().get(address).copied()
    }
}

impl fmt::Debug for AddressBook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries.borrow().iter()).finish()
    }
}

/// A [`Transport`] whose calls go through one simulator [`ClientEnd`].
#[derive(Clone)]
pub struct SimTransport {
    sim: Sim,
    end: ClientEnd,
    book: AddressBook,
}

impl SimTransport {
    /// A transport calling through `end`, resolving addresses in `book`.
    pub fn new(sim: Sim, end: ClientEnd, book: AddressBook) -> Self {
        SimTransport { sim, end, book }
    }

    /// A transport over a fresh client endpoint named `name`.
    pub fn with_new_end(sim: &Sim, name: &str, book: AddressBook) -> Self {
        let end = sim.add_client(name);
        SimTransport::new(sim.clone(), end, book)
    }

    /// The endpoint's node id, to connect, disconnect or partition this client.
    pub fn node(&self) -> SimNode {
        self.end.id()
    }

    /// The address book.
    pub fn book(&self) -> &AddressBook {
        &self.book
    }
}

impl fmt::Debug for SimTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimTransport")
            .field("end", &self.end.id())
            .finish()
    }
}

fn transport_error(error: RpcError) -> TransportError {
    match error {
        RpcError::Timeout => TransportError::Timeout,
        RpcError::Unreachable => TransportError::Unreachable,
    }
}

impl Transport for SimTransport {
    fn call(
        &self,
        to: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        let target = self.book.resolve(to);
        let (sim, end) = (self.sim.clone(), self.end.clone());
        async move {
            match target {
                Some(id) => end
                    .call(id, request, timeout)
                    .await
                    .map_err(transport_error),
                None => {
                    sim.sleep(UNKNOWN_ADDRESS_DELAY.min(timeout)).await;
                    Err(TransportError::Unreachable)
                }
            }
        }
    }

    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        self.sim.sleep(d)
    }

    fn now(&self) -> Duration {
        self.sim.now()
    }

    fn random_u64(&self) -> u64 {
        self.sim.random_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labrpc_sim::{Context, Host, RequestId};

    /// Answers every request with its payload reversed.
    struct Echo;

    impl Host for Echo {
        fn on_message(&mut self, _: &mut Context<'_>, _: SimNode, _: Vec<u8>) {}
        fn on_request(&mut self, cx: &mut Context<'_>, id: RequestId, mut payload: Vec<u8>) {
            payload.reverse();
            cx.reply(id, payload);
        }
        fn on_tick(&mut self, _: &mut Context<'_>) {}
    }

    /// Known addresses reach their host; unknown ones and cut-off hosts fail with the
    /// matching transport error, in virtual time.
    #[test]
    fn routes_by_address_and_maps_errors() {
        let sim = Sim::new(1);
        let book = AddressBook::new();
        let echo = sim.add_host("echo", |_, _| Box::new(Echo) as Box<dyn Host>);
        book.register("echo-0", echo);
        let transport = SimTransport::with_new_end(&sim, "client", book);
        let timeout = Duration::from_secs(1);
        let (a, b, c) = sim.block_on(async {
            let a = transport.call("echo-0", vec![1, 2, 3], timeout).await;
            let b = transport.call("nobody", vec![1], timeout).await;
            sim.crash(echo);
            let c = transport.call("echo-0", vec![1], timeout).await;
            (a, b, c)
        });
        assert_eq!(a, Ok(vec![3, 2, 1]));
        assert_eq!(b, Err(TransportError::Unreachable));
        assert_eq!(c, Err(TransportError::Unreachable));
        sim.shutdown();
    }
}
