//! The executor: exact virtual time, timeouts at their deadline, FIFO tasks, deadlock and
//! time-limit panics that name the seed.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use labrpc_sim::{RpcError, Sim};

use crate::common::{add_silent, ms};

/// Proves sleep advances virtual time by exactly the requested duration, hosts or not.
#[test]
fn sleep_advances_virtual_time_exactly() {
    let sim = Sim::new(1);
    let s = sim.clone();
    sim.block_on(async move {
        s.sleep(Duration::from_nanos(1_234_567)).await;
        assert_eq!(s.now(), Duration::from_nanos(1_234_567));
        s.sleep(Duration::ZERO).await;
        assert_eq!(s.now(), Duration::from_nanos(1_234_567));
    });
    add_silent(&sim, "ticking");
    let s = sim.clone();
    sim.block_on(async move {
        let start = s.now();
        s.sleep(ms(777)).await;
        assert_eq!(s.now() - start, ms(777));
    });
}

/// Proves a call to a host that never answers returns Err(Timeout) at exactly the deadline.
#[test]
fn call_timeout_fires_at_exact_virtual_deadline() {
    let sim = Sim::new(2);
    let id = add_silent(&sim, "silent");
    let client = sim.add_client("client");
    let s = sim.clone();
    sim.block_on(async move {
        s.sleep(ms(33)).await;
        let start = s.now();
        assert_eq!(
            client.call(id, b"q".to_vec(), ms(250)).await,
            Err(RpcError::Timeout)
        );
        assert_eq!(s.now(), start + ms(250));
    });
}

/// Proves spawned tasks run in FIFO order and join handles deliver their outputs.
#[test]
fn spawned_tasks_run_in_fifo_order_and_join() {
    let sim = Sim::new(3);
    let order = Rc::new(RefCell::new(Vec::new()));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let order = order.clone();
            sim.spawn(async move {
                order.borrow_mut().push(i);
                i * 10
            })
        })
        .collect();
    let outputs = sim.block_on(async move {
        let mut outputs = Vec::new();
        for h in handles {
            outputs.push(h.await);
        }
        outputs
    });
    assert_eq!(*order.borrow(), vec![0, 1, 2, 3]);
    assert_eq!(outputs, vec![0, 10, 20, 30]);
}

/// Proves a future that can never complete is reported as a deadlock naming the seed.
#[test]
#[should_panic(expected = "seed 77")]
fn deadlock_panics_with_seed() {
    let sim = Sim::new(77);
    sim.block_on(std::future::pending::<()>());
}

/// Proves a run that outlives the virtual time limit panics, naming the limit and the seed.
#[test]
fn time_limit_panics_with_seed() {
    let sim = Sim::new(78);
    add_silent(&sim, "ticking");
    sim.set_time_limit(Duration::from_secs(2));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sim.block_on(std::future::pending::<()>());
    }));
    let payload = outcome.expect_err("block_on must panic past the time limit");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("time limit 2s passed"), "{message}");
    assert!(message.contains("seed 78"), "{message}");
    assert!(
        sim.now() <= Duration::from_secs(2),
        "no event past the limit was processed"
    );
}

/// Proves `shutdown` drops unfinished tasks (and what they own), so a finished run frees
/// its memory even though its tasks held `Sim` clones.
#[test]
fn shutdown_drops_unfinished_tasks() {
    struct SetOnDrop(Rc<RefCell<bool>>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            *self.0.borrow_mut() = true;
        }
    }
    let sim = Sim::new(5);
    let dropped = Rc::new(RefCell::new(false));
    let guard = SetOnDrop(dropped.clone());
    let s = sim.clone();
    sim.spawn(async move {
        let _guard = guard;
        s.sleep(Duration::from_secs(3600)).await;
    });
    let s = sim.clone();
    sim.block_on(async move { s.sleep(ms(10)).await });
    assert!(
        !*dropped.borrow(),
        "the task is still pending before shutdown"
    );
    sim.shutdown();
    assert!(*dropped.borrow(), "shutdown must drop the pending task");
}
