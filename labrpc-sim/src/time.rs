//! Virtual-time sleeping for tasks.
//!
//! A [`Sleep`] fixes its deadline when it is created (`now + d`), like `tokio::time::sleep`.
//! On its first pending poll it schedules a timer event at the deadline; the event holds
//! the sleep's waker slot weakly, so dropping a `Sleep` early leaves only a no-op event. A
//! sleep whose deadline has already come completes without scheduling anything, so
//! `sleep(Duration::ZERO)` is ready at once and advances nothing.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use crate::event::{Event, TimerSlot};
use crate::Sim;

/// Future that completes when virtual time reaches its deadline.
pub struct Sleep {
    sim: Sim,
    deadline: Duration,
    slot: Option<Rc<TimerSlot>>,
}

impl Sleep {
    /// The virtual time at which this sleep completes.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let mut world = self.sim.world();
        if world.now >= self.deadline {
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let slot = match &self.slot {
            Some(slot) => slot.clone(),
            None => {
                let slot = Rc::new(RefCell::new(None));
                world
                    .queue
                    .push(deadline, Event::Timer(Rc::downgrade(&slot)));
                slot
            }
        };
        drop(world);
        *slot.borrow_mut() = Some(cx.waker().clone());
        self.slot = Some(slot);
        Poll::Pending
    }
}

impl Sim {
    /// A future that completes `d` of virtual time from now.
    pub fn sleep(&self, d: Duration) -> Sleep {
        let deadline = self.now().saturating_add(d);
        Sleep {
            sim: self.clone(),
            deadline,
            slot: None,
        }
    }

    /// A future that completes when virtual time reaches `deadline`.
    pub fn sleep_until(&self, deadline: Duration) -> Sleep {
        Sleep {
            sim: self.clone(),
            deadline,
            slot: None,
        }
    }
}
