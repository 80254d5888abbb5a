//! `hookbox verify` and `hookbox sign` as a user runs them: real subprocesses.

use std::io::Write;
use std::process::{Output, Stdio};

use crate::support::hookbox_bin;

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = hookbox_bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hookbox runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn first_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

const BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW: [&str; 10] = [
    "verify",
    "--scheme",
    "standard-webhooks",
    "--secret",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "--now",
    "1614265330",
    "-H",
    "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek",
    "-Hwebhook-timestamp: 1614265330",
];

#[test]
fn verify_prints_ok_and_exits_0() {
    let mut args = SW.to_vec();
    args.extend([
        "-H",
        "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ]);
    let o = run(&args, BODY);
    assert_eq!(first_line(&o), "ok", "{o:?}");
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("delivery id: msg_p5jXN8AQM9LWM0D4loKWxJek"),
        "{text}"
    );
}

#[test]
fn verify_prints_the_kind_and_exits_1() {
    let mut args = SW.to_vec();
    args.extend([
        "-H",
        "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ]);
    let o = run(&args, b"{}");
    assert_eq!(first_line(&o), "invalid_signature");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).lines().count() >= 2,
        "an explanation follows"
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));

    // stale: one second past the tolerance
    let mut stale = args.clone();
    stale[6] = "1614265631";
    assert_eq!(first_line(&run(&stale, BODY)), "timestamp_out_of_tolerance");
    stale.extend(["--tolerance", "301"]);
    assert_eq!(first_line(&run(&stale, BODY)), "ok");

    // a header given twice is sent twice
    let mut twice = args.clone();
    twice.extend([
        "-H",
        "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ]);
    assert_eq!(first_line(&run(&twice, BODY)), "malformed_header");

    // missing header
    assert_eq!(first_line(&run(&SW, BODY)), "missing_header");

    // an unusable secret
    let o = run(&["verify", "--scheme", "stripe", "--secret", "", "-"], b"");
    assert_eq!(
        (first_line(&o).as_str(), o.status.code()),
        ("invalid_secret", Some(1))
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["verify", "--scheme", "nonesuch", "--secret", "x"],
        vec!["verify", "--scheme", "github"],
        vec![
            "verify",
            "--scheme",
            "github",
            "--secret",
            "x",
            "-H",
            "no colon here",
        ],
        vec!["verify", "--scheme", "square", "--secret", "x"],
        vec![
            "verify",
            "--scheme",
            "github",
            "--secret",
            "x",
            "/nonexistent/body",
        ],
    ] {
        let o = run(&args, b"");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(!o.stderr.is_empty());
    }
}

#[test]
fn sign_output_feeds_verify() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, br#"{"id":"evt_9","type":"charge.succeeded"}"#).unwrap();
    let body = body.to_str().unwrap();
    for (scheme, secret) in [
        ("stripe", "whsec_abc"),
        ("github", "s"),
        ("standard-webhooks", "whsec_dGVzdHNlY3JldA=="),
        ("shopify", "k"),
    ] {
        let o = run(
            &[
                "sign",
                "--scheme",
                scheme,
                "--secret",
                secret,
                "--now",
                "1700000000",
                body,
            ],
            b"",
        );
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        let mut args = vec![
            "verify",
            "--scheme",
            scheme,
            "--secret",
            secret,
            "--now",
            "1700000000",
        ];
        let out = String::from_utf8(o.stdout).unwrap();
        for line in out.lines() {
            args.extend(["-H", line]);
        }
        args.push(body);
        let v = run(&args, b"");
        assert_eq!(
            first_line(&v),
            "ok",
            "{scheme}: {}",
            String::from_utf8_lossy(&v.stdout)
        );
    }
}

#[test]
fn help_lists_every_scheme() {
    let o = run(&["verify", "--help"], b"");
    let text = String::from_utf8_lossy(&o.stdout);
    for s in hookbox::SCHEMES {
        assert!(text.contains(s), "{s} missing from --help");
    }
}
