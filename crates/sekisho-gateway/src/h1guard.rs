//! A byte-level guard in front of hyper's HTTP/1 parser.
//!
//! hyper resolves some ambiguous requests on its own (it drops `Content-Length` when
//! `Transfer-Encoding: chunked` is present, accepts a bare LF as a line end, accepts a
//! repeated identical `Content-Length`). A gateway must not resolve them: the upstream, or
//! a proxy beside us, may resolve them differently (request smuggling). So the guard reads
//! every request head *before* hyper sees its end and refuses:
//!
//! - bare LF or bare CR, NUL, obsolete line folding;
//! - `Content-Length` together with `Transfer-Encoding`; more than one `Content-Length`
//!   (even with the same value) or a list; anything but digits;
//! - `Transfer-Encoding` other than exactly one `chunked`, or on HTTP/1.0.
//!
//! It follows the body framing (fixed length or chunked) to find the next head on a
//! keep-alive connection, and stops inspecting after an upgrade or an HTTP/2 preface.
//!
//! On a violation it cuts the stream *before* the end of the offending head and feeds
//! hyper a NUL byte instead: hyper never completes that request, answers 400 and closes
//! the connection. Requests already complete before it on the connection are unaffected.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Called once with the reason code when a request is refused.
pub type OnReject = Arc<dyn Fn(&'static str) + Send + Sync>;

const MAX_LINE: usize = 16 * 1024;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Whatever hyper has read of the refused head, these bytes complete it as invalid: a NUL
/// is never valid in a method, target, version, header name, header value or chunk size,
/// and the line ends make the head complete so the parser reports an error (400) rather
/// than waiting for more.
const POISON: &[u8] = b"\0\r\n\r\n";

#[derive(Debug)]
enum State {
    /// Connection start on a plaintext listener: may be an HTTP/2 preface.
    Sniff {
        seen: usize,
    },
    Head(Head),
    Fixed {
        left: u64,
    },
    ChunkSize {
        line: Vec<u8>,
        prev_cr: bool,
    },
    ChunkData {
        left: u64,
    },
    ChunkCr,
    ChunkLf,
    Trailers(Head),
    /// Stopped inspecting: upgraded or HTTP/2.
    Opaque,
    /// A violation: deliver [`POISON`], then end of stream.
    Poison {
        pos: usize,
    },
}

#[derive(Debug, Default)]
struct Head {
    line: Vec<u8>,
    prev_cr: bool,
    lines: usize,
    /// Request line seen (a head's first non-empty line).
    started: bool,
    http10: bool,
    connect: bool,
    content_lengths: Vec<Vec<u8>>,
    transfer_encodings: Vec<Vec<u8>>,
    upgrade: bool,
    connection_upgrade: bool,
}

pub struct H1Guard<S> {
    inner: S,
    state: State,
    on_reject: Option<OnReject>,
}

impl<S> H1Guard<S> {
    /// `sniff_h2`: the connection may start with an HTTP/2 preface (plaintext listeners,
    /// where HTTP/2 comes by prior knowledge instead of ALPN).
    pub fn new(inner: S, sniff_h2: bool, on_reject: OnReject) -> H1Guard<S> {
        H1Guard {
            inner,
            state: if sniff_h2 {
                State::Sniff { seen: 0 }
            } else {
                State::Head(Head::default())
            },
            on_reject: Some(on_reject),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

enum Step {
    Continue,
    Reject(&'static str),
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end.max(start)]
}

impl Head {
    /// Feeds one byte of a head. Returns `Some(next state)` when the head is complete.
    fn feed(&mut self, b: u8, trailers: bool) -> Result<Option<State>, &'static str> {
        match b {
            0 => return Err("nul_in_head"),
            b'\r' => {
                if self.prev_cr {
                    return Err("bare_cr");
                }
                self.prev_cr = true;
                return Ok(None);
            }
            b'\n' => {
                if !self.prev_cr {
                    return Err("bare_lf");
                }
                self.prev_cr = false;
                let mut line = std::mem::take(&mut self.line);
                let next = self.end_line(&line, trailers);
                // Keep the buffer for the head's next line.
                line.clear();
                self.line = line;
                return next;
            }
            _ => {}
        }
        self.extend(&[b]).map(|()| None)
    }

    /// Takes a run of ordinary bytes (no CR, LF or NUL) of the current line at once: a head
    /// is mostly long header values (a session cookie is ≈ 1.5 KB), and feeding them byte by
    /// byte was ≈ 8 % of the gateway's CPU on the full-check route.
    fn extend(&mut self, run: &[u8]) -> Result<(), &'static str> {
        if self.prev_cr && !run.is_empty() {
            return Err("bare_cr");
        }
        // Only the start of a line is ever inspected; past MAX_LINE the rest is dropped.
        let room = MAX_LINE.saturating_sub(self.line.len());
        self.line.extend_from_slice(&run[..run.len().min(room)]);
        Ok(())
    }

    fn end_line(&mut self, line: &[u8], trailers: bool) -> Result<Option<State>, &'static str> {
        if line.is_empty() {
            if trailers {
                return Ok(Some(State::Head(Head::default())));
            }
            if !self.started {
                // Empty lines before a request line are tolerated (RFC 9112 §2.2).
                return Ok(None);
            }
            return self.finish().map(Some);
        }
        if !trailers && !self.started {
            self.started = true;
            let mut parts = line.split(|b| *b == b' ');
            let method = parts.next().unwrap_or_default();
            self.connect = method == b"CONNECT";
            let version = line.rsplit(|b| *b == b' ').next().unwrap_or_default();
            self.http10 = version == b"HTTP/1.0";
            return Ok(None);
        }
        self.lines += 1;
        if matches!(line[0], b' ' | b'\t') {
            return Err("obsolete_line_folding");
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return Err("header_without_colon");
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || name.iter().any(|b| matches!(b, b' ' | b'\t')) {
            return Err("whitespace_in_header_name");
        }
        if trailers {
            // Framing headers have no place in trailers.
            if name.eq_ignore_ascii_case(b"content-length")
                || name.eq_ignore_ascii_case(b"transfer-encoding")
                || name.eq_ignore_ascii_case(b"host")
            {
                return Err("framing_header_in_trailers");
            }
            return Ok(None);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            self.content_lengths.push(value.to_vec());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encodings.push(value.to_vec());
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            // Only a websocket upgrade is ever tunnelled by the gateway (pipeline::is_upgrade);
            // after any other `Upgrade` (h2c …) the connection stays HTTP/1 and keeps being
            // inspected, so one such header cannot switch the guard off.
            self.upgrade = value.eq_ignore_ascii_case(b"websocket");
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.connection_upgrade |= value
                .split(|b| *b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"upgrade"));
        }
        Ok(None)
    }

    /// The head is complete: decide the body framing, or refuse the ambiguity.
    fn finish(&mut self) -> Result<State, &'static str> {
        if self.content_lengths.len() > 1 {
            return Err("duplicate_content_length");
        }
        if !self.transfer_encodings.is_empty() {
            if !self.content_lengths.is_empty() {
                return Err("content_length_and_transfer_encoding");
            }
            if self.http10 {
                return Err("transfer_encoding_on_http10");
            }
            if self.transfer_encodings.len() != 1
                || !self.transfer_encodings[0].eq_ignore_ascii_case(b"chunked")
            {
                return Err("transfer_encoding");
            }
            return Ok(State::ChunkSize {
                line: Vec::new(),
                prev_cr: false,
            });
        }
        let next_head_or_opaque = if self.connect || (self.upgrade && self.connection_upgrade) {
            State::Opaque
        } else {
            State::Head(Head::default())
        };
        if let Some(cl) = self.content_lengths.first() {
            if cl.is_empty() || cl.len() > 18 || !cl.iter().all(u8::is_ascii_digit) {
                return Err("invalid_content_length");
            }
            let n: u64 = std::str::from_utf8(cl)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("invalid_content_length")?;
            if n > 0 {
                if matches!(next_head_or_opaque, State::Opaque) {
                    return Ok(State::Opaque);
                }
                return Ok(State::Fixed { left: n });
            }
        }
        Ok(next_head_or_opaque)
    }
}

impl State {
    /// Consumes bytes; returns how many were accepted and whether a violation stopped it.
    fn scan(&mut self, data: &[u8]) -> (usize, Step) {
        self.scan_with(data, true)
    }

    /// `runs`: take ordinary head bytes a run at a time (the tests compare it with `false`,
    /// one byte at a time, the plain reading of the rules).
    fn scan_with(&mut self, data: &[u8], runs: bool) -> (usize, Step) {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            let next: Result<Option<State>, &'static str> = match self {
                State::Opaque | State::Poison { .. } => return (data.len(), Step::Continue),
                State::Sniff { seen } => {
                    if H2_PREFACE.get(*seen) == Some(&b) {
                        *seen += 1;
                        if *seen == H2_PREFACE.len() {
                            Ok(Some(State::Opaque))
                        } else {
                            Ok(None)
                        }
                    } else {
                        // Not HTTP/2: replay what matched so far through the head scanner.
                        let mut head = Head::default();
                        let mut res = Ok(None);
                        for &p in &H2_PREFACE[..*seen] {
                            if let Err(e) = head.feed(p, false) {
                                res = Err(e);
                                break;
                            }
                        }
                        if res.is_ok() {
                            *self = State::Head(head);
                            continue;
                        }
                        res
                    }
                }
                State::Head(head) | State::Trailers(head)
                    if runs && !matches!(b, b'\r' | b'\n' | 0) =>
                {
                    // Everything up to the next line end or NUL in one step.
                    let rest = &data[i..];
                    let run = memchr::memchr3(b'\r', b'\n', 0, rest).unwrap_or(rest.len());
                    if let Err(reason) = head.extend(&rest[..run]) {
                        return (i, Step::Reject(reason));
                    }
                    i += run;
                    continue;
                }
                State::Head(head) => head.feed(b, false),
                State::Trailers(head) => head.feed(b, true),
                State::Fixed { left } => {
                    let take = (*left).min((data.len() - i) as u64) as usize;
                    *left -= take as u64;
                    i += take;
                    if *left == 0 {
                        *self = State::Head(Head::default());
                    }
                    continue;
                }
                State::ChunkSize { line, prev_cr } => match b {
                    b'\r' if !*prev_cr => {
                        *prev_cr = true;
                        Ok(None)
                    }
                    b'\n' if *prev_cr => {
                        let size_part = line.split(|c| *c == b';').next().unwrap_or_default();
                        let size_part = trim(size_part);
                        if size_part.is_empty()
                            || size_part.len() > 15
                            || !size_part.iter().all(u8::is_ascii_hexdigit)
                        {
                            Err("bad_chunk_size")
                        } else {
                            let n = u64::from_str_radix(
                                std::str::from_utf8(size_part).unwrap_or("0"),
                                16,
                            )
                            .unwrap_or(0);
                            if n == 0 {
                                Ok(Some(State::Trailers(Head {
                                    started: true,
                                    ..Head::default()
                                })))
                            } else {
                                Ok(Some(State::ChunkData { left: n }))
                            }
                        }
                    }
                    b'\r' | b'\n' => Err("bare_cr_or_lf_in_chunk"),
                    0 => Err("nul_in_chunk"),
                    _ if *prev_cr => Err("bare_cr_in_chunk"),
                    _ => {
                        if line.len() >= 1024 {
                            Err("chunk_extension_too_long")
                        } else {
                            line.push(b);
                            Ok(None)
                        }
                    }
                },
                State::ChunkData { left } => {
                    let take = (*left).min((data.len() - i) as u64) as usize;
                    *left -= take as u64;
                    i += take;
                    if *left == 0 {
                        *self = State::ChunkCr;
                    }
                    continue;
                }
                State::ChunkCr => {
                    if b == b'\r' {
                        Ok(Some(State::ChunkLf))
                    } else {
                        Err("chunk_data_not_terminated")
                    }
                }
                State::ChunkLf => {
                    if b == b'\n' {
                        Ok(Some(State::ChunkSize {
                            line: Vec::new(),
                            prev_cr: false,
                        }))
                    } else {
                        Err("chunk_data_not_terminated")
                    }
                }
            };
            match next {
                Ok(None) => {}
                Ok(Some(s)) => *self = s,
                Err(reason) => return (i, Step::Reject(reason)),
            }
            i += 1;
        }
        (data.len(), Step::Continue)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for H1Guard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match &mut this.state {
            State::Opaque => return Pin::new(&mut this.inner).poll_read(cx, buf),
            State::Poison { pos } => {
                let n = (POISON.len() - *pos).min(buf.remaining());
                buf.put_slice(&POISON[*pos..*pos + n]);
                *pos += n;
                return Poll::Ready(Ok(()));
            }
            _ => {}
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let (accepted, step) = {
            let fresh = &buf.filled()[before..];
            this.state.scan(fresh)
        };
        if let Step::Reject(reason) = step {
            buf.set_filled(before + accepted);
            // Deliver the poison now: an empty read would mean end of stream.
            let n = POISON.len().min(buf.remaining());
            buf.put_slice(&POISON[..n]);
            this.state = State::Poison { pos: n };
            if let Some(cb) = this.on_reject.take() {
                cb(reason);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for H1Guard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> Result<(), &'static str> {
        let mut s = State::Head(Head::default());
        match s.scan(input).1 {
            Step::Continue => Ok(()),
            Step::Reject(r) => Err(r),
        }
    }

    #[test]
    fn keep_alive_sequences_stay_in_sync() {
        let two = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(run(two), Ok(()));
        let chunked = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(
            run(chunked),
            Err("duplicate_content_length"),
            "the second head was inspected"
        );
    }

    #[test]
    fn body_bytes_are_not_inspected_as_heads() {
        let body = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\n\0\r\rGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(run(body), Ok(()));
    }

    #[test]
    fn violations() {
        assert_eq!(run(b"GET / HTTP/1.1\nHost: x\n\n"), Err("bare_lf"));
        assert_eq!(
            run(b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n"),
            Err("obsolete_line_folding")
        );
        assert_eq!(
            run(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello"),
            Err("bare_cr_or_lf_in_chunk")
        );
        assert_eq!(
            run(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX"),
            Err("chunk_data_not_terminated")
        );
        assert_eq!(run(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n"), Err("framing_header_in_trailers"));
    }

    #[test]
    fn an_h2c_upgrade_does_not_switch_inspection_off() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(run(input), Err("content_length_and_transfer_encoding"));
        let ws = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05\0\n\r";
        assert_eq!(
            run(ws),
            Ok(()),
            "after a websocket upgrade the bytes are frames, not HTTP"
        );
    }

    #[test]
    fn h2_preface_goes_opaque() {
        let mut s = State::Sniff { seen: 0 };
        let mut input = H2_PREFACE.to_vec();
        input.extend_from_slice(b"\n\n\0 anything");
        assert!(matches!(s.scan(&input).1, Step::Continue));
        assert!(matches!(s, State::Opaque));
        let mut s = State::Sniff { seen: 0 };
        assert!(matches!(
            s.scan(b"PRI-ish / HTTP/1.1\r\nHost: x\r\n\r\n").1,
            Step::Continue
        ));
    }

    /// Heads made of pieces that exercise every rule, with ordinary runs of any length.
    fn head_like() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just(b"GET / HTTP/1.1".to_vec()),
            Just(b"POST /a HTTP/1.0".to_vec()),
            Just(b"Content-Length: 3".to_vec()),
            Just(b"Transfer-Encoding: chunked".to_vec()),
            Just(b"Connection: upgrade".to_vec()),
            Just(b"Upgrade: websocket".to_vec()),
            Just(b"Cookie: a=".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\0".to_vec()),
            Just(b" ".to_vec()),
            Just(b":".to_vec()),
            Just(b"3\r\nabc\r\n0\r\n".to_vec()),
            Just(b"\t".to_vec()),
            Just(H2_PREFACE[..10].to_vec()),
            proptest::collection::vec(b'a'..=b'z', 0..40),
            proptest::collection::vec(any::<u8>(), 0..8),
            // Lines around the inspected length.
            (MAX_LINE - 2..MAX_LINE + 3).prop_map(|n| vec![b'v'; n]),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    /// Scans `input` in pieces of `step` bytes: how many bytes were accepted, and the verdict.
    /// `sniff`: start as a plaintext listener does, looking for an HTTP/2 preface.
    fn scan_in_steps(
        input: &[u8],
        step: usize,
        runs: bool,
        sniff: bool,
    ) -> (usize, Result<(), &'static str>) {
        let mut s = if sniff {
            State::Sniff { seen: 0 }
        } else {
            State::Head(Head::default())
        };
        let mut accepted = 0;
        for piece in input.chunks(step.max(1)) {
            match s.scan_with(piece, runs) {
                (n, Step::Reject(r)) => return (accepted + n, Err(r)),
                (n, Step::Continue) => accepted += n,
            }
        }
        (accepted, Ok(()))
    }

    proptest::proptest! {
        /// Taking ordinary bytes a run at a time refuses exactly what the byte-at-a-time
        /// reading refuses, at the same byte, however the input arrives.
        #[test]
        fn runs_and_single_bytes_agree(input in head_like(), step in 1usize..64, sniff in proptest::bool::ANY) {
            let reference = scan_in_steps(&input, input.len(), false, sniff);
            proptest::prop_assert_eq!(reference, scan_in_steps(&input, input.len(), true, sniff));
            proptest::prop_assert_eq!(reference, scan_in_steps(&input, step, true, sniff));
        }

        /// Splitting the input anywhere gives the same verdict as scanning it whole.
        #[test]
        fn chunking_does_not_change_the_verdict(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), cut in 0usize..200) {
            let whole = run(&input);
            let cut = cut.min(input.len());
            let mut s = State::Head(Head::default());
            let first = s.scan(&input[..cut]);
            let split = match first.1 {
                Step::Reject(r) => Err(r),
                Step::Continue => match s.scan(&input[cut..]).1 {
                    Step::Reject(r) => Err(r),
                    Step::Continue => Ok(()),
                },
            };
            proptest::prop_assert_eq!(whole, split);
        }
    }
}
