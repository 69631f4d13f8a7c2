//! Syslog-over-TCP framing (RFC 6587), sans-IO.
//!
//! Two framings exist and senders pick one: *octet counting* (`MSG-LEN SP MSG`, RFC 6587
//! §3.4.1; what RFC 5425 mandates) and *non-transparent* framing with an LF trailer (§3.4.2;
//! what HAProxy 2.6 `ring` servers send, verified with 2.6.12). A frame starting with a digit
//! is octet-counted (a syslog message starts with `<`), anything else runs to the next LF, so
//! the decoder needs no configuration and copes with either on the same connection.
//!
//! The decoder never allocates: it reports the byte range of the next frame in the caller's
//! buffer (a `bytes::BytesMut` in the TCP listener) and how much to consume. A frame longer
//! than `max_frame` is reported as [`Frame::Oversized`] with its first `max_frame` bytes so
//! the caller can keep them verbatim as a rejected line; the rest of that frame is skipped.

use std::ops::Range;

/// What [`FrameDecoder::decode`] found at the start of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Need more bytes.
    Incomplete,
    /// A whole message at `range`; consume `consumed` bytes.
    Message {
        range: Range<usize>,
        consumed: usize,
    },
    /// A message longer than `max_frame`: `range` holds its first `max_frame` bytes; consume
    /// `consumed` (may be less than the frame: the decoder discards the rest on later calls).
    Oversized {
        range: Range<usize>,
        consumed: usize,
    },
    /// The bytes cannot start a frame (e.g. a length prefix that is not a number); consume
    /// `consumed` bytes (up to and including the next LF) and report them as rejected.
    Garbage {
        range: Range<usize>,
        consumed: usize,
    },
}

/// Longest accepted `MSG-LEN` prefix: 10 digits is far beyond any sane frame.
const MAX_LEN_DIGITS: usize = 10;

#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_frame: usize,
    /// Bytes of an oversized frame still to discard.
    discard: usize,
    /// Discarding an oversized LF-framed message up to its LF.
    discard_to_lf: bool,
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame: max_frame.max(1),
            discard: 0,
            discard_to_lf: false,
        }
    }

    /// Looks at the start of `buf`. The caller consumes what the result says and calls again
    /// until [`Frame::Incomplete`].
    pub fn decode(&mut self, buf: &[u8]) -> Frame {
        // Finish discarding the tail of an oversized frame first.
        if self.discard > 0 {
            let n = self.discard.min(buf.len());
            self.discard -= n;
            if n == 0 {
                return Frame::Incomplete;
            }
            return Frame::Message {
                range: 0..0,
                consumed: n,
            };
        }
        if self.discard_to_lf {
            return match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.discard_to_lf = false;
                    Frame::Message {
                        range: 0..0,
                        consumed: i + 1,
                    }
                }
                None if buf.is_empty() => Frame::Incomplete,
                None => Frame::Message {
                    range: 0..0,
                    consumed: buf.len(),
                },
            };
        }
        // Stray line ends between frames (some senders add CRLF after octet frames).
        let lead = buf
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        if lead > 0 {
            return Frame::Message {
                range: 0..0,
                consumed: lead,
            };
        }
        match buf.first() {
            None => Frame::Incomplete,
            Some(b'1'..=b'9') => self.octet_counted(buf),
            Some(_) => self.lf_terminated(buf),
        }
    }

    fn octet_counted(&mut self, buf: &[u8]) -> Frame {
        let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == buf.len() {
            return if digits > MAX_LEN_DIGITS {
                self.garbage(buf)
            } else {
                Frame::Incomplete
            };
        }
        if digits > MAX_LEN_DIGITS || buf[digits] != b' ' {
            return self.garbage(buf);
        }
        let len: usize = match std::str::from_utf8(&buf[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(n) => n,
            None => return self.garbage(buf),
        };
        let start = digits + 1;
        if len > self.max_frame {
            // Report the first max_frame bytes once they are here, then skip the rest.
            if buf.len() < start + self.max_frame {
                return Frame::Incomplete;
            }
            self.discard = len - self.max_frame;
            return Frame::Oversized {
                range: start..start + self.max_frame,
                consumed: start + self.max_frame,
            };
        }
        if buf.len() < start + len {
            return Frame::Incomplete;
        }
        Frame::Message {
            range: start..start + len,
            consumed: start + len,
        }
    }

    fn lf_terminated(&mut self, buf: &[u8]) -> Frame {
        let limit = buf.len().min(self.max_frame + 1);
        match buf[..limit].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = if i > 0 && buf[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                Frame::Message {
                    range: 0..end,
                    consumed: i + 1,
                }
            }
            None if buf.len() > self.max_frame => {
                self.discard_to_lf = true;
                Frame::Oversized {
                    range: 0..self.max_frame,
                    consumed: self.max_frame,
                }
            }
            None => Frame::Incomplete,
        }
    }

    /// Not a frame: give up to the next LF (or everything, bounded) as one rejected chunk.
    fn garbage(&mut self, buf: &[u8]) -> Frame {
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => Frame::Garbage {
                range: 0..i.min(self.max_frame),
                consumed: i + 1,
            },
            None if buf.len() > self.max_frame => {
                self.discard_to_lf = true;
                Frame::Garbage {
                    range: 0..self.max_frame,
                    consumed: self.max_frame,
                }
            }
            None => Frame::Incomplete,
        }
    }
}

/// At the end of a connection, the bytes left over: a cut frame is kept as rejected.
pub fn leftover(buf: &[u8]) -> Option<&[u8]> {
    let trimmed = buf.strip_suffix(b"\n").unwrap_or(buf);
    (!trimmed.is_empty()).then_some(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Frames = Vec<Vec<u8>>;

    /// Feeds `input` in chunks of `chunk` bytes and returns (messages, oversized, garbage).
    fn run(input: &[u8], chunk: usize, max: usize) -> (Frames, Frames, Frames) {
        let mut d = FrameDecoder::new(max);
        let mut buf: Vec<u8> = Vec::new();
        let (mut msgs, mut over, mut bad) = (Vec::new(), Vec::new(), Vec::new());
        for part in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(part);
            loop {
                match d.decode(&buf) {
                    Frame::Incomplete => break,
                    Frame::Message { range, consumed } => {
                        if !range.is_empty() {
                            msgs.push(buf[range].to_vec());
                        }
                        buf.drain(..consumed);
                    }
                    Frame::Oversized { range, consumed } => {
                        over.push(buf[range].to_vec());
                        buf.drain(..consumed);
                    }
                    Frame::Garbage { range, consumed } => {
                        bad.push(buf[range].to_vec());
                        buf.drain(..consumed);
                    }
                }
            }
        }
        (msgs, over, bad)
    }

    #[test]
    fn octet_counting_and_lf_framing_mix() {
        let input = b"12 <134>1 hello<134>1 lf framed\n5 <1>ab\r\n<2>x\r\n";
        let (m, o, g) = run(input, 3, 100);
        assert_eq!(
            m,
            vec![
                b"<134>1 hello".to_vec(),
                b"<134>1 lf framed".to_vec(),
                b"<1>ab".to_vec(),
                b"<2>x".to_vec()
            ]
        );
        assert!(o.is_empty() && g.is_empty());
    }

    #[test]
    fn oversized_frames_are_cut_and_the_stream_resyncs() {
        let mut input = b"20 <1>aaaaaaaaaaaaaaaaa".to_vec();
        input.extend_from_slice(b"<2>bbbbbbbbbbbbbbb\n4 <3>c");
        let (m, o, g) = run(&input, 4, 8);
        assert_eq!(o, vec![b"<1>aaaaa".to_vec(), b"<2>bbbbb".to_vec()]);
        assert_eq!(m, vec![b"<3>c".to_vec()]);
        assert!(g.is_empty());
    }

    #[test]
    fn a_bad_length_prefix_is_garbage_up_to_the_line_end() {
        let (m, o, g) = run(b"12x <1>nope\n<2>ok\n", 100, 100);
        assert_eq!(g, vec![b"12x <1>nope".to_vec()]);
        assert_eq!(m, vec![b"<2>ok".to_vec()]);
        assert!(o.is_empty());
        let (_, _, g) = run(b"99999999999 <1>x\n", 100, 100);
        assert_eq!(g.len(), 1, "an 11-digit length is not a length");
    }

    #[test]
    fn leftover_keeps_a_cut_frame() {
        assert_eq!(leftover(b"<1>cut"), Some(&b"<1>cut"[..]));
        assert_eq!(leftover(b""), None);
    }

    proptest! {
        /// Any mix of well-formed frames survives any chunking, in order.
        #[test]
        fn frames_round_trip_under_any_chunking(
            msgs in prop::collection::vec(("<[0-9]{1,3}>[ -~]{0,40}", any::<bool>()), 0..20),
            chunk in 1usize..50,
        ) {
            let mut input = Vec::new();
            for (m, octet) in &msgs {
                if *octet {
                    input.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
                } else {
                    input.extend_from_slice(m.as_bytes());
                    input.push(b'\n');
                }
            }
            let (got, o, g) = run(&input, chunk, 1000);
            prop_assert!(o.is_empty() && g.is_empty());
            let want: Vec<Vec<u8>> = msgs.iter().map(|(m, _)| m.as_bytes().to_vec()).collect();
            prop_assert_eq!(got, want);
        }

        /// Arbitrary bytes never panic and always make progress.
        #[test]
        fn never_panics(input in prop::collection::vec(any::<u8>(), 0..500), chunk in 1usize..64, max in 1usize..64) {
            let _ = run(&input, chunk, max);
        }
    }
}
