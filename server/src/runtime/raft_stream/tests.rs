//! Tests of raft streams through a real listener.

use super::*;
use crate::runtime::service;
use crate::runtime::timeline::Tracer;
use shardkv_client::TarpcTransport;
use tokio::time::timeout;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The service of every replica in these tests.
const GROUP: u64 = 100;

/// Replica `id` of [`GROUP`].
fn replica(id: u64) -> ReplicaName {
    ReplicaName { service: GROUP, id }
}

/// Replica 1 of [`GROUP`], whose peers are 1 to 9.
fn membership() -> StreamPeers {
    StreamPeers {
        me: replica(1),
        peers: (1..=9).collect(),
    }
}

/// A listener serving into a fresh event queue: (its address, the queue).
async fn listening() -> (String, mpsc::Receiver<Event>) {
    listening_within(service::Limits::default()).await
}

/// A listener with `limits`, serving into a fresh event queue: (its address, the queue).
async fn listening_within(limits: service::Limits) -> (String, mpsc::Receiver<Event>) {
    let listener = service::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let (events, received) = mpsc::channel(16);
    tokio::spawn(service::serve(
        listener,
        events,
        Tracer::default(),
        membership(),
        limits,
        None,
    ));
    (address, received)
}

/// The next event's raft batch: (from, messages).
async fn next_batch(events: &mut mpsc::Receiver<Event>) -> (u64, Vec<Vec<u8>>) {
    match tokio::time::timeout(TIMEOUT, events.recv()).await {
        Ok(Some(Event::Peer { from, messages })) => (from, messages),
        other => panic!("expected a raft batch, got {other:?}"),
    }
}

/// Batches arrive whole and in order, marked with the sender's id; tarpc calls to
/// the same address are still served (the listener reads their first four bytes
/// to tell them apart, then hands them on).
#[tokio::test]
async fn batches_arrive_in_order_beside_tarpc() {
    let (address, mut events) = listening().await;
    let mut stream = Outgoing::new(replica(7), 1, address.clone(), None);
    let batches = [vec![b"one".to_vec(), Vec::new()], vec![vec![9; 100_000]]];
    for batch in &batches {
        stream.send(batch.clone(), TIMEOUT).await.expect("send");
    }
    for batch in batches {
        assert_eq!(next_batch(&mut events).await, (7, batch));
    }

    let transport = TarpcTransport::new();
    let call = tokio::spawn(async move {
        transport
            .call_bytes(&address, b"request".to_vec(), TIMEOUT)
            .await
    });
    match tokio::time::timeout(TIMEOUT, events.recv()).await {
        Ok(Some(Event::Call { request, reply, .. })) => {
            assert_eq!(request, b"request");
            let _ = reply.send(b"answer".to_vec());
        }
        other => panic!("expected a call, got {other:?}"),
    }
    let answer = call.await.expect("call task").expect("call");
    assert_eq!(answer, b"answer");
}

/// The introduction and one frame holding `messages`, as `Outgoing` writes them.
fn stream_bytes(from: ReplicaName, messages: &[&[u8]]) -> Vec<u8> {
    let messages: Vec<ByteBuf> = messages.iter().map(|m| ByteBuf::from(m.to_vec())).collect();
    let frame = bincode::serialize(&messages).expect("encode");
    let mut bytes = hello(from);
    bytes.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&frame);
    bytes
}

/// Reads `raw` to its end: true when the listener closed it.
async fn closed_by_listener(raw: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, raw.read_to_end(&mut rest)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

/// A raft stream's good frames are taken; a frame that does not decode closes it,
/// as does another version; the listener and other streams carry on.
#[tokio::test]
async fn bad_streams_are_closed() {
    let (address, mut events) = listening().await;
    let mut raw = TcpStream::connect(&address).await.expect("connect");
    let mut bytes = stream_bytes(replica(3), &[b"good"]);
    bytes.extend_from_slice(&[0, 0, 0, 3, b'a', b'b', b'c']);
    raw.write_all(&bytes).await.expect("write");
    assert_eq!(next_batch(&mut events).await, (3, vec![b"good".to_vec()]));
    assert!(closed_by_listener(&mut raw).await, "bad frame: not closed");
    assert!(events.try_recv().is_err(), "a bad frame was handed on");

    let mut raw = TcpStream::connect(&address).await.expect("connect");
    let mut bytes = stream_bytes(replica(3), &[b"good"]);
    bytes[7] = b'9';
    raw.write_all(&bytes).await.expect("write");
    assert!(closed_by_listener(&mut raw).await, "version 9: not closed");
    assert!(events.try_recv().is_err(), "version 9 was read");

    let mut stream = Outgoing::new(replica(8), 1, address, None);
    stream
        .send(vec![b"still".to_vec()], TIMEOUT)
        .await
        .expect("send");
    assert_eq!(next_batch(&mut events).await, (8, vec![b"still".to_vec()]));
}

/// The local address of `outgoing`'s connection.
fn connection(outgoing: &Outgoing) -> SocketAddr {
    let stream = outgoing.stream.as_ref().expect("connected");
    tcp(stream.get_ref()).local_addr().expect("local address")
}

/// A healthy stream is kept from batch to batch; once its peer has closed it (the
/// node stopped), the next send dials the address afresh and is delivered.
#[tokio::test]
async fn a_restarted_peer_is_dialed_again() {
    let (address, mut events) = listening().await;
    let mut stream = Outgoing::new(replica(5), 1, address.clone(), None);
    stream
        .send(vec![b"0".to_vec()], TIMEOUT)
        .await
        .expect("send");
    let first = connection(&stream);
    for i in 1..10u8 {
        stream.send(vec![vec![i]], TIMEOUT).await.expect("send");
    }
    for i in 0..10u8 {
        let expected = if i == 0 { b"0".to_vec() } else { vec![i] };
        assert_eq!(next_batch(&mut events).await, (5, vec![expected]));
    }
    assert_eq!(
        connection(&stream),
        first,
        "a healthy stream was dialed again"
    );

    // The node stops: its listener and connections close with the driver's queue.
    drop(events);
    let old = tcp(stream.stream.as_ref().expect("connected").get_ref());
    tokio::time::timeout(TIMEOUT, old.readable())
        .await
        .expect("the close reaches the sender")
        .expect("readable");
    let listener = loop {
        match service::bind(&address).await {
            Ok(listener) => break listener,
            Err(_) => tokio::task::yield_now().await,
        }
    };
    let (sender, mut events) = mpsc::channel(16);
    tokio::spawn(service::serve(
        listener,
        sender,
        Tracer::default(),
        membership(),
        service::Limits::default(),
        None,
    ));
    stream
        .send(vec![b"after".to_vec()], TIMEOUT)
        .await
        .expect("send after the restart");
    assert_ne!(connection(&stream), first);
    assert_eq!(next_batch(&mut events).await, (5, vec![b"after".to_vec()]));
}

/// Streams from a replica the membership does not list (another service's replica 2,
/// an unlisted id, this replica's own id) are kept open but deliver nothing; a listed
/// peer's stream on the same listener delivers.
#[tokio::test]
async fn only_listed_peers_of_the_service_are_heard() {
    let (address, mut events) = listening().await;
    let strangers = [
        ReplicaName { service: 0, id: 2 },
        ReplicaName {
            service: 101,
            id: 2,
        },
        replica(10),
        replica(1),
    ];
    let mut raws = Vec::new();
    for stranger in strangers {
        let mut raw = TcpStream::connect(&address).await.expect("connect");
        raw.write_all(&stream_bytes(stranger, &[b"stray"]))
            .await
            .expect("write");
        raws.push(raw);
    }
    let mut stream = Outgoing::new(replica(2), 1, address, None);
    stream
        .send(vec![b"heard".to_vec()], TIMEOUT)
        .await
        .expect("send");
    assert_eq!(next_batch(&mut events).await, (2, vec![b"heard".to_vec()]));
    assert!(
        events.try_recv().is_err(),
        "a stranger's batch was handed on"
    );
    for raw in &mut raws {
        let mut byte = [0u8; 1];
        assert!(
            matches!(raw.try_read(&mut byte), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
            "a stranger's stream was closed (its sender would dial again for every batch)"
        );
    }
}

/// A node serves at most `connections` at once: with its slots taken by connections that
/// have said nothing yet (and have ten seconds to), the next one is closed as accepted.
#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once() {
    let limits = service::Limits {
        connections: 2,
        ..service::Limits::default()
    };
    let (address, mut events) = listening_within(limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(&address).await.expect("connect"));
    }
    let mut over = TcpStream::connect(&address).await.expect("connect");
    assert!(closed_by_listener(&mut over).await, "the third was served");
    for raw in &mut held {
        let mut byte = [0u8; 1];
        assert!(
            matches!(raw.try_read(&mut byte), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
            "a connection within the limit was closed"
        );
    }
    // A slot freed is a slot served again (once the listener has seen the close).
    drop(held.pop());
    let mut delivered = false;
    for _ in 0..100 {
        let mut stream = Outgoing::new(replica(2), 1, address.clone(), None);
        stream
            .send(vec![b"in".to_vec()], TIMEOUT)
            .await
            .expect("send");
        let wait = Duration::from_millis(100);
        if let Ok(Some(Event::Peer { messages, .. })) = timeout(wait, events.recv()).await {
            assert_eq!(messages, vec![b"in".to_vec()]);
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the freed slot was never served");
}

/// Connections that say nothing whole in time are closed: silent, a tarpc frame header
/// cut short, a raft hello cut short (by the handshake deadline), and a raft stream that
/// delivered a batch, then started a frame it never finished (by the idle time).
#[tokio::test]
async fn silent_and_stalled_connections_are_closed() {
    let limits = service::Limits {
        handshake: Duration::from_millis(200),
        idle: Duration::from_millis(300),
        ..service::Limits::default()
    };
    let (address, mut events) = listening_within(limits).await;
    let hello_and_batch = stream_bytes(replica(2), &[b"whole"]);
    let stalled: [&[u8]; 4] = [
        b"",
        b"\x00\x00",
        &hello_and_batch[..PREAMBLE.len() + 3],
        &[hello_and_batch.as_slice(), b"\x00\x00\x00\x10part"].concat(),
    ];
    for bytes in stalled {
        let mut raw = TcpStream::connect(&address).await.expect("connect");
        raw.write_all(bytes).await.expect("write");
        assert!(
            closed_by_listener(&mut raw).await,
            "{bytes:?} kept its connection"
        );
    }
    assert_eq!(next_batch(&mut events).await, (2, vec![b"whole".to_vec()]));
}

/// Over mutual TLS: a stream whose certificate names its sender delivers; the dialer
/// refuses a node whose certificate names another replica than the one it meant to
/// reach; a stream whose hello names another replica than its certificate is closed;
/// an identity at its connection limit gets no more.
#[tokio::test]
async fn tls_streams_are_heard_only_from_their_certificate() {
    use crate::cli::certs;
    use shardkv_client::tls::Identity;

    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca");
    certs::init(&ca, "test").expect("ca");
    let tls = |id: u64| {
        let out = dir.path().join(format!("replica-{id}"));
        certs::issue(&ca, &out, &Identity::Replica(replica(id))).expect("issue");
        Tls::load(&out).expect("load")
    };
    let listener = service::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let (events, mut received) = mpsc::channel(16);
    let limits = service::Limits {
        per_identity: 1,
        ..service::Limits::default()
    };
    let serving = service::serve(
        listener,
        events,
        Tracer::default(),
        membership(),
        limits,
        Some(tls(1)),
    );
    tokio::spawn(serving);

    let mut honest = Outgoing::new(replica(2), 1, address.clone(), Some(tls(2)));
    honest
        .send(vec![b"heard".to_vec()], TIMEOUT)
        .await
        .expect("send");
    assert_eq!(
        next_batch(&mut received).await,
        (2, vec![b"heard".to_vec()])
    );

    let mut misdirected = Outgoing::new(replica(2), 3, address.clone(), Some(tls(2)));
    let refused = misdirected.send(vec![b"lost".to_vec()], TIMEOUT).await;
    let refused = refused.expect_err("replica 1 answered for replica 3");
    assert!(refused.to_string().contains("not replica 3"), "{refused}");

    // Replica 3's certificate, a hello claiming replica 2.
    assert!(
        closed_over_tls(&address, &tls(3), b"forged").await,
        "the forged stream stayed open"
    );
    assert!(received.try_recv().is_err(), "a forged batch was handed on");

    // Replica 2's second connection while its first is open: over its limit of one.
    assert!(
        closed_over_tls(&address, &tls(2), b"extra").await,
        "a connection over the limit stayed open"
    );
    assert!(
        received.try_recv().is_err(),
        "a batch over the limit was handed on"
    );
    honest
        .send(vec![b"still".to_vec()], TIMEOUT)
        .await
        .expect("send");
    assert_eq!(
        next_batch(&mut received).await,
        (2, vec![b"still".to_vec()])
    );
}

/// Opens a raft stream to `address` over TLS with `tls`'s certificate, its hello claiming
/// replica 2, sends a batch of `message`; whether the listener closes it within
/// [`TIMEOUT`].
async fn closed_over_tls(address: &str, tls: &Tls, message: &[u8]) -> bool {
    let tcp = TcpStream::connect(address).await.expect("connect");
    let stream = tls.connector().connect(Tls::node_name(), tcp).await;
    let mut stream = stream.expect("handshake");
    stream
        .write_all(&stream_bytes(replica(2), &[message]))
        .await
        .expect("write");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut rest)).await;
    matches!(read, Ok(Ok(_)) | Ok(Err(_)))
}
