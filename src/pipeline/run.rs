//! The engine: readers in parallel → pairer → alignment and diagnosis → sink.
//!
//! [`Engine`] is the one driver of pairing and judging: [`run`] feeds it batch by batch from the
//! reader threads; [`analyze`] and [`flows`] feed it sides already read (every connection at
//! once, through `judge_read`). [`Analysis`] is the sink that keeps everything.

use std::collections::VecDeque;
use std::sync::mpsc;

use super::{Conn, Side, SideOptions, SideResult, read_side_with};
use crate::capture::{CaptureSet, Warning, WarningKind};
use crate::decode::Endpoint;
use crate::diagnose::{self, Diagnosis, Finding, IdleCloses, Verdict};
use crate::incident::clients::{ClientLimits, ClientMatcher, ClientRequests};
use crate::pair::{
    self, Alignment, Backends, ClockOffset, MatchMethod, Matched, Pair, Pairer, Pairing, SeqMap,
};

/// Where findings go, as soon as each is judged (a report writer, or an [`Analysis`]).
pub trait Sink {
    fn finding(&mut self, f: Finding);

    /// `analyze` only: every connection of the proxy capture as it finishes, before pairing
    /// (its client side too, when the capture holds it), and how far that capture has been read
    /// (`i64::MAX`: to its end). For the client requests (`incident::clients`).
    fn proxy_connections(&mut self, _conns: &[Box<Conn>], _pos: i64) {}
}

/// What to report.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Every connection of one capture (`flows`).
    Flows,
    /// The proxy→backend connections (`analyze`), those of the given backend endpoints if any.
    Analyze { backends: Vec<Endpoint> },
}

/// What the run yielded besides the findings.
#[derive(Debug)]
pub struct RunEnd {
    /// The sides as given, their `connections` empty.
    pub sides: Vec<SideResult>,
    pub clock: Option<ClockOffset>,
    /// Backend endpoints in the proxy capture's and the backend capture's view.
    pub backends: Backends,
}

#[allow(
    clippy::vec_box,
    reason = "a connection moves several times on its way to a report: boxed once, moved as a pointer"
)]
enum Msg {
    Batch(Vec<Box<Conn>>, i64),
    End(Box<SideResult>),
}

/// Reads the sides (proxy first) in parallel, one thread each, and hands every connection to
/// `sink` as soon as it is judged. The main thread pairs and diagnoses while the readers read, and
/// always takes the next batch from the side that is behind in time, so the other waits on its
/// bounded channel instead of piling connections up.
pub fn run(sides: Vec<(Side, CaptureSet)>, opts: SideOptions, mode: Mode, sink: &mut dyn Sink) -> RunEnd {
    let two = sides.len() > 1;
    // The memory cap of open connections is for the run: each side's table gets its share.
    let mut opts = opts;
    opts.tcp.max_open_bytes /= sides.len().max(1);
    let first_side = sides.first().map_or(Side::Single, |s| s.0);
    std::thread::scope(|scope| {
        let mut receivers = Vec::new();
        let mut handles = Vec::new();
        for (side, set) in sides {
            let (tx, rx) = mpsc::sync_channel::<Msg>(4);
            handles.push(scope.spawn(move || {
                // One capture: its reading and decoding get a thread of their own.
                let r = read_side_with(side, set, opts, !two, &mut |batch, pos| {
                    let _ = tx.send(Msg::Batch(batch, pos));
                });
                let _ = tx.send(Msg::End(Box::new(r)));
            }));
            receivers.push(rx);
        }
        let mut engine = Engine::new(two, first_side, &mode);
        let mut alive = [true, two];
        let mut results: [Option<SideResult>; 2] = [None, None];
        let mut toggle = 0;
        loop {
            let side = match alive {
                [true, true] => match engine.behind() {
                    Some(s) => s,
                    None => {
                        toggle = 1 - toggle;
                        toggle
                    }
                },
                [true, false] => 0,
                [false, true] => 1,
                [false, false] => break,
            };
            match receivers[side].recv() {
                Ok(Msg::Batch(conns, pos)) => engine.batch(side, conns, pos, sink),
                Ok(Msg::End(r)) => {
                    alive[side] = false;
                    engine.side_done(side, r.capture.last_ts_ns.unwrap_or(i64::MIN), sink);
                    results[side] = Some(*r);
                }
                // The reader ended without a result: it panicked; join() below re-raises it.
                Err(_) => alive[side] = false,
            }
        }
        for h in handles {
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        }
        let (clock, backends, early, judged_early) = engine.finish(sink);
        memory_cap_warnings(&mut results, early, judged_early);
        RunEnd {
            sides: results.into_iter().flatten().collect(),
            clock,
            backends,
        }
    })
}

/// The memory caps of what waited for pairing (per side: connections that stopped waiting early)
/// and for judging (empty replies judged early), said beside the report.
fn memory_cap_warnings(results: &mut [Option<SideResult>; 2], early: [u64; 2], judged_early: u64) {
    for (side, r) in results.iter_mut().enumerate() {
        let Some(r) = r else { continue };
        let names = r.capture.files.join(", ");
        if early[side] > 0 {
            r.warnings.push(Warning::side(
                WarningKind::PairingMemoryCap,
                format!(
                    "{names}: {} connections stopped waiting for their counterpart in the other \
                 capture early (those waiting took more than {} MiB): some may be reported as \
                 seen at one end only",
                    early[side],
                    pair::WAITING_BYTES >> 20
                ),
            ));
        }
        if side == 0 && judged_early > 0 {
            r.warnings.push(Warning::side(
                WarningKind::JudgingMemoryCap,
                format!(
                    "{names}: {judged_early} empty replies on reused connections were judged before \
                 the backends' keep-alive timeouts were known (those waiting took more than {} \
                 MiB)",
                    JUDGE_DEFERRED_BYTES >> 20
                ),
            ));
        }
    }
}

/// Pairing and judging, fed batch by batch.
struct Engine {
    pairer: Option<Pairer>,
    judge: Judge,
    pos: [i64; 2],
}

impl Engine {
    fn new(two: bool, first_side: Side, mode: &Mode) -> Engine {
        let pairer = match mode {
            Mode::Flows => None,
            // The backend host's capture alone: its accepted connections.
            Mode::Analyze { backends } if !two && first_side == Side::Backend => {
                Some(Pairer::backend_capture_only(backends))
            }
            Mode::Analyze { backends } => Some(Pairer::new(two, backends)),
        };
        Engine::with(pairer, two, first_side)
    }

    /// `pairer`: None to judge every connection alone (`flows`).
    fn with(pairer: Option<Pairer>, two: bool, first_side: Side) -> Engine {
        Engine {
            pairer,
            judge: Judge::new(two, first_side),
            pos: [i64::MIN, i64::MIN],
        }
    }

    /// The side whose reader is behind in time (both clocks compared through the offset), once
    /// the offset is known.
    fn behind(&self) -> Option<usize> {
        let c = self.pairer.as_ref()?.clock()?;
        Some(if self.pos[0] <= c.to_proxy(self.pos[1]) {
            0
        } else {
            1
        })
    }

    #[allow(
        clippy::vec_box,
        reason = "a connection moves several times on its way to a report: boxed once, moved as a pointer"
    )]
    fn batch(&mut self, side: usize, conns: Vec<Box<Conn>>, pos: i64, sink: &mut dyn Sink) {
        // The first batch comes at the capture's first packet.
        self.judge.starts[side].get_or_insert(pos);
        if pos != i64::MAX {
            // (`i64::MAX`: the last batch, read to the end; the end itself comes with the side's
            // result.)
            self.judge.read_to[side] = self.judge.read_to[side].max(pos);
        }
        self.pos[side] = self.pos[side].max(pos);
        self.hand_over(side, conns, pos, sink);
        if let Some(p) = &mut self.pairer {
            p.advance(side, pos);
            self.judge_ready(sink);
        }
    }

    /// Connections of `side` read up to `pos`: to the pairer (judged once paired), or judged
    /// at once without one.
    #[allow(
        clippy::vec_box,
        reason = "a connection moves several times on its way to a report: boxed once, moved as a pointer"
    )]
    fn hand_over(&mut self, side: usize, conns: Vec<Box<Conn>>, pos: i64, sink: &mut dyn Sink) {
        match &mut self.pairer {
            Some(p) => {
                if side == 0 {
                    sink.proxy_connections(&conns, pos);
                }
                for c in conns {
                    p.push(side, c);
                }
            }
            None => {
                for c in conns {
                    let m = Matched {
                        proxy: Some(c),
                        backend: None,
                        method: MatchMethod::OneSide,
                        seq_map: SeqMap::default(),
                    };
                    self.judge.judge(m, None, sink);
                }
            }
        }
    }

    fn side_done(&mut self, side: usize, last_ts: i64, sink: &mut dyn Sink) {
        self.end_side(side, last_ts);
        self.judge_ready(sink);
    }

    /// `side` has no more connections; its capture's last packet was at `last_ts`.
    fn end_side(&mut self, side: usize, last_ts: i64) {
        self.judge.read_to[side] = self.judge.read_to[side].max(last_ts);
        if let Some(p) = &mut self.pairer {
            p.side_done(side);
        }
    }

    /// Judges what the pairer has decided so far.
    fn judge_ready(&mut self, sink: &mut dyn Sink) {
        if let Some(p) = &mut self.pairer {
            let clock = p.clock();
            for m in p.drain() {
                self.judge.judge(m, clock, sink);
            }
        }
    }

    /// Ends the run: the clock, the backends, how many connections of each side stopped waiting
    /// for pairing early and how many were judged early (memory caps).
    fn finish(mut self, sink: &mut dyn Sink) -> (Option<ClockOffset>, Backends, [u64; 2], u64) {
        let (clock, backends, early) = match self.pairer.take() {
            Some(p) => {
                let early = p.decided_early();
                let (rest, clock, backends) = p.finish();
                for m in rest {
                    self.judge.judge(m, clock, sink);
                }
                (clock, backends, early)
            }
            None => (None, (Vec::new(), Vec::new()), [0, 0]),
        };
        self.judge.finish(clock, sink);
        (clock, backends, early, self.judge.judged_early)
    }
}

/// Memory the judgements waiting for the end (an empty reply on a reused connection, for the
/// backend's idle timeout) may take; beyond, the oldest are judged at once.
const JUDGE_DEFERRED_BYTES: usize = 16 * 1024 * 1024;

fn matched_bytes(m: &Matched) -> usize {
    [m.proxy.as_deref(), m.backend.as_deref()]
        .into_iter()
        .flatten()
        .map(super::conn_bytes)
        .sum()
}

/// Aligns and diagnoses each connection. A few judgements wait for the end: an empty reply on a
/// reused connection may be a keep-alive race that only the backend's idle timeout — learned from
/// connections still to come — tells.
struct Judge {
    two: bool,
    first_side: Side,
    idle: IdleCloses,
    deferred: VecDeque<Matched>,
    /// Estimated memory of `deferred`; past `JUDGE_DEFERRED_BYTES` the oldest are judged at
    /// once (without the idle timeout they waited for), and counted here.
    deferred_bytes: usize,
    judged_early: u64,
    /// First packet time of each capture, once read, and how far each has been read (own
    /// clocks): what a capture can prove absent lies between the two.
    starts: [Option<i64>; 2],
    read_to: [i64; 2],
}

impl Judge {
    fn new(two: bool, first_side: Side) -> Judge {
        Judge {
            two,
            first_side,
            idle: IdleCloses::default(),
            deferred: VecDeque::new(),
            deferred_bytes: 0,
            judged_early: 0,
            starts: [None, None],
            read_to: [i64::MIN, i64::MIN],
        }
    }

    fn judge(&mut self, m: Matched, clock: Option<ClockOffset>, sink: &mut dyn Sink) {
        if let Some(p) = &m.proxy {
            self.idle.observe(p);
        }
        let (alignment, d) = self.diagnose(&m, clock);
        let reused_empty = d.verdict == Verdict::BackendEmptyReply
            && m.proxy
                .as_ref()
                .is_some_and(|p| p.app.exchanges.len() > 1 && self.idle.timeout(p.server).is_none());
        if reused_empty {
            self.deferred_bytes += matched_bytes(&m);
            self.deferred.push_back(m);
            while self.deferred_bytes > JUDGE_DEFERRED_BYTES {
                let Some(m) = self.deferred.pop_front() else { break };
                self.deferred_bytes -= matched_bytes(&m);
                self.judged_early += 1;
                let (alignment, d) = self.diagnose(&m, clock);
                sink.finding(Finding::of(m, alignment, d, clock));
            }
            return;
        }
        sink.finding(Finding::of(m, alignment, d, clock));
    }

    fn diagnose(&self, m: &Matched, clock: Option<ClockOffset>) -> (Option<Alignment>, Diagnosis) {
        let alignment = match (m.proxy.as_deref(), m.backend.as_deref()) {
            (Some(p), Some(b)) => Some(pair::align(
                p,
                b,
                clock.as_ref(),
                m.seq_map,
                self.read_to[1],
                self.read_to[0],
            )),
            _ => None,
        };
        let cx = diagnose::Context {
            p: m.proxy.as_deref(),
            b: m.backend.as_deref(),
            two_captures: self.two,
            first_side: self.first_side,
            clock: clock.as_ref(),
            seq_map: m.seq_map,
            alignment: alignment.as_ref(),
            backend_idle_timeout: m.proxy.as_ref().and_then(|p| self.idle.timeout(p.server)),
            backend_capture: match self.starts[1] {
                Some(start) if self.two => Some((start, self.read_to[1])),
                _ => None,
            },
            proxy_capture_until: self.two.then_some(self.read_to[0]),
        };
        let mut d = diagnose::diagnose(&cx);
        // The backend host's capture alone: say what the proxy's would settle.
        if !self.two && self.first_side == Side::Backend {
            if let Some(c) = &m.proxy {
                d = diagnose::backend_only_override(c, d);
            }
            d.explanation.push_str(" Backend capture only: ");
            d.explanation
                .push_str(diagnose::proxy_capture_would_settle(d.verdict));
        }
        (alignment, d)
    }

    fn finish(&mut self, clock: Option<ClockOffset>, sink: &mut dyn Sink) {
        self.deferred_bytes = 0;
        for m in std::mem::take(&mut self.deferred) {
            let (alignment, d) = self.diagnose(&m, clock);
            sink.finding(Finding::of(m, alignment, d, clock));
        }
    }
}

/// Everything kept: the sides with the reported connections, how they pair, the alignment of each
/// pair seen at both ends, and each diagnosis. The sink for tests and for reports that need every
/// connection at once.
#[derive(Debug)]
pub struct Analysis {
    /// One side (`Single` or `Proxy`), or `Proxy` then `Backend`.
    pub sides: Vec<SideResult>,
    pub pairing: Pairing,
    pub alignments: Vec<Option<Alignment>>,
    pub diagnoses: Vec<Option<Diagnosis>>,
    /// The requests of the proxy capture's client side, with their attempts at the backend (each
    /// attempt's `connection` is the index of its pair in `pairing.pairs`). Empty for `flows`.
    pub client_requests: ClientRequests,
    clients: Option<ClientMatcher>,
}

impl Analysis {
    fn collecting(sides: Vec<SideResult>) -> Analysis {
        Analysis {
            sides,
            pairing: Pairing::default(),
            alignments: Vec::new(),
            diagnoses: Vec::new(),
            client_requests: ClientRequests::default(),
            clients: Some(ClientMatcher::new(ClientLimits::default())),
        }
    }

    /// Runs everything and keeps every finding.
    pub fn run(sides: Vec<(Side, CaptureSet)>, opts: SideOptions, mode: Mode) -> Analysis {
        let mut a = Analysis::collecting(Vec::new());
        if matches!(mode, Mode::Flows) {
            a.clients = None;
        }
        let end = run(sides, opts, mode, &mut a);
        a.complete(end);
        a
    }

    fn complete(&mut self, end: RunEnd) {
        let mut kept: Vec<Vec<Conn>> = self
            .sides
            .iter_mut()
            .map(|s| std::mem::take(&mut s.connections))
            .collect();
        self.sides = end.sides;
        for (s, conns) in self.sides.iter_mut().zip(kept.iter_mut()) {
            s.connections = std::mem::take(conns);
        }
        if let Some(m) = self.clients.take() {
            self.client_requests = m.finish();
        }
        self.pairing.clock = end.clock;
        self.pairing.backends_proxy_view = end.backends.0;
        self.pairing.backends_backend_view = end.backends.1;
    }

    fn keep(&mut self, side: usize, c: Box<Conn>) -> usize {
        while self.sides.len() <= side {
            self.sides.push(SideResult {
                side: if self.sides.is_empty() {
                    Side::Proxy
                } else {
                    Side::Backend
                },
                capture: Default::default(),
                decode: Default::default(),
                anomalies: Default::default(),
                warnings: Vec::new(),
                tcp_connections: 0,
                connections: Vec::new(),
            });
        }
        let v = &mut self.sides[side].connections;
        v.push(*c);
        v.len() - 1
    }
}

impl Sink for Analysis {
    fn finding(&mut self, f: Finding) {
        if let Some(m) = &mut self.clients {
            let id = self.pairing.pairs.len().to_string();
            m.backend_connection(&id, f.pair.proxy.as_deref(), &f.diagnosis);
        }
        let Pair {
            proxy,
            backend,
            method,
            seq_map,
        } = f.pair;
        let proxy = proxy.map(|c| self.keep(0, c));
        let backend = backend.map(|c| self.keep(1, c));
        self.pairing.pairs.push(Pair {
            proxy,
            backend,
            method,
            seq_map,
        });
        self.alignments.push(f.alignment);
        self.diagnoses.push(Some(f.diagnosis));
    }

    fn proxy_connections(&mut self, conns: &[Box<Conn>], pos: i64) {
        if let Some(m) = &mut self.clients {
            m.proxy_connections(conns, pos);
        }
    }
}

/// Judges already-read sides (every connection in memory): the proxy→backend connections of a
/// proxy side and, optionally, a backend side. `backends` narrows the backend endpoints.
pub fn analyze(sides: Vec<SideResult>, backends: &[Endpoint]) -> Analysis {
    let two = sides.len() > 1;
    let first_side = sides.first().map_or(Side::Proxy, |s| s.side);
    let mode = Mode::Analyze {
        backends: backends.to_vec(),
    };
    let engine = Engine::new(two, first_side, &mode);
    judge_read(sides, engine, Analysis::collecting(Vec::new()))
}

/// Judges every connection of one already-read capture (`flows`).
pub fn flows(side: SideResult) -> Analysis {
    let engine = Engine::with(None, false, side.side);
    let mut a = Analysis::collecting(Vec::new());
    a.clients = None;
    judge_read(vec![side], engine, a)
}

/// Drives `engine` over sides already read, as [`run`] does while reading: every connection of
/// each side (as one batch read to the end), then the sides' ends, then what is left.
fn judge_read(sides: Vec<SideResult>, mut engine: Engine, mut a: Analysis) -> Analysis {
    let mut shells = Vec::new();
    let mut conns = Vec::new();
    for mut s in sides {
        conns.push(std::mem::take(&mut s.connections));
        shells.push(s);
    }
    let ends: Vec<i64> = shells
        .iter()
        .map(|s| s.capture.last_ts_ns.unwrap_or(i64::MIN))
        .collect();
    for (side, shell) in shells.iter().enumerate() {
        engine.judge.starts[side] = shell.capture.first_ts_ns;
        engine.judge.read_to[side] = shell.capture.last_ts_ns.unwrap_or(i64::MIN);
    }
    for (side, list) in conns.into_iter().enumerate() {
        engine.hand_over(side, list.into_iter().map(Box::new).collect(), i64::MAX, &mut a);
    }
    // Every side ends before anything is judged: the pairer decides with both sides in hand.
    for (side, &end) in ends.iter().enumerate() {
        engine.end_side(side, end);
    }
    engine.judge_ready(&mut a);
    let (clock, backends, _, _) = engine.finish(&mut a);
    a.complete(RunEnd {
        sides: shells,
        clock,
        backends,
    });
    a
}
