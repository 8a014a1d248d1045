//! Over [`TarpcTransport`], the client's handles are `Send + Sync` and every operation's
//! future is `Send`, so a multi-thread tokio service can run them on any worker
//! (`tokio::spawn`). Checked at compile time: a change that makes one of them `!Send`
//! fails to build this test. (Over the simulator's single-threaded transport they are
//! not, and need not be.)

use shardkv_client::{Admin, Client, TarpcTransport};

fn send<T: Send>(_: &T) {}

fn send_sync<T: Send + Sync>() {}

#[test]
fn handles_and_futures_over_tarpc_are_send() {
    send_sync::<Client<TarpcTransport>>();
    send_sync::<Admin<TarpcTransport>>();
    let client = Client::new(TarpcTransport::new(), vec!["127.0.0.1:1".to_string()]);
    send(&client.get("key"));
    send(&client.put("key", "value"));
    send(&client.append("key", "value"));
    send(&client.delete("key"));
    send(&client.refresh());
    send(&Client::builder(["127.0.0.1:1"]).build());
    let admin = Admin::new(TarpcTransport::new(), vec!["127.0.0.1:1".to_string()]);
    send(&admin.query(None));
    send(&admin.join(Default::default()));
    send(&admin.leave(vec![7]));
    send(&admin.move_shard(0, 7));
    send(&admin.abandon(7));
    send(&admin.holder(0, 1));
}
