//! Mutual TLS between shardkv nodes and their clients: rustls (TLS 1.3 only, the ring
//! provider), every certificate signed by the cluster's CA, and who a peer is read from
//! its certificate rather than from its address (nodes dial by address, and addresses
//! change when replicas are replaced).
//!
//! A certificate names its holder in a subject-alternative-name URI:
//!
//! ```text
//!   shardkv://CLUSTER/master/ID         a shard-master replica
//!   shardkv://CLUSTER/group/GID/ID      a replica of group GID
//!   shardkv://CLUSTER/client/NAME       a client: data commands
//!   shardkv://CLUSTER/admin/NAME        an administrator: data and admin commands
//! ```
//!
//! A node's certificate also carries the DNS name [`NODE_NAME`], which every connection
//! to a node verifies, so a client's certificate cannot serve as a node's. Each side
//! verifies the other's chain to the CA; a node then reads the caller's [`Identity`]
//! ([`Tls::peer_identity`]) and decides what it may do.
//!
//! A TLS directory holds [`CA_FILE`], [`CERT_FILE`] and [`KEY_FILE`] (PEM);
//! `shardkv certs` writes them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use shardkv_proto::{GroupId, NO_GROUP};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::tarpc_transport::ReplicaName;

/// The CA's certificate, in a TLS directory.
pub const CA_FILE: &str = "ca.pem";
/// The holder's certificate (and any intermediates), in a TLS directory.
pub const CERT_FILE: &str = "cert.pem";
/// The holder's private key, in a TLS directory.
pub const KEY_FILE: &str = "key.pem";

/// The DNS name every node's certificate carries and every connection to a node checks.
pub const NODE_NAME: &str = "shardkv-node";

/// The scheme of identity URIs.
const SCHEME: &str = "shardkv://";

/// Who holds a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A replica of the shard master or of a group.
    Replica(ReplicaName),
    /// A client; `admin` clients may also change the configuration.
    Client {
        /// The name it was issued under.
        name: String,
        /// Whether it may run admin commands (join, leave, move).
        admin: bool,
    },
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Replica(replica) => write!(f, "{replica}"),
            Identity::Client { name, admin: true } => write!(f, "administrator {name:?}"),
            Identity::Client { name, admin: false } => write!(f, "client {name:?}"),
        }
    }
}

impl Identity {
    /// The identity URI naming this holder in `cluster`.
    pub fn uri(&self, cluster: &str) -> String {
        match self {
            Identity::Replica(ReplicaName {
                service: NO_GROUP,
                id,
            }) => {
                format!("{SCHEME}{cluster}/master/{id}")
            }
            Identity::Replica(ReplicaName { service, id }) => {
                format!("{SCHEME}{cluster}/group/{service}/{id}")
            }
            Identity::Client { name, admin } => {
                let role = if *admin { "admin" } else { "client" };
                format!("{SCHEME}{cluster}/{role}/{name}")
            }
        }
    }

    /// The cluster and holder an identity URI names, if it is one.
    pub fn parse(uri: &str) -> Option<(String, Identity)> {
        let rest = uri.strip_prefix(SCHEME)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let number = |text: &str| text.parse::<u64>().ok().filter(|&n| n != 0);
        let identity = match parts[1..] {
            ["master", id] => Identity::Replica(ReplicaName {
                service: NO_GROUP,
                id: number(id)?,
            }),
            ["group", gid, id] => Identity::Replica(ReplicaName {
                service: number(gid)? as GroupId,
                id: number(id)?,
            }),
            [role @ ("client" | "admin"), name] if valid_name(name) => Identity::Client {
                name: name.to_string(),
                admin: role == "admin",
            },
            _ => return None,
        };
        let cluster = parts[0];
        valid_name(cluster).then(|| (cluster.to_string(), identity))
    }

    /// The identity a certificate names (its one shardkv URI), with its cluster.
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Result<(String, Identity), String> {
        let parsed = webpki::EndEntityCert::try_from(cert)
            .map_err(|error| format!("unreadable certificate: {error}"))?;
        let mut named = parsed.valid_uri_names().filter_map(Identity::parse);
        match (named.next(), named.next()) {
            (Some(found), None) => Ok(found),
            (None, _) => Err("the certificate names no shardkv identity".into()),
            (Some(_), Some(_)) => Err("the certificate names more than one identity".into()),
        }
    }
}

/// Whether `name` may be a cluster's or a client's name: letters, digits, `-`, `_`, `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// One holder's TLS setup: its identity, and the configurations to accept and to make
/// connections with. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    cluster: String,
    me: Identity,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tls({} in cluster {})", self.me, self.cluster)
    }
}

impl Tls {
    /// Loads the TLS directory `dir` ([`CA_FILE`], [`CERT_FILE`], [`KEY_FILE`]).
    pub fn load(dir: &Path) -> Result<Tls, String> {
        let path = |file: &str| dir.join(file);
        let read_certs = |file: &str| -> Result<Vec<CertificateDer<'static>>, String> {
            let certs = CertificateDer::pem_file_iter(path(file))
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|error| format!("cannot read {}: {error}", path(file).display()))?;
            match certs.is_empty() {
                true => Err(format!("{} holds no certificate", path(file).display())),
                false => Ok(certs),
            }
        };
        let ca = read_certs(CA_FILE)?;
        let chain = read_certs(CERT_FILE)?;
        let key = PrivateKeyDer::from_pem_file(path(KEY_FILE))
            .map_err(|error| format!("cannot read {}: {error}", path(KEY_FILE).display()))?;
        let (cluster, me) = Identity::of_certificate(&chain[0])
            .map_err(|error| format!("{}: {error}", path(CERT_FILE).display()))?;
        Self::new(cluster, me, ca, chain, key)
            .map_err(|error| format!("{}: {error}", dir.display()))
    }

    /// A setup from its parts: `ca` the cluster's CA, `chain` the holder's certificate
    /// first, `key` its private key.
    fn new(
        cluster: String,
        me: Identity,
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Tls, String> {
        let mut roots = RootCertStore::empty();
        for cert in ca {
            roots
                .add(cert)
                .map_err(|error| format!("bad CA certificate: {error}"))?;
        }
        let roots = Arc::new(roots);
        // ring, not aws-lc-rs: aws-lc builds a large C library (and wants cmake) on
        // every clean build; the key exchange is then classical (X25519, P-256) only.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = &[&rustls::version::TLS13];
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|error| format!("cannot verify clients: {error}"))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|error| error.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|error| format!("the certificate and key do not serve: {error}"))?;
        // No session tickets: after the handshake a node writes nothing on a raft stream,
        // so a readable raft stream means a closed one (`raft_stream::closed`).
        server.send_tls13_tickets = 0;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|error| format!("the certificate and key do not serve: {error}"))?;
        Ok(Tls {
            cluster,
            me,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// The cluster the certificates belong to.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Whom this setup's certificate names.
    pub fn identity(&self) -> &Identity {
        &self.me
    }

    /// Accepts connections: the caller must present a certificate of the cluster's CA.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Makes connections to nodes: the node must present a node certificate of the
    /// cluster's CA ([`NODE_NAME`]), and is shown this setup's certificate.
    pub fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// The name every connection to a node verifies.
    pub fn node_name() -> ServerName<'static> {
        ServerName::DnsName(
            rustls::pki_types::DnsName::try_from(NODE_NAME)
                .expect("NODE_NAME is a valid DNS name")
                .to_owned(),
        )
    }

    /// Who the peer of an accepted connection is, from the certificate it presented
    /// (its chain already verified by the handshake); another cluster's is refused.
    pub fn peer_identity(&self, certs: Option<&[CertificateDer<'_>]>) -> Result<Identity, String> {
        let cert = certs
            .and_then(<[_]>::first)
            .ok_or("the peer presented no certificate")?;
        let (cluster, identity) = Identity::of_certificate(cert)?;
        match cluster == self.cluster {
            true => Ok(identity),
            false => Err(format!(
                "the peer's certificate names cluster {cluster:?}, not {:?}",
                self.cluster
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Identity URIs round-trip; anything else is not one.
    #[test]
    fn identities_round_trip() {
        let identities = [
            Identity::Replica(ReplicaName {
                service: NO_GROUP,
                id: 3,
            }),
            Identity::Replica(ReplicaName {
                service: 100,
                id: 1,
            }),
            Identity::Client {
                name: "web-1".into(),
                admin: false,
            },
            Identity::Client {
                name: "alice".into(),
                admin: true,
            },
        ];
        for identity in identities {
            let uri = identity.uri("prod");
            assert_eq!(
                Identity::parse(&uri),
                Some(("prod".into(), identity)),
                "{uri}"
            );
        }
        for bad in [
            "shardkv://prod/master/0",
            "shardkv://prod/group/0/1",
            "shardkv://prod/group/100",
            "shardkv://prod/root/x",
            "shardkv://pr od/client/x",
            "shardkv://prod/client/",
            "https://prod/client/x",
            "shardkv://prod/master/1/2",
        ] {
            assert_eq!(Identity::parse(bad), None, "{bad}");
        }
    }
}
