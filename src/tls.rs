//! TLS for both listeners, with rustls and its ring provider: the certificate
//! chain and key come from PEM files, are checked to match, and are swapped
//! on reload without touching open connections (a bad new pair keeps the old
//! one). Also the axum listener that does TLS handshakes off the accept loop.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::auth::metrics::EdgeMetrics;
use crate::auth::Listener;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate file {}: {message}", path.display())]
    Cert { path: PathBuf, message: String },
    #[error("key file {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read and check a certificate chain (leaf first) and its private key.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_err = |message: String| TlsError::Cert {
        path: cert.to_path_buf(),
        message,
    };
    let key_err = |message: String| TlsError::Key {
        path: key.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(pem_error(e)))?;
    if chain.is_empty() {
        return Err(cert_err("holds no PEM CERTIFICATE block".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| key_err(pem_error(e)))?;
    let pair = CertifiedKey::from_der(chain, private, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => key_err(format!(
            "does not match the certificate in {}",
            cert.display()
        )),
        other => key_err(format!("not a usable private key: {other}")),
    })?;
    Ok(Arc::new(pair))
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => format!("cannot read: {io}"),
        E::NoItemsFound => "holds no matching PEM block".into(),
        other => format!("is not valid PEM: {other:?}"),
    }
}

/// A certificate/key pair named by the configuration, with what the files
/// held when the configuration was validated.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub pair: Arc<CertifiedKey>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Hands every handshake the pair loaded last.
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// The TLS side of one listener. Cheap to clone; clones share reloads.
#[derive(Clone)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    pub fn new(files: &TlsFiles) -> Tls {
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::clone(&files.pair)),
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        // Both listeners speak HTTP/1.1 only (the WebSocket upgrade too).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Tls {
            cert: files.cert.clone(),
            key: files.key.clone(),
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Read the files again; new handshakes use the new pair. A bad pair
    /// leaves the current one in place.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.cert, &self.key)?;
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = pair;
        Ok(())
    }

    /// Handshake one accepted connection within `timeout`; failures are
    /// counted and logged at debug (they are the peer's doing).
    pub async fn handshake(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        timeout: Duration,
        listener: Listener,
        metrics: &EdgeMetrics,
    ) -> Option<TlsStream<TcpStream>> {
        match tokio::time::timeout(timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::debug!(%peer, listener = listener.as_str(), error = %e, "TLS handshake failed");
                metrics.tls_handshake_failure(listener);
                None
            }
            Err(_) => {
                tracing::debug!(%peer, listener = listener.as_str(), "TLS handshake timed out");
                metrics.tls_handshake_failure(listener);
                None
            }
        }
    }
}

/// An [`axum::serve::Listener`] over TLS. A background task accepts TCP
/// connections and handshakes each on its own task, so a slow or silent
/// client never holds up the others; `accept` hands out finished ones. The
/// background task (and the bound socket) stop when this is dropped, which
/// is when axum's graceful shutdown stops accepting.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    _stop: DropGuard,
}

impl TlsListener {
    pub fn new(
        tcp: TcpListener,
        tls: Tls,
        handshake_timeout: Duration,
        metrics: Arc<EdgeMetrics>,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let stop = CancellationToken::new();
        // Small: finished handshakes wait here only until axum takes them.
        let (tx, ready) = mpsc::channel(16);
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "http accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let _ = stream.set_nodelay(true);
                let (tls, tx, metrics, token) =
                    (tls.clone(), tx.clone(), Arc::clone(&metrics), token.clone());
                tokio::spawn(async move {
                    let done = tokio::select! {
                        _ = token.cancelled() => return,
                        done = tls.handshake(stream, peer, handshake_timeout, Listener::Http, &metrics) => done,
                    };
                    if let Some(s) = done {
                        let _ = tx.send((s, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            _stop: stop.drop_guard(),
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The sender lives in the accept task, which only ends once this
            // listener is dropped: unreachable while `accept` can be called.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
