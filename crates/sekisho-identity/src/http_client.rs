//! The HTTP client used for every call to the identity provider.
//!
//! A named struct (not a closure) implementing `openidconnect::AsyncHttpClient`, so its futures
//! are `Send`. Redirects are never followed (an IdP endpoint that redirects is misconfigured,
//! and following would turn the gateway into an SSRF helper); bodies are capped.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use thiserror::Error;

/// Largest IdP response body read (discovery, JWKS, tokens, userinfo).
pub const MAX_BODY: usize = 1 << 20;

/// Why a call to the IdP failed at the transport level.
#[derive(Debug, Error)]
pub enum HttpClientError {
    #[error("request failed: {0}")]
    Transport(String),
    #[error("response body larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("bad request: {0}")]
    Request(String),
}

/// reqwest 0.13 (rustls), no redirects, a timeout, capped bodies.
#[derive(Clone, Debug)]
pub struct IdpHttpClient {
    inner: reqwest::Client,
}

impl IdpHttpClient {
    pub fn new(timeout: Duration) -> Result<Self, HttpClientError> {
        let inner = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("sekisho/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpClientError::Request(e.to_string()))?;
        Ok(IdpHttpClient { inner })
    }

    /// Executes one request, reading at most [`MAX_BODY`] bytes.
    pub async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, HttpClientError> {
        let (parts, body) = request.into_parts();
        let send = || {
            self.inner
                .request(parts.method.clone(), parts.uri.to_string())
                .headers(parts.headers.clone())
                .body(body.clone())
                .send()
        };
        let mut resp = match send().await {
            Ok(r) => r,
            // A pooled keep-alive connection the IdP (or a proxy) closed: the request never
            // got an answer, so it is sent once more on a fresh connection. Timeouts are not
            // retried (the IdP may be slow, not gone).
            Err(e) if !e.is_timeout() && (e.is_request() || e.is_connect()) => send()
                .await
                .map_err(|e| HttpClientError::Transport(e.without_url().to_string()))?,
            Err(e) => return Err(HttpClientError::Transport(e.without_url().to_string())),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| HttpClientError::Transport(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(HttpClientError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let mut out = http::Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }

    /// GET a URL with an `Accept` header.
    pub async fn get(
        &self,
        url: &str,
        accept: &'static str,
        bearer: Option<&str>,
    ) -> Result<http::Response<Vec<u8>>, HttpClientError> {
        let mut b = http::Request::get(url).header(http::header::ACCEPT, accept);
        if let Some(t) = bearer {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = b
            .body(Vec::new())
            .map_err(|e| HttpClientError::Request(e.to_string()))?;
        self.execute(req).await
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for IdpHttpClient {
    type Error = HttpClientError;
    type Future =
        Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}
