//! `/docs` in a real browser: headless Chromium loads the page of a gateway on a random port
//! and the reference UI, run from the gateway's own assets, renders the checkout operation. The
//! page itself holds no operation text, so finding the summary proves the script ran and read
//! `/openapi.json`.
//!
//! Needs Debian's `chromium` (`apt-get install -y chromium`; `scripts/test.sh` installs it when
//! run as root). Without it the test fails saying so, unless `ICON_TEST_NO_BROWSER=1`.

use icon_testkit::{Options, TestApp};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The summary of `POST /cart/checkout/` (its doc comment's first line).
const CHECKOUT_SUMMARY: &str = "Check out a cart.";

fn chromium() -> Option<&'static str> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
        "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_render_the_checkout_operation_in_a_browser() {
    let Some(browser) = chromium() else {
        if std::env::var("ICON_TEST_NO_BROWSER").as_deref() == Ok("1") {
            eprintln!("skipped: no chromium and ICON_TEST_NO_BROWSER=1");
            return;
        }
        panic!(
            "this test needs headless Chromium: install it with `apt-get install -y chromium` \
             (scripts/test.sh does so when run as root), or set ICON_TEST_NO_BROWSER=1 to skip it"
        );
    };
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        start_notifier: false,
        ..Default::default()
    })
    .await;
    let page = app.api.get("/docs", None).await;
    assert!(
        !page.text.contains(CHECKOUT_SUMMARY),
        "the page must not hold the text itself"
    );

    let profile = std::env::temp_dir().join(format!("icon-docs-ui-{}", uuid::Uuid::new_v4()));
    let url = format!("{}/docs", app.public_url);
    let mut cmd = std::process::Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        // Nothing but loopback, whatever the page or the browser might want to reach.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
        "--virtual-time-budget=20000",
        "--timeout=60000",
        "--dump-dom",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(&url)
    .stdin(Stdio::null());
    let run = tokio::task::spawn_blocking(move || cmd.output());
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("chromium finished within 2 minutes")
        .expect("joined")
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("opblock-summary") && dom.contains(CHECKOUT_SUMMARY),
        "the checkout operation is not rendered; chromium said: {}\nDOM: {}",
        String::from_utf8_lossy(&out.stderr),
        &dom[..dom.len().min(3000)]
    );
    assert!(dom.contains("/cart/checkout/"), "path not rendered");
    app.stop().await;
}
