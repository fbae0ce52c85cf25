mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use sekisho_audit::syslog::{SyslogConfig, SyslogTls};
use sekisho_audit::{AuditConfig, Decision, Durability};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;

/// Read one octet-counted frame.
async fn read_frame(s: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut len = Vec::new();
    loop {
        let b = s.read_u8().await.unwrap();
        if b == b' ' {
            break;
        }
        len.push(b);
    }
    let n: usize = std::str::from_utf8(&len).unwrap().parse().unwrap();
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).await.unwrap();
    buf
}

fn check_frame(frame: &[u8], local_line: &str) {
    let text = std::str::from_utf8(frame).unwrap();
    // <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG; facility 13 (log audit), severity 6
    assert!(text.starts_with("<110>1 "), "{text}");
    let parts: Vec<&str> = text.splitn(8, ' ').collect();
    // TIMESTAMP is the record's own time.
    let rec: serde_json::Value = serde_json::from_str(local_line).unwrap();
    assert_eq!(parts[1], rec["time"].as_str().unwrap());
    assert_eq!(parts[2], "gw-host");
    assert_eq!(parts[3], "sekisho");
    assert_eq!(parts[5], "audit");
    assert_eq!(parts[6], "-");
    let msg = parts[7]
        .strip_prefix('\u{feff}')
        .expect("MSG starts with a BOM (UTF-8)");
    assert_eq!(
        msg, local_line,
        "the syslog copy is the local record, byte for byte"
    );
}

fn local_lines(dir: &std::path::Path) -> Vec<String> {
    let f = &sekisho_audit::files::list(dir).unwrap()[0];
    std::fs::read_to_string(&f.path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_rfc5424_octet_counted_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = AuditConfig::new(dir.path(), "gw");
    cfg.durability = Durability::Strict;
    let mut s = SyslogConfig::new(server.local_addr().unwrap().to_string());
    s.hostname = Some("gw-host".into());
    cfg.syslog = Some(s);
    let (h, task) = start(cfg, clock("2026-11-23T00:00:00Z"));
    for i in 0..3 {
        h.append(access(i, Decision::Allow)).await.unwrap();
    }
    let (mut conn, _) = server.accept().await.unwrap();
    let frames = [
        read_frame(&mut conn).await,
        read_frame(&mut conn).await,
        read_frame(&mut conn).await,
    ];
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    let lines = local_lines(dir.path());
    for (f, l) in frames.iter().zip(&lines) {
        check_frame(f, l);
    }
    assert_eq!(h.metrics().syslog_sent, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_forwarded_too() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (private, _) = sekisho_audit::checkpoint::generate_key_pair().unwrap();
    std::fs::write(keys.path().join("k.pem"), private).unwrap();
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = AuditConfig::new(dir.path().join("log"), "gw");
    cfg.durability = Durability::Strict;
    cfg.checkpoint = Some(sekisho_audit::CheckpointConfig::new(
        keys.path().join("k.pem"),
    ));
    cfg.syslog = Some(SyslogConfig::new(server.local_addr().unwrap().to_string()));
    let (h, task) = start(cfg, clock("2026-11-23T00:00:00Z"));
    h.append(access(1, Decision::Allow)).await.unwrap();
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    let (mut conn, _) = server.accept().await.unwrap();
    read_frame(&mut conn).await;
    let cp = read_frame(&mut conn).await;
    let text = String::from_utf8(cp).unwrap();
    let json = text.split_once('\u{feff}').unwrap().1;
    let cp: sekisho_audit::checkpoint::Checkpoint = serde_json::from_str(json).unwrap();
    assert_eq!(cp.seq, 1);
    let sidecar = std::fs::read_to_string(dir.path().join("log/checkpoints.jsonl")).unwrap();
    assert_eq!(sidecar.trim_end(), json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_syslog_server_never_blocks_appends_nor_loses_local_records() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bind, note the port, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = AuditConfig::new(dir.path(), "gw");
    cfg.durability = Durability::Strict;
    let mut s = SyslogConfig::new(addr.to_string());
    s.buffer = 2;
    s.reconnect = Duration::from_secs(3600);
    cfg.syslog = Some(s);
    let (h, task) = start(cfg, clock("2026-11-23T00:00:00Z"));
    let appends = async {
        for i in 0..20 {
            h.append(access(i, Decision::Allow)).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(10), appends)
        .await
        .expect("appends are not blocked by syslog");
    wait_until(|| h.metrics().syslog_dropped >= 17).await;
    let m = h.metrics();
    assert!(m.syslog_errors >= 1);
    assert_eq!(m.syslog_sent, 0);
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(local_lines(dir.path()).len(), 20);
    assert!(sekisho_audit::verify(dir.path()).unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_over_tls_with_aws_lc_rs() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["syslog.test".to_string()]).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![ck.cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();

    let log = dir.path().join("log");
    let mut cfg = AuditConfig::new(&log, "gw");
    cfg.durability = Durability::Strict;
    let mut s = SyslogConfig::new(server.local_addr().unwrap().to_string());
    s.hostname = Some("gw-host".into());
    s.tls = Some(SyslogTls {
        ca_file: ca,
        server_name: "syslog.test".into(),
    });
    cfg.syslog = Some(s);
    let (h, task) = start(cfg, clock("2026-11-23T00:00:00Z"));
    h.append(access(1, Decision::Deny)).await.unwrap();
    let (tcp, _) = server.accept().await.unwrap();
    let mut tls = acceptor.accept(tcp).await.unwrap();
    let frame = read_frame(&mut tls).await;
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    check_frame(&frame, &local_lines(&log)[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_server_drops_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = AuditConfig::new(dir.path(), "gw");
    cfg.durability = Durability::Strict;
    let mut s = SyslogConfig::new(server.local_addr().unwrap().to_string());
    s.hostname = Some("gw-host".into());
    s.reconnect = Duration::from_millis(10);
    cfg.syslog = Some(s);
    let (h, task) = start(cfg, clock("2026-11-23T00:00:00Z"));
    h.append(access(1, Decision::Allow)).await.unwrap();
    let (mut conn, _) = server.accept().await.unwrap();
    read_frame(&mut conn).await;
    drop(conn);
    // TCP gives no acknowledgement: a record written into a connection the server has
    // just closed can be lost in transit (the local trail still has it). Keep appending
    // until a new connection is made and a record arrives on it.
    let h2 = h.clone();
    let feeder = tokio::spawn(async move {
        for i in 2..2000 {
            if h2.append(access(i, Decision::Allow)).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    });
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), server.accept())
        .await
        .unwrap()
        .unwrap();
    let frame = read_frame(&mut conn).await;
    assert!(
        std::str::from_utf8(&frame)
            .unwrap()
            .contains("\"kind\":\"access\"")
    );
    feeder.abort();
    let _ = feeder.await;
    h.shutdown(None).await.unwrap();
    task.await.unwrap().unwrap();
    assert!(h.metrics().syslog_errors >= 1);
    assert!(sekisho_audit::verify(dir.path()).unwrap().is_ok());
}

/// The gateway drops its runtime right after the trail closes. The syslog copy of the last
/// records (here the stop record) must have gone out by then, not be cancelled in the queue.
#[test]
fn the_stop_record_reaches_syslog_before_the_trail_reports_closed() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    // Everything the forwarder sends, until it closes the connection.
    // (Bounded waits: a forwarder cancelled before it connected never arrives.)
    server.set_nonblocking(true).unwrap();
    let received = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut conn = loop {
            match server.accept() {
                Ok((c, _)) => break c,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return String::new(),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut all = Vec::new();
        let _ = conn.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cfg = AuditConfig::new(dir.path(), "gw");
        cfg.syslog = Some(SyslogConfig::new(addr.to_string()));
        let (h, task) = start(cfg, clock("2026-11-23T00:00:00Z"));
        h.append(access(1, Decision::Allow)).await.unwrap();
        h.shutdown(Some(sekisho_audit::Event::Stop(
            sekisho_audit::record::StopEvent {
                reason: "test".into(),
            },
        )))
        .await
        .unwrap();
        task.await.unwrap().unwrap();
    });
    drop(rt);
    let text = received.join().unwrap();
    assert!(text.contains(r#""kind":"access""#), "{text}");
    assert!(text.contains(r#""kind":"stop""#), "{text}");
}
