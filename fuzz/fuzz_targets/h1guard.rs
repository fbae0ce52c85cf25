//! The HTTP/1 guard as a state machine over random bytes: the same bytes delivered in one
//! read or split at arbitrary points give the same verdict (refused or not, and why); a byte
//! stream it lets through is passed on unchanged.
#![no_main]
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use sekisho_gateway::h1guard::H1Guard;
use tokio::io::{AsyncRead, ReadBuf};

/// Yields `data` in the given chunk sizes, then end of stream.
struct Chunks {
    data: Vec<u8>,
    sizes: Vec<usize>,
    pos: usize,
    next: usize,
}

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let left = self.data.len() - self.pos;
        if left == 0 {
            return Poll::Ready(Ok(()));
        }
        let want = self.sizes.get(self.next).copied().unwrap_or(left).clamp(1, left);
        let n = want.min(buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        self.next += 1;
        Poll::Ready(Ok(()))
    }
}

fn run(data: &[u8], sizes: Vec<usize>, sniff_h2: bool) -> (Option<&'static str>, Vec<u8>) {
    let reason: Arc<Mutex<Option<&'static str>>> = Arc::new(Mutex::new(None));
    let r = reason.clone();
    let mut guard = H1Guard::new(
        Chunks { data: data.to_vec(), sizes, pos: 0, next: 0 },
        sniff_h2,
        Arc::new(move |why| *r.lock().unwrap() = Some(why)),
    );
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    for _ in 0..(data.len() + 16) {
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut guard).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => break,
            Poll::Ready(Ok(())) => out.extend_from_slice(rb.filled()),
            Poll::Ready(Err(_)) | Poll::Pending => break,
        }
        if reason.lock().unwrap().is_some() && out.ends_with(b"\0\r\n\r\n") {
            break;
        }
    }
    let why = *reason.lock().unwrap();
    (why, out)
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let sniff_h2 = input[0] & 1 == 1;
    let nsplits = usize::from(input[1] % 8);
    if input.len() < 2 + nsplits {
        return;
    }
    let sizes: Vec<usize> = input[2..2 + nsplits].iter().map(|b| usize::from(*b) + 1).collect();
    let data = &input[2 + nsplits..];
    let (whole, out_whole) = run(data, vec![data.len().max(1)], sniff_h2);
    let (split, out_split) = run(data, sizes.clone(), sniff_h2);
    let (bytes, out_bytes) = run(data, vec![1; data.len()], sniff_h2);
    assert_eq!(whole, split, "verdict changed with splits {sizes:?} on {data:?}");
    assert_eq!(whole, bytes, "verdict changed byte by byte on {data:?}");
    if whole.is_none() {
        assert_eq!(out_whole, data, "passed-through bytes changed");
        assert_eq!(out_split, data);
        assert_eq!(out_bytes, data);
    }
});
