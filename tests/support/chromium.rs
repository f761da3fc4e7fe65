//! A real headless Chromium (Debian's `chromium`), started per call with a
//! fresh profile and nothing that reaches the network on its own, to look
//! at the HTML report as a browser renders it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::cmd::{spawn_command, Output};
use super::TestDir;

/// The browser binary; `scripts/test` installs it.
pub fn binary() -> PathBuf {
    let path = PathBuf::from("/usr/bin/chromium");
    assert!(
        path.exists(),
        "Debian's chromium is not installed; scripts/test installs it"
    );
    path
}

/// Runs `chromium --headless ... ARGS` for a window `width` pixels wide and
/// waits for it (at most a minute).
pub fn run(width: u32, args: &[&str]) -> Output {
    let profile = TestDir::new();
    let mut cmd = Command::new(binary());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--window-size={width},2000"))
    .args(args);
    let out = spawn_command(cmd).finish_within(Duration::from_secs(90));
    assert_eq!(out.code, 0, "chromium failed: {}", out.stderr);
    out
}

/// The DOM of `page` after Chromium rendered it.
pub fn dump_dom(page: &Path, width: u32, extra: &[&str]) -> String {
    let url = format!("file://{}", page.display());
    let mut args: Vec<&str> = extra.to_vec();
    args.push("--dump-dom");
    args.push(&url);
    run(width, &args).stdout
}
