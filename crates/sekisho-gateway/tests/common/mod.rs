//! Test support: a throw-away PKI, real upstream servers on loopback that report exactly
//! what they received, gateway start-up from YAML, and clients (reqwest and raw TLS).
//!
//! Zones are modelled with loopback ranges (TESTING.md): LGWAN side 127.0.10.0/24,
//! internet side 127.0.20.0/24, the isolated individual-number side 127.0.30.0/24.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use sekisho_gateway::server::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const SITE: &str = "app.test.localhost";

/// A CA and a server certificate for the test sites, written to a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl Pki {
    pub fn new(names: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Sekisho test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server-key.pem"), key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca_pem: ca_cert.pem(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// What an upstream received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body_len: u64,
    pub peer: SocketAddr,
}

/// A real HTTP upstream (HTTP/1.1 and h2c) that records every request and answers with
/// `upstream <name> saw <uri>`.
#[derive(Clone)]
pub struct Echo {
    pub name: String,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Echo {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

pub async fn echo(name: &str, bind: &str) -> Echo {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let e = Echo {
        name: name.to_owned(),
        addr,
        seen: seen.clone(),
    };
    let name = name.to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                break;
            };
            let seen = seen.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    let name = name.clone();
                    async move {
                        let method = req.method().to_string();
                        let uri = req.uri().to_string();
                        let version = req.version();
                        let headers = req.headers().clone();
                        let query_size = req
                            .uri()
                            .query()
                            .and_then(|q| q.strip_prefix("size="))
                            .and_then(|s| s.parse::<u64>().ok());
                        let mut body = req.into_body();
                        let mut body_len = 0u64;
                        while let Some(frame) = body.frame().await {
                            match frame {
                                Ok(f) => {
                                    if let Some(d) = f.data_ref() {
                                        body_len += d.len() as u64;
                                    }
                                }
                                // Like any application, act only on complete requests.
                                Err(_) => {
                                    return Ok(Response::new(
                                        Full::new(Bytes::new())
                                            .map_err(|never| match never {})
                                            .boxed(),
                                    ));
                                }
                            }
                        }
                        seen.lock().unwrap().push(Seen {
                            method,
                            uri: uri.clone(),
                            version,
                            headers,
                            body_len,
                            peer,
                        });
                        if let Some(size) = query_size {
                            return Ok::<_, Infallible>(Response::new(stream_body(size)));
                        }
                        let text = format!("upstream {name} saw {uri} body {body_len}");
                        Ok::<_, Infallible>(Response::new(
                            Full::new(Bytes::from(text))
                                .map_err(|never| match never {})
                                .boxed(),
                        ))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    e
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A body of `size` bytes produced in 64 KiB chunks, never held whole in memory.
pub fn stream_body(size: u64) -> TestBody {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = futures_util::stream::unfold(size, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(chunk.len() as u64);
            Some((
                Ok::<_, Infallible>(hyper::body::Frame::data(chunk.slice(..n as usize))),
                left - n,
            ))
        }
    });
    http_body_util::StreamBody::new(stream).boxed()
}

/// An upstream that accepts connections and never answers.
pub async fn silent(bind: &str) -> SocketAddr {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

/// A free loopback address with nothing listening (bound then released).
pub async fn closed_port(bind: &str) -> SocketAddr {
    let l = TcpListener::bind(bind).await.unwrap();
    l.local_addr().unwrap()
}

/// Standard zones for tests. `{lgwan_bind}` etc. are not needed: bind is set per zone.
pub fn zones_yaml() -> &'static str {
    r#"zones:
  lgwan:
    description: LGWAN接続系
    egress:
      allow: [127.0.10.0/24]
      bind: 127.0.10.1
    response:
      cache_control: no-store
  internet:
    description: インターネット接続系
    egress:
      allow: [127.0.20.0/24]
  mynumber:
    description: マイナンバー利用事務系
    isolated: true
    egress:
      allow: [127.0.30.0/24]
"#
}

/// A gateway started from YAML; the config lives in the PKI's temp dir.
pub struct Gw {
    pub running: Running,
    pub config_path: PathBuf,
    pub pki: Pki,
}

impl Gw {
    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.running.listeners[listener]
    }
    pub fn client(&self, listener: &str) -> reqwest::Client {
        client(&self.pki, self.addr(listener), false)
    }
    pub fn client_h2(&self, listener: &str) -> reqwest::Client {
        client(&self.pki, self.addr(listener), true)
    }
    pub fn url(&self, listener: &str, path: &str) -> String {
        self.url_at(SITE, listener, path)
    }
    /// A URL on another of the test hosts (the test clients resolve them all to loopback).
    pub fn url_at(&self, host: &str, listener: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.addr(listener).port())
    }
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.running.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
    pub fn rewrite_config(&self, yaml: &str) {
        std::fs::write(&self.config_path, full_yaml(&self.pki, yaml)).unwrap();
    }
}

/// Prepends admin, zones and a TLS listener `lgwan-https` plus a TLS listener
/// `internet-https` (both on 127.0.0.1:0) to the given routes YAML.
pub fn full_yaml(pki: &Pki, rest: &str) -> String {
    full_yaml_with(pki, "", rest)
}

/// Test policies: `admins-only` (group admins), `lgwan-staff` (group staff), and
/// `managed-device` (anyone on a managed device with a valid certificate).
pub const TEST_POLICIES: &str = r#"policies:
  admins-only:
    allow:
      - groups: [admins]
  lgwan-staff:
    allow:
      - groups: [staff]
  managed-device:
    allow:
      - device: { certificate: true, managed: true }
"#;

/// Like [`full_yaml`], with extra top-level sections (e.g. `devices:`).
pub fn full_yaml_with(pki: &Pki, extra: &str, rest: &str) -> String {
    std::fs::write(pki.path("policies.yaml"), TEST_POLICIES).unwrap();
    format!(
        r#"instance: test
admin:
  listen: 127.0.0.1:0
policies: [policies.yaml]
{extra}{zones}listeners:
  lgwan-https:
    zone: lgwan
    listen: 127.0.0.1:0
    tls:
      certificates:
        - cert: {cert}
          key: {key}
  internet-https:
    zone: internet
    listen: 127.0.0.1:0
    tls:
      certificates:
        - cert: {cert}
          key: {key}
{rest}"#,
        zones = zones_yaml(),
        cert = pki.path("server.pem").display(),
        key = pki.path("server-key.pem").display(),
    )
}

pub async fn gateway(routes_yaml: &str) -> Gw {
    let pki = Pki::new(&[SITE, "other.test.localhost", "127.0.0.1"]);
    gateway_with(pki, routes_yaml).await
}

pub async fn gateway_with(pki: Pki, routes_yaml: &str) -> Gw {
    gateway_extra(pki, "", routes_yaml).await
}

/// Starts a gateway whose configuration has `extra` top-level sections (devices, identity,
/// trusted proxies …) besides the standard zones, listeners and test policies.
pub async fn gateway_extra(pki: Pki, extra: &str, routes_yaml: &str) -> Gw {
    gateway_extra_with(pki, extra, routes_yaml, Default::default()).await
}

/// [`gateway_extra`] with test hooks (e.g. audit write faults).
pub async fn gateway_extra_with(
    pki: Pki,
    extra: &str,
    routes_yaml: &str,
    options: sekisho_gateway::server::StartOptions,
) -> Gw {
    let config_path = pki.path("sekisho.yaml");
    std::fs::write(&config_path, full_yaml_with(&pki, extra, routes_yaml)).unwrap();
    let running = match sekisho_gateway::server::start_with(&config_path, options).await {
        Ok(r) => r,
        Err(e) => panic!("gateway did not start:\n{e}"),
    };
    Gw {
        running,
        config_path,
        pki,
    }
}

pub fn client(pki: &Pki, addr: SocketAddr, h2: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()])
        .resolve(SITE, addr)
        .resolve("other.test.localhost", addr)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    b = if h2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
    b.build().unwrap()
}

/// A rustls client config trusting the test CA, with the given ALPN.
pub fn tls_client_config(pki: &Pki, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in sekisho_gateway::tls::load_certs(&pki.path("ca.pem")).unwrap() {
        roots.add(c).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(sekisho_gateway::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

/// Sends raw bytes over TLS (HTTP/1.1) and returns everything the gateway answered
/// until it closed the connection (or 3 s passed).
pub async fn raw_tls(pki: &Pki, addr: SocketAddr, sni: &str, request: &[u8]) -> String {
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(pki, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(3), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in a raw HTTP/1.1 answer.
pub fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Every complete audit record in `dir`, in file order.
pub fn records(dir: &Path) -> Vec<serde_json::Value> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "jsonl")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("audit-"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}
