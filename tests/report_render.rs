//! The HTML report of every lab scenario as a browser shows it: headless Chromium loads each page
//! from a file (no network), runs its script without error (the page marks `<html data-js="ok">`
//! and would mark `data-js-error`), builds every ladder arrow into the DOM, lays out the timeline
//! plot of the pattern section with one bar per time bucket and failure verdict, and takes a 1200×2000
//! screenshot (a PNG of that size, not blank); on a few pages, the filters a link preselects
//! (`#only-failures`, `#verdict=...`) hide the right rows. Screenshots are left in `target/tmp/report-render/` to look at.
//!
//! Needs Debian's `chromium` (or `BOTHENDS_CHROMIUM=/path/to/chrome`). Without it the test says
//! so and passes, unless `BOTHENDS_REQUIRE_CHROMIUM=1` (CI sets it).

mod kit;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use bothends::pipeline::{self, SideOptions};
use bothends::report::{self, ReportOptions};
use kit::TempDir;

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BOTHENDS_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

struct Page {
    name: String,
    html: PathBuf,
    arrows: usize,
    failed: usize,
    ok: usize,
    /// A verdict of the page, and how many connections have it.
    verdict: (String, usize),
    /// Check the filters a link preselects on this page.
    filters: bool,
    /// Bars of the timeline plot's failure panel: one per bucket and failure verdict, from the
    /// report model (0: no plot, no failure).
    failure_bars: usize,
}

/// Writes the HTML report of a scenario (both captures, or the proxy's only).
fn write_page(dir: &Path, out: &Path, both: bool) -> Page {
    let sides = kit::lab_captures(dir, both);
    let a = pipeline::analyze(pipeline::read_sides(sides, SideOptions::default()), &[]);
    let opts = ReportOptions {
        ladders: true,
        ..ReportOptions::default()
    };
    let r = report::build(&a, &opts);
    let html = report::html::render(&r);
    let name = format!(
        "{}{}",
        dir.file_name().unwrap().to_string_lossy(),
        if both { "" } else { "-proxy-only" }
    );
    let path = out.join(format!("{name}.html"));
    std::fs::write(&path, &html).unwrap();
    let verdict = r
        .summary
        .by_verdict
        .iter()
        .next_back()
        .map_or((String::new(), 0), |(v, n)| (v.label().to_string(), *n as usize));
    // The plot is drawn for a failure among at least three requests.
    let failure_bars = r.incident.as_ref().map_or(0, |i| {
        if i.failed == 0 || i.requests < 3 {
            return 0;
        }
        let failure = |v: &str| bothends::diagnose::Verdict::from_label(v).is_some_and(|v| v.is_failure());
        i.timeline
            .buckets
            .iter()
            .map(|b| b.by_verdict.keys().filter(|v| failure(v.label())).count())
            .sum()
    });
    Page {
        name,
        html: path,
        failure_bars,
        arrows: html.matches("<g class=\"arrow ").count(),
        failed: r.summary.failed as usize,
        ok: r.connections.len() - r.summary.failed as usize,
        verdict,
        filters: false,
    }
}

/// Runs headless Chromium on a page with extra arguments; returns stdout.
fn run_chromium(chrome: &Path, url: &str, extra: &[String]) -> String {
    let profile = TempDir::new("render-profile");
    let out = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium {extra:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Width and height of a PNG, from its IHDR chunk.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((w, h))
}

/// Rows of the connection table in a dumped DOM with `attr` (e.g. `data-failed="1"`) that are
/// hidden (or shown).
fn rows(dom: &str, attr: &str, hidden: bool) -> usize {
    dom.match_indices("<tr ")
        .filter(|(i, _)| {
            let tag = &dom[*i..*i + dom[*i..].find('>').unwrap_or(0)];
            tag.contains(attr) && tag.contains(" hidden") == hidden
        })
        .count()
}

/// The `<html ...>` start tag of a dumped DOM (where the page's script marks success or error).
fn html_tag(dom: &str) -> &str {
    let at = dom.find("<html").unwrap_or(0);
    &dom[at..at + dom[at..].find('>').unwrap_or(0)]
}

fn check(chrome: &Path, page: &Page, shots: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let url = format!("file://{}", page.html.display());
    let name = &page.name;

    // The DOM after the page's script ran, and the screenshot, in one run.
    let png = shots.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&png);
    let dom = run_chromium(
        chrome,
        &url,
        &[
            "--dump-dom".to_string(),
            format!("--screenshot={}", png.display()),
            "--window-size=1200,2000".to_string(),
        ],
    );
    let tag = html_tag(&dom);
    if !tag.contains("data-js=\"ok\"") {
        problems.push(format!("{name}: the page's script did not finish: {tag}"));
    }
    if tag.contains("data-js-error") {
        problems.push(format!("{name}: script error: {tag}"));
    }
    let arrows = dom.matches("<g class=\"arrow ").count();
    if arrows != page.arrows {
        problems.push(format!(
            "{name}: {arrows} arrows in the DOM, {} in the page",
            page.arrows
        ));
    }
    // The timeline plot: laid out (its size, measured by the page's script), one bar per bucket
    // and failure verdict.
    let bars = dom.matches("<rect class=\"bar failed ").count();
    if bars != page.failure_bars {
        problems.push(format!(
            "{name}: {bars} failure bars in the plot, {} in the report",
            page.failure_bars
        ));
    }
    let size = tag
        .split("data-timeline=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|wh| wh.split_once('x'))
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
    match (page.failure_bars > 0, size) {
        (true, Some((w, h))) if w >= 600 && h >= 250 => {}
        (true, s) => problems.push(format!("{name}: the timeline plot is not laid out: {s:?}")),
        (false, Some(_)) => problems.push(format!("{name}: a timeline plot without failures")),
        (false, None) => {}
    }
    if rows(&dom, "data-verdict", true) != 0 {
        problems.push(format!("{name}: rows hidden without a filter"));
    }
    match std::fs::read(&png) {
        Ok(bytes) => {
            if png_size(&bytes) != Some((1200, 2000)) {
                problems.push(format!("{name}: screenshot is not a 1200×2000 PNG"));
            } else if bytes.len() < 20_000 {
                problems.push(format!("{name}: screenshot looks blank ({} bytes)", bytes.len()));
            }
        }
        Err(e) => problems.push(format!("{name}: no screenshot: {e}")),
    }

    // Filters preselected by a link.
    if page.filters {
        let dom = run_chromium(
            chrome,
            &format!("{url}#only-failures"),
            &["--dump-dom".to_string()],
        );
        let (shown, hidden) = (
            rows(&dom, "data-failed=\"1\"", false),
            rows(&dom, "data-failed=\"0\"", true),
        );
        if (shown, hidden) != (page.failed, page.ok) {
            problems.push(format!(
                "{name}: #only-failures shows {shown} failed and hides {hidden} ok rows, expected {} and {}",
                page.failed, page.ok
            ));
        }
        let (v, n) = &page.verdict;
        let dom = run_chromium(chrome, &format!("{url}#verdict={v}"), &["--dump-dom".to_string()]);
        let shown = rows(&dom, "data-verdict", false);
        let this = rows(&dom, &format!("data-verdict=\"{v}\""), false);
        if (shown, this) != (*n, *n) {
            problems.push(format!(
                "{name}: #verdict={v} shows {shown} rows, {this} of them {v}; expected {n}"
            ));
        }
    }
    problems
}

#[test]
fn html_reports_render_in_headless_chromium() {
    let Some(chrome) = chromium() else {
        assert!(
            std::env::var_os("BOTHENDS_REQUIRE_CHROMIUM").is_none(),
            "BOTHENDS_REQUIRE_CHROMIUM is set but chromium is not installed (apt-get install chromium)"
        );
        eprintln!("chromium not found: the HTML reports were not rendered (apt-get install chromium)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-render");
    std::fs::create_dir_all(&out).unwrap();
    let mut pages: Vec<Page> = kit::lab_scenarios()
        .iter()
        .map(|d| write_page(d, &out, true))
        .collect();
    // The filters, on pages with ok and failed connections.
    for p in pages.iter_mut().filter(|p| p.ok > 0 && p.failed > 0).take(3) {
        p.filters = true;
    }
    assert!(pages.iter().any(|p| p.filters));
    // The one-capture drawing (one line, arrows in and out), on a few scenarios.
    for name in [
        "apache-backend-empty-reply",
        "apache-rst-from-middlebox",
        "nginx-keepalive-race",
    ] {
        pages.push(write_page(&root.join("captures").join(name), &out, false));
    }
    assert!(pages.len() >= 20);

    // Two at a time (the machine has two cores).
    let queue = Mutex::new(pages.iter());
    let problems = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let Some(page) = queue.lock().unwrap().next() else {
                        break;
                    };
                    let p = check(&chrome, page, &out);
                    problems.lock().unwrap().extend(p);
                }
            });
        }
    });
    let problems = problems.into_inner().unwrap();
    assert!(
        problems.is_empty(),
        "{} pages, problems:\n{}",
        pages.len(),
        problems.join("\n")
    );
    eprintln!(
        "{} HTML reports rendered; screenshots in {}",
        pages.len(),
        out.display()
    );
}
