//! The thin shell of `ringwatch simulate --emit`: a TCP server that plays
//! rendered PBX messages ([`super::emit_ami`], [`super::emit_esl`]) to one
//! client at a time, answering its requests through the platform's pure
//! [`Pbx`] dialogue, and remembering how far the stream got so a client
//! that reconnects continues where the last one stopped (as a PBX would:
//! what was sent to a dead connection is gone).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::Millis;

/// One platform message: its time and its headers in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub ts: Millis,
    pub headers: Vec<(&'static str, String)>,
}

impl Message {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server says to one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    /// Close the connection after `text` (a failed login, a logoff).
    pub close: bool,
}

/// One connection's dialogue with the client, pure: requests in, text out.
pub trait Pbx: Send {
    /// Sent on connect.
    fn greeting(&self) -> String;
    /// One request (the lines up to its blank line, without it); `now` is
    /// the time answers stamp.
    fn answer(&mut self, request: &str, now: Millis) -> Answer;
    /// Logged in (and subscribed): events may flow.
    fn ready(&self) -> bool;
    /// One message as the client receives it.
    fn encode(&self, m: &Message) -> String;
}

/// The stream, and how far it got.
pub struct Feed {
    pub messages: Vec<Message>,
    /// Messages written to a client so far.
    pub sent: AtomicUsize,
    /// Release each message when the wall clock reaches its `ts`.
    pub realtime: bool,
}

impl Feed {
    pub fn new(messages: Vec<Message>, realtime: bool) -> Arc<Feed> {
        Arc::new(Feed {
            messages,
            sent: AtomicUsize::new(0),
            realtime,
        })
    }

    pub fn done(&self) -> bool {
        self.sent.load(Ordering::Acquire) >= self.messages.len()
    }
}

/// A request bigger than this closes the connection (no real client sends one).
const MAX_REQUEST: usize = 64 * 1024;
/// Messages written per wake-up when unpaced, so requests are still answered.
const BURST: usize = 256;

/// Serve `feed` on `listener`, one client at a time, until `stop`.
pub async fn serve<P: Pbx>(
    listener: TcpListener,
    feed: Arc<Feed>,
    make: impl Fn() -> P,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                println!("simulate: client {peer} connected");
                session(stream, &feed, make(), &stop).await;
                println!(
                    "simulate: client {peer} gone ({} of {} messages sent)",
                    feed.sent.load(Ordering::Acquire).min(feed.messages.len()),
                    feed.messages.len()
                );
            }
            Err(e) => {
                eprintln!("simulate: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Requests end with a blank line (AMI `\r\n\r\n`, ESL `\n\n`); each is
/// sent on `tx` without it. Ends at EOF, a read error or an oversized one.
async fn read_requests(read: tokio::net::tcp::OwnedReadHalf, tx: mpsc::Sender<String>) {
    let mut lines = BufReader::new(read);
    let mut request = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let bare = line.trim_end_matches(['\r', '\n']);
        if bare.is_empty() {
            if !request.is_empty() && tx.send(std::mem::take(&mut request)).await.is_err() {
                return;
            }
            continue;
        }
        if request.len() + bare.len() > MAX_REQUEST {
            return;
        }
        request.push_str(bare);
        request.push('\n');
    }
}

async fn session<P: Pbx>(stream: TcpStream, feed: &Feed, mut pbx: P, stop: &CancellationToken) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::channel(16);
    let reader = tokio::spawn(read_requests(read, tx));
    if write.write_all(pbx.greeting().as_bytes()).await.is_err() {
        reader.abort();
        return;
    }
    loop {
        let next = feed.sent.load(Ordering::Acquire);
        let pending = pbx.ready().then(|| feed.messages.get(next)).flatten();
        let wait = match pending {
            Some(m) if feed.realtime => {
                let ms = (m.ts - crate::clock::wall_now()).max(0);
                Some(Duration::from_millis(ms as u64))
            }
            Some(_) => Some(Duration::ZERO),
            None => None,
        };
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            request = rx.recv() => {
                let Some(request) = request else { break };
                let answer = pbx.answer(&request, crate::clock::wall_now());
                if write.write_all(answer.text.as_bytes()).await.is_err() || answer.close {
                    break;
                }
            }
            _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                let now = crate::clock::wall_now();
                let mut text = String::new();
                let mut n = 0;
                for m in feed.messages.iter().skip(next).take(BURST) {
                    if feed.realtime && m.ts > now && n > 0 {
                        break;
                    }
                    text.push_str(&pbx.encode(m));
                    n += 1;
                }
                if write.write_all(text.as_bytes()).await.is_err() {
                    break;
                }
                feed.sent.store(next + n, Ordering::Release);
            }
        }
    }
    let _ = write.shutdown().await;
    reader.abort();
}
