//! The dashboard: a single page served at `/` with its assets under
//! `/assets/`, all embedded in the binary (no CDN, works offline).
//!
//! The page polls the JSON API (`/api/v1/targets`, `/api/v1/targets/{name}/timeline`,
//! `/api/v1/recommendations`, `/api/v1/sql`) and `/metrics`; charts use the
//! vendored [uPlot](https://github.com/leeoniya/uPlot) 1.6.32 (MIT,
//! `dashboard/vendor/uplot/LICENSE`). See `docs/dashboard.md`.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX_HTML: &str = include_str!("dashboard/index.html");

const ASSETS: &[Asset] = &[
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("dashboard/app.js"),
    },
    Asset {
        path: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("dashboard/app.css"),
    },
    Asset {
        path: "vendor/uplot/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("dashboard/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "vendor/uplot/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("dashboard/vendor/uplot/uPlot.min.css"),
    },
    Asset {
        path: "vendor/uplot/LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("dashboard/vendor/uplot/LICENSE"),
    },
];

/// Assets change only with the binary; the page itself is never cached so a
/// new binary's page (which names the same asset paths) is always fetched,
/// and assets are revalidated cheaply via `ETag`.
const ASSET_CACHE: &str = "public, max-age=300";

/// Entity tag of this build's assets.
fn etag() -> String {
    format!("\"scalecast-{}\"", env!("CARGO_PKG_VERSION"))
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::HeaderName::from_static("x-content-type-options"),
                "nosniff",
            ),
        ],
        INDEX_HTML,
    )
        .into_response()
}

async fn asset(Path(path): Path<String>, headers: axum::http::HeaderMap) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.path == path) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": format!("no asset {path:?}") })),
        )
            .into_response();
    };
    let tag = etag();
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == tag)
    {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, tag),
                (header::CACHE_CONTROL, ASSET_CACHE.into()),
            ],
        )
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, a.content_type.to_string()),
            (header::CACHE_CONTROL, ASSET_CACHE.to_string()),
            (header::ETAG, tag),
            (
                header::HeaderName::from_static("x-content-type-options"),
                "nosniff".to_string(),
            ),
        ],
        a.body,
    )
        .into_response()
}

/// Routes of the dashboard: `GET /` (the page) and `GET /assets/{*path}`.
/// Merge into the API router; no state is needed.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve() -> (String, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let h = tokio::spawn(async move {
            let _ = axum::serve(l, routes::<()>()).await;
        });
        (format!("http://{addr}"), h)
    }

    #[tokio::test]
    async fn serves_page_and_assets_with_types() {
        let (base, server) = serve().await;
        let c = reqwest::Client::new();
        let r = c.get(format!("{base}/")).send().await.expect("page");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        let page = r.text().await.expect("utf-8");
        for a in ASSETS.iter().filter(|a| !a.path.ends_with("LICENSE")) {
            assert!(
                page.contains(&format!("/assets/{}", a.path)),
                "page links {}",
                a.path
            );
        }
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no external URL in the page"
        );
        let r = c
            .get(format!("{base}/assets/app.js"))
            .send()
            .await
            .expect("js");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(!r.bytes().await.expect("body").is_empty());
        let url = format!("{base}/assets/vendor/uplot/uPlot.min.css");
        let r = c.get(&url).send().await.expect("css");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
        let tag = r.headers()[header::ETAG]
            .to_str()
            .expect("etag")
            .to_string();
        let r = c
            .get(&url)
            .header(header::IF_NONE_MATCH, tag)
            .send()
            .await
            .expect("revalidate");
        assert_eq!(r.status(), 304);
        let r = c
            .get(format!("{base}/assets/nothing.js"))
            .send()
            .await
            .expect("404");
        assert_eq!(r.status(), 404);
        assert!(r.text().await.expect("body").contains("\"error\""));
        server.abort();
    }
}
