//! `hookbox serve` as a child process, the way operators run it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

/// A running `hookbox serve`; SIGKILLed when dropped.
pub(crate) struct Server {
    /// The process.
    pub(crate) child: Child,
    /// `http://ADDR` of the webhook listener.
    pub(crate) base: String,
    /// `http://ADDR` of the admin listener, when the config has `[admin]`.
    pub(crate) admin: Option<String>,
}

impl Server {
    /// Starts `hookbox serve --config CONFIG` and waits for its banner(s).
    pub(crate) fn start(config: &Path) -> Server {
        Self::start_with(config, &[])
    }

    /// [`Server::start`] with extra environment variables.
    pub(crate) fn start_with(config: &Path, env: &[(&str, &str)]) -> Server {
        let wants_admin = std::fs::read_to_string(config)
            .unwrap()
            .lines()
            .any(|l| l.trim() == "[admin]");
        let mut cmd = super::hookbox_bin();
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("HOOKBOX_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("hookbox serve starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut base, mut admin) = (None, None);
        while base.is_none() || (wants_admin && admin.is_none()) {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("hookbox serve exited before its banner: {:?}", child.wait());
            }
            if let Some(a) = line.trim().strip_prefix("hookbox listening on ") {
                base = Some(a.to_owned());
            } else if let Some(a) = line.trim().strip_prefix("hookbox admin on ") {
                admin = Some(a.to_owned());
            }
        }
        // Keep reading stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
        Server {
            child,
            base: base.unwrap(),
            admin,
        }
    }

    /// The URL of `path` on the webhook listener.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait (up to `within`) for a clean exit; returns the exit code.
    pub(crate) fn terminate(&mut self, within: Duration) -> Option<i32> {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
