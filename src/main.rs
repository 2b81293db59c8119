//! The `bothends` command: parses arguments, runs the library's pipeline, renders the report,
//! and maps the outcome to an exit code (0: no failure found, 1: at least one failure verdict,
//! 2: usage or input error). A closed stdout (`| head`) is not an error.
//!
//! Besides `analyze` and `flows`: `schema` prints the JSON Schema of the report, `completions`
//! and `man` generate shell completions and man pages from these very definitions.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bothends::capture::{CaptureError, CaptureSet, Input, Progress};
use bothends::incident::logs;
use bothends::incident::window::Window;
use bothends::pipeline::{self, Mode, Side, SideOptions};
use bothends::report::{self, ReportOptions, SideInfo, stream, text::Style};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

// The reader threads allocate what the consumer frees (connections, exchanges, report rows):
// glibc's allocator serialises that on an arena lock (a third of the time on short connections,
// measured with perf), mimalloc frees across threads without one.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process: with them (Debian's default, `always`) every
/// first touch of the allocator's memory zeroed a whole 2 MiB page, a tenth of the time on
/// captures of many short connections (perf: `clear_page_erms`), and resident memory counted
/// whole huge pages (the bench pair: 95 MB, 55 MB without).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes integers only and changes nothing but this
    // process's page policy; its result is ignored (older kernels: no change).
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

const EXAMPLES: &str = "\
Examples:
  bothends analyze proxy.pcap backend.pcap
  bothends analyze proxy.pcapng.gz backend.pcap --format markdown -o findings.md
  bothends analyze --proxy p1.pcap --proxy p2.pcap --backend-capture b.pcap --backend 10.0.2.2:8080
  bothends flows capture.pcap --format json | jq '.connections[] | select(.protocol==\"http\")'
  bothends analyze proxy.pcap backend.pcap --format html -o findings.html
  bothends analyze proxy.pcap backend.pcap --proxy-log /var/log/apache2/error.log --since 2026-11-22T14:05Z
  bothends analyze --backend-capture backend.pcap
  tcpdump -r big.pcap -w - 'port 8080' | bothends flows -
  bothends completions bash > /etc/bash_completion.d/bothends
  bothends man --dir /usr/local/share/man/man1

Exit codes: 0 no failure found, 1 at least one failure verdict, 2 usage or input error.";

#[derive(Parser, Debug)]
#[command(
    name = "bothends",
    version,
    about = "Reads captures taken on a reverse proxy and on its backend, and says who broke the request",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Diagnose the proxy→backend connections of a proxy capture and (optionally) a backend capture.
    Analyze(AnalyzeArgs),
    /// List the TCP connections and HTTP exchanges of one capture.
    Flows(FlowsArgs),
    /// Print the JSON Schema of the JSON report (or, with --ndjson, of one NDJSON line).
    Schema(SchemaArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the man page, or write one page per command into a directory.
    Man(ManArgs),
}

#[derive(Args, Debug)]
struct SchemaArgs {
    /// The schema of one NDJSON line (a connection) instead of the whole document.
    #[arg(long)]
    ndjson: bool,
}

#[derive(Args, Debug)]
struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
struct ManArgs {
    /// Write bothends.1, bothends-analyze.1, ... into DIR instead of printing bothends(1).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct AnalyzeArgs {
    /// Capture taken on the proxy host (pcap or pcapng, optionally gzip; `-` for stdin).
    proxy_capture: Option<String>,
    /// Capture taken on the backend host.
    backend_capture: Option<String>,
    /// More proxy capture files (a rotated set); repeatable.
    #[arg(long = "proxy", value_name = "FILE")]
    proxy_files: Vec<String>,
    /// More backend capture files (a rotated set); repeatable. Alone, without a proxy capture:
    /// the backend's accepted connections are judged from its side.
    #[arg(long = "backend-capture", value_name = "FILE")]
    backend_files: Vec<String>,
    /// The backend endpoint(s) to analyse, instead of finding them automatically; repeatable.
    #[arg(long = "backend", value_name = "IP:PORT")]
    backend: Vec<bothends::decode::Endpoint>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    incident: IncidentArgs,
    #[command(flatten)]
    common: Common,
}

/// The incident views of `analyze`: the proxy's error log, and the minutes to look at.
#[derive(Args, Debug)]
struct IncidentArgs {
    /// The proxy's error log (Apache httpd or nginx; gzip read too): each line is shown beside the
    /// connection it is about, or said to be about none (and why); repeatable.
    #[arg(long = "proxy-log", value_name = "FILE")]
    proxy_log: Vec<String>,
    /// The zone the proxy log's local times are in, as a UTC offset (UTC, +02:00, -0500).
    #[arg(long = "log-tz", value_name = "OFFSET", default_value = "UTC", value_parser = parse_offset, allow_hyphen_values = true)]
    log_tz: i32,
    /// Report only connections still open at or after this time (proxy capture's clock): ISO 8601
    /// (2026-11-22T14:05:00Z, a time without offset is UTC) or seconds since the epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<i64>,
    /// Report only connections already open at or before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<i64>,
}

fn parse_offset(s: &str) -> Result<i32, String> {
    bothends::incident::window::parse_offset(s)
}

fn parse_time(s: &str) -> Result<i64, String> {
    bothends::incident::window::parse_time(s)
}

#[derive(Args, Debug)]
struct FlowsArgs {
    /// The capture: one file, or several files of a rotated set (merged in time order); `-` for stdin.
    #[arg(required = true, value_name = "CAPTURE")]
    files: Vec<String>,
    #[arg(long, value_enum, default_value_t = FlowsFormat::Text)]
    format: FlowsFormat,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct Common {
    /// Write the report to FILE (atomically: a failed run leaves no half-written file).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Color the text output: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// Show the values of Authorization, Proxy-Authorization, Cookie and Set-Cookie headers
    /// (and of --redact-header ones) instead of "[redacted]".
    #[arg(long)]
    show_secrets: bool,
    /// Redact this header's value too (case-insensitive); repeatable.
    #[arg(long = "redact-header", value_name = "NAME")]
    redact_header: Vec<String>,
    /// Never show a progress bar (it shows on a terminal's stderr for inputs that take more than
    /// a second).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Ndjson,
    Markdown,
    Html,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FlowsFormat {
    Text,
    Json,
    Ndjson,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

fn main() -> ExitCode {
    no_huge_pages();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("bothends: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Flows(args) => flows(args),
        Command::Analyze(args) => analyze(args),
        Command::Schema(args) => {
            let schema = if args.ndjson {
                report::connection_schema()
            } else {
                report::report_schema()
            };
            let mut out = io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &schema)?;
            writeln!(out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions(args) => {
            let mut cmd = Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "bothends", &mut io::stdout().lock());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(args) => {
            let cmd = Cli::command();
            match args.dir {
                None => clap_mangen::Man::new(cmd).render(&mut io::stdout().lock())?,
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
                    clap_mangen::generate_to(cmd, &dir)
                        .map_err(|e| anyhow::anyhow!("cannot write into {}: {e}", dir.display()))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open(inputs: &[String]) -> Result<CaptureSet, CaptureError> {
    let inputs: Vec<Input> = inputs.iter().map(|a| Input::from_arg(a)).collect();
    pipeline::open_side(&inputs)
}

/// The total size of the inputs in bytes, or None when one is standard input (or unknown).
fn total_size(inputs: &[String]) -> Option<u64> {
    inputs
        .iter()
        .map(|f| match f.as_str() {
            "-" => None,
            path => std::fs::metadata(path).ok().map(|m| m.len()),
        })
        .sum()
}

/// A progress bar on stderr while the captures are read, shown only when stderr is a terminal
/// and the reading has taken more than a second; a spinner when the size is unknown (stdin).
struct ProgressBar {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressBar {
    fn start(handles: Vec<Progress>, total: Option<u64>, enabled: bool) -> ProgressBar {
        let done = Arc::new(AtomicBool::new(false));
        let thread = (enabled && io::stderr().is_terminal()).then(|| {
            let done = done.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(1) {
                    if done.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let bar = match total {
                    Some(t) => indicatif::ProgressBar::new(t).with_style(
                        indicatif::ProgressStyle::with_template(
                            "reading captures {wide_bar} {binary_bytes}/{binary_total_bytes} ({eta})",
                        )
                        .expect("a valid template"),
                    ),
                    None => indicatif::ProgressBar::new_spinner().with_style(
                        indicatif::ProgressStyle::with_template(
                            "{spinner} reading captures: {binary_bytes} read in {elapsed}",
                        )
                        .expect("a valid template"),
                    ),
                };
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                while !done.load(Ordering::Relaxed) {
                    bar.set_position(handles.iter().map(Progress::bytes_read).sum());
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(100));
                }
                bar.finish_and_clear();
            })
        });
        ProgressBar { done, thread }
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ProgressBar {
    fn drop(&mut self) {
        self.stop();
    }
}

fn flows(args: FlowsArgs) -> anyhow::Result<ExitCode> {
    if args.files.iter().filter(|f| *f == "-").count() > 1 {
        anyhow::bail!("standard input (-) can be given once");
    }
    let set = open(&args.files)?;
    let sides = vec![SideInfo {
        side: Side::Single,
        files: set.summary().files,
    }];
    let bar = ProgressBar::start(
        vec![set.progress()],
        total_size(&args.files),
        !args.common.no_progress,
    );
    let opts = report_options(&args.common, false);
    let style = style(&args.common);
    let format = match args.format {
        FlowsFormat::Text => stream::Format::Flows,
        FlowsFormat::Json => stream::Format::Json,
        FlowsFormat::Ndjson => stream::Format::Ndjson,
    };
    write_output(args.common.output.as_deref(), |out| {
        let mut writer = stream::Writer::new(format, sides, &opts, style, out);
        let end = pipeline::run(
            vec![(Side::Single, set)],
            SideOptions::default(),
            Mode::Flows,
            &mut writer,
        );
        drop(bar);
        writer.finish(end).map(|_| ())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn analyze(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let mut proxy: Vec<String> = args.proxy_capture.iter().cloned().collect();
    proxy.extend(args.proxy_files.iter().cloned());
    let mut backend: Vec<String> = args.backend_capture.iter().cloned().collect();
    backend.extend(args.backend_files.iter().cloned());
    if proxy.is_empty() && backend.is_empty() {
        anyhow::bail!(
            "no capture given (bothends analyze PROXY_CAPTURE [BACKEND_CAPTURE], or --backend-capture FILE alone)"
        );
    }
    if proxy.iter().chain(&backend).filter(|f| *f == "-").count() > 1 {
        anyhow::bail!("standard input (-) can be given once");
    }
    // The backend host's capture alone is judged from the backend's view.
    let mut sides = Vec::new();
    if !proxy.is_empty() {
        sides.push((Side::Proxy, open(&proxy)?));
    }
    if !backend.is_empty() {
        sides.push((Side::Backend, open(&backend)?));
    }
    let total = total_size(&proxy).zip(total_size(&backend)).map(|(a, b)| a + b);
    let infos: Vec<SideInfo> = sides
        .iter()
        .map(|(side, set)| SideInfo {
            side: *side,
            files: set.summary().files,
        })
        .collect();
    let bar = ProgressBar::start(pipeline::progress_of(&sides), total, !args.common.no_progress);
    let mode = Mode::Analyze {
        backends: args.backend.clone(),
    };
    let opts = report_options(&args.common, args.format == Format::Html);
    let style = style(&args.common);
    let format = match args.format {
        Format::Text => stream::Format::Text,
        Format::Json => stream::Format::Json,
        Format::Ndjson => stream::Format::Ndjson,
        Format::Markdown => stream::Format::Markdown,
        Format::Html => stream::Format::Html,
    };
    let window = Window {
        since: args.incident.since,
        until: args.incident.until,
    };
    if let (Some(a), Some(b)) = (window.since, window.until)
        && a > b
    {
        anyhow::bail!("--since is after --until");
    }
    let logs = if args.incident.proxy_log.is_empty() {
        None
    } else {
        let logs =
            logs::load(&args.incident.proxy_log, args.incident.log_tz, window).map_err(anyhow::Error::msg)?;
        Some(logs::Matcher::new(logs, window))
    };
    let mut failed = 0;
    write_output(args.common.output.as_deref(), |out| {
        let mut writer = stream::Writer::new(format, infos, &opts, style, out).with_incident(logs, window);
        let end = pipeline::run(sides, SideOptions::default(), mode, &mut writer);
        drop(bar);
        failed = writer.finish(end)?;
        Ok(())
    })?;
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn report_options(c: &Common, ladders: bool) -> ReportOptions {
    ReportOptions {
        show_secrets: c.show_secrets,
        redact_headers: c.redact_header.clone(),
        ladders,
    }
}

fn style(c: &Common) -> Style {
    let color = match c.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            c.output.is_none()
                && io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    Style { color }
}

/// Writes to stdout, or to a file atomically: a temporary file beside it, renamed on success.
fn write_output(
    path: Option<&Path>,
    render: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> anyhow::Result<()> {
    match path {
        None => {
            let stdout = io::stdout();
            let mut out = io::BufWriter::new(stdout.lock());
            render(&mut out)?;
            out.flush()?;
            Ok(())
        }
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
            let result = (|| -> io::Result<()> {
                let mut out = io::BufWriter::new(std::fs::File::create(&tmp)?);
                render(&mut out)?;
                out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                std::fs::rename(&tmp, path)
            })();
            if let Err(e) = result {
                let _ = std::fs::remove_file(&tmp);
                return Err(anyhow::Error::new(e).context(format!("cannot write {}", path.display())));
            }
            Ok(())
        }
    }
}
