//! A fake Asterisk Manager Interface: real TCP on 127.0.0.1 port 0, the
//! real banner (`Asterisk Call Manager/<version>`), the MD5 challenge
//! (`Action: Challenge`, or refused as a manager without it would) and
//! `Action: Login` checked against a username and secret (refused logins answered
//! `Authentication failed` and closed, as manager.c does), `Ping` answered
//! `Pong`, and the other actions ringwatch sends handed to the test, which
//! replays transcripts (raw AMI text) and answers `QueueStatus` /
//! `CoreShowChannels` with the lists it chooses.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

type Reader = BufReader<Box<dyn AsyncRead + Send + Unpin>>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// One action as ringwatch sent it: its fields in order.
pub type Action = Vec<(String, String)>;

pub fn field<'a>(a: &'a Action, key: &str) -> Option<&'a str> {
    a.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// A login attempt the server saw.
#[derive(Clone, Debug)]
pub struct Login {
    pub username: String,
    /// `Secret:` of a plain login (empty with MD5).
    pub secret: String,
    /// Logged in with `AuthType: MD5` and a `Key:`.
    pub md5: bool,
    /// The credentials were right (whether or not the login was accepted).
    pub credentials_ok: bool,
    pub events: Option<String>,
    pub accepted: bool,
}

/// The challenge this server hands out.
const CHALLENGE: &str = "840415273";

pub struct AmiServer {
    listener: TcpListener,
    pub addr: SocketAddr,
    banner: String,
    username: String,
    secret: String,
    /// Logins to refuse before accepting one (a wrong secret on the PBX
    /// side that an operator then fixes).
    pub refuse: Arc<Mutex<usize>>,
    pub logins: Arc<Mutex<Vec<Login>>>,
    /// Answer `Action: Challenge` (else refuse it: a plain login follows).
    pub md5: bool,
    /// AMI over TLS (`tlsenable = yes`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// The PBX's side of one logged-in connection.
pub struct Peer {
    writer: Arc<tokio::sync::Mutex<Writer>>,
    actions: mpsc::Receiver<Action>,
    pub pings: Arc<Mutex<u64>>,
}

impl AmiServer {
    /// `version` as in the banner: `2.10.6` (Asterisk 13), `1.3` (Asterisk 11).
    pub async fn bind(version: &str, username: &str, secret: &str) -> AmiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        AmiServer {
            listener,
            addr,
            banner: format!("Asterisk Call Manager/{version}\r\n"),
            username: username.to_string(),
            secret: secret.to_string(),
            refuse: Arc::new(Mutex::new(0)),
            logins: Arc::new(Mutex::new(Vec::new())),
            md5: true,
            tls: None,
        }
    }

    /// The next connection whose login is accepted (refused ones are
    /// answered, recorded and closed on the way).
    pub async fn accept(&self) -> Peer {
        loop {
            let (stream, _) = tokio::time::timeout(WAIT, self.listener.accept())
                .await
                .expect("ringwatch connects to the AMI port")
                .unwrap();
            let (r, mut w): (Box<dyn AsyncRead + Send + Unpin>, Writer) = match &self.tls {
                None => {
                    let (r, w) = stream.into_split();
                    (Box::new(r), Box::new(w))
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let (r, w) = tokio::io::split(tls);
                        (Box::new(r), Box::new(w))
                    }
                    Err(_) => continue,
                },
            };
            w.write_all(self.banner.as_bytes()).await.unwrap();
            w.flush().await.unwrap();
            let mut reader: Reader = BufReader::new(r);
            let Some(mut login) = read_action(&mut reader).await else {
                continue;
            };
            let mut challenged = false;
            if field(&login, "Action").is_some_and(|a| a.eq_ignore_ascii_case("challenge")) {
                let id = field(&login, "ActionID").unwrap_or("").to_string();
                let answer = if self.md5 && field(&login, "AuthType") == Some("MD5") {
                    challenged = true;
                    format!("Response: Success\r\nActionID: {id}\r\nChallenge: {CHALLENGE}\r\n\r\n")
                } else {
                    format!("Response: Error\r\nActionID: {id}\r\nMessage: Must specify AuthType\r\n\r\n")
                };
                w.write_all(answer.as_bytes()).await.unwrap();
                w.flush().await.unwrap();
                let Some(next) = read_action(&mut reader).await else {
                    continue;
                };
                login = next;
            }
            assert_eq!(field(&login, "Action"), Some("Login"), "{login:?}");
            let id = field(&login, "ActionID").unwrap_or("").to_string();
            let refuse = {
                let mut n = self.refuse.lock().unwrap();
                let r = *n > 0;
                *n = n.saturating_sub(1);
                r
            };
            let username = field(&login, "Username").unwrap_or("").to_string();
            let secret = field(&login, "Secret").unwrap_or("").to_string();
            let md5 = field(&login, "AuthType") == Some("MD5");
            let credentials_ok = username == self.username
                && if md5 {
                    let want = ringwatch::sources::asterisk_ami::md5::hex(
                        format!("{CHALLENGE}{}", self.secret).as_bytes(),
                    );
                    challenged && field(&login, "Key") == Some(want.as_str())
                } else {
                    secret == self.secret
                };
            let accepted = !refuse && credentials_ok;
            self.logins.lock().unwrap().push(Login {
                username,
                secret,
                md5,
                credentials_ok,
                events: field(&login, "Events").map(str::to_string),
                accepted,
            });
            if !accepted {
                let no = format!(
                    "Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n"
                );
                let _ = w.write_all(no.as_bytes()).await;
                let _ = w.flush().await;
                let _ = w.shutdown().await;
                continue;
            }
            let yes = format!(
                "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"
            );
            w.write_all(yes.as_bytes()).await.unwrap();
            w.flush().await.unwrap();
            let writer = Arc::new(tokio::sync::Mutex::new(w));
            let (tx, rx) = mpsc::channel(1024);
            let pings = Arc::new(Mutex::new(0));
            tokio::spawn(serve_actions(
                reader,
                Arc::clone(&writer),
                tx,
                Arc::clone(&pings),
            ));
            return Peer {
                writer,
                actions: rx,
                pings,
            };
        }
    }
}

/// Read actions: `Ping` is answered here, the rest go to the test.
async fn serve_actions(
    mut reader: Reader,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    tx: mpsc::Sender<Action>,
    pings: Arc<Mutex<u64>>,
) {
    while let Some(a) = read_action(&mut reader).await {
        if field(&a, "Action").is_some_and(|n| n.eq_ignore_ascii_case("ping")) {
            *pings.lock().unwrap() += 1;
            let id = field(&a, "ActionID").unwrap_or("");
            let pong = format!(
                "Response: Success\r\nActionID: {id}\r\nPing: Pong\r\nTimestamp: 1795424400.000000\r\n\r\n"
            );
            let mut w = writer.lock().await;
            let _ = w.write_all(pong.as_bytes()).await;
            let _ = w.flush().await;
            continue;
        }
        if tx.send(a).await.is_err() {
            break;
        }
    }
}

async fn read_action(reader: &mut Reader) -> Option<Action> {
    let mut fields = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await.ok()?;
        if n == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if fields.is_empty() {
                continue;
            }
            return Some(fields);
        }
        let (k, v) = line.split_once(": ").unwrap_or((line, ""));
        fields.push((k.to_string(), v.to_string()));
    }
}

impl Peer {
    /// Write raw AMI text (a transcript) as it is.
    pub async fn send(&self, text: &str) {
        let mut w = self.writer.lock().await;
        w.write_all(text.as_bytes()).await.unwrap();
        w.flush().await.unwrap();
    }

    /// The next action named `name` (other actions before it are skipped).
    pub async fn action(&mut self, name: &str) -> Action {
        loop {
            let a = tokio::time::timeout(WAIT, self.actions.recv())
                .await
                .unwrap_or_else(|_| panic!("ringwatch sends Action: {name}"))
                .expect("the connection is open");
            if field(&a, "Action").is_some_and(|n| n.eq_ignore_ascii_case(name)) {
                return a;
            }
        }
    }

    /// Answer the reconciliation ringwatch asks for after every login:
    /// `QueueStatus` with one `QueueEntry` per `(uniqueid, queue, wait_s)`,
    /// `CoreShowChannels` with one `CoreShowChannel` per Uniqueid.
    pub async fn reconcile(&mut self, waiting: &[(&str, &str, u64)], channels: &[&str]) {
        let qs = self.action("QueueStatus").await;
        let qid = field(&qs, "ActionID").unwrap_or("").to_string();
        let ch = self.action("CoreShowChannels").await;
        let cid = field(&ch, "ActionID").unwrap_or("").to_string();
        let mut text = format!(
            "Response: Success\r\nActionID: {qid}\r\nEventList: start\r\nMessage: Queue status will follow\r\n\r\n"
        );
        let mut queues: Vec<&str> = waiting.iter().map(|(_, q, _)| *q).collect();
        queues.dedup();
        for q in &queues {
            text.push_str(&format!(
                "Event: QueueParams\r\nQueue: {q}\r\nMax: 0\r\nStrategy: ringall\r\nCalls: 1\r\nActionID: {qid}\r\n\r\n"
            ));
        }
        for (i, (u, q, wait)) in waiting.iter().enumerate() {
            text.push_str(&format!(
                "Event: QueueEntry\r\nQueue: {q}\r\nPosition: {}\r\nChannel: PJSIP/trunk-{u}\r\nUniqueid: {u}\r\nCallerIDNum: 5550100\r\nCallerIDName: <unknown>\r\nWait: {wait}\r\nPriority: 0\r\nActionID: {qid}\r\n\r\n",
                i + 1
            ));
        }
        text.push_str(&format!(
            "Event: QueueStatusComplete\r\nActionID: {qid}\r\nEventList: Complete\r\nListItems: {}\r\n\r\n",
            queues.len() + waiting.len()
        ));
        text.push_str(&format!(
            "Response: Success\r\nActionID: {cid}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n"
        ));
        for u in channels {
            text.push_str(&format!(
                "Event: CoreShowChannel\r\nActionID: {cid}\r\nChannel: PJSIP/trunk-{u}\r\nUniqueid: {u}\r\nLinkedid: {u}\r\nApplication: Queue\r\nDuration: 00:00:10\r\n\r\n"
            ));
        }
        text.push_str(&format!(
            "Event: CoreShowChannelsComplete\r\nActionID: {cid}\r\nEventList: Complete\r\nListItems: {}\r\n\r\n",
            channels.len()
        ));
        self.send(&text).await;
    }

    /// Close the connection (the PBX restarting, a network cut).
    pub async fn close(self) {
        let _ = self.writer.lock().await.shutdown().await;
    }
}
