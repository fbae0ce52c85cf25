//! Reload: a valid new configuration is swapped in atomically without failing a single
//! in-flight or new request; an invalid one is refused, counted, and the old one keeps
//! serving. Shutdown drains.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;

fn route_to(addr: std::net::SocketAddr) -> String {
    format!(
        r#"routes:
  portal:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{addr}]
    access: public
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_under_load_fails_no_request() {
    let old = echo("old", "127.0.10.60:0").await;
    let new = echo("new", "127.0.10.61:0").await;
    let gw = Arc::new(gateway(&route_to(old.addr)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            // Half the workers keep connections alive across the reload, half use HTTP/2.
            let c = if w % 2 == 0 {
                gw.client("lgwan-https")
            } else {
                gw.client_h2("lgwan-https")
            };
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("worker {w} request {i}");
                match c
                    .post(gw.url("lgwan-https", "/load"))
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
        }));
    }
    // Let load build up, reload several times alternating upstreams, then stop.
    let wait_for = |n: usize| {
        let ok = ok.clone();
        async move {
            while ok.load(Ordering::Relaxed) < n {
                tokio::task::yield_now().await;
            }
        }
    };
    wait_for(50).await;
    for round in 0..6 {
        let target = if round % 2 == 0 { new.addr } else { old.addr };
        gw.rewrite_config(&route_to(target));
        gw.running.reload().expect("valid configuration reloads");
        let seen = ok.load(Ordering::Relaxed);
        wait_for(seen + 40).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) >= 290);
    assert!(
        new.count() > 0 && old.count() > 0,
        "both configurations served: old={} new={}",
        old.count(),
        new.count()
    );
    let m = gw.metrics().await;
    assert!(
        m.contains(r#"sekisho_reloads_total{result="success"} 6"#),
        "{m}"
    );
}

#[tokio::test]
async fn an_invalid_reload_is_refused_and_the_old_configuration_keeps_serving() {
    let up = echo("portal", "127.0.10.62:0").await;
    let gw = gateway(&route_to(up.addr)).await;
    let version_before = gw.running.gateway.snapshot.load().config.version.clone();
    // A typo and a zone violation: refused with both errors named.
    gw.rewrite_config(&format!(
        r#"routes:
  portal:
    zone: lgwan
    hostz: [{SITE}]
    upstreams: [http://127.0.20.9:80]
    access: public
"#
    ));
    let err = gw
        .running
        .reload()
        .expect_err("invalid configuration must be refused");
    let text = err.to_string();
    assert!(text.contains("unknown key `hostz`"), "{text}");
    assert!(
        text.contains("upstream 127.0.20.9 belongs to zone `internet`"),
        "{text}"
    );
    // Still serving the old configuration.
    let r = gw
        .client("lgwan-https")
        .get(gw.url("lgwan-https", "/still"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        gw.running.gateway.snapshot.load().config.version,
        version_before
    );
    let m = gw.metrics().await;
    assert!(
        m.contains(r#"sekisho_reloads_total{result="failure"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(&format!(r#"config_version="{version_before}""#)),
        "{m}"
    );

    // Changing a listener needs a restart: refused too.
    std::fs::write(
        &gw.config_path,
        full_yaml(&gw.pki, &route_to(up.addr)).replace("lgwan-https:", "lgwan-https2:"),
    )
    .unwrap();
    let err = gw
        .running
        .reload()
        .expect_err("listener changes need a restart");
    assert!(err.to_string().contains("needs a restart"), "{err}");
}

/// The gateway's file watcher, reporting each reload it would start on the returned channel.
/// Dropping the watcher stops watching.
fn watch(
    gw: &Gw,
) -> (
    sekisho_gateway::server::FileWatch,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = sekisho_gateway::server::watch_files(&gw.running, move || {
        let _ = tx.send(());
    })
    .unwrap();
    (watcher, rx)
}

async fn noticed(rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("the watcher noticed the change")
        .unwrap();
}

#[tokio::test]
async fn file_changes_trigger_a_reload() {
    let a = echo("a", "127.0.10.63:0").await;
    let b = echo("b", "127.0.10.64:0").await;
    let gw = Arc::new(gateway(&route_to(a.addr)).await);
    let (_watcher, mut rx) = watch(&gw);
    gw.rewrite_config(&route_to(b.addr));
    noticed(&mut rx).await;
    gw.running.reload().unwrap();
    let r = gw
        .client("lgwan-https")
        .get(gw.url("lgwan-https", "/"))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().starts_with("upstream b saw"));
}

#[tokio::test]
async fn reading_the_watched_files_does_not_trigger_a_reload() {
    let a = echo("a", "127.0.10.66:0").await;
    let b = echo("b", "127.0.10.67:0").await;
    let gw = Arc::new(gateway(&route_to(a.addr)).await);
    let (_watcher, mut rx) = watch(&gw);
    // What a backup job, an operator's `cat` or a reload itself does: open and read every
    // watched file. inotify reports each open; none of them may start a reload, or the
    // reload (which reads the files again) would repeat itself for ever.
    let files = gw.running.watched_files();
    assert!(
        files.len() >= 2,
        "config and certificates are watched: {files:?}"
    );
    for f in &files {
        std::fs::read(f).unwrap();
    }
    gw.running.reload().unwrap();
    // No clock can be injected into the file watcher's debouncer (300 ms): wait well past it.
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(1500), rx.recv()).await;
    assert!(quiet.is_err(), "reading the files triggered a reload");
    // The watcher is alive: a real change is still noticed.
    gw.rewrite_config(&route_to(b.addr));
    noticed(&mut rx).await;
}

/// What `serve` compares around a reload to catch changes its watchers may have missed:
/// reading changes nothing; a file replaced by one with the same size and modification time
/// (`cp -p` then `mv`) does.
#[tokio::test]
async fn the_watched_state_changes_when_a_file_is_replaced_not_when_it_is_read() {
    let a = echo("a", "127.0.10.68:0").await;
    let gw = gateway(&route_to(a.addr)).await;
    let (watcher, _rx) = watch(&gw);
    let before = watcher.state();
    assert!(
        before.iter().all(Option::is_some),
        "every watched path exists"
    );
    for f in gw.running.watched_files() {
        std::fs::read(&f).unwrap();
    }
    assert_eq!(watcher.state(), before);
    let config = &gw.config_path;
    let copy = config.with_extension("copy");
    std::fs::copy(config, &copy).unwrap();
    let f = std::fs::File::options().write(true).open(&copy).unwrap();
    f.set_modified(std::fs::metadata(config).unwrap().modified().unwrap())
        .unwrap();
    drop(f);
    std::fs::rename(&copy, config).unwrap();
    assert_ne!(watcher.state(), before, "same content and mtime, new file");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let up = echo("portal", "127.0.10.65:0").await;
    let gw = gateway(&route_to(up.addr)).await;
    let c = gw.client("lgwan-https");
    // A large download in flight while shutdown starts.
    let resp = c
        .get(gw.url("lgwan-https", "/dl?size=8388608"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let Gw { running, pki, .. } = gw;
    let admin = running.admin;
    let gateway = running.gateway.clone();
    let shutdown = tokio::spawn(running.shutdown());
    let body = resp
        .bytes()
        .await
        .expect("the in-flight download completes");
    assert_eq!(body.len(), 8 * 1024 * 1024);
    shutdown.await.unwrap();
    assert!(!gateway.is_ready());
    assert!(
        reqwest::get(format!("http://{admin}/healthz"))
            .await
            .is_err(),
        "admin closed after shutdown"
    );
    drop(pki);
}
