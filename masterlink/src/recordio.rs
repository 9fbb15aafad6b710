//! Mesos RecordIO framing, as used by the scheduler, executor and operator
//! streaming APIs: every record is `<decimal length>\n<length bytes>`, the next
//! record follows immediately (`20\n{"type":"HEARTBEAT"}`).
//!
//! [`encode`] frames one record; [`Decoder`] takes a stream in arbitrary
//! chunks and returns the complete records. Like Mesos' `recordio::Decoder`,
//! the decoder is strict: the length is ASCII digits only, at most
//! [`MAX_LENGTH_DIGITS`] of them, and at most the configured maximum record
//! size. After an error the decoder stays failed.

use std::fmt;

/// Largest record accepted by [`Decoder::new`]: 64 MiB.
pub const DEFAULT_MAX_RECORD_SIZE: usize = 64 * 1024 * 1024;

/// The longest length header: the digits of `u64::MAX`.
pub const MAX_LENGTH_DIGITS: usize = 20;

/// Frames `record`: its decimal length, `\n`, the bytes.
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + MAX_LENGTH_DIGITS + 1);
    encode_into(record, &mut out);
    out
}

/// Appends the framing of `record` to `out`.
pub fn encode_into(record: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(record);
}

/// What is wrong with a RecordIO stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    /// A byte other than a digit (or the newline after at least one digit) in
    /// the length header.
    #[error(
        "RecordIO: non-numeric record length (byte 0x{byte:02x} at offset {offset} of the header)"
    )]
    NonNumericLength {
        /// The offending byte.
        byte: u8,
        /// Its offset inside the header.
        offset: usize,
    },
    /// `\n` with no digit before it.
    #[error("RecordIO: empty record length")]
    EmptyLength,
    /// The length is above the decoder's maximum (or does not fit 64 bits).
    #[error("RecordIO: record length {length} exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The length as read (decimal digits).
        length: String,
        /// The decoder's maximum.
        max: usize,
    },
    /// [`MAX_LENGTH_DIGITS`] digits and still no newline.
    #[error("RecordIO: no newline after {MAX_LENGTH_DIGITS} length digits")]
    MissingNewline,
    /// The stream ended inside a record ([`Decoder::finish`]).
    #[error("RecordIO: stream ended inside a record ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the incomplete header or record.
        buffered: usize,
    },
}

#[derive(Debug, Clone)]
enum State {
    /// Reading the length digits.
    Header { digits: Vec<u8> },
    /// Reading `remaining` more bytes of a record.
    Body { record: Vec<u8>, remaining: usize },
    /// A previous error; every later call returns it again.
    Failed(RecordIoError),
}

/// Incremental RecordIO decoder: [`feed`](Decoder::feed) it chunks cut
/// anywhere, get back the records completed by each chunk.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_record_size: usize,
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder accepting records up to [`DEFAULT_MAX_RECORD_SIZE`].
    pub fn new() -> Decoder {
        Decoder::with_max_record_size(DEFAULT_MAX_RECORD_SIZE)
    }

    /// A decoder accepting records up to `max` bytes.
    pub fn with_max_record_size(max: usize) -> Decoder {
        Decoder {
            max_record_size: max,
            state: State::Header { digits: Vec::new() },
        }
    }

    /// The largest record accepted.
    pub fn max_record_size(&self) -> usize {
        self.max_record_size
    }

    /// True between records (nothing of a next record seen yet).
    pub fn is_at_boundary(&self) -> bool {
        matches!(&self.state, State::Header { digits } if digits.is_empty())
    }

    /// Decodes `chunk`, returning every record it completes (possibly none).
    /// On error the records completed earlier in the same chunk are lost and
    /// the decoder stays failed: the stream cannot be resynchronised.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, RecordIoError> {
        let mut out = Vec::new();
        let mut rest = chunk;
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Header { digits } => {
                    let Some((&byte, tail)) = rest.split_first() else {
                        break;
                    };
                    rest = tail;
                    if byte == b'\n' {
                        if digits.is_empty() {
                            return Err(self.fail(RecordIoError::EmptyLength));
                        }
                        let text = String::from_utf8_lossy(digits).into_owned();
                        let length = match text.parse::<u64>() {
                            Ok(n) if n <= self.max_record_size as u64 => n as usize,
                            _ => {
                                return Err(self.fail(RecordIoError::TooLarge {
                                    length: text,
                                    max: self.max_record_size,
                                }))
                            }
                        };
                        if length == 0 {
                            out.push(Vec::new());
                            digits.clear();
                        } else {
                            self.state = State::Body {
                                record: Vec::with_capacity(length.min(64 * 1024)),
                                remaining: length,
                            };
                        }
                    } else if byte.is_ascii_digit() {
                        if digits.len() == MAX_LENGTH_DIGITS {
                            return Err(self.fail(RecordIoError::MissingNewline));
                        }
                        digits.push(byte);
                    } else {
                        let offset = digits.len();
                        return Err(self.fail(RecordIoError::NonNumericLength { byte, offset }));
                    }
                }
                State::Body { record, remaining } => {
                    if rest.is_empty() {
                        break;
                    }
                    let take = (*remaining).min(rest.len());
                    record.extend_from_slice(&rest[..take]);
                    *remaining -= take;
                    rest = &rest[take..];
                    if *remaining == 0 {
                        out.push(std::mem::take(record));
                        self.state = State::Header { digits: Vec::new() };
                    }
                }
            }
        }
        Ok(out)
    }

    /// Checks that the stream ended on a record boundary.
    pub fn finish(&self) -> Result<(), RecordIoError> {
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            State::Header { digits } if digits.is_empty() => Ok(()),
            State::Header { digits } => Err(RecordIoError::Truncated {
                buffered: digits.len(),
            }),
            State::Body { record, .. } => Err(RecordIoError::Truncated {
                buffered: record.len(),
            }),
        }
    }

    fn fail(&mut self, e: RecordIoError) -> RecordIoError {
        self.state = State::Failed(e.clone());
        e
    }
}

impl fmt::Display for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Header { digits } => write!(f, "header ({} digits)", digits.len()),
            State::Body { remaining, .. } => write!(f, "record ({remaining} bytes to go)"),
            State::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Vec<u8>> {
        vec![
            br#"{"type":"HEARTBEAT"}"#.to_vec(),
            Vec::new(),
            b"0123456789\n\nbinary\x00\xff".to_vec(),
        ]
    }

    fn stream(recs: &[Vec<u8>]) -> Vec<u8> {
        let mut s = Vec::new();
        for r in recs {
            encode_into(r, &mut s);
        }
        s
    }

    #[test]
    fn encode_matches_the_mesos_example() {
        assert_eq!(
            encode(br#"{"type":"HEARTBEAT"}"#),
            b"20\n{\"type\":\"HEARTBEAT\"}".to_vec()
        );
        assert_eq!(encode(b""), b"0\n".to_vec());
    }

    #[test]
    fn whole_stream_at_once() {
        let mut d = Decoder::new();
        assert_eq!(d.feed(&stream(&records())).unwrap(), records());
        assert!(d.is_at_boundary());
        d.finish().unwrap();
    }

    #[test]
    fn split_at_every_offset() {
        let s = stream(&records());
        for cut in 0..=s.len() {
            let mut d = Decoder::new();
            let mut got = d.feed(&s[..cut]).unwrap();
            got.extend(d.feed(&s[cut..]).unwrap());
            assert_eq!(got, records(), "cut at {cut}");
            d.finish().unwrap();
        }
        // And at every pair of offsets.
        for a in 0..=s.len() {
            for b in a..=s.len() {
                let mut d = Decoder::new();
                let mut got = d.feed(&s[..a]).unwrap();
                got.extend(d.feed(&s[a..b]).unwrap());
                got.extend(d.feed(&s[b..]).unwrap());
                assert_eq!(got, records(), "cuts at {a} and {b}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let s = stream(&records());
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &s {
            got.extend(d.feed(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(got, records());
        assert!(d.feed(b"").unwrap().is_empty());
    }

    #[test]
    fn empty_records_and_leading_zeros() {
        let mut d = Decoder::new();
        assert_eq!(d.feed(b"0\n0\n").unwrap(), vec![Vec::<u8>::new(); 2]);
        assert_eq!(d.feed(b"003\nabc").unwrap(), vec![b"abc".to_vec()]);
    }

    #[test]
    fn truncated_stream() {
        let mut d = Decoder::new();
        assert!(d.feed(b"5\nab").unwrap().is_empty());
        assert_eq!(d.finish(), Err(RecordIoError::Truncated { buffered: 2 }));
        let mut d = Decoder::new();
        d.feed(b"12").unwrap();
        assert_eq!(d.finish(), Err(RecordIoError::Truncated { buffered: 2 }));
    }

    #[test]
    fn non_numeric_length() {
        let mut d = Decoder::new();
        let e = d.feed(b"1a\n").unwrap_err();
        assert_eq!(
            e,
            RecordIoError::NonNumericLength {
                byte: b'a',
                offset: 1
            }
        );
        // Sticky.
        assert_eq!(d.feed(b"1\nx").unwrap_err(), e);
        assert_eq!(d.finish().unwrap_err(), e);
        // Whitespace, signs and separators between records are all rejected.
        for bad in [&b" 1\nx"[..], b"-1\nx", b"+1\nx", b"1\r\nx", b"1\nx 2\nyy"] {
            let mut d = Decoder::new();
            assert!(
                matches!(d.feed(bad), Err(RecordIoError::NonNumericLength { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn empty_length() {
        let mut d = Decoder::new();
        assert_eq!(d.feed(b"\nabc"), Err(RecordIoError::EmptyLength));
        // A separator between records reads as an empty length.
        let mut d = Decoder::new();
        assert_eq!(d.feed(b"1\nx\n2\nyy"), Err(RecordIoError::EmptyLength));
    }

    #[test]
    fn length_over_maximum() {
        let mut d = Decoder::with_max_record_size(10);
        assert_eq!(d.feed(b"10\n0123456789").unwrap().len(), 1);
        assert_eq!(
            d.feed(b"11\n"),
            Err(RecordIoError::TooLarge {
                length: "11".into(),
                max: 10
            })
        );
        let mut d = Decoder::new();
        assert_eq!(d.max_record_size(), DEFAULT_MAX_RECORD_SIZE);
        let over = format!("{}\n", DEFAULT_MAX_RECORD_SIZE + 1);
        assert!(matches!(
            d.feed(over.as_bytes()),
            Err(RecordIoError::TooLarge { .. })
        ));
        // 20 digits that overflow u64.
        let mut d = Decoder::with_max_record_size(usize::MAX);
        assert!(matches!(
            d.feed(b"99999999999999999999\n"),
            Err(RecordIoError::TooLarge { .. })
        ));
    }

    #[test]
    fn missing_newline_after_20_digits() {
        let mut d = Decoder::new();
        // 20 digits are fine so far (split across chunks)...
        d.feed(b"0000000000").unwrap();
        d.feed(b"0000000001").unwrap();
        // ...a 21st is not.
        assert_eq!(d.feed(b"0"), Err(RecordIoError::MissingNewline));
        // 20 digits then the newline is a valid header.
        let mut d = Decoder::new();
        assert_eq!(
            d.feed(b"00000000000000000001\nx").unwrap(),
            vec![b"x".to_vec()]
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            RecordIoError::MissingNewline.to_string(),
            "RecordIO: no newline after 20 length digits"
        );
        assert_eq!(
            RecordIoError::TooLarge {
                length: "11".into(),
                max: 10
            }
            .to_string(),
            "RecordIO: record length 11 exceeds the maximum of 10 bytes"
        );
    }
}
