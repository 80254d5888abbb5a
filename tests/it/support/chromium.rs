//! A real headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`). When either is missing the test says so and skips, unless
//! `HOOKBOX_REQUIRE_CHROMIUM` is set (as `.ci/run` does): then the skip is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A browser session; the driver (and with it the browser) is killed when dropped.
pub(crate) struct Browser {
    /// The WebDriver session.
    pub(crate) client: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// A test that panics never closes its session, and a killed chromedriver leaves
    /// its browser running: the browser's processes are found by their profile
    /// directory, which is this session's alone, and killed.
    fn drop(&mut self) {
        let marker = format!("--user-data-dir={}", self._profile.path().display());
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == marker.as_bytes())
            {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
}

/// The chromedriver process, killed when dropped (also when connecting fails).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where screenshots go: `target/ui-screenshots/`.
pub(crate) fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh headless Chromium, or `None` (with a line saying why) when it is not
/// installed and not required.
pub(crate) async fn start(test: &str) -> Option<Browser> {
    start_with(test, &[]).await
}

/// [`start`] with more Chromium arguments (`--force-dark-mode`, say).
pub(crate) async fn start_with(test: &str, extra: &[&str]) -> Option<Browser> {
    let chromium = std::env::var("HOOKBOX_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    let driver = std::env::var("HOOKBOX_CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.to_owned());
    if !Path::new(&chromium).exists() || !Path::new(&driver).exists() {
        if std::env::var_os("HOOKBOX_REQUIRE_CHROMIUM").is_some() {
            panic!("{test}: Chromium is required (HOOKBOX_REQUIRE_CHROMIUM) but {chromium} or {driver} is missing");
        }
        eprintln!("SKIPPED {test}: no {chromium} or {driver}; apt-get install chromium chromium-driver to run it");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let profile = tempfile::tempdir().unwrap();
    let client = connect(port, &chromium, profile.path(), extra).await;
    client.set_window_size(1360, 1000).await.unwrap();
    Some(Browser {
        client,
        _driver: driver,
        _profile: profile,
    })
}

async fn connect(port: u16, chromium: &str, profile: &Path, extra: &[&str]) -> Client {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--window-size=1360,1000",
    ]
    .iter()
    .chain(extra)
    .map(|a| a.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": chromium,
            "args": args,
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return c,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "chromedriver never answered: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Browser {
    /// Saves a screenshot of the viewport as `target/ui-screenshots/NAME.png`.
    pub(crate) async fn shot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Browser {
    /// Ends the session, which closes the browser, then stops the driver.
    pub(crate) async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Waits (up to `within`) until the page's text contains `needle`, reloading it
    /// every `reload` when given; panics with the page's text otherwise.
    pub(crate) async fn wait_text(&self, needle: &str, within: Duration, reload: Option<Duration>) {
        let deadline = Instant::now() + within;
        let mut last_reload = Instant::now();
        loop {
            let text = self.body_text().await;
            if text.contains(needle) {
                return;
            }
            if Instant::now() > deadline {
                panic!("the page never showed {needle:?}; it shows:\n{text}");
            }
            if let Some(every) = reload {
                if last_reload.elapsed() >= every {
                    let _ = self.client.refresh().await;
                    last_reload = Instant::now();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the page's body.
    pub(crate) async fn body_text(&self) -> String {
        match self.client.find(fantoccini::Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}
