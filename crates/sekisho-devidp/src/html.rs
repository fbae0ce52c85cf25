//! Accessible HTML pages: Japanese first, English alongside (`lang` on each part), headings,
//! labels, high contrast, no external resources, and the development-only banner.

use std::fmt::Write;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use hyper::Response;

use crate::serve::Resp;
use crate::users::DemoUser;

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "\
body{font-family:system-ui,'Hiragino Sans','Noto Sans JP',sans-serif;margin:0;color:#1a1a1a;background:#fff;line-height:1.6}\
.banner{background:#8b0000;color:#fff;padding:.75rem 1rem;font-size:1.25rem;font-weight:bold;text-align:center;border-bottom:4px solid #000}\
main{max-width:40rem;margin:1.5rem auto;padding:0 1rem}\
h1{font-size:1.6rem}h2{font-size:1.2rem}\
.en{color:#333;font-size:.95em}\
fieldset{border:1px solid #555;padding:.75rem;margin:0 0 1rem}\
label{display:inline-block;margin:.25rem 0}\
.choice{display:flex;gap:.6rem;align-items:flex-start;margin:.5rem 0}\
.choice input{margin-top:.35rem;width:1.2rem;height:1.2rem;flex:none}\
.choice label{margin:0}.small{font-size:.9em;color:#333}\
.zone{color:#fff;padding:.6rem 1rem;font-weight:bold}.zone-lgwan{background:#1b5e20}.zone-inet{background:#0d47a1}\
input[type=password]{font-size:1.1rem;padding:.4rem;width:100%;max-width:24rem;border:2px solid #333}\
button{font-size:1.1rem;padding:.5rem 1.5rem;background:#003d7a;color:#fff;border:0;cursor:pointer}\
button:focus,input:focus{outline:3px solid #ff8c00;outline-offset:2px}\
.alert{border-left:6px solid #8b0000;background:#fdecec;padding:.5rem 1rem}\
.note{border-left:6px solid #003d7a;background:#eef4fb;padding:.5rem 1rem}\
code{background:#eee;padding:0 .2rem}\
table{border-collapse:collapse}th,td{border:1px solid #555;padding:.3rem .5rem;text-align:left;vertical-align:top}\
td code{word-break:break-all}";

/// A full page: `<html lang="ja">`, the banner (when `dev_banner`), and `body_html` inside
/// `<main>`.
pub(crate) fn page(title: &str, banner: Option<&str>, body_html: &str) -> String {
    let banner = banner
        .map(|b| format!("<div class=\"banner\" role=\"note\">{b}</div>"))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body>{banner}<main>{body_html}</main></body></html>\n",
        esc(title)
    )
}

pub(crate) const DEV_BANNER: &str = "開発用 — 本番では使用できません \
<span lang=\"en\">DEVELOPMENT ONLY — not a production identity provider</span>";

/// An HTML response with the headers every page gets.
pub(crate) fn respond(status: StatusCode, html: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(html)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // No form-action: Chromium applies it to the redirect after the login POST, and that
    // redirect goes to the relying party.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// An error page of the IdP (bad client, unregistered redirect URI …): never redirects.
pub(crate) fn error_page(status: StatusCode, ja: &str, en: &str) -> Resp {
    let body = format!(
        "<h1>サインインできません <span lang=\"en\" class=\"en\">Cannot sign in</span></h1>\
<p class=\"alert\" role=\"alert\">{}<br><span lang=\"en\" class=\"en\">{}</span></p>\
<p>リンク元のサービスの管理者に連絡してください。<br>\
<span lang=\"en\" class=\"en\">Contact the administrator of the service that sent you here.</span></p>",
        esc(ja),
        esc(en)
    );
    respond(
        status,
        page("エラー / Error — Sekisho DevIdP", Some(DEV_BANNER), &body),
    )
}

pub(crate) struct LoginForm<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) users: &'a [DemoUser],
    pub(crate) selected: Option<&'a str>,
    pub(crate) mfa_requested: bool,
    pub(crate) reauth: bool,
    pub(crate) error: Option<(&'a str, &'a str)>,
    pub(crate) show_password_hints: bool,
}

pub(crate) fn login_page(f: &LoginForm<'_>) -> String {
    let mut b = String::new();
    b.push_str(
        "<h1>サインイン <span lang=\"en\" class=\"en\">Sign in</span></h1>\
<p class=\"note\">これは Sekisho の開発用 OpenID プロバイダーです。デモ用のユーザーだけが使えます。<br>\
<span lang=\"en\" class=\"en\">This is Sekisho's development OpenID provider. Only demo users exist.</span></p>",
    );
    let _ = write!(
        b,
        "<p>サービス <code>{}</code> がサインインを求めています。<br>\
<span lang=\"en\" class=\"en\">The service <code>{}</code> asks you to sign in.</span></p>",
        esc(f.client_id),
        esc(f.client_id)
    );
    if f.reauth {
        b.push_str(
            "<p class=\"note\">もう一度サインインしてください。<br>\
<span lang=\"en\" class=\"en\">Please sign in again.</span></p>",
        );
    }
    if f.mfa_requested {
        b.push_str(
            "<p class=\"note\">このサービスは多要素認証（MFA）を求めています。\
MFA を登録済みのユーザーは「ワンタイムパスワード」にチェックしてください。<br>\
<span lang=\"en\" class=\"en\">This service asks for multi-factor authentication (MFA). \
Users with MFA: tick “one-time password”.</span></p>",
        );
    }
    if let Some((ja, en)) = f.error {
        let _ = write!(
            b,
            "<p class=\"alert\" role=\"alert\">{}<br><span lang=\"en\" class=\"en\">{}</span></p>",
            esc(ja),
            esc(en)
        );
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/authorize\">\
<input type=\"hidden\" name=\"request\" value=\"{}\">\
<fieldset><legend>ユーザーを選択 <span lang=\"en\" class=\"en\">Choose a user</span></legend>",
        esc(f.request_id)
    );
    let selected = f
        .selected
        .filter(|s| f.users.iter().any(|u| u.username == *s))
        .or(f.users.first().map(|u| u.username.as_str()));
    for u in f.users {
        let id = format!("user-{}", esc(&u.username));
        let checked = if Some(u.username.as_str()) == selected {
            " checked"
        } else {
            ""
        };
        let mfa = if u.mfa {
            "MFA あり <span lang=\"en\">MFA</span>"
        } else {
            "MFA なし <span lang=\"en\">no MFA</span>"
        };
        let hint = if f.show_password_hints {
            format!(
                " · パスワード <span lang=\"en\">password</span>: <code>{}</code>",
                esc(&u.password)
            )
        } else {
            String::new()
        };
        let _ = write!(
            b,
            "<div class=\"choice\"><input type=\"radio\" name=\"username\" id=\"{id}\" value=\"{}\"{checked}>\
<label for=\"{id}\"><strong>{}</strong> (<code>{}</code>) — {}<br>\
<span class=\"small\">グループ <span lang=\"en\">groups</span>: {} · {mfa}{hint}</span></label></div>",
            esc(&u.username),
            esc(&u.name),
            esc(&u.username),
            esc(&u.role),
            esc(&u.groups.join(", ")),
        );
    }
    let _ = write!(
        b,
        "</fieldset>\
<div><label for=\"password\">パスワード <span lang=\"en\" class=\"en\">Password</span></label><br>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required></div>\
<div class=\"choice\"><input type=\"checkbox\" id=\"mfa\" name=\"mfa\" value=\"1\"{}>\
<label for=\"mfa\">ワンタイムパスワードでも認証する（MFA 登録ユーザーのみ・開発用のため入力不要）<br>\
<span lang=\"en\" class=\"en\">Also authenticate with a one-time password (users with MFA only; \
development: no code needed)</span></label></div>\
<button type=\"submit\">サインイン <span lang=\"en\">Sign in</span></button></form>",
        if f.mfa_requested { " checked" } else { "" }
    );
    page(
        "開発用サインイン / Development sign-in — Sekisho DevIdP",
        Some(DEV_BANNER),
        &b,
    )
}

pub(crate) fn signed_out_page() -> String {
    page(
        "サインアウトしました / Signed out — Sekisho DevIdP",
        Some(DEV_BANNER),
        "<h1>サインアウトしました <span lang=\"en\" class=\"en\">You are signed out</span></h1>\
<p>開発用 OpenID プロバイダーのセッションを終了しました。<br>\
<span lang=\"en\" class=\"en\">Your session at the development OpenID provider has ended.</span></p>",
    )
}
