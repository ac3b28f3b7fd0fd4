//! A fake FreeSWITCH event socket: real TCP on 127.0.0.1 port 0, the real
//! inbound handshake (`auth/request`, `auth <password>`, `+OK accepted` or
//! `-ERR invalid`, the `event json ...` subscription), `Content-Length`
//! framing of events (JSON or plain URL-encoded bodies), `api` commands
//! answered (`status`, `callcenter_config queue list members`), a
//! `text/disconnect-notice`. Events are built from the header sets
//! mod_callcenter and the core write.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(20);

/// The header set FreeSWITCH puts on every event (switch_event.c).
pub const CORE_UUID: &str = "3c2f6a1e-7d0b-4d1e-9a55-0f3b6c2d1e42";

/// `queue` -> rows of (member uuid, state), for `queue list members`.
pub type Members = Arc<Mutex<HashMap<String, Vec<(String, String)>>>>;

pub struct EslServer {
    pub addr: SocketAddr,
    listener: TcpListener,
    password: Mutex<String>,
    pub members: Members,
    /// While set, commands are recorded but never answered (a switch that
    /// hangs).
    pub mute: Arc<AtomicBool>,
}

/// One accepted connection after the handshake.
pub struct EslConn {
    /// The password the client sent.
    pub auth: String,
    /// Whether it was the right one (else the connection is closed).
    pub accepted: bool,
    /// The subscription command (empty when refused).
    pub subscription: String,
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    commands: Arc<Mutex<Vec<String>>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl EslServer {
    pub async fn start(password: &str) -> EslServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        EslServer {
            addr: listener.local_addr().unwrap(),
            listener,
            password: Mutex::new(password.to_string()),
            members: Arc::default(),
            mute: Arc::default(),
        }
    }

    /// The password later connections must give.
    pub fn set_password(&self, password: &str) {
        *self.password.lock().unwrap() = password.to_string();
    }

    /// Accept the next connection and run the handshake.
    pub async fn accept(&self) -> EslConn {
        let (stream, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("ringwatch connects to the event socket")
            .unwrap();
        let (mut read, write) = stream.into_split();
        let writer = Arc::new(tokio::sync::Mutex::new(write));
        let mut pending = Vec::new();
        put(&writer, b"Content-Type: auth/request\n\n").await;
        let auth = read_command(&mut read, &mut pending)
            .await
            .unwrap_or_default();
        let password = auth.strip_prefix("auth ").unwrap_or_default().to_string();
        let right = self.password.lock().unwrap().clone();
        if password != right {
            put(
                &writer,
                b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n",
            )
            .await;
            let _ = writer.lock().await.shutdown().await;
            return EslConn {
                auth: password,
                accepted: false,
                subscription: String::new(),
                writer,
                commands: Arc::default(),
                reader: None,
            };
        }
        put(
            &writer,
            b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n",
        )
        .await;
        let subscription = read_command(&mut read, &mut pending)
            .await
            .unwrap_or_default();
        put(
            &writer,
            b"Content-Type: command/reply\nReply-Text: +OK event listener enabled json\n\n",
        )
        .await;
        let commands: Arc<Mutex<Vec<String>>> = Arc::default();
        let reader = tokio::spawn(serve_commands(
            read,
            pending,
            Arc::clone(&writer),
            Arc::clone(&commands),
            Arc::clone(&self.members),
            Arc::clone(&self.mute),
        ));
        EslConn {
            auth: password,
            accepted: true,
            subscription,
            writer,
            commands,
            reader: Some(reader),
        }
    }
}

async fn put(w: &tokio::sync::Mutex<OwnedWriteHalf>, bytes: &[u8]) {
    let _ = w.lock().await.write_all(bytes).await;
}

/// One command: the bytes up to a blank line.
async fn read_command(read: &mut OwnedReadHalf, pending: &mut Vec<u8>) -> Option<String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let cmd = String::from_utf8_lossy(&pending[..end]).trim().to_string();
            pending.drain(..end + 2);
            return Some(cmd);
        }
        let n = tokio::time::timeout(WAIT, read.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

async fn serve_commands(
    mut read: OwnedReadHalf,
    mut pending: Vec<u8>,
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    commands: Arc<Mutex<Vec<String>>>,
    members: Members,
    mute: Arc<AtomicBool>,
) {
    loop {
        let mut buf = [0u8; 4096];
        let cmd = loop {
            if let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let cmd = String::from_utf8_lossy(&pending[..end]).trim().to_string();
                pending.drain(..end + 2);
                break cmd;
            }
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        };
        commands.lock().unwrap().push(cmd.clone());
        if mute.load(Ordering::SeqCst) {
            continue;
        }
        let body = if cmd == "api status" {
            "UP 0 years, 0 days, 1 hour, 2 minutes\nFreeSWITCH (Version 1.10.12) is ready\n"
                .to_string()
        } else if let Some(queue) = cmd.strip_prefix("api callcenter_config queue list members ") {
            member_table(queue, &members.lock().unwrap())
        } else if cmd.starts_with("api ") {
            "-ERR no such command\n".to_string()
        } else {
            put(
                &writer,
                b"Content-Type: command/reply\nReply-Text: -ERR command not found\n\n",
            )
            .await;
            continue;
        };
        let msg = format!(
            "Content-Type: api/response\nContent-Length: {}\n\n{body}",
            body.len()
        );
        put(&writer, msg.as_bytes()).await;
    }
}

/// `list_result_callback`'s output: the column names, the rows, `+OK`.
fn member_table(queue: &str, members: &HashMap<String, Vec<(String, String)>>) -> String {
    let rows = members.get(queue).cloned().unwrap_or_default();
    if rows.is_empty() {
        return "+OK\n".to_string();
    }
    let mut s = String::from(
        "queue|instance_id|uuid|session_uuid|cid_number|cid_name|system_epoch|joined_epoch|rejoined_epoch|bridge_epoch|abandoned_epoch|base_score|skill_score|serving_agent|serving_system|state\n",
    );
    for (uuid, state) in rows {
        s.push_str(&format!(
            "{queue}|single_box|{uuid}|{uuid}-leg|1001|Caller|1795424400|1795424400|0|0|0|0|0|||{state}\n"
        ));
    }
    s.push_str("+OK\n");
    s
}

impl EslConn {
    pub async fn send(&self, bytes: &[u8]) {
        let mut w = self.writer.lock().await;
        w.write_all(bytes).await.expect("write to ringwatch");
        w.flush().await.unwrap();
    }

    pub async fn event_json(&self, headers: &[(String, String)]) {
        self.send(json_frame(headers).as_bytes()).await;
    }

    pub async fn event_plain(&self, headers: &[(String, String)]) {
        self.send(plain_frame(headers).as_bytes()).await;
    }

    /// What FreeSWITCH sends when it is shut down or kicks a client, then
    /// the close.
    pub async fn disconnect_notice(self) {
        let body = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";
        let msg = format!(
            "Content-Type: text/disconnect-notice\nContent-Length: {}\n\n{body}",
            body.len()
        );
        self.send(msg.as_bytes()).await;
        let _ = self.writer.lock().await.shutdown().await;
    }

    /// Commands received after the subscription, in order.
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }

    /// Wait until `n` commands arrived.
    pub async fn wait_commands(&self, n: usize) -> Vec<String> {
        for _ in 0..1000 {
            let c = self.commands();
            if c.len() >= n {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("expected {n} commands, got {:?}", self.commands());
    }
}

impl Drop for EslConn {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
    }
}

/// An event as `text/event-json`.
pub fn json_frame(headers: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    let body = serde_json::Value::Object(map).to_string();
    format!(
        "Content-Length: {}\nContent-Type: text/event-json\n\n{body}",
        body.len()
    )
}

/// An event as `text/event-plain`: URL-encoded values, a blank line.
pub fn plain_frame(headers: &[(String, String)]) -> String {
    let mut body = String::new();
    for (k, v) in headers {
        body.push_str(k);
        body.push_str(": ");
        body.push_str(&ringwatch::sources::freeswitch_esl::frame::url_encode(v));
        body.push('\n');
    }
    body.push('\n');
    format!(
        "Content-Length: {}\nContent-Type: text/event-plain\n\n{body}",
        body.len()
    )
}

/// Builds events with the headers FreeSWITCH writes: the core's on every
/// event, mod_callcenter's per `CC-Action`, the channel's on hold events.
pub struct Fs {
    seq: u64,
}

impl Default for Fs {
    fn default() -> Self {
        Fs { seq: 4000 }
    }
}

fn pairs(v: &[(&str, String)]) -> Vec<(String, String)> {
    v.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

impl Fs {
    /// switch_event.c: the headers of every event, stamped `at_us`.
    fn core(&mut self, name: &str, at_us: u64) -> Vec<(String, String)> {
        self.seq += 1;
        pairs(&[
            ("Event-Name", name.to_string()),
            ("Core-UUID", CORE_UUID.to_string()),
            ("FreeSWITCH-Hostname", "pbx1".to_string()),
            ("FreeSWITCH-Switchname", "pbx1".to_string()),
            ("FreeSWITCH-IPv4", "10.0.0.5".to_string()),
            ("Event-Date-Local", "2026-11-24 09:00:00".to_string()),
            (
                "Event-Date-GMT",
                "Tue, 24 Nov 2026 09:00:00 GMT".to_string(),
            ),
            ("Event-Date-Timestamp", at_us.to_string()),
            ("Event-Calling-File", "mod_callcenter.c".to_string()),
            ("Event-Calling-Function", "cc_member_thread_run".to_string()),
            ("Event-Calling-Line-Number", "3113".to_string()),
            ("Event-Sequence", self.seq.to_string()),
        ])
    }

    fn cc(&mut self, action: &str, queue: &str, member: &str, at_us: u64) -> Vec<(String, String)> {
        let mut h = self.core("CUSTOM", at_us);
        h.extend(pairs(&[
            ("Event-Subclass", "callcenter::info".to_string()),
            ("CC-Queue", queue.to_string()),
            ("CC-Action", action.to_string()),
            ("CC-Member-UUID", member.to_string()),
            ("CC-Member-Session-UUID", format!("{member}-leg")),
        ]));
        h
    }

    /// `member-queue-start` (mod_callcenter.c:3113-3121), with the member
    /// channel's data; the CC-* times are whole seconds.
    pub fn start(&mut self, queue: &str, member: &str, at_us: u64) -> Vec<(String, String)> {
        let mut h = self.cc("member-queue-start", queue, member, at_us);
        h.extend(pairs(&[
            ("CC-Member-CID-Name", "Ann Lee".to_string()),
            ("CC-Member-CID-Number", "+15551230001".to_string()),
            ("Channel-State", "CS_EXECUTE".to_string()),
            ("Unique-ID", format!("{member}-leg")),
            ("Caller-Caller-ID-Name", "Ann Lee".to_string()),
            ("variable_cc_queue", queue.to_string()),
        ]));
        h
    }

    pub fn resume(&mut self, queue: &str, member: &str, at_us: u64) -> Vec<(String, String)> {
        self.cc("member-queue-resume", queue, member, at_us)
    }

    /// `agent-offering` (ignored: one ring attempt).
    pub fn offering(&mut self, queue: &str, member: &str, at_us: u64) -> Vec<(String, String)> {
        let mut h = self.cc("agent-offering", queue, member, at_us);
        h.extend(pairs(&[
            ("CC-Agent", "1000@default".to_string()),
            ("CC-Agent-Type", "callback".to_string()),
            ("CC-Agent-System", "single_box".to_string()),
        ]));
        h
    }

    /// `bridge-agent-start` (mod_callcenter.c:1935-1953): the agent leg is
    /// `{member}-agent`.
    pub fn bridge(&mut self, queue: &str, member: &str, at_us: u64) -> Vec<(String, String)> {
        let secs = (at_us / 1_000_000).to_string();
        let mut h = self.cc("bridge-agent-start", queue, member, at_us);
        h.extend(pairs(&[
            ("CC-Agent", "1000@default".to_string()),
            ("CC-Agent-UUID", format!("{member}-agent")),
            ("CC-Agent-Called-Time", secs.clone()),
            ("CC-Agent-Answered-Time", secs.clone()),
            ("CC-Member-Joined-Time", secs),
            ("Unique-ID", format!("{member}-agent")),
        ]));
        h
    }

    /// `member-queue-end`, answered path (`Terminated`) or not (`Cancel`
    /// with `CC-Cancel-Reason`).
    pub fn end(
        &mut self,
        queue: &str,
        member: &str,
        at_us: u64,
        cancel: Option<&str>,
    ) -> Vec<(String, String)> {
        let secs = (at_us / 1_000_000).to_string();
        let mut h = self.cc("member-queue-end", queue, member, at_us);
        match cancel {
            None => h.extend(pairs(&[
                ("CC-Cause", "Terminated".to_string()),
                ("CC-Hangup-Cause", "NORMAL_CLEARING".to_string()),
                ("CC-Agent", "1000@default".to_string()),
                ("CC-Agent-UUID", format!("{member}-agent")),
            ])),
            Some(reason) => h.extend(pairs(&[
                ("CC-Cause", "Cancel".to_string()),
                ("CC-Cancel-Reason", reason.to_string()),
            ])),
        }
        h.extend(pairs(&[
            ("CC-Member-Leaving-Time", secs.clone()),
            ("CC-Member-Joined-Time", secs),
        ]));
        h
    }

    /// `CHANNEL_HOLD` / `CHANNEL_UNHOLD` on a leg (switch_channel.c), with
    /// channel variables; `member_var` is the agent leg's
    /// `variable_cc_member_uuid`.
    pub fn hold(
        &mut self,
        on: bool,
        unique_id: &str,
        member_var: Option<&str>,
        at_us: u64,
    ) -> Vec<(String, String)> {
        let mut h = self.core(if on { "CHANNEL_HOLD" } else { "CHANNEL_UNHOLD" }, at_us);
        h.extend(pairs(&[
            ("Channel-State", "CS_EXCHANGE_MEDIA".to_string()),
            (
                "Channel-Call-State",
                if on { "HELD" } else { "ACTIVE" }.to_string(),
            ),
            ("Unique-ID", unique_id.to_string()),
            ("Call-Direction", "outbound".to_string()),
            ("variable_direction", "outbound".to_string()),
        ]));
        if let Some(m) = member_var {
            h.extend(pairs(&[
                ("variable_cc_member_uuid", m.to_string()),
                ("variable_cc_member_session_uuid", format!("{m}-leg")),
            ]));
        }
        h
    }

    pub fn hangup(&mut self, unique_id: &str, at_us: u64) -> Vec<(String, String)> {
        let mut h = self.core("CHANNEL_HANGUP_COMPLETE", at_us);
        h.extend(pairs(&[
            ("Unique-ID", unique_id.to_string()),
            ("Hangup-Cause", "NORMAL_CLEARING".to_string()),
        ]));
        h
    }
}
