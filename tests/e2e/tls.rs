//! TLS to the broker (`amqps://`, CONTRACT.md §8): a TLS-terminating proxy
//! started by the test on 127.0.0.1, in front of the shared broker, with
//! certificates made at test time and client certificates required. The
//! worker, `publish` and `mmt-tui` get through with good certificates; a
//! wrong CA or a client certificate the proxy does not trust is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mmt_shared::broker::{Broker, TlsArgs};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use crate::util::{PATIENCE, TestWorker, repo_root, worker_binary};

type Ca = CertifiedIssuer<'static, KeyPair>;

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// A certificate for `names` signed by `ca`, with its key.
fn leaf(ca: &Ca, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (Certificate, KeyPair) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("signed");
    (cert, key)
}

/// The PEM files of one client: the CA it trusts, its certificate and key.
struct ClientFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl ClientFiles {
    fn write(dir: &Path, name: &str, trusted: &Ca, signer: &Ca) -> Self {
        let (cert, key) = leaf(signer, &[name], ExtendedKeyUsagePurpose::ClientAuth);
        let files = Self {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.ca, trusted.pem()).expect("write");
        std::fs::write(&files.cert, cert.pem()).expect("write");
        std::fs::write(&files.key, key.serialize_pem()).expect("write");
        files
    }

    fn args(&self) -> TlsArgs {
        TlsArgs {
            tls_ca: Some(self.ca.clone()),
            tls_cert: Some(self.cert.clone()),
            tls_key: Some(self.key.clone()),
        }
    }

    fn envs(&self) -> [(&'static str, &Path); 3] {
        [
            ("MMT_TLS_CA", self.ca.as_path()),
            ("MMT_TLS_CERT", self.cert.as_path()),
            ("MMT_TLS_KEY", self.key.as_path()),
        ]
    }
}

/// Accepts TLS on 127.0.0.1 (client certificates signed by `ca` required)
/// and relays each connection to the broker. Stops when dropped.
struct TlsProxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsProxy {
    async fn start(ca: &Ca) -> Self {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(ca.as_ref().der().clone()).expect("CA root");
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .expect("client verifier");
        let (cert, key) = leaf(
            ca,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut broker) = TcpStream::connect("127.0.0.1:5672").await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                });
            }
        });
        Self { port, task }
    }

    fn url(&self) -> String {
        format!("amqps://guest:guest@localhost:{}/%2f", self.port)
    }
}

async fn connect_error(url: &str, tls: &TlsArgs) -> String {
    let broker = Broker::new(url, tls).expect("valid URL and files");
    match tokio::time::timeout(PATIENCE, broker.connect("mmt tls test")).await {
        Ok(Ok(_)) => panic!("connected with certificates the other side does not trust"),
        Ok(Err(error)) => {
            let mut chain = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                chain.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            chain
        }
        Err(_) => panic!("neither connected nor refused within {PATIENCE:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_good_certificates_works_end_to_end() {
    let ca = new_ca("mmt test CA");
    let proxy = TlsProxy::start(&ca).await;
    let mut w = TestWorker::start_idle("tls_good").await;
    let files = ClientFiles::write(w.dir.path(), "mmt-worker", &ca, &ca);
    w.worker_url = proxy.url();
    w.tls = files.args();
    w.start_worker().await;
    let token = w
        .issue("acme", "u", "read", "coinbase", "cb-1", "raw-over-tls")
        .await;
    let resolved = w.resolve("acme", &token, "read").await;
    assert_eq!(resolved["accessToken"], "raw-over-tls", "{resolved}");

    let publish = tokio::process::Command::new(worker_binary())
        .args(["publish", "--namespace", w.ns.as_str()])
        .arg(repo_root().join("fixtures/messages/resolve-unknown.json"))
        .env("MMT_AMQP_URL", proxy.url())
        .envs(files.envs())
        .output()
        .await
        .expect("publish runs");
    let out = String::from_utf8_lossy(&publish.stdout);
    assert!(
        publish.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&publish.stderr)
    );
    assert!(out.contains("not_found"), "{out}");

    let dump = tokio::process::Command::new(worker_binary().with_file_name("mmt-tui"))
        .args(["--dump", "--namespace", w.ns.as_str()])
        .env("MMT_AMQP_URL", proxy.url())
        .envs(files.envs())
        .output()
        .await
        .expect("mmt-tui runs");
    let out = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(out.contains("mmt snapshot"), "{out}");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_a_broker_certificate_from_another_ca() {
    let ca = new_ca("mmt test CA");
    let stranger = new_ca("someone else's CA");
    let proxy = TlsProxy::start(&ca).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let files = ClientFiles::write(dir.path(), "client", &stranger, &ca);
    let error = connect_error(&proxy.url(), &files.args()).await;
    assert!(
        error.contains("cannot connect to the broker at amqps://guest:***@localhost"),
        "{error}"
    );
    assert!(error.contains("certificate"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_client_certificate_the_broker_does_not_trust_is_refused() {
    let ca = new_ca("mmt test CA");
    let stranger = new_ca("someone else's CA");
    let proxy = TlsProxy::start(&ca).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let untrusted = ClientFiles::write(dir.path(), "untrusted", &ca, &stranger);
    let error = connect_error(&proxy.url(), &untrusted.args()).await;
    assert!(error.contains("cannot connect to the broker"), "{error}");
    let without = TlsArgs {
        tls_ca: untrusted.args().tls_ca,
        ..TlsArgs::default()
    };
    let error = connect_error(&proxy.url(), &without).await;
    assert!(error.contains("cannot connect to the broker"), "{error}");
}
