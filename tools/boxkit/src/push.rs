//! `box-push`: an image from the store to a registry.
//!
//! Reference: OCI distribution spec, "Pushing blobs" (monolithic `POST` + `PUT ?digest=`,
//! chunked `PATCH` with `Content-Range`, cross-repository `?mount=&from=`) and "Pushing
//! manifests" (`PUT /v2/<name>/manifests/<tag>` with the manifest's `Content-Type`).
//!
//! Blobs go first — only those the registry lacks (`HEAD` answers 200 for the others) —
//! and the manifest last, byte for byte as stored, so its digest is unchanged and the image
//! a puller gets is the one in the store.

use crate::error::{Error, Result};
use crate::explain;
use crate::explain::human_size;
use crate::oci::Descriptor;
use crate::reference::Reference;
use crate::registry::{self, status_error, Client, Payload};
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Upload blobs in PATCH chunks of this many bytes (0: one monolithic PUT).
    pub chunk_size: u64,
    pub registry: registry::Options,
}

// ANCHOR: push_fn
/// Push the image `source` (a name in `store`) to `dest`; returns the manifest descriptor.
pub fn push(store: &Store, source: &str, dest: &Reference, opts: &PushOptions) -> Result<Descriptor> {
    let image = store.image(source)?;
    let tag = dest.tag().map(String::from).unwrap_or_else(|| image.descriptor.digest.to_string());
    // The repository the image came from, when it is on the same registry: a candidate
    // for a cross-repository mount.
    let from = Reference::parse(source).ok().filter(|r| r.domain() == dest.domain() && r.path() != dest.path());
    let bases = registry::endpoints(dest.domain(), opts.registry.insecure);
    registry::first_that_works(&bases, |base| {
        let client = Client::new(base, dest.path(), dest.domain(), &opts.registry)?;
        for d in std::iter::once(&image.manifest.config).chain(image.manifest.layers.iter()) {
            push_blob(&client, store, d, from.as_ref(), opts.chunk_size).map_err(|e| e.context(format!("blob {}", d.digest)))?;
        }
        let bytes = store.read_blob(&image.descriptor.digest)?;
        let path = format!("manifests/{tag}");
        let mut resp = client.send("PUT", &path, &[("content-type", image.descriptor.media_type.clone())], Payload::Bytes(&bytes))?;
        if !resp.status().is_success() {
            return Err(status_error("PUT", &path, &mut resp));
        }
        let echoed = resp.headers().get("docker-content-digest").and_then(|h| h.to_str().ok());
        if let Some(e) = echoed {
            if e != image.descriptor.digest.to_string() {
                return Err(Error::invalid(format!("the registry stored the manifest as {e}, not {}", image.descriptor.digest)));
            }
        }
        explain!("PUT manifest {} as {dest}", image.descriptor.digest);
        Ok(image.descriptor.clone())
    })
}
// ANCHOR_END: push_fn

// ANCHOR: push_blob
fn push_blob(client: &Client, store: &Store, d: &Descriptor, from: Option<&Reference>, chunk: u64) -> Result<()> {
    let head = client.send("HEAD", &format!("blobs/{}", d.digest), &[], Payload::Empty)?;
    if head.status().is_success() {
        explain!("HEAD blob {}: already there", d.digest);
        return Ok(());
    }
    let start = match from {
        Some(f) => format!("blobs/uploads/?mount={}&from={}", d.digest, f.path()),
        None => "blobs/uploads/".to_string(),
    };
    let mut resp = client.send("POST", &start, &[], Payload::Empty)?;
    if resp.status().as_u16() == 201 {
        explain!("mounted blob {} from {}", d.digest, from.map(|f| f.path()).unwrap_or(""));
        return Ok(());
    }
    if resp.status().as_u16() != 202 {
        return Err(status_error("POST", &start, &mut resp));
    }
    let mut location = location(client, &resp)?;
    let path = store.blob_path(&d.digest);
    if chunk > 0 {
        let mut offset = 0;
        while offset < d.size {
            let len = chunk.min(d.size - offset);
            let range = format!("{}-{}", offset, offset + len - 1);
            let mut r = client.send(
                "PATCH",
                &location,
                &[("content-type", "application/octet-stream".into()), ("content-range", range)],
                Payload::File { path: &path, offset, len },
            )?;
            if r.status().as_u16() != 202 {
                return Err(status_error("PATCH", &location, &mut r));
            }
            location = self::location(client, &r)?;
            offset += len;
        }
        explain!("PATCH blob {} in chunks of {}", d.digest, human_size(chunk));
        let url = with_digest(&location, d);
        let mut r = client.send("PUT", &url, &[], Payload::Empty)?;
        if r.status().as_u16() != 201 {
            return Err(status_error("PUT", &url, &mut r));
        }
    } else {
        let url = with_digest(&location, d);
        let mut r = client.send(
            "PUT",
            &url,
            &[("content-type", "application/octet-stream".into())],
            Payload::File { path: &path, offset: 0, len: d.size },
        )?;
        if r.status().as_u16() != 201 {
            return Err(status_error("PUT", &url, &mut r));
        }
        explain!("PUT blob {} ({}) in one request", d.digest, human_size(d.size));
    }
    Ok(())
}
// ANCHOR_END: push_blob

fn location(client: &Client, resp: &ureq::http::Response<ureq::Body>) -> Result<String> {
    let loc = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| Error::invalid("the registry gave no upload Location"))?;
    Ok(client.absolute(loc))
}

fn with_digest(location: &str, d: &Descriptor) -> String {
    format!("{location}{}digest={}", if location.contains('?') { "&" } else { "?" }, d.digest.to_string().replace(':', "%3A"))
}
