//! Opening an input: a file or standard input, gzip detected by content and guarded against
//! decompression bombs, bytes read counted for a progress bar.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;

use super::{CaptureError, GZIP_FREE_BYTES, MAX_GZIP_RATIO};

/// Counts bytes read from the underlying files, for a progress bar (shared with another thread).
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn bytes_read(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct CountingReader<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// How far a gzip stream has gone: compressed bytes in, and whether it was stopped as a bomb or
/// ended by damage.
#[derive(Debug, Default)]
pub(super) struct GzipMeter {
    compressed: AtomicU64,
    /// Decompressed bytes when the ratio was exceeded (0: not exceeded).
    pub(super) stopped_at: AtomicU64,
    /// The decompressor's error and the decompressed bytes before it, when the gzip data is
    /// damaged (a download cut short): the stream ends there, like a capture cut short.
    damaged: std::sync::Mutex<Option<(u64, String)>>,
}

impl GzipMeter {
    pub(super) fn damage(&self) -> Option<(u64, String)> {
        self.damaged.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Counts the compressed bytes read from a gzip file.
struct CompressedCount<R> {
    inner: R,
    meter: Arc<GzipMeter>,
}

impl<R: Read> Read for CompressedCount<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.compressed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Ends a gzip stream (as if the file ended there) once it has expanded more than
/// [`MAX_GZIP_RATIO`] times past [`GZIP_FREE_BYTES`].
struct BombGuard<R> {
    inner: R,
    meter: Arc<GzipMeter>,
    out: u64,
}

impl<R: Read> Read for BombGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.meter.stopped_at.load(Ordering::Relaxed) > 0 {
            return Ok(0);
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let mut damaged = self.meter.damaged.lock().unwrap_or_else(|p| p.into_inner());
                damaged.get_or_insert((self.out, e.to_string()));
                return Ok(0);
            }
        };
        self.out += n as u64;
        let allowed = GZIP_FREE_BYTES
            .saturating_add(MAX_GZIP_RATIO.saturating_mul(self.meter.compressed.load(Ordering::Relaxed)));
        if self.out > allowed {
            self.meter.stopped_at.store(self.out, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// An input named on the command line: a path, or `-` for standard input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    Stdin,
}

impl Input {
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }

    pub(crate) fn display_name(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
            Input::Stdin => "<stdin>".to_string(),
        }
    }
}

impl From<&Path> for Input {
    fn from(p: &Path) -> Input {
        Input::Path(p.to_path_buf())
    }
}

/// Reads up to `n` bytes (fewer only at end of input) and returns them with the rest of the stream.
pub(super) fn read_prefix(
    mut r: Box<dyn Read + Send>,
    n: usize,
) -> io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
    let mut buf = Vec::with_capacity(n);
    (&mut r).take(n as u64).read_to_end(&mut buf)?;
    Ok((buf, r))
}

/// A file's bytes, as read by the capture readers.
pub(super) type Stream = Box<dyn Read + Send>;

/// Sniffs the first bytes of `raw` to tell gzip from a capture, and returns a stream that starts
/// with the bytes already taken: decompressed (with its meter) when the file is gzip.
pub(super) fn ungzip(
    name: &str,
    raw: Box<dyn Read + Send>,
) -> Result<(Stream, Option<Arc<GzipMeter>>), CaptureError> {
    let (prefix, raw) = read_prefix(raw, 4).map_err(|error| CaptureError::Read {
        path: name.to_string(),
        error,
    })?;
    if prefix.is_empty() {
        return Err(CaptureError::Empty {
            path: name.to_string(),
        });
    }
    if !prefix.starts_with(&[0x1f, 0x8b]) {
        return Ok((Box::new(Cursor::new(prefix).chain(raw)), None));
    }
    let meter = Arc::new(GzipMeter::default());
    let compressed = CompressedCount {
        inner: Cursor::new(prefix).chain(raw),
        meter: meter.clone(),
    };
    let stream = BombGuard {
        inner: MultiGzDecoder::new(BufReader::new(compressed)),
        meter: meter.clone(),
        out: 0,
    };
    Ok((Box::new(stream), Some(meter)))
}

/// Opens one input (a file, or standard input) with its bytes counted into `progress`.
pub(super) fn open_counted(input: &Input, progress: &Progress) -> Result<Box<dyn Read + Send>, CaptureError> {
    let raw: Box<dyn Read + Send> = match input {
        Input::Path(p) => Box::new(File::open(p).map_err(|error| CaptureError::Open {
            path: input.display_name(),
            error,
        })?),
        Input::Stdin => Box::new(io::stdin()),
    };
    Ok(Box::new(CountingReader {
        inner: raw,
        progress: progress.clone(),
    }))
}
