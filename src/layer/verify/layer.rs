use std::sync::Arc;

use tower_layer::Layer;

use super::Verify;
use crate::Verifier;

/// The default body limit: 1 MiB.
pub(crate) const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Applies [`Verify`] to a service. See the [crate docs](crate) for the order of the layers.
///
/// ## Defaults
/// - `max_body`: 1 MiB; a larger body is refused with `413` before it is read.
#[derive(Debug, Clone)]
pub struct VerifyLayer {
    pub(super) config: Arc<Config>,
}

/// What every [`Verify`] service built by one layer shares.
#[derive(Debug, Clone)]
pub(super) struct Config {
    /// The source name stamped on each event.
    pub(super) source: Arc<str>,
    /// The scheme's name, stamped on each event.
    pub(super) scheme: Arc<str>,
    /// The scheme and its secrets.
    pub(super) verifier: Verifier,
    /// The largest body read, in bytes.
    pub(super) max_body: usize,
}

impl VerifyLayer {
    /// Verifies requests for `source` with `verifier`.
    pub fn new(source: impl Into<Arc<str>>, verifier: Verifier) -> Self {
        let scheme = verifier.scheme_name().into();
        VerifyLayer {
            config: Arc::new(Config {
                source: source.into(),
                scheme,
                verifier,
                max_body: DEFAULT_MAX_BODY,
            }),
        }
    }

    /// Sets the largest body accepted, in bytes.
    pub fn max_body(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).max_body = bytes;
        self
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = Verify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Verify {
            inner,
            config: self.config.clone(),
        }
    }
}
