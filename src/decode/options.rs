//! TCP options: the ones bothends uses (MSS, window scale, SACK blocks), read directly or from
//! etherparse's iterator (the two agree).

use etherparse::TcpOptionElement;

use super::TcpOptions;

/// The options bothends uses, read as etherparse's `TcpOptionsIterator` reads them (end of list,
/// an unknown kind or a wrong length stops the reading, not the segment), without its
/// per-option results: a timestamp on every packet made option parsing a quarter of decoding.
/// `tcp_options_read_as_etherparse_reads_them` compares the two.
pub(super) fn read_tcp_options(mut o: &[u8]) -> TcpOptions {
    let be16 = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let be32 = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut out = TcpOptions::default();
    while let Some(&kind) = o.first() {
        let len = match kind {
            // Noop
            1 => {
                o = &o[1..];
                continue;
            }
            // MSS, window scale, SACK permitted, timestamps: a fixed length.
            2 => 4,
            3 => 3,
            4 => 2,
            8 => 10,
            // SACK: 1 to 4 blocks.
            5 => match o.get(1) {
                Some(&l @ (10 | 18 | 26 | 34)) => usize::from(l),
                _ => break,
            },
            // End of list, or unknown.
            _ => break,
        };
        if o.len() < len || usize::from(o[1]) != len {
            break;
        }
        match kind {
            2 => out.mss = Some(be16(o, 2)),
            3 => out.window_scale = Some(o[2]),
            4 => out.sack_permitted = true,
            5 => {
                let blocks = (len - 2) / 8;
                for i in 0..blocks {
                    out.sack[i] = (be32(o, 2 + 8 * i), be32(o, 6 + 8 * i));
                }
                out.sack_len = blocks as u8;
            }
            _ => out.timestamp = Some((be32(o, 2), be32(o, 6))),
        }
        o = &o[len..];
    }
    out
}

/// The options bothends uses; a malformed option ends option parsing, not the segment.
pub(super) fn tcp_options(options: etherparse::TcpOptionsIterator<'_>) -> TcpOptions {
    let mut out = TcpOptions::default();
    for opt in options {
        match opt {
            Ok(TcpOptionElement::MaximumSegmentSize(m)) => out.mss = Some(m),
            Ok(TcpOptionElement::WindowScale(s)) => out.window_scale = Some(s),
            Ok(TcpOptionElement::SelectiveAcknowledgementPermitted) => out.sack_permitted = true,
            Ok(TcpOptionElement::SelectiveAcknowledgement(first, rest)) => {
                out.sack[0] = first;
                let mut n = 1;
                for b in rest.into_iter().flatten() {
                    out.sack[n] = b;
                    n += 1;
                }
                out.sack_len = n as u8;
            }
            Ok(TcpOptionElement::Timestamp(val, ecr)) => out.timestamp = Some((val, ecr)),
            Ok(TcpOptionElement::Noop) => {}
            Err(_) => break,
        }
    }
    out
}
