//! The `identity:` section: OIDC login, sessions, bearer tokens, upstream identity headers
//! and the signed upstream assertion.
//!
//! Secrets (client secret, cookie keys, assertion key) are read from files named here,
//! never written inline, so the configuration can be shown, diffed and committed.

use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use http::HeaderName;
use sekisho_identity::{
    BearerConfig, ClaimsMapping, CookieKey, CookieKeyRing, IdentityConfig, OidcConfig, Secret,
    SessionConfig,
};
use sekisho_yaml::{Decoder, Kind, Node, Path};

/// Everything the gateway needs to build its identity service.
pub struct IdentitySettings {
    pub config: IdentityConfig,
    /// Cookie keys, newest first: `(id, key material)`.
    pub cookie_keys: Vec<(String, Vec<u8>)>,
    pub user_header: Option<HeaderName>,
    pub email_header: Option<HeaderName>,
    pub groups_header: Option<HeaderName>,
    pub assertion: AssertionSettings,
    /// The canonical text of the section minus the key files' contents: a reload may change
    /// cookie keys, but a change here needs a restart (sessions and logins in flight live in
    /// the running identity service).
    pub fingerprint: String,
    /// Secret files to watch (cookie keys rotate on reload).
    pub files: Vec<PathBuf>,
}

impl std::fmt::Debug for IdentitySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySettings")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

pub struct AssertionSettings {
    pub header: Option<HeaderName>,
    /// PEM of the EC P-256 signing key; `None`: a key is generated at start (single replica).
    pub key_pem: Option<String>,
    pub lifetime: Duration,
    /// How long one assertion is reused for the same user, device, route and policy version
    /// (default: half the lifetime); zero: a fresh assertion, with the request ID, per request.
    pub reuse: Duration,
    pub issuer: String,
    /// Public JWKs of earlier keys, still published so upstreams can verify assertions
    /// signed before a key rotation.
    pub retired_public_keys: Vec<serde_json::Value>,
}

impl IdentitySettings {
    pub fn key_ring(&self) -> Result<CookieKeyRing, String> {
        if self.cookie_keys.is_empty() && self.config.oidc.is_none() {
            // Bearer tokens only: no browser sessions are ever issued, so the ring only has
            // to exist. (With `oidc`, the loader already requires a key file.)
            return CookieKeyRing::new(vec![CookieKey::generate("unused")])
                .map_err(|e| e.to_string());
        }
        let keys = self
            .cookie_keys
            .iter()
            .map(|(id, k)| CookieKey::new(id.clone(), k).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        CookieKeyRing::new(keys).map_err(|e| e.to_string())
    }
}

/// A canonical text of a YAML subtree (no positions), for "did this section change?".
pub fn canonical_text(node: &Node) -> String {
    let mut s = String::new();
    canonical(node, &mut s);
    s
}

fn canonical(node: &Node, out: &mut String) {
    match &node.kind {
        Kind::Null => out.push('~'),
        Kind::Bool(b) => out.push_str(&b.to_string()),
        Kind::Int(i) => out.push_str(&i.to_string()),
        Kind::Float(f) => out.push_str(&f.to_string()),
        Kind::Str(s) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        Kind::Seq(items) => {
            out.push('[');
            for i in items {
                canonical(i, out);
                out.push(',');
            }
            out.push(']');
        }
        Kind::Map(entries) => {
            out.push('{');
            for (k, v) in entries {
                canonical(k, out);
                out.push(':');
                canonical(v, out);
                out.push(',');
            }
            out.push('}');
        }
    }
}

fn read_secret(d: &mut Decoder, n: &Node, p: &Path, base: &FsPath) -> Option<(PathBuf, String)> {
    let s = d.nonempty_string(n, p)?;
    let path = base.join(&s);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if let Ok(meta) = std::fs::metadata(&path)
                    && meta.permissions().mode() & 0o077 != 0
                {
                    d.warning(
                        n,
                        p,
                        format!(
                            "secret file `{}` is readable by other users",
                            path.display()
                        ),
                        Some(format!("chmod 600 {}", path.display())),
                    );
                }
            }
            Some((path, text))
        }
        Err(e) => {
            d.error(
                n,
                p,
                format!("cannot read secret file `{}`: {e}", path.display()),
                Some("paths are relative to the configuration file's directory".into()),
            );
            None
        }
    }
}

fn header_name(d: &mut Decoder, n: &Node, p: &Path) -> Option<HeaderName> {
    let s = d.nonempty_string(n, p)?;
    match HeaderName::from_bytes(s.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            d.error(n, p, format!("`{s}` is not a header name"), None);
            None
        }
    }
}

fn url(d: &mut Decoder, n: &Node, p: &Path) -> Option<url::Url> {
    let s = d.nonempty_string(n, p)?;
    match url::Url::parse(&s) {
        Ok(u)
            if u.scheme() == "https"
                || (u.scheme() == "http"
                    && u.host_str()
                        .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]")) =>
        {
            Some(u)
        }
        Ok(_) => {
            d.error(
                n,
                p,
                format!("`{s}` must be an https URL"),
                Some(
                    "plain http is accepted only for a provider on this machine (127.0.0.1)".into(),
                ),
            );
            None
        }
        Err(e) => {
            d.error(n, p, format!("`{s}` is not a URL: {e}"), None);
            None
        }
    }
}

fn claims_mapping(d: &mut Decoder, n: Option<&Node>, p: &Path) -> Option<ClaimsMapping> {
    let mut m = ClaimsMapping::default();
    let Some(n) = n else { return Some(m) };
    let view = d.map(
        n,
        p,
        &[
            "subject",
            "email",
            "name",
            "groups",
            "group_names",
            "relevant_groups",
            "keep_claims",
        ],
    )?;
    for (key, slot) in [
        ("subject", &mut m.subject),
        ("email", &mut m.email),
        ("name", &mut m.name),
        ("groups", &mut m.groups),
    ] {
        if let Some(v) = view.get(key) {
            *slot = d.nonempty_string(v, &p.key(key))?;
        }
    }
    if let Some(v) = view.get("group_names") {
        for (guid, _k, name) in d.named_entries(v, &p.key("group_names"))? {
            let name = d.nonempty_string(name, &p.key("group_names").key(guid))?;
            m.group_names.insert(guid.to_owned(), name);
        }
    }
    if let Some(v) = view.get("relevant_groups") {
        m.relevant_groups = Some(d.string_list(v, &p.key("relevant_groups"))?);
    }
    if let Some(v) = view.get("keep_claims") {
        m.keep_claims = d.string_list(v, &p.key("keep_claims"))?;
    }
    Some(m)
}

fn duration_into(
    d: &mut Decoder,
    view: &sekisho_yaml::MapView<'_>,
    p: &Path,
    key: &str,
    slot: &mut Duration,
) -> bool {
    match view.get(key) {
        Some(v) => match d.duration(v, &p.key(key)) {
            Some(x) if !x.is_zero() => {
                *slot = x;
                true
            }
            Some(_) => {
                d.error(v, &p.key(key), "must be longer than zero", None);
                false
            }
            None => false,
        },
        None => true,
    }
}

/// Decodes the `identity:` section.
pub fn decode(d: &mut Decoder, n: &Node, p: &Path, base: &FsPath) -> Option<IdentitySettings> {
    let m = d.map(
        n,
        p,
        &[
            "oidc",
            "session",
            "bearer",
            "claims",
            "upstream_headers",
            "assertion",
        ],
    )?;
    let mut files = Vec::new();
    // The assertion settings are left out: the signer is rebuilt on every reload.
    let mut fingerprint = String::new();
    if let Kind::Map(entries) = &n.kind {
        for (k, v) in entries
            .iter()
            .filter(|(k, _)| k.as_str() != Some("assertion"))
        {
            canonical(k, &mut fingerprint);
            canonical(v, &mut fingerprint);
        }
    }
    let claims = claims_mapping(d, m.get("claims"), &p.key("claims"));

    let oidc = match m.get("oidc") {
        Some(o) => {
            let op = p.key("oidc");
            let om = d.map(
                o,
                &op,
                &[
                    "issuer",
                    "client_id",
                    "client_secret_file",
                    "scopes",
                    "extra_auth_params",
                ],
            )?;
            let issuer = om
                .require(d, "issuer")
                .and_then(|v| url(d, v, &op.key("issuer")));
            let client_id = om
                .require(d, "client_id")
                .and_then(|v| d.nonempty_string(v, &op.key("client_id")));
            let secret = match om.get("client_secret_file") {
                Some(v) => {
                    read_secret(d, v, &op.key("client_secret_file"), base).map(|(path, s)| {
                        files.push(path);
                        Some(Secret::new(s.trim().to_owned()))
                    })
                }
                None => Some(None),
            };
            let scopes = match om.get("scopes") {
                Some(v) => d.string_list(v, &op.key("scopes")),
                None => None,
            };
            let extra = match om.get("extra_auth_params") {
                Some(v) => {
                    let mut out = Vec::new();
                    for (k, _kn, val) in d.named_entries(v, &op.key("extra_auth_params"))? {
                        out.push((
                            k.to_owned(),
                            d.string(val, &op.key("extra_auth_params").key(k))?,
                        ));
                    }
                    Some(out)
                }
                None => Some(Vec::new()),
            };
            let (issuer, client_id, secret, extra) = (issuer?, client_id?, secret?, extra?);
            let mut cfg = OidcConfig::new(issuer, client_id, secret);
            if let Some(s) = scopes {
                if !s.iter().any(|x| x == "openid") {
                    d.error(o, &op.key("scopes"), "`scopes` must include `openid`", None);
                }
                cfg.scopes = s;
            }
            cfg.extra_auth_params = extra;
            if let Some(c) = &claims {
                cfg.claims = c.clone();
            }
            Some(cfg)
        }
        None => None,
    };

    let mut session = SessionConfig::default();
    let mut cookie_keys = Vec::new();
    let sp = p.key("session");
    match m.get("session") {
        Some(s) => {
            let sm = d.map(
                s,
                &sp,
                &[
                    "cookie_keys_file",
                    "absolute_lifetime",
                    "idle_timeout",
                    "refresh_claims_after",
                ],
            )?;
            if let Some(v) = sm.require(d, "cookie_keys_file")
                && let Some((path, text)) = read_secret(d, v, &sp.key("cookie_keys_file"), base)
            {
                files.push(path);
                cookie_keys = parse_cookie_keys(d, v, &sp.key("cookie_keys_file"), &text);
            }
            let mut ok = duration_into(
                d,
                &sm,
                &sp,
                "absolute_lifetime",
                &mut session.absolute_lifetime,
            );
            ok &= duration_into(d, &sm, &sp, "idle_timeout", &mut session.idle_timeout);
            ok &= duration_into(
                d,
                &sm,
                &sp,
                "refresh_claims_after",
                &mut session.claims_max_age,
            );
            if session.claims_max_age > Duration::from_secs(15 * 60) {
                d.warning(
                    s,
                    &sp.key("refresh_claims_after"),
                    "group changes at the IdP reach the gateway only this late",
                    Some("15m or less is recommended".into()),
                );
            }
            if !ok {
                return None;
            }
        }
        None if oidc.is_some() => {
            d.error(n, p, "`oidc` needs a `session` section with `cookie_keys_file`", Some("create one with `sekisho keys cookie > secrets/cookie-keys` and `chmod 600` it".into()));
            return None;
        }
        None => {}
    }

    let bearer = match m.get("bearer") {
        Some(b) => {
            let bp = p.key("bearer");
            let bm = d.map(
                b,
                &bp,
                &["issuer", "audiences", "jwks_uri", "leeway", "require_typ"],
            )?;
            let issuer = bm
                .require(d, "issuer")
                .and_then(|v| d.nonempty_string(v, &bp.key("issuer")));
            let audiences = bm
                .require(d, "audiences")
                .and_then(|v| d.string_list(v, &bp.key("audiences")));
            let jwks_uri = match bm.get("jwks_uri") {
                Some(v) => url(d, v, &bp.key("jwks_uri")).map(Some),
                None => Some(None),
            };
            let require_typ = match bm.get("require_typ") {
                Some(v) => d.boolean(v, &bp.key("require_typ")),
                None => Some(false),
            };
            let (issuer, audiences, jwks_uri, require_typ) =
                (issuer?, audiences?, jwks_uri?, require_typ?);
            if audiences.is_empty() {
                d.error(
                    b,
                    &bp.key("audiences"),
                    "at least one audience is needed",
                    None,
                );
            }
            let mut cfg = BearerConfig::new(issuer, audiences);
            cfg.jwks_uri = jwks_uri;
            cfg.require_typ = require_typ;
            if !duration_into(d, &bm, &bp, "leeway", &mut cfg.leeway) {
                return None;
            }
            if let Some(c) = &claims {
                cfg.claims = c.clone();
            }
            Some(cfg)
        }
        None => None,
    };

    let hp = p.key("upstream_headers");
    let (mut user_header, mut email_header, mut groups_header) = (
        Some(HeaderName::from_static("x-sekisho-user")),
        Some(HeaderName::from_static("x-sekisho-email")),
        Some(HeaderName::from_static("x-sekisho-groups")),
    );
    if let Some(h) = m.get("upstream_headers") {
        let hm = d.map(h, &hp, &["user", "email", "groups"])?;
        for (key, slot) in [
            ("user", &mut user_header),
            ("email", &mut email_header),
            ("groups", &mut groups_header),
        ] {
            if let Some(v) = hm.get(key) {
                *slot = if matches!(v.kind, Kind::Null) {
                    None
                } else {
                    Some(header_name(d, v, &hp.key(key))?)
                };
            }
        }
    }

    const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);
    let ap = p.key("assertion");
    let mut assertion = AssertionSettings {
        header: Some(HeaderName::from_static("x-sekisho-assertion")),
        key_pem: None,
        lifetime: ASSERTION_LIFETIME,
        reuse: ASSERTION_LIFETIME / 2,
        issuer: "sekisho".into(),
        retired_public_keys: Vec::new(),
    };
    if let Some(a) = m.get("assertion") {
        let am = d.map(
            a,
            &ap,
            &[
                "header",
                "key_file",
                "retired_public_keys_file",
                "lifetime",
                "reuse",
                "issuer",
            ],
        )?;
        if let Some(v) = am.get("retired_public_keys_file") {
            let s = d.nonempty_string(v, &ap.key("retired_public_keys_file"))?;
            let path = base.join(&s);
            let keys = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string())
                })
                .and_then(|j| {
                    j.get("keys")
                        .and_then(|k| k.as_array())
                        .cloned()
                        .ok_or_else(|| "no `keys` array".to_owned())
                });
            match keys {
                Ok(k) => {
                    files.push(path);
                    assertion.retired_public_keys = k;
                }
                Err(e) => d.error(
                    v,
                    &ap.key("retired_public_keys_file"),
                    format!("`{}` is not a JWKS file: {e}", path.display()),
                    Some("save the old /.sekisho/jwks.json here before rotating the key".into()),
                ),
            }
        }
        if let Some(v) = am.get("header") {
            assertion.header = if matches!(v.kind, Kind::Null) {
                None
            } else {
                Some(header_name(d, v, &ap.key("header"))?)
            };
        }
        if let Some(v) = am.get("key_file")
            && let Some((path, pem)) = read_secret(d, v, &ap.key("key_file"), base)
        {
            files.push(path);
            assertion.key_pem = Some(pem);
        }
        if let Some(v) = am.get("issuer") {
            assertion.issuer = d.nonempty_string(v, &ap.key("issuer"))?;
        }
        if !duration_into(d, &am, &ap, "lifetime", &mut assertion.lifetime) {
            return None;
        }
        // Left out: half the lifetime, whatever the lifetime is.
        assertion.reuse = assertion.lifetime / 2;
        if let Some(v) = am.get("reuse") {
            let reuse = d.duration(v, &ap.key("reuse"))?;
            if reuse > assertion.lifetime / 2 {
                // A reused assertion must reach the upstream with time to spare for clock
                // differences: at least half its lifetime.
                d.error(
                    v,
                    &ap.key("reuse"),
                    format!(
                        "must be at most half the assertion's `lifetime` ({}): an assertion is sent for up to `reuse` after it is signed, and must arrive with at least half its lifetime left",
                        humantime::format_duration(assertion.lifetime)
                    ),
                    Some("leave it out (half the lifetime), lengthen `lifetime`, or `0s` to sign every request".into()),
                );
                return None;
            }
            assertion.reuse = reuse;
        }
    }

    if oidc.is_none() && bearer.is_none() {
        d.error(
            n,
            p,
            "`identity` needs `oidc` (browser sign-in), `bearer` (API tokens) or both",
            None,
        );
        return None;
    }
    Some(IdentitySettings {
        config: IdentityConfig {
            oidc,
            session,
            bearer,
        },
        cookie_keys,
        user_header,
        email_header,
        groups_header,
        assertion,
        fingerprint,
        files,
    })
}

/// Cookie key file: one key per line, `id:base64`, newest first; `#` starts a comment.
fn parse_cookie_keys(d: &mut Decoder, n: &Node, p: &Path, text: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((id, key)) = line.split_once(':') else {
            d.error(
                n,
                p,
                format!(
                    "line {} of the cookie key file is not `id:base64key`",
                    i + 1
                ),
                None,
            );
            continue;
        };
        match base64::engine::general_purpose::STANDARD.decode(key.trim()) {
            Ok(bytes) if (32..=64).contains(&bytes.len()) => {
                out.push((id.trim().to_owned(), bytes))
            }
            _ => d.error(
                n,
                p,
                format!(
                    "line {} of the cookie key file: the key must be 32 to 64 bytes in base64",
                    i + 1
                ),
                Some("make one with `sekisho keys cookie`".into()),
            ),
        }
    }
    if out.is_empty() {
        d.error(
            n,
            p,
            "the cookie key file holds no key",
            Some("make one with `sekisho keys cookie`".into()),
        );
    }
    out
}
