//! The `bothends` command: parses arguments, runs the library's pipeline, renders the report,
//! and maps the outcome to an exit code (0: no failure found, 1: at least one failure verdict,
//! 2: usage or input error). A closed stdout (`| head`) is not an error.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bothends::capture::{CaptureError, Input};
use bothends::pipeline::{self, Analysis, Mode, Side, SideOptions};
use bothends::report::{self, ReportOptions, text::Style};
use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  bothends analyze proxy.pcap backend.pcap
  bothends analyze proxy.pcapng.gz backend.pcap --format markdown -o findings.md
  bothends analyze --proxy p1.pcap --proxy p2.pcap --backend-capture b.pcap --backend 10.0.2.2:8080
  bothends flows capture.pcap --format json | jq '.connections[] | select(.protocol==\"http\")'
  tcpdump -r big.pcap -w - 'port 8080' | bothends flows -

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
    /// More backend capture files (a rotated set); repeatable.
    #[arg(long = "backend-capture", value_name = "FILE")]
    backend_files: Vec<String>,
    /// The backend endpoint(s) to analyse, instead of finding them automatically; repeatable.
    #[arg(long = "backend", value_name = "IP:PORT")]
    backend: Vec<bothends::decode::Endpoint>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    common: Common,
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
    /// Show the values of Authorization, Proxy-Authorization, Cookie and Set-Cookie headers.
    #[arg(long)]
    show_secrets: bool,
    /// Redact this header's value too (case-insensitive); repeatable.
    #[arg(long = "redact-header", value_name = "NAME")]
    redact_header: Vec<String>,
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
    }
}

fn open(inputs: &[String]) -> Result<bothends::capture::CaptureSet, CaptureError> {
    let inputs: Vec<Input> = inputs.iter().map(|a| Input::from_arg(a)).collect();
    pipeline::open_side(&inputs)
}

fn flows(args: FlowsArgs) -> anyhow::Result<ExitCode> {
    if args.files.iter().filter(|f| *f == "-").count() > 1 {
        anyhow::bail!("standard input (-) can be given once");
    }
    let set = open(&args.files)?;
    let analysis = Analysis::run(vec![(Side::Single, set)], SideOptions::default(), Mode::Flows);
    let opts = report_options(&args.common);
    let report = report::build(&analysis, &opts);
    let style = style(&args.common);
    write_output(args.common.output.as_deref(), |out| match args.format {
        FlowsFormat::Text => report::text::write_flows(&report, style, out),
        FlowsFormat::Json => report::json::write_json(&report, out),
        FlowsFormat::Ndjson => report::json::write_ndjson(&report, out),
    })?;
    Ok(ExitCode::SUCCESS)
}

fn analyze(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let mut proxy: Vec<String> = args.proxy_capture.iter().cloned().collect();
    proxy.extend(args.proxy_files.iter().cloned());
    let mut backend: Vec<String> = args.backend_capture.iter().cloned().collect();
    backend.extend(args.backend_files.iter().cloned());
    if proxy.is_empty() {
        anyhow::bail!("no proxy capture given (bothends analyze PROXY_CAPTURE [BACKEND_CAPTURE])");
    }
    if proxy.iter().chain(&backend).filter(|f| *f == "-").count() > 1 {
        anyhow::bail!("standard input (-) can be given once");
    }
    let mut sides = vec![(Side::Proxy, open(&proxy)?)];
    if !backend.is_empty() {
        sides.push((Side::Backend, open(&backend)?));
    }
    let mode = Mode::Analyze {
        backends: args.backend.clone(),
    };
    let analysis = Analysis::run(sides, SideOptions::default(), mode);
    let opts = report_options(&args.common);
    let report = report::build(&analysis, &opts);
    let style = style(&args.common);
    write_output(args.common.output.as_deref(), |out| match args.format {
        Format::Text => report::text::write_analysis(&report, style, out),
        Format::Json => report::json::write_json(&report, out),
        Format::Ndjson => report::json::write_ndjson(&report, out),
        Format::Markdown | Format::Html => Err(io::Error::other("this format is not available yet")),
    })?;
    Ok(if report.summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn report_options(c: &Common) -> ReportOptions {
    ReportOptions {
        show_secrets: c.show_secrets,
        redact_headers: c.redact_header.clone(),
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
