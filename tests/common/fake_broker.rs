//! A scripted stand-in for the broker, for link behaviour the real one cannot be made to show
//! on demand (a refusal code of our choosing, `key_in_use`): it sends `welcome`, records each
//! `hello`, answers it with what the test's script says, and keeps an accepted connection open
//! without answering anything else.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use claudemesh_agent::Paths;
use claudemesh_protocol::crypto::MemberKeypair;
use claudemesh_protocol::frames::{
    ClientFrame, ErrorCode, Hello, MeshRef, Role, ServerFrame, decode_client, encode,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// How the fake answers the next hello.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `error{code, message}`, then the connection closes.
    Refuse(ErrorCode, String),
    /// `hello_ack` (with this `public_url`), then silence.
    Accept(Option<String>),
}

pub struct FakeBroker {
    pub url: String,
    /// Every hello received, in order.
    pub hellos: Arc<Mutex<Vec<Hello>>>,
    answer: Arc<Mutex<Answer>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeBroker {
    pub async fn start(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let hellos = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(answer));
        let (h, a) = (hellos.clone(), answer.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (h, a) = (h.clone(), a.clone());
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                    let welcome = ServerFrame::Welcome {
                        protocol: claudemesh_protocol::limits::PROTOCOL_VERSION,
                        challenge: "00".repeat(32),
                        broker_version: "fake".into(),
                        public_url: None,
                    };
                    if ws.send(Message::Text(encode(&welcome).into())).await.is_err() {
                        return;
                    }
                    let hello = loop {
                        match ws.next().await {
                            Some(Ok(Message::Text(t))) => match decode_client(t.as_str()) {
                                Ok(ClientFrame::Hello(hello)) => break hello,
                                _ => return,
                            },
                            Some(Ok(_)) => continue,
                            _ => return,
                        }
                    };
                    let answer = a.lock().unwrap().clone();
                    let (member_id, mesh_id) = (hello.member_id.clone(), hello.mesh_id.clone());
                    h.lock().unwrap().push(hello);
                    match answer {
                        Answer::Refuse(code, message) => {
                            let e = ServerFrame::error(None, code, message);
                            let _ = ws.send(Message::Text(encode(&e).into())).await;
                            let _ = ws.close(None).await;
                        }
                        Answer::Accept(public_url) => {
                            let ack = ServerFrame::HelloAck {
                                member_id,
                                role: Role::Member,
                                mesh: MeshRef { id: mesh_id, slug: "team".into() },
                                public_url,
                                services: vec![],
                                runner_pubkey: None,
                            };
                            let _ = ws.send(Message::Text(encode(&ack).into())).await;
                            while let Some(Ok(_)) = ws.next().await {}
                        }
                    }
                });
            }
        });
        Self { url, hellos, answer, task }
    }

    /// Changes how later hellos are answered.
    pub fn answer(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }

    pub fn hello_count(&self) -> usize {
        self.hellos.lock().unwrap().len()
    }

    /// Waits until at least `n` hellos arrived (20 s at most).
    pub async fn wait_hellos(&self, n: usize) {
        for _ in 0..800 {
            if self.hello_count() >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the fake broker never got {n} hellos (got {})", self.hello_count());
    }

    /// A config dir whose one mesh `team` points at this fake broker.
    pub fn member_config(&self, dir: &std::path::Path) -> Paths {
        let paths = Paths::new(dir.join("agent-fake"));
        super::one_mesh_config(
            Some("alice".into()),
            "mesh_fake",
            self.url.clone(),
            "m_fake",
            Role::Member,
            MemberKeypair::generate().secret_hex().to_string(),
            "alice",
        )
        .save(&paths)
        .unwrap();
        paths
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
