//! The `sekisho` binary as a new user runs it: make development certificates, check the
//! shipped configuration, see precise errors for a broken one, run the shipped policy
//! tests, and serve HTTPS to an upstream until SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sekisho");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A copy of the repository's config/ and policies/ with development certificates, as
/// README's set-up leaves it.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("config"), &dir.path().join("config"));
    copy_dir(&repo().join("policies"), &dir.path().join("policies"));
    let out = Command::new(BIN)
        .args(["certs", "init"])
        .arg(dir.path().join("certs/dev"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn the_shipped_configuration_checks_clean() {
    let dir = workspace();
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(dir.path().join("config/sekisho.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": OK —"), "{stdout}");
}

#[test]
fn a_broken_configuration_is_explained_with_positions_and_hints() {
    let dir = workspace();
    let path = dir.path().join("config/sekisho.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let broken = text
        .replacen(
            "    zone: lgwan\n    hosts: [portal.lgwan.localhost]\n",
            "    zone: lgwn\n    hosts: [portal.lgwan.localhost]\n",
            1,
        )
        .replacen("policy: internet-groupware", "policy: internet-groupwar", 1);
    std::fs::write(&path, broken).unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown zone `lgwn`") && err.contains("did you mean `lgwan`?"),
        "{err}"
    );
    assert!(
        err.contains("unknown policy `internet-groupwar`")
            && err.contains("did you mean `internet-groupware`?"),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: ") && l.contains("sekisho.yaml:")),
        "{err}"
    );
}

#[test]
fn the_shipped_policy_tests_pass() {
    let out = Command::new(BIN)
        .args(["policy", "test"])
        .arg(repo().join("policies"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "{stdout}");
}

#[tokio::test]
async fn serve_proxies_https_and_stops_on_sigterm() {
    serve_and_stop(false).await;
}

/// On one CPU `serve` runs the current-thread scheduler (a different runtime from the
/// multi-CPU case, with the audit writer and file watcher still on their own threads).
#[tokio::test]
async fn serve_on_one_cpu_proxies_https_and_stops_on_sigterm() {
    serve_and_stop(true).await;
}

async fn serve_and_stop(one_cpu: bool) {
    let dir = workspace();
    // An upstream for the public status page, on the internet side.
    let upstream = tokio::net::TcpListener::bind("127.0.20.13:0")
        .await
        .unwrap();
    let up_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = upstream.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nstatus ok").await;
            });
        }
    });
    let free = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (lgwan, internet, admin) = (free(0), free(1), free(2));
    let path = dir.path().join("config/sekisho.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{lgwan}"))
        .replace("127.0.0.1:9443", &format!("127.0.0.1:{internet}"))
        .replace("127.0.0.1:9900", &format!("127.0.0.1:{admin}"))
        .replace("127.0.20.13:8080", &up_addr.to_string());
    std::fs::write(&path, text).unwrap();
    // `taskset` (util-linux) limits the gateway to one CPU.
    let mut cmd = if one_cpu {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let mut child = cmd
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{admin}/readyz"))
            .send()
            .await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        // Waiting for a child process to come up.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "the gateway became ready");
    let ca = std::fs::read(dir.path().join("certs/dev/server-ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .resolve(
            "status.localhost",
            format!("127.0.0.1:{internet}").parse().unwrap(),
        )
        .build()
        .unwrap();
    let r = client
        .get(format!("https://status.localhost:{internet}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "status ok");

    let t = std::time::Instant::now();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Wait off the runtime: the client's connection must stay responsive while the
    // gateway drains it (an unresponsive client holds the drain up to `drain_timeout`).
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "sekisho exited cleanly on SIGTERM: {status}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "drained in {:?}",
        t.elapsed()
    );
}
