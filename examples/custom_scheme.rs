//! Run with: `cargo run --example custom_scheme`
//!
//! A provider hookbox does not know, verified by your own `Scheme` (most providers need
//! no code: configure `generic-hmac` instead). This one sends
//! `X-Acme-Signature: <hex HMAC-SHA256(secret, body)>` and `X-Acme-Event`.

use std::time::SystemTime;

use hmac::{Hmac, Mac};
use hookbox::{ErrorKind, EventMeta, Inbound, Scheme, Verifier, VerifyError};
use http::HeaderMap;
use sha2::Sha256;

#[derive(Debug)]
struct Acme {
    /// Keyed once; cloned per request.
    mac: Hmac<Sha256>,
}

impl Scheme for Acme {
    fn name(&self) -> &str {
        "acme"
    }

    fn verify(&self, req: &Inbound<'_>, _now: SystemTime) -> Result<(), VerifyError> {
        let value = req
            .headers
            .get("x-acme-signature")
            .ok_or_else(|| VerifyError::missing("x-acme-signature"))?;
        let sig = hex::decode(value.as_bytes())
            .map_err(|_| VerifyError::malformed("x-acme-signature is not hex"))?;
        let mut mac = self.mac.clone();
        mac.update(req.body);
        // verify_slice compares in constant time.
        mac.verify_slice(&sig)
            .map_err(|_| VerifyError::new(ErrorKind::InvalidSignature, "no match"))
    }

    fn describe(&self, req: &Inbound<'_>) -> EventMeta {
        EventMeta {
            id: None,
            event_type: req
                .headers
                .get("x-acme-event")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }
}

fn main() {
    let secret = b"acme-secret";
    let verifier = Verifier::custom(Acme {
        mac: Hmac::new_from_slice(secret).expect("any key length"),
    });

    let body = br#"{"order":42}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-acme-signature",
        hex::encode(mac.finalize().into_bytes()).parse().unwrap(),
    );
    headers.insert("x-acme-event", "order.created".parse().unwrap());

    let req = Inbound::new(&headers, body);
    match verifier.verify(&req) {
        Ok(()) => println!("ok: {:?}", verifier.describe(&req)),
        Err(e) => println!("{e}"),
    }
    let tampered = Inbound::new(&headers, b"{\"order\":43}");
    println!("tampered: {}", verifier.verify(&tampered).unwrap_err());
}
