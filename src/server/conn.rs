//! Accepting and serving connections.
//!
//! A connection reads into one buffer, parses and executes every complete
//! request in it in order, and writes all their responses with one write per
//! read. Output is bounded: once the pending output passes a high-water mark
//! it is written (the task waits for the client to take it) before any more
//! requests are executed, and nothing more is read until it has drained.

use super::exec::{execute, ConnState, Env, Next};
use super::Worker;
use crate::protocol::{ascii, binary, Limits, Parsed, Proto};
use crate::stats::bump;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, CancelHandle};
use monoio::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Initial read buffer; grows for large values, shrinks back when idle.
const RBUF_INIT: usize = 16 * 1024;
/// Read at least this much at a time.
const MIN_READ: usize = 4 * 1024;
/// Pending output above this is written before more requests are executed.
const WBUF_HIGH: usize = 256 * 1024;
/// Buffers larger than this are given back when the connection goes idle.
const BUF_KEEP: usize = 256 * 1024;

pub async fn accept_loop(listener: TcpListener, w: Rc<Worker>, cancel: CancelHandle) {
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, _)) => {
                let st = &w.shared.stats;
                let n = st.curr_connections.fetch_add(1, Relaxed) + 1;
                st.total_connections.fetch_add(1, Relaxed);
                if n > w.shared.config.conn_limit as u64 {
                    st.curr_connections.fetch_sub(1, Relaxed);
                    st.rejected_connections.fetch_add(1, Relaxed);
                    monoio::spawn(reject(stream));
                    continue;
                }
                let _ = stream.set_nodelay(true);
                monoio::spawn(serve(stream, w.clone()));
            }
            Err(e) => {
                if w.shared.shutdown.load(Relaxed) || e.kind() == std::io::ErrorKind::Interrupted {
                    return;
                }
                // EMFILE and friends: back off instead of spinning.
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// memcached's answer past `-c`: one error line, then close.
async fn reject(mut stream: TcpStream) {
    let _ = stream
        .write_all(&b"ERROR Too many open connections\r\n"[..])
        .await;
}

/// Unregisters a connection however its task ends.
struct ConnGuard {
    w: Rc<Worker>,
    fd: i32,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.w.conns.borrow_mut().remove(&self.fd);
        self.w.shared.stats.curr_connections.fetch_sub(1, Relaxed);
    }
}

async fn serve(mut stream: TcpStream, w: Rc<Worker>) {
    let fd = stream.as_raw_fd();
    w.conns.borrow_mut().insert(fd);
    let guard = ConnGuard { w, fd };
    let shared = &*guard.w.shared;
    let env = Env {
        shared,
        stats: &shared.stats.workers[guard.w.id],
    };
    let limits = Limits {
        max_item_size: shared.config.max_item_size,
    };
    let mut rbuf: Vec<u8> = Vec::with_capacity(RBUF_INIT);
    let mut wbuf: Vec<u8> = Vec::with_capacity(RBUF_INIT);
    let mut proto: Option<Proto> = None;
    let mut skip = 0usize;
    let mut state = ConnState::default();
    loop {
        if rbuf.capacity() - rbuf.len() < MIN_READ {
            rbuf.reserve(MIN_READ);
        }
        // Read into the spare capacity after what is already buffered.
        let len = rbuf.len();
        let (res, b) = stream.read(rbuf.slice_mut(len..)).await;
        rbuf = b.into_inner();
        match res {
            Ok(0) | Err(_) => break,
            Ok(n) => bump(&env.stats.bytes_read, n as u64),
        }
        let mut pos = 0;
        let mut close = false;
        let mut need = None;
        while pos < rbuf.len() {
            if skip > 0 {
                let k = skip.min(rbuf.len() - pos);
                pos += k;
                skip -= k;
                continue;
            }
            // With SASL on, every connection is binary (memcached binds to
            // the binary protocol): text is refused by the magic check.
            let p = *proto.get_or_insert_with(|| {
                if shared.config.sasl {
                    Proto::Binary
                } else {
                    Proto::detect(rbuf[pos])
                }
            });
            let parsed = match p {
                Proto::Ascii => ascii::parse(&rbuf[pos..], &limits),
                Proto::Binary => binary::parse(&rbuf[pos..], &limits),
            };
            match parsed {
                Parsed::Incomplete { need: n } => {
                    need = n;
                    break;
                }
                Parsed::Done(req, used) => {
                    pos += used;
                    match execute(&req, &env, &mut state, &mut wbuf) {
                        Next::Continue => {}
                        Next::Skip(n) => skip = n,
                        Next::Close => {
                            close = true;
                            break;
                        }
                    }
                }
            }
            if wbuf.len() >= WBUF_HIGH && !flush(&mut stream, &mut wbuf, &env).await {
                return;
            }
        }
        rbuf.drain(..pos);
        if let Some(n) = need {
            rbuf.reserve(n.saturating_sub(rbuf.len()));
        }
        if !wbuf.is_empty() && !flush(&mut stream, &mut wbuf, &env).await {
            return;
        }
        if close {
            break;
        }
        if rbuf.is_empty() && rbuf.capacity() > BUF_KEEP {
            rbuf = Vec::with_capacity(RBUF_INIT);
        }
        if wbuf.capacity() > BUF_KEEP {
            wbuf = Vec::with_capacity(RBUF_INIT);
        }
    }
    drop(guard);
}

/// Write all pending output; false if the peer is gone.
async fn flush(stream: &mut TcpStream, wbuf: &mut Vec<u8>, env: &Env<'_>) -> bool {
    let (res, mut b) = stream.write_all(std::mem::take(wbuf)).await;
    b.clear();
    *wbuf = b;
    match res {
        Ok(n) => {
            bump(&env.stats.bytes_written, n as u64);
            true
        }
        Err(_) => false,
    }
}
