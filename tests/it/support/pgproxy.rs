//! A TCP proxy in front of PostgreSQL, on 127.0.0.1:0, that a test can break: cut every
//! open connection at once (mid-stream), refuse new ones for a while, stall (a
//! partition, or a server that hangs: connections stay open and nothing passes), pass
//! traffic again. [`Proxy::tls`] also terminates TLS the way a PostgreSQL server does (the
//! `SSLRequest` exchange, then a rustls handshake) and forwards the decrypted bytes to
//! the real server in plain text.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The `SSLRequest` code of the PostgreSQL protocol.
const SSL_REQUEST: u32 = 80_877_103;

/// A running proxy; it stops with the test's runtime (or when dropped).
pub(crate) struct Proxy {
    /// Where it listens: give this to hookbox instead of the database's address.
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

struct Shared {
    upstream: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// New connections are closed as soon as they are accepted.
    refusing: AtomicBool,
    /// Bumped by [`Proxy::cut`]: every connection open then is dropped.
    cut: watch::Sender<u64>,
    /// While set, nothing passes: open connections are held silent, new ones accepted
    /// and held silent too, until cut.
    stalled: watch::Sender<bool>,
    accepted: AtomicU64,
    refused: AtomicU64,
    handshakes: AtomicU64,
    failed_handshakes: AtomicU64,
    plain_refused: AtomicU64,
    open: AtomicUsize,
}

impl Proxy {
    /// A plain TCP proxy to `upstream`.
    pub(crate) async fn plain(upstream: SocketAddr) -> Proxy {
        Self::start(upstream, None).await
    }

    /// A proxy that demands TLS from its clients (as a server with only `hostssl` lines
    /// would), terminates it with `config` and speaks plain TCP to `upstream`.
    pub(crate) async fn tls(upstream: SocketAddr, config: rustls::ServerConfig) -> Proxy {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start(upstream, Some(acceptor)).await
    }

    async fn start(upstream: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            tls,
            refusing: AtomicBool::new(false),
            cut: watch::channel(0).0,
            stalled: watch::channel(false).0,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            failed_handshakes: AtomicU64::new(0),
            plain_refused: AtomicU64::new(0),
            open: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                if s.refusing.load(Ordering::SeqCst) {
                    s.refused.fetch_add(1, Ordering::SeqCst);
                    drop(socket);
                    continue;
                }
                if *s.stalled.borrow() {
                    s.refused.fetch_add(1, Ordering::SeqCst);
                    let mut cut = s.cut.subscribe();
                    tokio::spawn(async move {
                        let _held = socket;
                        let _ = cut.changed().await;
                    });
                    continue;
                }
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let _ = socket.set_nodelay(true);
                tokio::spawn(connection(s.clone(), socket));
            }
        });
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    /// Drops every open connection at once, whatever is in flight on it.
    pub(crate) fn cut(&self) {
        self.shared.cut.send_modify(|g| *g += 1);
    }

    /// From now on, closes each new connection as soon as it is accepted.
    pub(crate) fn refuse(&self) {
        self.shared.refusing.store(true, Ordering::SeqCst);
    }

    /// Passes new connections again (and ends a stall: cut first, to drop the
    /// connections held silent).
    pub(crate) fn pass(&self) {
        self.shared.refusing.store(false, Ordering::SeqCst);
        self.shared.stalled.send_replace(false);
    }

    /// From now on nothing passes, and nothing is closed: open connections fall silent
    /// mid-stream, new ones are accepted and never answered.
    pub(crate) fn stall(&self) {
        self.shared.stalled.send_replace(true);
    }

    /// Connections accepted and passed on.
    pub(crate) fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections closed at once while refusing, or held silent while stalled.
    pub(crate) fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed (TLS proxies only).
    pub(crate) fn handshakes(&self) -> u64 {
        self.shared.handshakes.load(Ordering::SeqCst)
    }

    /// TLS handshakes the client broke off or that failed.
    pub(crate) fn failed_handshakes(&self) -> u64 {
        self.shared.failed_handshakes.load(Ordering::SeqCst)
    }

    /// Clients that did not ask for TLS, answered with an error (TLS proxies only).
    pub(crate) fn plain_refused(&self) -> u64 {
        self.shared.plain_refused.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Counts an open connection while alive.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn connection(s: Arc<Shared>, mut client: TcpStream) {
    s.open.fetch_add(1, Ordering::SeqCst);
    let _open = Open(s.clone());
    let mut cut = s.cut.subscribe();
    let mut stalled = s.stalled.subscribe();
    let Ok(mut upstream) = TcpStream::connect(s.upstream).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let work = async {
        match &s.tls {
            None => pump(&mut client, &mut upstream).await,
            Some(acceptor) => {
                let mut first = [0u8; 8];
                if client.read_exact(&mut first).await.is_err() {
                    return;
                }
                let len = u32::from_be_bytes(first[..4].try_into().unwrap());
                let code = u32::from_be_bytes(first[4..].try_into().unwrap());
                if len != 8 || code != SSL_REQUEST {
                    // A startup message in plain text: refuse it as PostgreSQL does when
                    // no line of pg_hba.conf allows an unencrypted connection.
                    s.plain_refused.fetch_add(1, Ordering::SeqCst);
                    let _ = client.write_all(&fatal("28000", "TLS is required")).await;
                    let _ = client.shutdown().await;
                    return;
                }
                if client.write_all(b"S").await.is_err() {
                    return;
                }
                match acceptor.accept(&mut client).await {
                    Ok(mut tls) => {
                        s.handshakes.fetch_add(1, Ordering::SeqCst);
                        pump(&mut tls, &mut upstream).await;
                    }
                    Err(_) => {
                        s.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    };
    let stall = async {
        let _ = stalled.wait_for(|s| *s).await;
    };
    let held = tokio::select! {
        _ = work => false,
        _ = cut.changed() => false,
        _ = stall => true,
    };
    if held {
        // Both sockets stay open, and nothing is read or written until the cut.
        let _ = cut.changed().await;
    }
}

async fn pump<A, B>(a: &mut A, b: &mut B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::io::copy_bidirectional(a, b).await;
}

/// A PostgreSQL `ErrorResponse` with severity FATAL.
fn fatal(code: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    msg.extend_from_slice(&fields);
    msg
}
