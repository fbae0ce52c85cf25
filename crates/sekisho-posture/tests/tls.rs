//! Real TLS handshakes over loopback: a tokio-rustls server with the device verifier and a
//! tokio-rustls client presenting test certificates.

use std::sync::Arc;

use jiff::Timestamp;
use rustls::HandshakeKind;
use rustls_pki_types::{CertificateDer, ServerName};
use sekisho_posture::testkit::{TestDevice, TestPki};
use sekisho_posture::{DeviceOutcome, DevicePosture, DeviceTrust, PostureConfig};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct ServerSide {
    peer: Option<Vec<CertificateDer<'static>>>,
    kind: Option<HandshakeKind>,
}

/// One connection: returns what the server saw, or the server's handshake error.
async fn connect(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> Result<ServerSide, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        let side = ServerSide {
            peer: conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect()),
            kind: conn.handshake_kind(),
        };
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut sink = Vec::new();
        let _ = tls.read_to_end(&mut sink).await;
        Ok::<_, String>(side)
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    if let Ok(mut tls) = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
    {
        // Reading makes the client process the session tickets that follow the handshake.
        let mut buf = [0u8; 2];
        if tls.read_exact(&mut buf).await.is_ok() {
            assert_eq!(&buf, b"ok");
        }
        let _ = tls.shutdown().await;
    }
    server_task.await.unwrap()
}

fn setup() -> (TestPki, Arc<DeviceTrust>) {
    let pki = TestPki::new();
    let trust = Arc::new(DeviceTrust::load(pki.trust_config()).unwrap());
    (pki, trust)
}

async fn handshake_with(
    pki: &TestPki,
    trust: &DeviceTrust,
    dev: Option<&TestDevice>,
) -> Result<ServerSide, String> {
    connect(
        Arc::new(pki.server_config(trust.verifier())),
        Arc::new(pki.client_config(dev)),
    )
    .await
}

#[tokio::test]
async fn valid_device_handshake_and_per_request_check() {
    let (pki, trust) = setup();
    let dev = pki.device("PC-0042");
    let side = handshake_with(&pki, &trust, Some(&dev))
        .await
        .expect("handshake");
    let peer = side.peer.expect("client certificate seen by the server");
    let verified = trust
        .check(&peer, Timestamp::now())
        .expect("verified device");
    assert_eq!(verified.id(), "PC-0042");
    assert_eq!(verified.serial_hex(), dev.serial_hex());
    assert_eq!(
        verified.fingerprint_sha256(),
        hex::encode(sha2::Sha256::digest(&dev.cert.cert_der))
    );
    assert_eq!(verified.x5t_s256(), dev.x5t_s256());
    assert!(
        verified.issuer().contains("Test device CA"),
        "{}",
        verified.issuer()
    );
    assert!(verified.not_before() < Timestamp::now() && Timestamp::now() < verified.not_after());
}

#[tokio::test]
async fn no_client_certificate_still_connects_and_has_no_device() {
    let (pki, trust) = setup();
    let side = handshake_with(&pki, &trust, None)
        .await
        .expect("a certificate is optional");
    assert!(side.peer.is_none());
    let posture = DevicePosture::new(
        trust,
        Arc::new(sekisho_posture::inventory::InventoryStore::empty()),
        None,
        PostureConfig::default(),
    );
    let outcome = posture.evaluate(side.peer.as_deref(), None, Timestamp::now());
    assert!(matches!(outcome, DeviceOutcome::NoCertificate));
    assert!(outcome.device().is_none());
}

#[tokio::test]
async fn expired_certificate_fails_handshake_and_check() {
    let (pki, trust) = setup();
    let dev = pki.expired("PC-0001");
    assert!(handshake_with(&pki, &trust, Some(&dev)).await.is_err());
    let err = trust.check(&dev.chain(), Timestamp::now()).unwrap_err();
    assert_eq!(err.code(), "device_cert_expired");
}

#[tokio::test]
async fn not_yet_valid_certificate_fails_handshake_and_check() {
    let (pki, trust) = setup();
    let dev = pki.not_yet_valid("PC-0002");
    assert!(handshake_with(&pki, &trust, Some(&dev)).await.is_err());
    let err = trust.check(&dev.chain(), Timestamp::now()).unwrap_err();
    assert_eq!(err.code(), "device_cert_not_yet_valid");
}

#[tokio::test]
async fn wrong_ca_fails_handshake_and_check() {
    let (pki, trust) = setup();
    let dev = pki.wrong_ca("PC-0042");
    assert!(handshake_with(&pki, &trust, Some(&dev)).await.is_err());
    let err = trust.check(&dev.chain(), Timestamp::now()).unwrap_err();
    assert_eq!(err.code(), "device_cert_unknown_ca");
}

#[tokio::test]
async fn certificate_without_device_id_is_refused_per_request() {
    let (pki, trust) = setup();
    let dev = pki.without_device_id();
    // The chain is fine, so the handshake succeeds; the per-request check names the problem.
    let side = handshake_with(&pki, &trust, Some(&dev))
        .await
        .expect("handshake");
    let err = trust
        .check(&side.peer.unwrap(), Timestamp::now())
        .unwrap_err();
    assert_eq!(err.code(), "device_cert_no_device_id");
}

#[tokio::test]
async fn revoked_certificate_fails_fresh_handshake() {
    let pki = TestPki::new();
    let dev = pki.revoked("PC-0666");
    let trust = DeviceTrust::load(pki.trust_config()).unwrap();
    assert!(handshake_with(&pki, &trust, Some(&dev)).await.is_err());
    assert_eq!(
        trust
            .check(&dev.chain(), Timestamp::now())
            .unwrap_err()
            .code(),
        "device_cert_revoked"
    );
    assert!(trust.is_revoked(dev.serial_hex()));
}

#[tokio::test]
async fn revocation_reaches_resumed_sessions_through_the_per_request_check() {
    let (pki, trust) = setup();
    let dev = pki.device("PC-0042");
    // A listener whose rustls config (and session store) predates the revocation.
    let server = Arc::new(pki.server_config(trust.verifier()));
    let client = Arc::new(pki.client_config(Some(&dev)));
    let first = connect(server.clone(), client.clone())
        .await
        .expect("first handshake");
    assert_eq!(first.kind, Some(HandshakeKind::Full));
    assert!(
        trust
            .check(first.peer.as_ref().unwrap(), Timestamp::now())
            .is_ok()
    );

    let mut changes = trust.subscribe();
    let before = trust.generation();
    pki.revoke(&dev);
    let generation = trust.reload().expect("reload");
    assert!(generation > before);
    assert!(
        changes.has_changed().unwrap(),
        "long-lived connections are told"
    );
    assert_eq!(*changes.borrow_and_update(), generation);

    // The session resumes: rustls does not run the verifier again...
    let resumed = connect(server, client.clone())
        .await
        .expect("resumed handshake");
    assert_eq!(resumed.kind, Some(HandshakeKind::Resumed));
    let peer = resumed
        .peer
        .expect("resumed session still carries the certificate");
    // ...so the per-request check is what stops it.
    let err = trust.check(&peer, Timestamp::now()).unwrap_err();
    assert_eq!(err.code(), "device_cert_revoked");

    // A listener rebuilt with the new verifier refuses a full handshake too.
    let fresh_client = Arc::new(pki.client_config(Some(&dev)));
    assert!(
        connect(Arc::new(pki.server_config(trust.verifier())), fresh_client)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn long_lived_connection_recheck_after_revocation() {
    let (pki, trust) = setup();
    let dev = pki.device("PC-0042");
    let side = handshake_with(&pki, &trust, Some(&dev)).await.unwrap();
    let verified = trust.check(&side.peer.unwrap(), Timestamp::now()).unwrap();
    assert!(trust.recheck(&verified, Timestamp::now()).is_ok());
    pki.revoke(&dev);
    trust.reload().unwrap();
    assert!(verified.trust_generation() < trust.generation());
    assert_eq!(
        trust
            .recheck(&verified, Timestamp::now())
            .unwrap_err()
            .code(),
        "device_cert_revoked"
    );
}

/// The deferring verifier lets a bad certificate through the handshake so the gateway can show
/// the precise reason; proof of key possession is still enforced.
#[tokio::test]
async fn deferring_verifier_admits_bad_certificates_for_a_precise_page() {
    let pki = TestPki::new();
    let revoked = pki.revoked("PC-0666");
    let trust = DeviceTrust::load(pki.trust_config()).unwrap();
    let server = Arc::new(pki.server_config(trust.deferring_verifier()));
    let cases = [
        (pki.expired("PC-0001"), "device_cert_expired"),
        (pki.not_yet_valid("PC-0002"), "device_cert_not_yet_valid"),
        (pki.wrong_ca("PC-0003"), "device_cert_unknown_ca"),
        (revoked, "device_cert_revoked"),
        (pki.without_device_id(), "device_cert_no_device_id"),
    ];
    for (dev, code) in cases {
        let side = connect(server.clone(), Arc::new(pki.client_config(Some(&dev))))
            .await
            .expect("deferred");
        let err = trust
            .check(&side.peer.unwrap(), Timestamp::now())
            .unwrap_err();
        assert_eq!(err.code(), code);
    }
    // A good device still verifies.
    let good = pki.device("PC-0042");
    let side = connect(server.clone(), Arc::new(pki.client_config(Some(&good))))
        .await
        .unwrap();
    assert_eq!(
        trust
            .check(&side.peer.unwrap(), Timestamp::now())
            .unwrap()
            .id(),
        "PC-0042"
    );

    // Presenting someone else's certificate without its private key fails the handshake.
    let thief = Arc::new(client_with_mismatched_key(
        &pki,
        &good,
        &pki.device("PC-0099"),
    ));
    assert!(connect(server, thief).await.is_err());
}

#[derive(Debug)]
struct Mismatched(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Mismatched {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

fn client_with_mismatched_key(
    pki: &TestPki,
    cert_of: &TestDevice,
    key_of: &TestDevice,
) -> rustls::ClientConfig {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let key = provider
        .key_provider
        .load_private_key(key_of.key())
        .unwrap();
    let certified = rustls::sign::CertifiedKey::new(cert_of.chain(), key);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.server_ca_der().clone()).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Mismatched(Arc::new(certified))))
}

#[tokio::test]
async fn per_connection_memo_skips_work_until_trust_changes() {
    let (pki, trust) = setup();
    let dev = pki.device("PC-0042");
    let side = handshake_with(&pki, &trust, Some(&dev)).await.unwrap();
    let peer = side.peer.unwrap();
    let now = Timestamp::now();
    let first = trust.check_memo(&peer, None, now).unwrap();
    let again = trust.check_memo(&peer, Some(&first), now).unwrap();
    assert_eq!(again.id(), "PC-0042");
    // The memo is for this chain only.
    let other = pki.device("PC-0043");
    assert_eq!(
        trust
            .check_memo(&other.chain(), Some(&first), now)
            .unwrap()
            .id(),
        "PC-0043"
    );
    // Time still counts on the fast path.
    let later = first.not_after() + jiff::SignedDuration::from_secs(1);
    assert_eq!(
        trust
            .check_memo(&peer, Some(&first), later)
            .unwrap_err()
            .code(),
        "device_cert_expired"
    );
    // A revocation (reload) invalidates the memo at once.
    pki.revoke(&dev);
    trust.reload().unwrap();
    assert_eq!(
        trust
            .check_memo(&peer, Some(&first), now)
            .unwrap_err()
            .code(),
        "device_cert_revoked"
    );
}

/// A long-lived connection's guard resolves right after the revoking reload (no polling delay).
#[tokio::test]
async fn long_lived_connection_guard_fires_on_revocation() {
    let (pki, trust) = setup();
    let dev = pki.device("PC-0042");
    let side = handshake_with(&pki, &trust, Some(&dev)).await.unwrap();
    let verified = trust.check(&side.peer.unwrap(), Timestamp::now()).unwrap();
    let guard = {
        let trust = trust.clone();
        tokio::spawn(async move { trust.until_invalid(&verified, Timestamp::now).await })
    };
    tokio::task::yield_now().await;
    assert!(!guard.is_finished(), "a valid device keeps its connection");
    pki.revoke(&dev);
    trust.reload().unwrap();
    let reason = tokio::time::timeout(std::time::Duration::from_secs(2), guard)
        .await
        .expect("closed promptly")
        .unwrap();
    assert_eq!(reason.code(), "device_cert_revoked");
}

/// ...and when the certificate expires during the connection (paused tokio time drives the clock).
#[tokio::test(start_paused = true)]
async fn long_lived_connection_guard_fires_on_expiry() {
    let (pki, trust) = setup();
    let dev = pki.device("PC-0042");
    let start = tokio::time::Instant::now();
    let base = Timestamp::now();
    let clock = move || base + jiff::SignedDuration::try_from(start.elapsed()).unwrap();
    let verified = trust.check(&dev.chain(), clock()).unwrap();
    let reason = trust.until_invalid(&verified, clock).await;
    assert_eq!(reason.code(), "device_cert_expired");
    assert!(clock() > verified.not_after());
    assert!(clock() <= verified.not_after() + jiff::SignedDuration::from_secs(2));
}
