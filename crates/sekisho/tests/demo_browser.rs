//! End to end in a real browser: `sekisho demo` as a child process, driven by headless
//! Chromium (the Debian package) over the DevTools protocol.
//!
//! - with the **managed PC's** certificate, 田中 (staff, MFA) signs in at the development
//!   OpenID provider and the LGWAN-side portal appears; whoami shows her and the device; she
//!   signs out (gateway and IdP) and the portal asks for a sign-in again;
//! - with the **BYOD phone's** certificate the same sign-in ends on the Japanese deny page
//!   with the policy's reason and a request ID, while the internet-side groupware admits her;
//! - with the **revoked** certificate the portal says a registered device is needed;
//! - Ctrl-C (SIGINT) stops the demo cleanly and the audit trail verifies.
//!
//! How Chromium presents a client certificate without a dialog, found by trying: each browser
//! gets its own `HOME` whose NSS database (`$HOME/.pki/nssdb`, made with `certutil` and
//! `pk12util` from Debian's `libnss3-tools`) trusts the demo's server CA and holds one device
//! certificate, and a fresh profile whose `Default/Preferences` carries the content setting
//! `profile.content_settings.exceptions.auto_select_certificate` for the demo's origins (the
//! per-profile form of the `AutoSelectCertificateForUrls` policy; the `--policy` switch is
//! ignored by this build and `/etc/chromium/policies` would need root). Without it headless
//! Chromium waits forever for a certificate choice. `intl.accept_languages` is `ja`.
//!
//! Screenshots are written to `target/tmp/demo-browser/` (the path is printed).
//!
//! Without `/usr/bin/chromium` (or `certutil`/`pk12util`) the test prints why and passes —
//! except in CI (`CI=true`), where a missing browser is a failure (`.ci/run` installs it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(30);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn missing_tools() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push("/usr/bin/chromium (apt-get install chromium)");
    }
    for tool in ["certutil", "pk12util"] {
        let found = Command::new(tool)
            .arg("-H")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            missing.push(if tool == "certutil" {
                "certutil (apt-get install libnss3-tools)"
            } else {
                "pk12util (apt-get install libnss3-tools)"
            });
        }
    }
    missing
}

/// `sekisho demo` as a child process.
struct Demo {
    child: Child,
    info: Value,
    dir: PathBuf,
}

impl Demo {
    fn start(dir: &Path) -> Demo {
        let log = std::fs::File::create(dir.join("demo.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sekisho"))
            .args(["demo", "--state-dir"])
            .arg(dir.join("state"))
            .args([
                "--lgwan-port",
                "0",
                "--internet-port",
                "0",
                "--admin-port",
                "0",
            ])
            .env("SEKISHO_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start sekisho demo");
        let mut demo = Demo {
            child,
            info: Value::Null,
            dir: dir.join("state"),
        };
        let json = demo.dir.join("demo.json");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(text) = std::fs::read_to_string(&json)
                && let Ok(v) = serde_json::from_str::<Value>(&text)
            {
                demo.info = v;
                break;
            }
            if let Ok(Some(status)) = demo.child.try_wait() {
                panic!(
                    "sekisho demo exited ({status}) before writing demo.json:\n{}",
                    std::fs::read_to_string(dir.join("demo.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "demo.json did not appear");
            std::thread::sleep(Duration::from_millis(100));
        }
        demo
    }

    fn s(&self, path: &[&str]) -> String {
        let mut v = &self.info;
        for p in path {
            v = &v[*p];
        }
        v.as_str()
            .unwrap_or_else(|| panic!("demo.json has no {path:?}"))
            .to_owned()
    }

    /// Ctrl-C, as a person would stop it; returns whether it exited successfully.
    fn interrupt(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One headless Chromium with one device certificate, driven over CDP.
struct Browser {
    child: Child,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: String,
    next_id: u64,
    shots: PathBuf,
    name: String,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Browser {
    async fn launch(work: &Path, name: &str, demo: &Demo, device: &str, shots: &Path) -> Browser {
        let base = work.join(name);
        let home = base.join("home");
        let nssdb = home.join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).unwrap();
        let db = format!("sql:{}", nssdb.display());
        run(Command::new("certutil").args(["-N", "--empty-password", "-d", &db]));
        run(Command::new("certutil")
            .args([
                "-A",
                "-n",
                "Sekisho demo server CA",
                "-t",
                "C,,",
                "-d",
                &db,
                "-i",
            ])
            .arg(demo.s(&["ca", "server"])));
        run(Command::new("pk12util")
            .args(["-d", &db, "-i"])
            .arg(demo.s(&["devices", device, "p12"]))
            .arg("-W")
            .arg(demo.s(&["devices", device, "p12_password"])));

        // The per-profile form of the AutoSelectCertificateForUrls policy, and Japanese first.
        let profile = base.join("profile");
        std::fs::create_dir_all(profile.join("Default")).unwrap();
        let mut exceptions = serde_json::Map::new();
        for url in ["portal", "groupware"] {
            let u = demo.s(&["urls", url]);
            let origin = u.trim_end_matches('/');
            exceptions.insert(
                format!("{origin},*"),
                json!({ "last_modified": "13300000000000000", "setting": { "filters": [{}] } }),
            );
        }
        let prefs = json!({
            "intl": { "accept_languages": "ja,en-US,en" },
            "profile": { "content_settings": { "exceptions": { "auto_select_certificate": exceptions } } },
        });
        std::fs::write(profile.join("Default/Preferences"), prefs.to_string()).unwrap();

        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--lang=ja",
                "--window-size=1000,1300",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .env("HOME", &home)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().unwrap();
        let log_path = base.join("chromium.log");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Write as _;
            let mut log = std::fs::File::create(log_path).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        let ws_url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed no DevTools URL");
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .expect("connect to DevTools");
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            shots: shots.to_owned(),
            name: name.to_owned(),
        };
        let target = b
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = b
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b
    }

    async fn try_call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| format!("{method}: no answer"))?;
            let Some(Ok(Message::Text(text))) = next else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    return Err(format!("{method}: {err}"));
                }
                return Ok(v["result"].clone());
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Evaluates JavaScript in the page; `None` while the page is between documents.
    async fn eval(&mut self, js: &str) -> Option<Value> {
        let r = self
            .try_call(
                "Runtime.evaluate",
                json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
            )
            .await
            .ok()?;
        if r.get("exceptionDetails").is_some() {
            return None;
        }
        Some(r["result"]["value"].clone())
    }

    async fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url })).await;
        assert!(
            r.get("errorText").is_none(),
            "{}: navigating to {url}: {r}",
            self.name
        );
    }

    /// Waits until a fully loaded document's URL starts with `prefix`; returns the URL.
    async fn wait_for(&mut self, prefix: &str) -> String {
        self.wait_for_any(&[prefix]).await
    }

    /// Waits until a fully loaded document's URL starts with one of `prefixes`.
    async fn wait_for_any(&mut self, prefixes: &[&str]) -> String {
        let prefix = prefixes.join(" or ");
        let deadline = Instant::now() + SIGN_IN_TIMEOUT;
        let mut last = String::new();
        loop {
            if let Some(v) = self
                .eval("[location.href, document.readyState].join(' ')")
                .await
                && let Some(s) = v.as_str()
            {
                last = s.to_owned();
                if let Some(href) = s.strip_suffix(" complete")
                    && prefixes.iter().any(|p| href.starts_with(p))
                {
                    return href.to_owned();
                }
            }
            if Instant::now() > deadline {
                self.screenshot("timeout").await;
                let text = self.text().await;
                panic!(
                    "{}: waited for {prefix}, the browser is at {last}\n{text}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&mut self) -> String {
        self.eval("document.body ? document.body.innerText : ''")
            .await
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    async fn screenshot(&mut self, step: &str) -> PathBuf {
        use base64::Engine;
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        let path = self.shots.join(format!("{}-{step}.png", self.name));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// From the development IdP's login form: choose the user, type the password, tick MFA.
    async fn sign_in_at_idp(&mut self, issuer: &str, user: &str, password: &str, mfa: bool) {
        self.wait_for(issuer).await;
        let js = format!(
            "(() => {{ document.getElementById('user-{user}').checked = true; \
             document.getElementById('password').value = '{password}'; \
             document.getElementById('mfa').checked = {mfa}; \
             document.querySelector('form button[type=submit]').click(); return true; }})()"
        );
        assert_eq!(
            self.eval(&js).await,
            Some(json!(true)),
            "{}: the login form",
            self.name
        );
    }

    /// Opens `url`; when the gateway sends the browser to the IdP, signs in there. Returns
    /// whether a sign-in was needed. (A request the policy refuses whoever asks — such as
    /// one from a personal device on the LGWAN side — is refused before any sign-in.)
    async fn open(&mut self, url: &str, issuer: &str, user: &str, password: &str) -> bool {
        let origin = url.trim_end_matches('/');
        self.navigate(url).await;
        let at = self.wait_for_any(&[issuer, origin]).await;
        if !at.starts_with(issuer) {
            return false;
        }
        self.sign_in_at_idp(issuer, user, password, true).await;
        self.wait_for(origin).await;
        true
    }

    async fn sign_out(&mut self, origin: &str) {
        self.navigate(&format!("{origin}/.sekisho/logout")).await;
        self.wait_for(&format!("{origin}/.sekisho/logout")).await;
        assert!(self.text().await.contains("サインアウト"));
        self.eval("document.querySelector('form button[type=submit]').click(), true")
            .await;
        self.wait_for(&format!("{origin}/.sekisho/logged-out"))
            .await;
    }

    async fn close(mut self) {
        let _ = self.try_call("Browser.close", json!({})).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn assert_contains(text: &str, needle: &str, what: &str) {
    assert!(
        text.contains(needle),
        "{what}: expected {needle:?} in the page:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_sign_in_with_managed_byod_and_revoked_device_certificates() {
    let missing = missing_tools();
    if !missing.is_empty() {
        let msg = format!(
            "demo_browser: needs {} — browser test not run",
            missing.join(", ")
        );
        if in_ci() {
            panic!("{msg} (CI=true: .ci/run must install them)");
        }
        eprintln!("SKIPPED {msg}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-browser");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let mut demo = Demo::start(work.path());
    let portal = demo.s(&["urls", "portal"]);
    let portal_origin = portal.trim_end_matches('/').to_owned();
    let groupware = demo.s(&["urls", "groupware"]);
    let groupware_origin = groupware.trim_end_matches('/').to_owned();
    let issuer = demo.s(&["idp", "issuer"]);
    let tanaka = demo.info["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "tanaka")
        .expect("tanaka in demo.json")
        .clone();
    let password = tanaka["password"].as_str().unwrap().to_owned();

    // 1. The managed PC: sign in → the LGWAN-side portal; whoami; sign out.
    let mut b = Browser::launch(work.path(), "1-managed", &demo, "managed", &shots).await;
    b.navigate(&portal).await;
    b.wait_for(&issuer).await;
    assert_contains(&b.text().await, "開発用", "the development IdP's banner");
    b.screenshot("01-idp-login").await;
    b.sign_in_at_idp(&issuer, "tanaka", &password, true).await;
    b.wait_for(&portal_origin).await;
    let text = b.text().await;
    assert_contains(&text, "庁内ポータル", "the LGWAN-side portal");
    assert_contains(&text, "tanaka", "the portal shows who Sekisho passed on");
    b.screenshot("02-portal").await;
    b.navigate(&format!("{portal_origin}/.sekisho/whoami"))
        .await;
    b.wait_for(&format!("{portal_origin}/.sekisho/whoami"))
        .await;
    let text = b.text().await;
    assert_contains(&text, "あなたの接続情報", "whoami (ja)");
    assert_contains(
        &text,
        &demo.s(&["devices", "managed", "id"]),
        "whoami device",
    );
    assert_contains(&text, "staff", "whoami groups");
    b.screenshot("03-whoami").await;
    b.sign_out(&portal_origin).await;
    assert_contains(&b.text().await, "サインアウトしました", "signed out");
    b.screenshot("04-signed-out").await;
    // Signed out at the gateway and at the IdP: the portal asks for a sign-in again.
    b.navigate(&portal).await;
    b.wait_for(&issuer).await;
    b.close().await;

    // 2. The BYOD phone: the same user is refused on the LGWAN side, with the reason;
    //    the internet-side groupware admits her.
    let mut b = Browser::launch(work.path(), "2-byod", &demo, "byod", &shots).await;
    let signed_in = b.open(&portal, &issuer, "tanaka", &password).await;
    let text = b.text().await;
    assert_contains(&text, "アクセスが許可されていません", "the deny page (ja)");
    assert_contains(&text, "個人所有の端末", "the policy's reason");
    assert_contains(&text, "リクエスト ID", "the request ID for the help desk");
    assert_eq!(
        b.eval("document.documentElement.lang").await,
        Some(json!("ja"))
    );
    assert!(!text.contains("庁内ポータル"), "{text}");
    b.screenshot("05-deny").await;
    // The same page in English when the browser prefers it.
    b.call("Network.enable", json!({})).await;
    b.call(
        "Network.setExtraHTTPHeaders",
        json!({ "headers": { "Accept-Language": "en-US,en;q=0.9" } }),
    )
    .await;
    b.navigate(&portal).await;
    b.wait_for(&portal_origin).await;
    let text = b.text().await;
    assert_contains(&text, "Access is not permitted", "the deny page (en)");
    assert_contains(&text, "BYOD", "the policy's reason (en)");
    assert_eq!(
        b.eval("document.documentElement.lang").await,
        Some(json!("en"))
    );
    b.screenshot("05-deny-en").await;
    b.call("Network.setExtraHTTPHeaders", json!({ "headers": {} }))
        .await;
    b.open(&groupware, &issuer, "tanaka", &password).await;
    assert_contains(
        &b.text().await,
        "グループウェア",
        "the internet-side groupware",
    );
    b.screenshot("06-groupware").await;
    eprintln!("demo_browser: BYOD on the LGWAN side refused (sign-in asked first: {signed_in})");
    b.sign_out(&groupware_origin).await;
    b.close().await;

    // 3. The revoked certificate: a registered device is required.
    let mut b = Browser::launch(work.path(), "3-revoked", &demo, "revoked", &shots).await;
    b.open(&portal, &issuer, "tanaka", &password).await;
    let text = b.text().await;
    assert_contains(&text, "登録された端末が必要です", "device required (ja)");
    assert_contains(
        &text,
        "端末証明書が無効です",
        "the reason: certificate invalid",
    );
    b.screenshot("07-revoked").await;
    b.close().await;

    // 4. Ctrl-C: drained, the stop record written, the trail verifies.
    let audit = PathBuf::from(demo.s(&["audit_dir"]));
    assert!(demo.interrupt(), "sekisho demo did not stop cleanly");
    let verify = Command::new(env!("CARGO_BIN_EXE_sekisho"))
        .args(["audit", "verify"])
        .arg(&audit)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let mut trail = String::new();
    for e in std::fs::read_dir(&audit).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            trail.push_str(&std::fs::read_to_string(p).unwrap());
        }
    }
    assert!(trail.contains("\"kind\":\"stop\""), "no stop record");
    assert!(
        trail.contains(&demo.s(&["devices", "byod", "id"])),
        "the BYOD denial names the device in the audit trail"
    );
    eprintln!("demo_browser: screenshots in {}", shots.display());
}
