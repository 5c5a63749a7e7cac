//! `box-pull`: an image from a registry into the store, verified.
//!
//! Reference: OCI distribution spec ("Pulling manifests", "Pulling blobs"), image-spec
//! image-index.md (platform selection).
//!
//! 1. Resolve the tag to a manifest (or an index, narrowed to one platform). Its bytes are
//!    hashed; a digest the user gave, or the registry's `Docker-Content-Digest`, must match.
//! 2. Fetch the config and the layers — missing ones only, several at a time — each
//!    streamed into a temporary blob while hashing; an interrupted download resumes with
//!    `Range`, with retries and backoff. Only a blob whose digest and size verify is renamed
//!    into the store.
//! 3. Store the manifest last and tag it: the store never names an image whose blobs are
//!    not all there, so a pull killed at any moment leaves a valid store, and the next pull
//!    finishes the job.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::explain;
use crate::explain::human_size;
use crate::oci::{self, Descriptor, Index, Manifest, Platform};
use crate::reference::Reference;
use crate::registry::{self, Client};
use crate::store::{self, Store};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: Platform,
    /// Blobs fetched at once.
    pub jobs: usize,
    /// Mirrors tried first for Docker Hub images (`http(s)://host[:port]`).
    pub mirrors: Vec<String>,
    pub registry: registry::Options,
}

/// What a pull reports as it goes (progress bars, or nothing).
pub trait Progress: Sync {
    fn start(&self, _digest: &Digest, _size: u64) {}
    fn advance(&self, _digest: &Digest, _bytes: u64) {}
    fn done(&self, _digest: &Digest, _skipped: bool) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

const RETRIES: u32 = 5;

/// Pull `reference` into `store`; returns the descriptor of the stored manifest.
pub fn pull(store: &Store, reference: &Reference, opts: &PullOptions, progress: &dyn Progress) -> Result<Descriptor> {
    let target = reference.digest().map(|d| d.to_string()).or_else(|| reference.tag().map(String::from)).unwrap();
    let mut bases = Vec::new();
    if reference.domain() == crate::reference::DEFAULT_DOMAIN {
        bases.extend(opts.mirrors.iter().cloned());
    }
    bases.extend(registry::endpoints(reference.domain(), opts.registry.insecure));
    registry::first_that_works(&bases, |base| {
        // A mirror gets its own credentials (if any), never Docker Hub's.
        let is_mirror = opts.mirrors.iter().any(|m| m == base) && reference.domain() == crate::reference::DEFAULT_DOMAIN;
        let cred_host = if is_mirror { registry::host_of(base).to_string() } else { reference.domain().to_string() };
        let client = Client::new(base, reference.path(), &cred_host, &opts.registry)?;
        pull_from(&client, store, reference, &target, opts, progress)
    })
}

// ANCHOR: pull_from
fn pull_from(client: &Client, store: &Store, reference: &Reference, target: &str, opts: &PullOptions, progress: &dyn Progress) -> Result<Descriptor> {
    let (mut bytes, mut media, mut digest) = client.get_manifest(target)?;
    if let Some(want) = reference.digest() {
        if &digest != want {
            return Err(Error::invalid(format!("manifest for {reference} hashes to {digest}, not the digest asked for")));
        }
    }
    explain!("manifest {digest} ({media}, {})", human_size(bytes.len() as u64));
    // What to tag: the document the reference names (an index, when given by digest).
    let mut named: Option<Descriptor> = None;
    for _ in 0..4 {
        store::check_not_ambiguous(&bytes, &digest)?;
        let body_media = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(String::from));
        if media.is_empty() || media == "application/json" || media == "text/plain" {
            media = body_media.clone().ok_or_else(|| Error::invalid(format!("manifest {digest} names no media type")))?;
        }
        store::check_body_media_type(&body_media, &media, &digest)?;
        match media.as_str() {
            oci::MEDIA_OCI_INDEX | oci::MEDIA_DOCKER_LIST => {
                let index: Index = oci::from_json(&bytes, &format!("index {digest}"))?;
                let chosen = store::pick_platform(&index, &opts.platform).ok_or_else(|| {
                    let have: Vec<String> = index.manifests.iter().filter_map(|d| d.platform.as_ref()).map(|p| format!("{}/{}", p.os, p.architecture)).collect();
                    Error::not_found(format!("{reference} has no image for {}/{} (it has {})", opts.platform.os, opts.platform.architecture, have.join(", ")))
                })?;
                explain!("index: choose {} for {}/{}", chosen.digest, opts.platform.os, opts.platform.architecture);
                if reference.digest().is_some() && named.is_none() {
                    let mut w = store.blob_writer()?;
                    w.write_all(&bytes).map_err(|e| Error::io("write index", e))?;
                    w.commit(Some((&digest, bytes.len() as u64)))?;
                    named = Some(Descriptor::new(&media, digest.clone(), bytes.len() as u64));
                }
                let want = chosen.digest.clone();
                let (b, m, d) = client.get_manifest(&want.to_string())?;
                if d != want || b.len() as u64 != chosen.size {
                    return Err(Error::invalid(format!("manifest {want}: got {} bytes hashing to {d}", b.len())));
                }
                // The index entry is covered by the index's digest; the Content-Type is not.
                if !m.is_empty() && m != chosen.media_type && m != "application/json" {
                    return Err(Error::invalid(format!("manifest {want}: served as {m:?} but the index says {:?}", chosen.media_type)));
                }
                (bytes, media, digest) = (b, chosen.media_type.clone(), d);
            }
            oci::MEDIA_OCI_MANIFEST | oci::MEDIA_DOCKER_MANIFEST => {
                let manifest: Manifest = oci::from_json(&bytes, &format!("manifest {digest}"))?;
                fetch_blobs(client, store, &manifest, opts.jobs.max(1), progress)?;
                let mut w = store.blob_writer()?;
                w.write_all(&bytes).map_err(|e| Error::io("write manifest", e))?;
                w.commit(Some((&digest, bytes.len() as u64)))?;
                let desc = Descriptor::new(&media, digest, bytes.len() as u64);
                // An index named by digest is stored too, and the name points at it; its
                // child for this platform is in the store, so box-unpack finds it.
                store.tag(reference, named.as_ref().unwrap_or(&desc))?;
                return Ok(desc);
            }
            oci::MEDIA_DOCKER_SCHEMA1 | oci::MEDIA_DOCKER_SCHEMA1_SIGNED => {
                return Err(Error::invalid(format!("{reference} is a Docker schema 1 image, which is obsolete and not supported")))
            }
            other => return Err(Error::invalid(format!("manifest {digest}: unsupported media type {other:?}"))),
        }
    }
    Err(Error::invalid("indexes nested too deep"))
}
// ANCHOR_END: pull_from

/// Fetch the config and every layer the store lacks, `jobs` at a time.
fn fetch_blobs(client: &Client, store: &Store, m: &Manifest, jobs: usize, progress: &dyn Progress) -> Result<()> {
    let mut queue: Vec<&Descriptor> = Vec::new();
    for d in std::iter::once(&m.config).chain(m.layers.iter()) {
        if store.has_blob(&d.digest) {
            explain!("blob {} already in the store", d.digest);
            progress.done(&d.digest, true);
        } else if !queue.iter().any(|q| q.digest == d.digest) {
            queue.push(d);
        }
    }
    let queue = Mutex::new(queue.into_iter());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                if first_error.lock().unwrap().is_some() {
                    return;
                }
                let Some(d) = queue.lock().unwrap().next() else { return };
                if let Err(e) = fetch_blob(client, store, d, progress) {
                    first_error.lock().unwrap().get_or_insert(e.context(format!("blob {}", d.digest)));
                    return;
                }
            });
        }
    });
    match first_error.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

// ANCHOR: fetch_blob
/// Stream one blob into the store, resuming with `Range` after a broken connection.
pub fn fetch_blob(client: &Client, store: &Store, d: &Descriptor, progress: &dyn Progress) -> Result<()> {
    progress.start(&d.digest, d.size);
    let mut w = store.blob_writer()?;
    let mut written: u64 = 0;
    let mut failures = 0;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let attempt = (|| -> Result<bool> {
            let (status, mut body) = client.get_blob(&d.digest, written)?;
            if status == 200 && written > 0 {
                explain!("registry ignored Range: start {} again", d.digest);
                w = store.blob_writer()?;
                written = 0;
            }
            loop {
                let n = body.read(&mut buf).map_err(|e| Error::io("read blob", e))?;
                if n == 0 {
                    return Ok(written >= d.size);
                }
                if written + n as u64 > d.size {
                    return Err(Error::invalid(format!("registry sent more than the {} bytes the manifest declares", d.size)));
                }
                w.write_all(&buf[..n]).map_err(|e| Error::io("write blob", e))?;
                written += n as u64;
                progress.advance(&d.digest, n as u64);
            }
        })();
        match attempt {
            Ok(true) => break,
            // Every byte arrived before the connection broke: nothing to resume.
            Err(_) if written == d.size => break,
            Ok(false) | Err(_) if failures < RETRIES && !matches!(&attempt, Err(e) if e.kind() == crate::Kind::Invalid || e.kind() == crate::Kind::NotFound) => {
                failures += 1;
                let wait = Duration::from_millis(100 << failures);
                explain!("blob {}: interrupted at {} of {} ({}); resume in {:?}", d.digest, written, d.size, attempt.err().map(|e| e.to_string()).unwrap_or_else(|| "short body".into()), wait);
                std::thread::sleep(wait);
            }
            Ok(false) => return Err(Error::invalid(format!("registry closed the blob after {written} of {} bytes, {RETRIES} times", d.size))),
            Err(e) => return Err(e),
        }
    }
    w.commit(Some((&d.digest, d.size)))?;
    progress.done(&d.digest, false);
    Ok(())
}
// ANCHOR_END: fetch_blob

use std::io::Read;
