//! `Client::builder`: a cluster that cannot be reached fails the build, within the
//! connect timeout, with the reason; no masters at all is refused at once.

use std::time::Duration;

use shardkv_client::{Client, ClientError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn an_unreachable_cluster_fails_the_build() {
    // A port nothing listens on: every connection is refused at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("its address").to_string();
    drop(listener);
    let built = runtime().block_on(
        Client::builder([address])
            .connect_timeout(Duration::from_millis(300))
            .timeout(Duration::from_secs(60))
            .build(),
    );
    match built {
        Err(ClientError::Timeout {
            deadline,
            last_failure,
            ..
        }) => {
            assert_eq!(deadline, Duration::from_millis(300), "the connect timeout");
            assert!(last_failure.is_some(), "says why");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn no_masters_is_refused() {
    let built = runtime().block_on(Client::builder(Vec::<String>::new()).build());
    assert!(matches!(built, Err(ClientError::NoMasters)), "{built:?}");
}
