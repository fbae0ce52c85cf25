//! The one place where gateway errors become HTTP responses.
//!
//! Pages say what happened and what the person can do, in Japanese by default and in
//! English when the browser prefers it, with the request ID for the help desk. They never
//! show internal details (addresses, error chains, configuration): those go to the log
//! under the same request ID.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// Why the gateway answered instead of the upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed or ambiguous request (reason code for metrics and logs).
    BadRequest(&'static str),
    HeaderTooLarge,
    /// The TLS server name and the Host header name different sites.
    Misdirected,
    NotFound,
    /// Access denied by policy or by default deny, with the policy's reasons.
    Forbidden(Vec<&'static sekisho_policy::Reason>),
    /// The policy needs to know who the user is.
    LoginRequired,
    /// The policy needs a valid device certificate.
    DeviceRequired(Vec<&'static sekisho_policy::Reason>),
    /// The policy needs a stronger or fresher sign-in.
    StepUp(Vec<&'static sekisho_policy::Reason>),
    UpstreamUnavailable,
    UpstreamTimeout,
    /// A dependency the gateway needs (audit trail, identity provider) is failing.
    Unavailable,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Forbidden(_) | Refusal::DeviceRequired(_) => StatusCode::FORBIDDEN,
            Refusal::LoginRequired | Refusal::StepUp(_) => StatusCode::UNAUTHORIZED,
            Refusal::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Refusal::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn text(&self) -> (&'static str, &'static str, &'static str, &'static str) {
        // (title ja, advice ja, title en, advice en)
        match self {
            Refusal::BadRequest(_) => (
                "リクエストを処理できません",
                "URL に使えない文字や曖昧な書き方が含まれています。ブックマークやリンクを確認してください。",
                "The request cannot be processed",
                "The address contains characters or forms that are not allowed. Check the bookmark or link.",
            ),
            Refusal::HeaderTooLarge => (
                "リクエストが大きすぎます",
                "ブラウザのこのサイトの Cookie を削除してから、もう一度お試しください。",
                "The request is too large",
                "Delete this site's cookies in your browser and try again.",
            ),
            Refusal::Misdirected => (
                "接続先が一致しません",
                "ページを再読み込みしてください。",
                "This connection is for another site",
                "Reload the page.",
            ),
            Refusal::NotFound => (
                "ページが見つかりません",
                "アドレスを確認してください。業務システムの URL は情報システム担当にお問い合わせください。",
                "Page not found",
                "Check the address. Ask the IT team for the address of the service you need.",
            ),
            Refusal::LoginRequired => (
                "サインインが必要です",
                "このサービスを利用するには、自治体のアカウントでサインインしてください。",
                "Sign-in required",
                "Sign in with your municipality account to use this service.",
            ),
            Refusal::DeviceRequired(_) => (
                "登録された端末が必要です",
                "このサービスは、自治体が管理する端末の証明書がある場合だけ利用できます。端末に証明書がインストールされているか、情報システム担当に確認してください。",
                "A registered device is required",
                "This service is available only from a device with the municipality's device certificate. Ask the IT team whether your device has one.",
            ),
            Refusal::StepUp(_) => (
                "追加の認証が必要です",
                "このサービスでは、多要素認証によるサインインか、より新しいサインインが必要です。もう一度サインインしてください。",
                "Additional authentication required",
                "This service needs a sign-in with multi-factor authentication, or a more recent one. Sign in again.",
            ),
            Refusal::Forbidden(_) => (
                "アクセスが許可されていません",
                "このサービスを利用する権限がありません。必要な場合は、下のリクエスト ID を添えて情報システム担当にお問い合わせください。",
                "Access is not permitted",
                "You are not permitted to use this service. If you need it, contact the IT team with the request ID below.",
            ),
            Refusal::UpstreamUnavailable => (
                "業務システムに接続できません",
                "しばらく待ってから再度お試しください。続く場合は情報システム担当にお問い合わせください。",
                "The service cannot be reached",
                "Wait a moment and try again. If it persists, contact the IT team.",
            ),
            Refusal::UpstreamTimeout => (
                "業務システムの応答がありません",
                "しばらく待ってから再度お試しください。",
                "The service did not answer in time",
                "Wait a moment and try again.",
            ),
            Refusal::Unavailable => (
                "ただいま利用できません",
                "安全のため、一時的に受付を停止しています。しばらく待ってから再度お試しください。",
                "Temporarily unavailable",
                "Access is paused for safety. Wait a moment and try again.",
            ),
        }
    }
}

/// What the person can do about a reason, in Japanese and English.
fn next_step(code: &str) -> Option<(&'static str, &'static str)> {
    let prefix = code.split('.').next().unwrap_or("");
    Some(match code {
        "device.byod" | "device.unmanaged" | "device.not_listed" | "device.corporate" => (
            "市が管理する端末（公用PC）から接続してください。",
            "Connect from a device the municipality manages (an official PC).",
        ),
        "certificate.required" | "certificate.invalid" => (
            "端末証明書が入った管理端末から接続してください。証明書の期限切れ・失効の場合は、情報システム担当に再発行を依頼してください。",
            "Connect from a managed device with its device certificate. If the certificate expired or was revoked, ask the IT team to issue a new one.",
        ),
        "posture.unknown" | "device.check_in_stale" => (
            "端末を庁内ネットワークまたは VPN に接続して管理ツールと同期させ、しばらくしてから再度お試しください。",
            "Let the device check in with the management tool (connect it to the office network or VPN), then try again later.",
        ),
        "device.os_outdated"
        | "device.noncompliant"
        | "device.disk_not_encrypted"
        | "device.screen_lock_off"
        | "device.firewall_off"
        | "device.antivirus_off"
        | "device.edr_off" => (
            "端末の更新プログラムとセキュリティ設定を適用してから、再度お試しください。",
            "Install the device's updates and apply its security settings, then try again.",
        ),
        "mfa.required" | "acr.insufficient" | "auth.too_old" => (
            "多要素認証でもう一度サインインしてください。",
            "Sign in again with multi-factor authentication.",
        ),
        _ if prefix == "time" => (
            "利用できる時間帯（平日の業務時間など）に、もう一度お試しください。",
            "Try again during the hours this service is available (for example on working days).",
        ),
        _ if prefix == "network" => (
            "許可されたネットワーク（庁内・VPN）から接続してください。",
            "Connect from an allowed network (the office network or the VPN).",
        ),
        _ => return None,
    })
}

/// What a refusal reads of the request (the language and the format it prefers), kept
/// apart for when the request's headers have been passed on. Shared, not copied: making one
/// allocates nothing.
pub struct Asked {
    accept: Option<http::HeaderValue>,
    accept_language: Option<http::HeaderValue>,
}

impl Asked {
    pub fn of(headers: &http::HeaderMap) -> Asked {
        Asked {
            accept: headers.get(header::ACCEPT).cloned(),
            accept_language: headers.get(header::ACCEPT_LANGUAGE).cloned(),
        }
    }

    /// Request headers to give [`refusal`]: only the two it reads.
    pub fn headers(&self) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(v) = &self.accept {
            h.insert(header::ACCEPT, v.clone());
        }
        if let Some(v) = &self.accept_language {
            h.insert(header::ACCEPT_LANGUAGE, v.clone());
        }
        h
    }
}

/// Whether the client prefers English (first language tag in `Accept-Language`).
pub fn prefers_english(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|first| first.trim().to_ascii_lowercase().starts_with("en"))
}

fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Builds the response for a refusal. `close` asks the client to close the connection
/// (used after malformed requests, whose framing cannot be trusted).
pub fn refusal(
    refusal: &Refusal,
    request_headers: &http::HeaderMap,
    request_id: &str,
    close: bool,
) -> Response<Body> {
    let (ja_title, ja_advice, en_title, en_advice) = refusal.text();
    let english = prefers_english(request_headers);
    let status = refusal.status();
    let reasons: &[&'static sekisho_policy::Reason] = match refusal {
        Refusal::Forbidden(r) | Refusal::DeviceRequired(r) | Refusal::StepUp(r) => r,
        _ => &[],
    };
    let (body, content_type) = if wants_html(request_headers) {
        let (lang, title, advice, id_label, why_label) = if english {
            ("en", en_title, en_advice, "Request ID", "Why")
        } else {
            ("ja", ja_title, ja_advice, "リクエスト ID", "理由")
        };
        let mut why = String::new();
        if !reasons.is_empty() {
            why.push_str(&format!("<h2>{why_label}</h2><ul>"));
            for r in reasons {
                why.push_str(&format!(
                    "<li>{}</li>",
                    escape(if english { r.en } else { r.ja })
                ));
            }
            why.push_str("</ul>");
            let mut steps: Vec<&str> = reasons
                .iter()
                .filter_map(|r| next_step(r.code))
                .map(|(ja, en)| if english { en } else { ja })
                .collect();
            steps.dedup();
            let (next_label, whoami, signout) = if english {
                (
                    "What you can do",
                    "See how Sekisho sees your account and device",
                    "Sign out and sign in with another account",
                )
            } else {
                (
                    "できること",
                    "Sekisho から見たアカウントと端末の情報を確認する",
                    "サインアウトして別のアカウントでサインインする",
                )
            };
            why.push_str(&format!("<h2>{next_label}</h2><ul>"));
            for st in steps {
                why.push_str(&format!("<li>{}</li>", escape(st)));
            }
            why.push_str(&format!(
                "<li><a href=\"/.sekisho/whoami\">{whoami}</a></li><li><a href=\"/.sekisho/logout\">{signout}</a></li></ul>"
            ));
        }
        let html = format!(
            "<!doctype html>\n<html lang=\"{lang}\">\n<head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} — Sekisho</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1a1a1a;background:#fff;line-height:1.6}}\
             h1{{font-size:1.5rem}}code{{background:#f0f0f0;padding:.1rem .3rem}}</style></head>\n\
             <body><main><h1>{title}</h1>{why}<p>{advice}</p>\
             <p>{id_label}: <code>{id}</code></p><p><small>HTTP {code}</small></p></main></body></html>\n",
            title = escape(title),
            advice = escape(advice),
            id = escape(request_id),
            code = status.as_u16(),
        );
        (html, "text/html; charset=utf-8")
    } else {
        let title = if english { en_title } else { ja_title };
        let mut text = format!("{title} ({})\n", status.as_u16());
        for r in reasons {
            text.push_str(&format!("- {}\n", if english { r.en } else { r.ja }));
        }
        for (ja, en) in reasons.iter().filter_map(|r| next_step(r.code)) {
            text.push_str(&format!("→ {}\n", if english { en } else { ja }));
        }
        text.push_str(&format!("request-id: {request_id}\n"));
        (text, "text/plain; charset=utf-8")
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    match refusal {
        Refusal::LoginRequired => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sekisho\""),
            );
        }
        // RFC 9470: the token is fine, the authentication behind it is not enough.
        Refusal::StepUp(_) => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"sekisho\", error=\"insufficient_user_authentication\"",
                ),
            );
        }
        _ => {}
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_pages_say_what_to_do_next() {
        let mut h = http::HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        let byod = sekisho_policy::reason::ALL
            .iter()
            .find(|r| r.code == "device.byod")
            .unwrap();
        let r = refusal(&Refusal::Forbidden(vec![byod]), &h, "rid", false);
        let body =
            futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(r.into_body()))
                .unwrap()
                .unwrap()
                .to_bytes();
        let page = String::from_utf8_lossy(&body);
        assert!(page.contains("できること"), "{page}");
        assert!(page.contains("公用PC"), "{page}");
        assert!(page.contains("/.sekisho/whoami"), "{page}");
    }

    #[test]
    fn html_pages_are_japanese_by_default_and_escape_the_request_id() {
        let mut h = http::HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        let r = refusal(&Refusal::Forbidden(vec![]), &h, "<id>", false);
        assert_eq!(r.status(), 403);
        let ct = r.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(ct.starts_with("text/html"));
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("en-US,ja;q=0.5"),
        );
        assert!(prefers_english(&h));
    }
}
