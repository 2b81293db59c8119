//! Credentials never reach a report: on a synthetic capture whose request carries
//! `Authorization`, `Proxy-Authorization`, `Cookie` and an API key, and whose response sets a
//! cookie, no format of `analyze` or `flows` prints a secret value unless `--show-secrets` is
//! given; `--redact-header` hides one more header.

mod kit;

use std::process::Command;

use kit::*;

const SECRETS: [&str; 4] = ["s3cr3t-token", "abc123", "cHJveHk6cHc9", "xyz789"];
const API_KEY: &str = "k3y-0f-the-day";

/// A POST with credentials; the backend answers with a Set-Cookie and closes after 5 bytes of a
/// 1000-byte body (a failed connection, so the report shows its request and response heads).
fn wire() -> Wire {
    let mut w = Wire::new(1_000_000, 5_000_000);
    w.handshake();
    w.wait_ms(1.0);
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: backend\r\nAuthorization: Bearer {}\r\nCookie: session={}\r\n\
         Proxy-Authorization: Basic {}\r\nX-Api-Key: {API_KEY}\r\nContent-Length: 10\r\n\r\n0123456789",
        SECRETS[0], SECRETS[1], SECRETS[2]
    );
    w.send_request(req.as_bytes());
    let resp = format!(
        "HTTP/1.1 200 OK\r\nSet-Cookie: sid={}; HttpOnly\r\nContent-Length: 1000\r\n\r\nshort",
        SECRETS[3]
    );
    w.send_response(resp.as_bytes());
    w.s2c(FIN, b"");
    w.wait_ms(5.0);
    w.c2s(FIN, b"");
    w.wait_ms(5.0);
    w.s2c(ACK, b"");
    w
}

/// The two captures in a directory of this test's own (tests run in parallel).
fn captures() -> (TempDir, String, String) {
    let dir = TempDir::new("redaction");
    let w = wire();
    let p = dir.0.join("proxy.pcap");
    let b = dir.0.join("backend.pcap");
    std::fs::write(&p, w.proxy_pcap()).unwrap();
    std::fs::write(&b, w.backend_pcap()).unwrap();
    (dir, p.display().to_string(), b.display().to_string())
}

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bothends"))
        .args(args)
        .output()
        .expect("bothends runs");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "bothends {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Every output: analyze (both captures, proxy only) in every format, flows in every format.
fn outputs(p: &str, b: &str, extra: &[&str]) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for format in ["text", "json", "ndjson", "markdown", "html"] {
        for two in [true, false] {
            let mut args = vec!["analyze", p];
            if two {
                args.push(b);
            }
            args.extend(["--format", format]);
            args.extend(extra);
            v.push((format!("{args:?}"), run(&args)));
        }
    }
    for format in ["text", "json", "ndjson"] {
        let mut args = vec!["flows", p, "--format", format];
        args.extend(extra);
        v.push((format!("{args:?}"), run(&args)));
    }
    v
}

#[test]
fn the_capture_is_a_failure_whose_heads_the_report_shows() {
    let (_keep, p, b) = captures();
    let json = run(&["analyze", &p, &b, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let c = &v["connections"][0];
    assert_ne!(c["verdict"], "ok", "{json}");
    let x = &c["exchanges"][0];
    assert_eq!(x["request_line"], "POST /upload HTTP/1.1");
    let headers = x["request_headers"].as_array().unwrap();
    let auth = headers.iter().find(|h| h["name"] == "Authorization").unwrap();
    assert_eq!(auth["value"], "[redacted]");
    assert_eq!(auth["redacted"], true);
    let host = headers.iter().find(|h| h["name"] == "Host").unwrap();
    assert_eq!(host["value"], "backend");
    assert!(host.get("redacted").is_none());
    assert_eq!(x["status_line"], "HTTP/1.1 200 OK");
    assert_eq!(
        v["redacted_headers"],
        serde_json::json!(["authorization", "proxy-authorization", "cookie", "set-cookie"])
    );
}

#[test]
fn no_format_prints_a_credential() {
    let (_keep, p, b) = captures();
    for (what, out) in outputs(&p, &b, &[]) {
        for s in SECRETS {
            assert!(!out.contains(s), "{what} prints {s}:\n{out}");
        }
    }
}

#[test]
fn redact_header_hides_one_more() {
    let (_keep, p, b) = captures();
    // Without the option the API key is an ordinary header (JSON carries every header)...
    let json = run(&["analyze", &p, &b, "--format", "json"]);
    assert!(json.contains(API_KEY));
    // ...with it, no format shows it, and the report says it redacted it.
    for (what, out) in outputs(&p, &b, &["--redact-header", "x-api-key"]) {
        assert!(!out.contains(API_KEY), "{what} prints the API key");
        for s in SECRETS {
            assert!(!out.contains(s), "{what} prints {s}");
        }
    }
    let json = run(&[
        "analyze",
        &p,
        &b,
        "--format",
        "json",
        "--redact-header",
        "X-API-Key",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        v["redacted_headers"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("x-api-key"))
    );
}

#[test]
fn show_secrets_shows_them() {
    let (_keep, p, b) = captures();
    for format in ["json", "ndjson", "markdown", "html"] {
        let out = run(&["analyze", &p, &b, "--format", format, "--show-secrets"]);
        for s in SECRETS {
            assert!(
                out.contains(s),
                "--format {format} --show-secrets does not show {s}"
            );
        }
    }
    let md = run(&["analyze", &p, &b, "--format", "markdown", "--show-secrets"]);
    assert!(
        md.contains(&format!("Authorization: Bearer {}", SECRETS[0])),
        "{md}"
    );
    assert!(md.contains("Header values are shown in full"));
}
