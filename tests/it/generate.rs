//! Integration tests for `mailshot generate`: the man pages are read with
//! man(1) and the bash completion is run by bash itself.

use std::process::Command;

use crate::support::cmd;
use crate::support::TestDir;

/// Every command a user can type, as the README's table lists them.
const COMMANDS: &[&str] = &[
    "config", "run", "check", "preview", "send", "capture", "sendmail", "generate",
];

/// `man -l FILE` rendered as plain text.
fn man(file: &std::path::Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(file)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man is installed (Debian package man-db)");
    assert!(
        out.status.success(),
        "man -l {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Drop overstrike (bold) sequences some man setups still emit.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut clean = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            clean.pop();
        } else {
            clean.push(c);
        }
    }
    clean
}

#[test]
fn man_pages_cover_every_command_and_read_with_man() {
    let dir = TestDir::new();
    cmd::mailshot(dir.path(), ["generate", "man", "--dir", "man"])
        .run()
        .expect_code(0);
    let main = man(&dir.join("man/mailshot.1"));
    assert!(main.contains("NAME") && main.contains("SYNOPSIS"), "{main}");
    for c in COMMANDS {
        assert!(
            main.contains(&format!("mailshot-{c}(1)")),
            "{c} missing from:\n{main}"
        );
        let page = dir.join(format!("man/mailshot-{c}.1"));
        assert!(
            page.exists(),
            "the page mailshot.1 points to is missing: {}",
            page.display()
        );
    }
    let send = man(&dir.join("man/mailshot-send.1"));
    assert!(send.contains("--subject"), "{send}");
    let sendmail = man(&dir.join("man/mailshot-sendmail.1"));
    for flag in ["-t", "-oi", "-f ADDR", "-F NAME", "exit 64", "Exit 75"] {
        assert!(sendmail.contains(flag), "{flag} missing from:\n{sendmail}");
    }
    // Without --dir the top page goes to stdout.
    let out = cmd::mailshot(dir.path(), ["generate", "man"]).run();
    out.expect_code(0);
    dir.write("stdout.1", &out.raw_stdout);
    assert!(man(&dir.join("stdout.1")).contains("mailshot-sendmail(1)"));
}

#[test]
fn bash_completion_completes_commands_and_options() {
    let dir = TestDir::new();
    let out = cmd::mailshot(dir.path(), ["generate", "completions", "bash"]).run();
    out.expect_code(0);
    dir.write("mailshot.bash", &out.raw_stdout);
    // What bash offers after `mailshot sen<TAB>` and `mailshot send --sub<TAB>`.
    let script = "source ./mailshot.bash\n\
                  COMP_WORDS=(mailshot sen); COMP_CWORD=1; _mailshot mailshot sen mailshot; echo \"${COMPREPLY[*]}\"\n\
                  COMP_WORDS=(mailshot send --sub); COMP_CWORD=2; _mailshot mailshot --sub send; echo \"${COMPREPLY[*]}\"\n";
    let run = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "{text}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut first: Vec<&str> = lines[0].split_whitespace().collect();
    first.sort();
    assert_eq!(first, ["send", "sendmail"]);
    assert_eq!(lines[1].trim(), "--subject");
}

#[test]
fn zsh_and_fish_completions_name_every_command() {
    let dir = TestDir::new();
    let zsh = cmd::mailshot(dir.path(), ["generate", "completions", "zsh"]).run();
    zsh.expect_code(0);
    assert!(
        zsh.stdout.starts_with("#compdef mailshot"),
        "{}",
        zsh.stdout
    );
    let fish = cmd::mailshot(dir.path(), ["generate", "completions", "fish"]).run();
    fish.expect_code(0);
    for c in COMMANDS {
        assert!(zsh.stdout.contains(&format!("'{c}:")), "zsh: {c}");
        assert!(fish.stdout.contains(&format!("-a \"{c}\"")), "fish: {c}");
    }
    cmd::mailshot(dir.path(), ["generate", "completions", "tcsh"])
        .run()
        .expect_code(64);
}
