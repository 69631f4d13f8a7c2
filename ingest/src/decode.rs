//! The parse-and-reject core, synchronous: one message in, a row or a rejected line out.
//!
//! Used wherever messages become rows — the listener's direct sink (spool off), the spool
//! consumer, the aggregator's recovery re-read of the spool, and `suiftly replay` — so the
//! rules are written once: the parser of the listener the message came through, then the time
//! window (older than retention or too far ahead of its receive time: rejected
//! `timestamp_out_of_range`), NUL bytes in text (`invalid_text`), a cut datagram
//! (`truncated_datagram`), a listener index the configuration no longer has
//! (`unknown_listener`). Parsing is deterministic: the window is checked against each
//! message's receive time, never the clock, so a re-read yields the same rows.
//!
//! No tokio, no sockets, no clock: the caller decides when a batch closes.

use std::sync::Arc;

use metrics::{Counter, counter};
use suiftly_parser::Parser;

use crate::batch::{RawBatchBuilder, RejectReason, RejectedLine, WriteBatch};
use crate::listener::BatchLimits;
use crate::recv::Source;

/// What one listener's messages became, counted by the decoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub parsed: u64,
    pub rejected: u64,
}

struct Input {
    name: Arc<str>,
    parser: Parser,
    parsed: Option<Counter>,
    /// Parsed lines already added to `parsed` (the counter is bumped once per batch, at
    /// [`Decoder::take`]: an atomic add per line showed in the profile).
    counted: u64,
}

/// Builds one [`WriteBatch`] at a time out of messages from any of the configured listeners.
pub struct Decoder {
    inputs: Vec<Input>,
    limits: BatchLimits,
    builder: RawBatchBuilder,
    stats: Vec<DecodeStats>,
    /// Metrics off for a re-read (the aggregator's recovery): those lines were counted when
    /// they were first stored.
    metrics: bool,
}

impl Decoder {
    /// `parsers[i]` parses what listener `i` received (the index the spool records).
    pub fn new(parsers: Vec<(Arc<str>, Parser)>, limits: BatchLimits) -> Self {
        let inputs: Vec<Input> = parsers
            .into_iter()
            .map(|(name, parser)| Input {
                parsed: Some(
                    counter!("suiftly_ingest_lines_parsed_total", "listener" => name.to_string()),
                ),
                name,
                parser,
                counted: 0,
            })
            .collect();
        Self {
            stats: vec![DecodeStats::default(); inputs.len()],
            inputs,
            builder: RawBatchBuilder::with_capacity(limits.max_rows),
            limits,
            metrics: true,
        }
    }

    /// A decoder that counts nothing in the process metrics (a re-read of stored lines).
    pub fn without_metrics(mut self) -> Self {
        self.metrics = false;
        for i in &mut self.inputs {
            i.parsed = None;
        }
        self
    }

    /// One message that arrived through listener `index` at `received_at_us`.
    pub fn decode(
        &mut self,
        index: usize,
        bytes: &[u8],
        source: Source,
        truncated: bool,
        received_at_us: i64,
    ) {
        let Some(input) = self.inputs.get(index) else {
            // A spooled record of a listener no longer configured: kept, not guessed at.
            self.builder.reject(RejectedLine {
                received_at_us,
                listener: format!("listener#{index}").into(),
                source_addr: None,
                reason: RejectReason::UnknownListener,
                error_offset: None,
                raw: bytes.to_vec(),
            });
            return;
        };
        let reject = |reason: RejectReason, offset: Option<u32>| RejectedLine {
            received_at_us,
            listener: input.name.clone(),
            source_addr: match source {
                Source::Inet(a) => Some(a.to_string()),
                Source::Unix | Source::Unknown => None,
            },
            reason,
            error_offset: offset.map(|o| o as i32),
            raw: bytes.to_vec(),
        };
        let max_past = self.limits.max_past.as_micros() as i64;
        let max_future = self.limits.max_future.as_micros() as i64;
        let rejected = if truncated {
            Some(reject(RejectReason::Truncated, None))
        } else {
            match input.parser.parse(bytes) {
                Ok(rec) => {
                    if rec.timestamp_us < received_at_us - max_past
                        || rec.timestamp_us > received_at_us + max_future
                    {
                        Some(reject(RejectReason::TimestampOutOfRange, None))
                    } else if rec.path_prefix.is_some_and(|p| p.contains('\0'))
                        || rec.termination_state.is_some_and(|t| t.contains('\0'))
                    {
                        // PostgreSQL text cannot hold NUL; the batch would never commit.
                        Some(reject(RejectReason::InvalidText, None))
                    } else {
                        self.builder.append(&rec);
                        None
                    }
                }
                Err(e) => Some(reject(RejectReason::Parse(e.kind), Some(e.offset))),
            }
        };
        match rejected {
            Some(line) => {
                self.builder.reject(line);
                self.stats[index].rejected += 1;
            }
            None => self.stats[index].parsed += 1,
        }
    }

    /// Rows plus rejected lines held.
    pub fn len(&self) -> usize {
        self.builder.len()
    }

    pub fn is_empty(&self) -> bool {
        self.builder.is_empty()
    }

    /// The batch holds `max_rows` lines: take it before decoding more.
    pub fn full(&self) -> bool {
        self.builder.len() >= self.limits.max_rows
    }

    pub fn limits(&self) -> &BatchLimits {
        &self.limits
    }

    /// Takes what has accumulated (empty when nothing has).
    pub fn take(&mut self) -> WriteBatch {
        let batch = self.builder.finish();
        for (input, st) in self.inputs.iter_mut().zip(&self.stats) {
            if let Some(c) = &input.parsed {
                c.increment(st.parsed - input.counted);
            }
            input.counted = st.parsed;
        }
        if self.metrics {
            for r in &batch.rejected {
                counter!("suiftly_ingest_lines_rejected_total", "reason" => r.reason.as_str())
                    .increment(1);
            }
        }
        batch
    }

    /// Per listener index, what its messages became so far.
    pub fn stats(&self) -> &[DecodeStats] {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use suiftly_parser::{Framing, PayloadFormat, SourceConfig};

    use super::*;

    fn decoder(max_rows: usize) -> Decoder {
        let p = Parser::new(SourceConfig {
            framing: Framing::Raw,
            payload: PayloadFormat::Suiftly,
            ..SourceConfig::default()
        });
        Decoder::new(
            vec![("a".into(), p)],
            BatchLimits {
                max_rows,
                max_age: Duration::from_millis(200),
                max_past: Duration::from_secs(3600),
                max_future: Duration::from_secs(60),
            },
        )
        .without_metrics()
    }

    const LINE: &str =
        "sf1 1795658400.000 fe 1 17 2 2 77 - 5 - 1 - 192.0.2.1 200 10 0 0 1 2 3 1 -- /x";
    const AT: i64 = 1_795_658_400_000_000;

    #[test]
    fn rows_and_every_rejection_reason() {
        let mut d = decoder(10);
        d.decode(0, LINE.as_bytes(), Source::Unix, false, AT);
        d.decode(0, LINE.as_bytes(), Source::Unix, true, AT);
        d.decode(0, b"garbage", Source::Unix, false, AT);
        d.decode(
            0,
            LINE.as_bytes(),
            Source::Unix,
            false,
            AT + 7200 * 1_000_000,
        );
        d.decode(3, LINE.as_bytes(), Source::Unix, false, AT);
        assert_eq!(d.len(), 5);
        assert_eq!(
            d.stats(),
            &[DecodeStats {
                parsed: 1,
                rejected: 3
            }]
        );
        let b = d.take();
        assert_eq!(b.rows.num_rows(), 1);
        let reasons: Vec<&str> = b.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons[0], "truncated_datagram");
        assert_eq!(reasons[2], "timestamp_out_of_range");
        assert_eq!(reasons[3], "unknown_listener");
        assert_eq!(&*b.rejected[3].listener, "listener#3");
        assert!(d.is_empty());
    }

    #[test]
    fn full_at_max_rows() {
        let mut d = decoder(2);
        d.decode(0, LINE.as_bytes(), Source::Unix, false, AT);
        assert!(!d.full());
        d.decode(0, b"x", Source::Unix, false, AT);
        assert!(d.full());
    }
}
