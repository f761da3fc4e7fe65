//! The sendmail command line, parsed by hand: callers pass flags the way
//! sendmail(8) takes them (`-fADDR` glued or `-f ADDR` apart, `-oi`,
//! `-B8BITMIME`), which a derive parser cannot express. Flags are handled as
//! msmtp handles them: the ones below are understood or accepted and
//! ignored; any other flag is a usage error (exit 64).

use std::ffi::OsString;

/// What a sendmail caller asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendmailArgs {
    /// `-t`: take recipients from the To, Cc and Bcc headers too.
    pub read_recipients: bool,
    /// `-i` / `-oi`: a line of a single dot is text, not the end of input.
    pub ignore_dots: bool,
    /// `-f ADDR` / `-r ADDR`: the envelope sender.
    pub envelope_from: Option<String>,
    /// `-F NAME`: the display name of a From header that mailshot adds.
    pub full_name: Option<String>,
    /// `-v`: show the SMTP conversation on stderr.
    pub verbose: bool,
    /// `-a NAME`: the configured account to send through.
    pub account: Option<String>,
    /// `--smtp URL`: the server, overriding the configuration.
    pub smtp: Option<String>,
    /// Recipients given as arguments.
    pub recipients: Vec<String>,
}

/// Flags taking a value, glued (`-fADDR`) or as the next argument.
const WITH_VALUE: &[char] = &['a', 'f', 'r', 'F', 'B', 'N', 'R', 'X', 'L', 'h', 'V', 'C'];

/// Parse the arguments that follow `sendmail` (the program name excluded).
pub fn parse(args: &[OsString]) -> Result<SendmailArgs, String> {
    let mut out = SendmailArgs::default();
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = it.next() {
        if arg == "--" {
            out.recipients.extend(it.by_ref());
            break;
        }
        if let Some(url) = arg.strip_prefix("--smtp=") {
            out.smtp = Some(url.to_string());
            continue;
        }
        if arg == "--smtp" {
            out.smtp = Some(it.next().ok_or("--smtp needs a URL")?);
            continue;
        }
        if arg.starts_with("--") {
            return Err(format!("unknown option {arg}"));
        }
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            out.recipients.push(arg);
            continue;
        };
        let first = flags.chars().next().expect("not empty");
        if WITH_VALUE.contains(&first) {
            let glued = &flags[first.len_utf8()..];
            let value = if glued.is_empty() {
                it.next().ok_or_else(|| format!("-{first} needs a value"))?
            } else {
                glued.to_string()
            };
            apply_valued(&mut out, first, value)?;
            continue;
        }
        match flags {
            "t" => out.read_recipients = true,
            "i" => out.ignore_dots = true,
            "v" => out.verbose = true,
            // Deliver mode, the default and the only one.
            "bm" => {}
            // Initial submission (ignored, as every message is one).
            "U" => {}
            f if f.starts_with('o') => {
                if f == "oi" {
                    out.ignore_dots = true;
                }
                // Other -oX options (-odi, -oem, -om, ...) tune sendmail's
                // own queue and error reporting; they are ignored.
            }
            f if f.starts_with('b') => {
                return Err(format!(
                    "-{f}: only -bm (deliver a message from stdin) is supported"
                ))
            }
            _ => return Err(format!("unknown option -{flags}")),
        }
    }
    Ok(out)
}

fn apply_valued(out: &mut SendmailArgs, flag: char, value: String) -> Result<(), String> {
    match flag {
        'f' | 'r' => out.envelope_from = Some(value),
        'F' => out.full_name = Some(value),
        'a' => out.account = Some(value),
        'B' => {
            if !value.eq_ignore_ascii_case("8BITMIME") && !value.eq_ignore_ascii_case("7BIT") {
                return Err(format!("-B {value}: the body type is 7BIT or 8BITMIME"));
            }
        }
        'N' => {
            let ok = value
                .split(',')
                .all(|v| ["never", "success", "failure", "delay"].contains(&v.trim()));
            if !ok {
                return Err(format!(
                    "-N {value}: DSN notify is never, or a list of success, failure, delay"
                ));
            }
        }
        // -R (DSN return), -X (log file), -L (syslog tag), -h (hop count),
        // -V (envelope id): accepted and ignored.
        'R' | 'X' | 'L' | 'h' | 'V' => {}
        'C' => return Err("-C: mailshot reads its own config files; use --smtp URL".into()),
        _ => unreachable!("listed in WITH_VALUE"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<SendmailArgs, String> {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn cron_style_flags() {
        let a = p(&["-t", "-i"]).unwrap();
        assert!(a.read_recipients && a.ignore_dots);
        assert!(a.recipients.is_empty());
        assert!(p(&["-oi"]).unwrap().ignore_dots);
        assert!(!p(&["-odi"]).unwrap().ignore_dots);
    }

    #[test]
    fn sender_glued_or_apart() {
        assert_eq!(
            p(&["-fme@x.example"]).unwrap().envelope_from.as_deref(),
            Some("me@x.example")
        );
        assert_eq!(
            p(&["-f", "me@x.example"]).unwrap().envelope_from.as_deref(),
            Some("me@x.example")
        );
        assert_eq!(
            p(&["-r", "r@x.example"]).unwrap().envelope_from.as_deref(),
            Some("r@x.example")
        );
        assert_eq!(
            p(&["-F", "Cron Daemon"]).unwrap().full_name.as_deref(),
            Some("Cron Daemon")
        );
        assert_eq!(p(&["-FBob"]).unwrap().full_name.as_deref(), Some("Bob"));
        assert_eq!(p(&["-a", "work"]).unwrap().account.as_deref(), Some("work"));
        assert!(p(&["-f"]).is_err());
    }

    #[test]
    fn recipients_after_flags_and_double_dash() {
        let a = p(&["-i", "a@x.example", "--", "-b@x.example"]).unwrap();
        assert_eq!(a.recipients, ["a@x.example", "-b@x.example"]);
    }

    #[test]
    fn accepted_and_refused() {
        let a = p(&[
            "-B",
            "8BITMIME",
            "-N",
            "failure,delay",
            "-v",
            "-bm",
            "-oem",
            "x@y",
        ])
        .unwrap();
        assert!(a.verbose);
        assert_eq!(a.recipients, ["x@y"]);
        assert!(p(&["-B8BITMIME", "-Nnever", "-X", "/dev/null"]).is_ok());
        assert!(p(&["-N", "sometimes"]).is_err());
        assert!(p(&["-bp"]).is_err());
        assert!(p(&["-q"]).is_err());
        assert!(p(&["--frobnicate"]).is_err());
        assert_eq!(
            p(&["--smtp", "smtp://h:25"]).unwrap().smtp.as_deref(),
            Some("smtp://h:25")
        );
    }
}
