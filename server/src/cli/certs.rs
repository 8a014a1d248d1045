//! `shardkv certs init | node | client`: a development CA and the certificates of a
//! cluster's nodes and clients, in the layout `serve --tls-dir` and the client commands'
//! `--tls-dir` read (`shardkv_client::tls`).
//!
//! `init` writes the CA's certificate and key, and the cluster's name, into the CA
//! directory. `node` and `client` write a TLS directory: the CA's certificate, the
//! holder's certificate (naming it in an identity URI; a node's also carries the DNS
//! name every connection to a node checks) and its key. Keys are ECDSA P-256; the files
//! holding keys are readable by their owner only. The certificates are for development
//! and tests: they never expire (rcgen's default validity, 1975 to 4096); a production
//! cluster's come from its own PKI, with the same identity URIs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use shardkv_client::tarpc_transport::ReplicaName;
use shardkv_client::tls::{valid_name, Identity, Tls, CA_FILE, CERT_FILE, KEY_FILE, NODE_NAME};
use shardkv_proto::{GroupId, NO_GROUP};

use crate::runtime::NodeSpec;

/// The CA's private key, in the CA directory.
const CA_KEY_FILE: &str = "ca-key.pem";
/// The cluster's name, in the CA directory.
const CLUSTER_FILE: &str = "cluster";

/// `shardkv certs` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum CertsCommand {
    /// Create a cluster's CA (its certificate and key) in --dir.
    Init {
        /// The CA directory (created; refused if it holds a CA already).
        #[arg(long)]
        dir: PathBuf,
        /// The cluster's name, written into every certificate.
        #[arg(long, default_value = "shardkv")]
        cluster: String,
    },
    /// Issue a node's certificate into the TLS directory --out.
    Node(NodeArgs),
    /// Issue a client's certificate into the TLS directory --out.
    Client(ClientCertArgs),
}

/// Options of `shardkv certs node`.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// The CA directory (`certs init`).
    #[arg(long)]
    pub dir: PathBuf,
    /// The TLS directory to write (`serve --tls-dir`).
    #[arg(long)]
    pub out: PathBuf,
    /// The group the node is a replica of; without it, a shard-master replica.
    #[arg(long)]
    pub gid: Option<GroupId>,
    /// The node's raft id in its service.
    #[arg(long)]
    pub id: u64,
}

/// Options of `shardkv certs client`.
#[derive(Args, Debug, Clone)]
pub struct ClientCertArgs {
    /// The CA directory (`certs init`).
    #[arg(long)]
    pub dir: PathBuf,
    /// The TLS directory to write (the client commands' `--tls-dir`).
    #[arg(long)]
    pub out: PathBuf,
    /// The client's name (letters, digits, `-`, `_`, `.`).
    #[arg(long)]
    pub name: String,
    /// May run admin commands (join, leave, move, abandon) too.
    #[arg(long)]
    pub admin: bool,
}

/// Runs `shardkv certs`.
pub fn run(command: CertsCommand) -> ExitCode {
    let done = match command {
        CertsCommand::Init { dir, cluster } => init(&dir, &cluster),
        CertsCommand::Node(args) => {
            let service = args.gid.unwrap_or(NO_GROUP);
            match (args.gid, args.id) {
                (Some(0), _) => Err("--gid must be non-zero".to_string()),
                (_, 0) => Err("--id must be at least 1".to_string()),
                _ => issue(
                    &args.dir,
                    &args.out,
                    &Identity::Replica(ReplicaName {
                        service,
                        id: args.id,
                    }),
                ),
            }
        }
        CertsCommand::Client(args) => match valid_name(&args.name) {
            false => Err(format!(
                "--name {:?}: use letters, digits, '-', '_' and '.'",
                args.name
            )),
            true => issue(
                &args.dir,
                &args.out,
                &Identity::Client {
                    name: args.name,
                    admin: args.admin,
                },
            ),
        },
    };
    match done {
        Ok(wrote) => {
            println!("{}", wrote.display());
            ExitCode::SUCCESS
        }
        Err(message) => super::fail(message),
    }
}

/// Creates cluster `cluster`'s CA in `dir`.
pub fn init(dir: &Path, cluster: &str) -> Result<PathBuf, String> {
    if !valid_name(cluster) {
        return Err(format!(
            "--cluster {cluster:?}: use letters, digits, '-', '_' and '.'"
        ));
    }
    if dir.join(CA_KEY_FILE).exists() {
        return Err(format!("{} holds a CA already", dir.display()));
    }
    let key = KeyPair::generate().map_err(|error| format!("cannot make a key: {error}"))?;
    let cert = ca_params(cluster)
        .self_signed(&key)
        .map_err(|error| format!("cannot sign the CA: {error}"))?;
    write(dir, CA_FILE, &cert.pem(), false)?;
    write(dir, CLUSTER_FILE, &format!("{cluster}\n"), false)?;
    write(dir, CA_KEY_FILE, &key.serialize_pem(), true)?;
    Ok(dir.to_path_buf())
}

/// Issues `identity`'s certificate, signed by the CA in `ca_dir`, into TLS directory
/// `out`.
pub fn issue(ca_dir: &Path, out: &Path, identity: &Identity) -> Result<PathBuf, String> {
    let read = |file: &str| {
        std::fs::read_to_string(ca_dir.join(file))
            .map_err(|error| format!("cannot read {}: {error}", ca_dir.join(file).display()))
    };
    let cluster = read(CLUSTER_FILE)?.trim().to_string();
    let ca_key = KeyPair::from_pem(&read(CA_KEY_FILE)?)
        .map_err(|error| format!("{}: {error}", ca_dir.join(CA_KEY_FILE).display()))?;
    // The issuer is the CA's name and key: the same as `init` signed with.
    let issuer = Issuer::new(ca_params(&cluster), ca_key);
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, identity.to_string());
    params.distinguished_name = name;
    let uri = identity.uri(&cluster);
    let uri = uri
        .clone()
        .try_into()
        .map_err(|error| format!("{uri}: {error}"))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if let Identity::Replica(_) = identity {
        let node = NODE_NAME
            .try_into()
            .map_err(|error| format!("{NODE_NAME}: {error}"))?;
        params.subject_alt_names.push(SanType::DnsName(node));
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(|error| format!("cannot make a key: {error}"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|error| format!("cannot sign the certificate: {error}"))?;
    write(out, CA_FILE, &read(CA_FILE)?, false)?;
    write(out, CERT_FILE, &cert.pem(), false)?;
    write(out, KEY_FILE, &key.serialize_pem(), true)?;
    Ok(out.to_path_buf())
}

/// Certificates for a cluster run by this process (`local`, `demo`, `bench --tls`), in
/// `dir`: a CA (kept from an earlier run in the same directory), a certificate for every
/// node of `specs` (set as its TLS), and an administrator's for the clients, whose TLS
/// directory is returned (`dir/clients`).
pub fn certify(dir: &Path, specs: &mut [NodeSpec]) -> Result<PathBuf, String> {
    let ca = dir.join("ca");
    if !ca.join(CA_KEY_FILE).exists() {
        init(&ca, "local")?;
    }
    for spec in specs.iter_mut() {
        let me = spec.replica();
        let out = dir.join(format!("node-{}-{}", me.service, me.id));
        issue(&ca, &out, &Identity::Replica(me))?;
        spec.tls = Some(Tls::load(&out)?);
    }
    let clients = dir.join("clients");
    let admin = Identity::Client {
        name: "local".into(),
        admin: true,
    };
    issue(&ca, &clients, &admin)?;
    Ok(clients)
}

/// The CA's parameters for `cluster` (the same for `init` and every `issue`).
fn ca_params(cluster: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("shardkv {cluster} CA"));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Writes `text` to `dir/file` (creating `dir`), readable by its owner only if `secret`.
fn write(dir: &Path, file: &str, text: &str, secret: bool) -> Result<(), String> {
    let path = dir.join(file);
    let fail = |error: std::io::Error| format!("cannot write {}: {error}", path.display());
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut out = options.open(&path).map_err(fail)?;
    std::io::Write::write_all(&mut out, text.as_bytes()).map_err(fail)
}
