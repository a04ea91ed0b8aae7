//! The rider app (`/app/`): a progressive web app of static files compiled into the binary
//! (`gateway/web/rider/`, docs/rider-app.md), served on the public listener beside the rider API
//! it calls, so it needs no cross-origin access and no separate server.
//!
//! What it deliberately does not do: render anything on the server or know any rider. The app
//! is the same bytes for everyone; a rider's token, credential and device key live only in the
//! phone's IndexedDB, and the app reaches the rider API with the token like any other client.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles, the manifest and the
//! service worker only from this origin (no inline script or style, so injected markup cannot
//! run or restyle), fetches and images only from this origin, no framing, no `<base>`, no form
//! posts anywhere.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The CSP of every file of the app (see the module comment).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the app: its path under `/app/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The app shell: every file the service worker caches for offline use (`sw.js` itself is
/// served with the shell's version written in, see [`service_worker`]).
const SHELL: &[Asset] = &[
    Asset {
        path: "/app/",
        content_type: HTML,
        body: include_str!("../../web/rider/index.html"),
    },
    Asset {
        path: "/app/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../web/rider/app.css"),
    },
    Asset {
        path: "/app/app.js",
        content_type: JS,
        body: include_str!("../../web/rider/app.js"),
    },
    Asset {
        path: "/app/ridecode.js",
        content_type: JS,
        body: include_str!("../../web/rider/ridecode.js"),
    },
    Asset {
        path: "/app/i18n.js",
        content_type: JS,
        body: include_str!("../../web/rider/i18n.js"),
    },
    Asset {
        path: "/app/dom.js",
        content_type: JS,
        body: include_str!("../../web/rider/dom.js"),
    },
    Asset {
        path: "/app/flow.js",
        content_type: JS,
        body: include_str!("../../web/rider/flow.js"),
    },
    Asset {
        path: "/app/qrcode-generator.mjs",
        content_type: JS,
        body: include_str!("../../web/rider/vendor/qrcode-generator.mjs"),
    },
    Asset {
        path: "/app/manifest.webmanifest",
        content_type: "application/manifest+json",
        body: include_str!("../../web/rider/manifest.webmanifest"),
    },
    Asset {
        path: "/app/icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../../web/rider/icon.svg"),
    },
];

/// The operator's passenger-flow page (`/flow/`, docs/flow.md "Pages"): public like the flow
/// API it reads, not part of the phone's offline shell. It imports the app's strings, element
/// builder and flow words (`/app/i18n.js`, `/app/dom.js`, `/app/flow.js`).
const PAGES: &[Asset] = &[
    Asset {
        path: "/flow/",
        content_type: HTML,
        body: include_str!("../../web/flow/index.html"),
    },
    Asset {
        path: "/flow/operator.js",
        content_type: JS,
        body: include_str!("../../web/flow/operator.js"),
    },
    Asset {
        path: "/flow/operator.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../web/flow/operator.css"),
    },
];

const SERVICE_WORKER: &str = include_str!("../../web/rider/sw.js");

/// What `sw.js` carries where the shell's version goes.
const VERSION_PLACEHOLDER: &str = "__SHELL_VERSION__";

pub fn router() -> Router {
    Router::new()
        .route("/app/", get(|| asset("/app/")))
        .route("/app/app.css", get(|| asset("/app/app.css")))
        .route("/app/app.js", get(|| asset("/app/app.js")))
        .route("/app/ridecode.js", get(|| asset("/app/ridecode.js")))
        .route("/app/i18n.js", get(|| asset("/app/i18n.js")))
        .route("/app/dom.js", get(|| asset("/app/dom.js")))
        .route("/app/flow.js", get(|| asset("/app/flow.js")))
        .route(
            "/app/qrcode-generator.mjs",
            get(|| asset("/app/qrcode-generator.mjs")),
        )
        .route(
            "/app/manifest.webmanifest",
            get(|| asset("/app/manifest.webmanifest")),
        )
        .route("/app/icon.svg", get(|| asset("/app/icon.svg")))
        .route("/app/sw.js", get(service_worker))
        .route("/flow/", get(|| asset("/flow/")))
        .route("/flow/operator.js", get(|| asset("/flow/operator.js")))
        .route("/flow/operator.css", get(|| asset("/flow/operator.css")))
}

async fn asset(path: &'static str) -> Response {
    let asset = SHELL
        .iter()
        .chain(PAGES)
        .find(|a| a.path == path)
        .expect("every route names a file of SHELL or PAGES");
    respond(asset.content_type, asset.body.to_string())
}

/// `sw.js` with the shell's version: a digest of every shell file, so any change to the app
/// changes the worker's bytes, which is what makes browsers install the new worker and refresh
/// their cached shell.
async fn service_worker() -> Response {
    static BODY: OnceLock<String> = OnceLock::new();
    let body = BODY.get_or_init(|| {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        for asset in SHELL {
            digest.update(asset.path.as_bytes());
            digest.update(&[0]);
            digest.update(asset.body.as_bytes());
            digest.update(&[0]);
        }
        let version = hex::encode(&digest.finish().as_ref()[..8]);
        let paths: Vec<String> = SHELL.iter().map(|a| format!("{:?}", a.path)).collect();
        SERVICE_WORKER
            .replace(VERSION_PLACEHOLDER, &version)
            .replace("__SHELL_FILES__", &paths.join(", "))
    });
    let mut response = respond(JS, body.clone());
    // The worker may control all of /app/ (its default scope, said explicitly).
    response
        .headers_mut()
        .insert("service-worker-allowed", HeaderValue::from_static("/app/"));
    response
}

fn respond(content_type: &'static str, body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // Always revalidated: the service worker, not the HTTP cache, keeps the offline copy.
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the worker's file list is the shell's and its version was written in.
    #[tokio::test]
    async fn the_service_worker_names_every_shell_file() {
        let response = service_worker().await;
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains(VERSION_PLACEHOLDER) && !text.contains("__SHELL_FILES__"));
        for asset in SHELL {
            assert!(
                text.contains(&format!("{:?}", asset.path)),
                "{}",
                asset.path
            );
        }
    }
}
