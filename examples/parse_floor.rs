//! The parse-only floor of the benchmark: read every packet of the given capture files and
//! slice it to its TCP header, nothing else (no reassembly, no HTTP).
//!
//! ```text
//! parse_floor FILE...              pcap-parser's streaming reader and etherparse's
//!                                  LaxSlicedPacket, as any Rust tool would read a capture
//!                                  (Ethernet files; pcap or pcapng)
//! parse_floor --bothends FILE...   bothends' own reading and decoding (capture, decode): the
//!                                  share of its time that goes to reading
//! ```
//! Prints the packets, the TCP segments and their payload bytes.

use std::fs::File;

use bothends::capture::{CaptureSet, Input};
use bothends::decode::{self, DecodeStats};
use etherparse::{LaxSlicedPacket, TransportSlice};
use pcap_parser::{Block, PcapBlockOwned, PcapError};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let own = args.first().is_some_and(|a| a == "--bothends");
    if own {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("usage: parse_floor [--bothends] FILE...");
        std::process::exit(2);
    }
    let (packets, tcp, payload) = if own {
        with_bothends(&args)
    } else {
        with_libraries(&args)
    };
    println!("{packets} packets, {tcp} TCP, {payload} payload bytes");
}

/// pcap-parser + etherparse, streaming.
fn with_libraries(files: &[String]) -> (u64, u64, u64) {
    let (mut packets, mut tcp, mut payload) = (0u64, 0u64, 0u64);
    for name in files {
        let file = File::open(name).unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        let mut reader = pcap_parser::create_reader(1 << 20, file)
            .unwrap_or_else(|e| fail(&format!("{name}: not a capture ({e:?})")));
        loop {
            match reader.next() {
                Ok((offset, block)) => {
                    let data = match &block {
                        PcapBlockOwned::Legacy(b) => Some(b.data),
                        PcapBlockOwned::NG(Block::EnhancedPacket(b)) => Some(b.data),
                        PcapBlockOwned::NG(Block::SimplePacket(b)) => Some(b.data),
                        _ => None,
                    };
                    if let Some(data) = data {
                        packets += 1;
                        if let Ok(p) = LaxSlicedPacket::from_ethernet(data) {
                            if let Some(TransportSlice::Tcp(t)) = &p.transport {
                                tcp += 1;
                                payload += t.payload().len() as u64;
                            }
                        }
                    }
                    reader.consume(offset);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => {
                    if reader.refill().is_err() {
                        break;
                    }
                }
                Err(e) => fail(&format!("{name}: {e:?}")),
            }
        }
    }
    (packets, tcp, payload)
}

/// bothends' capture and decode stages.
fn with_bothends(files: &[String]) -> (u64, u64, u64) {
    let inputs: Vec<Input> = files.iter().map(|a| Input::from_arg(a)).collect();
    let mut set = CaptureSet::open(&inputs).unwrap_or_else(|e| fail(&e.to_string()));
    let mut stats = DecodeStats::default();
    let mut payload = 0u64;
    while let Some(p) = set.next() {
        let r = decode::decode(&p);
        if let Ok(s) = &r {
            payload += s.payload.len() as u64;
        }
        stats.count(&r);
    }
    (set.summary().packets, stats.tcp, payload)
}

fn fail(msg: &str) -> ! {
    eprintln!("parse_floor: {msg}");
    std::process::exit(2);
}
