//! The review UI over real HTTP for its tests: the server on port 0, and a small client that
//! keeps cookies, sends forms, and connects from a chosen local address (loopback has all of
//! 127.0.0.0/8, so a test can be two clients on two addresses; the login throttle counts per
//! source address).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use settlement::store::Store;
use settlement::web::WebConfig;

/// The UI served on 127.0.0.1 port 0 until dropped (or `stop`).
pub struct Server {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(store: Store, config: WebConfig) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(settlement::web::serve(listener, store, config, async {
            let _ = stopped.await;
        }));
        Server {
            base,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One answer, whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first hidden `csrf` field of the page.
    pub fn csrf(&self) -> String {
        hidden(&self.body, "csrf").unwrap_or_else(|| panic!("no csrf field in {}", self.body))
    }
}

/// The value of a hidden input named `name` in a maud page.
pub fn hidden(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &page[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_string())
}

/// A browser-like client: one cookie jar, one local address.
pub struct Client {
    base: String,
    http: hyper_util::client::legacy::Client<HttpConnector, Body>,
    cookies: BTreeMap<String, String>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client::from_address(base, "127.0.0.1".parse().unwrap())
    }

    /// A client whose connections come from `local` (e.g. 127.0.0.2).
    pub fn from_address(base: &str, local: IpAddr) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        Client {
            base: base.to_string(),
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build(connector),
            cookies: BTreeMap::new(),
        }
    }

    /// Sends this cookie from now on (e.g. a browser's session, to act outside the browser).
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_string(), value.to_string());
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, String::new()).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(Method::POST, path, body).await
    }

    /// The login page, then its form: name, password and the page's CSRF token.
    pub async fn login(&mut self, name: &str, password: &str) -> Reply {
        let csrf = self.get("/login").await.csrf();
        self.post(
            "/login",
            &[("name", name), ("password", password), ("csrf", &csrf)],
        )
        .await
    }

    pub async fn send(&mut self, method: Method, path: &str, body: String) -> Reply {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if !cookie.is_empty() {
            request = request.header(header::COOKIE, cookie);
        }
        if !body.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let response = self
            .http
            .request(request.body(Body::from(body)).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(Body::new(body), usize::MAX)
            .await
            .unwrap();
        self.keep_cookies(&parts.headers);
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            // Lossy: a workbook download is binary (its first bytes, "PK", are what a test checks).
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for set in headers.get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }
}

/// `application/x-www-form-urlencoded` for one key or value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
