//! Real Chromium, driven through WebDriver (Debian's `chromium` and `chromium-driver`),
//! for the console's browser tests.
//!
//! Each test gets its own `chromedriver` on a free port and a fresh profile directory,
//! runs its steps, and ends with a screenshot of its last page in
//! `target/screenshots/<test>.png` (also when a step fails). At most two browsers run at
//! once, so that the rest of the suite keeps its share of the machine.
//!
//! Without the browser the tests are skipped with a message, unless `REQUIRE_BROWSER=1`
//! (set by `.ci/run`), where they fail.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::sync::Semaphore;

/// Browsers open at once across the test binary.
static BROWSERS: Semaphore = Semaphore::const_new(2);
/// How long a page or an element may take to appear.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The WebDriver server and Chromium binaries, if installed.
fn installed() -> Option<(PathBuf, Option<PathBuf>)> {
    let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())?;
    // Debian's /usr/bin/chromium is a wrapper script; the driver starts the real binary.
    let chromium = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists());
    Some((driver, chromium))
}

/// A `chromedriver` process, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `steps` in a fresh Chromium and saves a screenshot of where they ended as
/// `target/screenshots/<name>.png`. Skips (or fails, with `REQUIRE_BROWSER=1`) when the
/// browser is not installed.
pub async fn with_browser<F, Fut>(name: &str, steps: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((driver_path, chromium)) = installed() else {
        if std::env::var_os("REQUIRE_BROWSER").is_some_and(|v| v == "1") {
            panic!(
                "REQUIRE_BROWSER=1 but chromedriver is not installed: \
                 apt-get install -y chromium chromium-driver"
            );
        }
        eprintln!("skipping {name}: chromium and chromium-driver are not installed");
        return;
    };
    let _permit = BROWSERS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let port = free_port();
    let driver = Driver(
        Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let profile = tempfile::tempdir().expect("profile directory");
    let client = connect(port, chromium.as_deref(), profile.path()).await;
    let outcome = tokio::spawn(steps(client.clone())).await;
    screenshot(&client, name).await;
    let _ = client.close().await;
    drop(driver);
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

async fn connect(port: u16, chromium: Option<&Path>, profile: &Path) -> Client {
    let mut options = json!({
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            format!("--user-data-dir={}", profile.display()),
        ]
    });
    if let Some(binary) = chromium {
        options["binary"] = json!(binary.display().to_string());
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        let attempt = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await;
        match attempt {
            Ok(client) => return client,
            // The driver needs a moment to listen.
            Err(error) if started.elapsed() < PATIENCE => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("cannot start a Chromium session: {error}"),
        }
    }
}

/// Saves what the browser shows now as `target/screenshots/<name>.png` (besides the one
/// [`with_browser`] takes at the end).
pub async fn screenshot(client: &Client, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let _ = std::fs::create_dir_all(&dir);
    match client.screenshot().await {
        Ok(png) => {
            let _ = std::fs::write(dir.join(format!("{name}.png")), png);
        }
        Err(error) => eprintln!("{name}: no screenshot: {error}"),
    }
}

/// Opens `path` of the server at `base` (`http://127.0.0.1:port`, from
/// `TestApp::url("")`) and logs in with `token` on the form it is sent to, then waits for
/// the page it asked for.
pub async fn log_in(client: &Client, base: &str, path: &str, token: &str) {
    let expected = format!("{base}{path}");
    client.goto(&expected).await.expect("page opens");
    let field = wait_for(client, Locator::Css("input[name=token]")).await;
    field.send_keys(token).await.expect("typing works");
    client
        .find(Locator::Css(".login button[type=submit]"))
        .await
        .expect("the form has its button")
        .click()
        .await
        .expect("the form submits");
    wait_until(client, "the page asked for after login", |url| {
        url == expected
    })
    .await;
}

/// Waits for an element to appear.
pub async fn wait_for(client: &Client, locator: Locator<'_>) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(locator)
        .await
        .unwrap_or_else(|error| panic!("element never appeared: {error}"))
}

/// Waits until the current URL satisfies `check`.
pub async fn wait_until(client: &Client, what: &str, check: impl Fn(&str) -> bool) {
    let started = Instant::now();
    loop {
        let url = client.current_url().await.expect("a current URL");
        if check(url.as_str()) {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "never reached {what}; still at {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the text (or, with `attribute`, that attribute) of the element at `locator`,
/// which a live refresh may replace between finding it and reading it: then it is found
/// again. Empty when it does not exist.
pub async fn read_live(client: &Client, locator: Locator<'_>, attribute: Option<&str>) -> String {
    let started = Instant::now();
    loop {
        let read = match client.find(locator).await {
            Ok(element) => match attribute {
                Some(name) => element.attr(name).await.map(Option::unwrap_or_default),
                None => element.text().await,
            },
            Err(fantoccini::error::CmdError::Standard(error))
                if error.error == fantoccini::error::ErrorStatus::NoSuchElement =>
            {
                return String::new();
            }
            Err(error) => Err(error),
        };
        match read {
            Ok(value) => return value,
            Err(error) => assert!(
                started.elapsed() < PATIENCE,
                "cannot read {locator:?}: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the page's text contains `text`, and returns the text.
pub async fn wait_for_text(client: &Client, text: &str) -> String {
    let started = Instant::now();
    loop {
        // Mid-navigation the body may be gone, or replaced between find and read: try
        // again rather than fail.
        let body = match client.find(Locator::Css("body")).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains(text) {
            return body;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the page never showed {text:?}; it shows:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
