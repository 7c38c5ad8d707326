//! Installing cloudflared: the downloader against a local HTTP server serving a
//! stand-in with the right checksum, a wrong one, and a truncated body.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use agentroom::tunnel::install::{self, BinarySearch, InstallError, ReleaseSource};
use agentroom::tunnel::{Tunnel, TunnelKind, TunnelOptions, probe_health};
use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use sha2::{Digest, Sha256};
use tokio_util::task::AbortOnDropHandle;

use crate::fixtures::{fake_cloudflared, relay_like_server};

const ASSET: &str = "cloudflared-linux-amd64";

/// Serves the stand-in under `/good/`, other bytes under `/bad/`, half of it with
/// the full `Content-Length` and then a dropped connection under `/trunc/`, and a
/// cleanly framed half under `/short/`.
async fn release_server(payload: Vec<u8>) -> (url::Url, AbortOnDropHandle<()>) {
    let half = payload[..payload.len() / 2].to_vec();
    let full_len = payload.len();
    let good = payload.clone();
    let short = half.clone();
    let app = Router::new()
        .route(&format!("/good/{ASSET}"), get(move || async move { good.clone() }))
        .route(&format!("/bad/{ASSET}"), get(|| async { b"#!/bin/sh\necho evil\n".to_vec() }))
        .route(&format!("/short/{ASSET}"), get(move || async move { short.clone() }))
        .route(
            &format!("/trunc/{ASSET}"),
            get(move || {
                let half = half.clone();
                async move {
                    // Half the body, a pause (so headers and data are on the wire),
                    // then the connection drops.
                    let body = futures_util::stream::unfold(0u8, move |step| {
                        let half = half.clone();
                        async move {
                            match step {
                                0 => Some((Ok::<_, std::io::Error>(half), 1)),
                                1 => {
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                    Some((Err(std::io::Error::other("connection lost")), 2))
                                }
                                _ => None,
                            }
                        }
                    });
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_LENGTH, full_len)
                        .body(Body::from_stream(body))
                        .unwrap()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, AbortOnDropHandle::new(task))
}

fn source(base: &url::Url, dir: &str, payload: &[u8]) -> ReleaseSource {
    ReleaseSource {
        base_url: base.join(&format!("{dir}/")).unwrap(),
        checksums: vec![(ASSET.to_owned(), hex::encode(Sha256::digest(payload)))],
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn right_checksum_installs_0700() {
    let payload = std::fs::read(fake_cloudflared()).unwrap();
    let (base, _server) = release_server(payload.clone()).await;
    let home = tempfile::tempdir().unwrap();
    let dest = home.path().join("bin/cloudflared");
    install::download_verified(&source(&base, "good", &payload), ASSET, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), payload);
    assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(leftovers(&home.path().join("bin")), ["cloudflared"]);
}

#[tokio::test]
async fn wrong_checksum_truncated_and_missing_are_refused_and_deleted() {
    let payload = std::fs::read(fake_cloudflared()).unwrap();
    let (base, _server) = release_server(payload.clone()).await;
    let home = tempfile::tempdir().unwrap();
    let bin_dir = home.path().join("bin");
    let dest = bin_dir.join("cloudflared");

    let err = install::download_verified(&source(&base, "bad", &payload), ASSET, &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains("refused and deleted"));
    assert_eq!(leftovers(&bin_dir), Vec::<String>::new());

    let err = install::download_verified(&source(&base, "trunc", &payload), ASSET, &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::Truncated { .. }), "{err}");
    assert_eq!(leftovers(&bin_dir), Vec::<String>::new());

    let err = install::download_verified(&source(&base, "short", &payload), ASSET, &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::ChecksumMismatch { .. }), "{err}");
    assert_eq!(leftovers(&bin_dir), Vec::<String>::new());

    let err = install::download_verified(&source(&base, "nothing-here", &payload), ASSET, &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::Status { status, .. } if status == 404), "{err}");
    assert_eq!(leftovers(&bin_dir), Vec::<String>::new());

    let err = install::download_verified(&source(&base, "good", &payload), "other-asset", &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::NoChecksum(_)), "{err}");
}

/// Missing cloudflared with downloads allowed: the managed copy is fetched,
/// verified and run (here the stand-in plays the official binary), and its URL works.
/// With downloads refused, the error says how to install.
#[tokio::test]
async fn missing_cloudflared_is_downloaded_then_run() {
    // The local server serves the stand-in under the linux-amd64 name only.
    let Ok(asset @ ASSET) = install::platform_asset() else { return };
    let payload = std::fs::read(fake_cloudflared()).unwrap();
    let (base, server) = release_server(payload.clone()).await;
    let home = tempfile::tempdir().unwrap();
    let mut search = BinarySearch {
        explicit: None,
        env_bin: None,
        path_var: None,
        home: home.path().to_owned(),
        allow_download: false,
        source: ReleaseSource {
            base_url: base.join("good/").unwrap(),
            checksums: vec![(asset.to_owned(), hex::encode(Sha256::digest(&payload)))],
        },
    };
    let err = search.resolve().await.unwrap_err();
    assert!(err.to_string().contains("brew install cloudflared"), "{err}");
    assert!(!search.managed_path().exists());

    search.allow_download = true;
    let bin = search.resolve().await.unwrap();
    assert_eq!(bin, search.managed_path());
    drop(server);
    // Already installed: no second download (the server is gone).
    assert_eq!(search.resolve().await.unwrap(), bin);

    let relay = relay_like_server().await;
    let mut opts =
        TunnelOptions::new(TunnelKind::Cloudflared, relay.addr.port(), home.path().into());
    opts.cloudflared_bin = Some(bin);
    opts.allow_download = false;
    let tunnel = Tunnel::start(opts).await.unwrap();
    probe_health(&tunnel.public_url().unwrap(), Duration::from_secs(20)).await.unwrap();
    tunnel.shutdown().await;
}
