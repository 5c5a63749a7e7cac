//! Listing and naming images the way the docker CLI shows them: REPOSITORY, TAG, IMAGE ID,
//! CREATED, SIZE, and the ways a user may name an image (a name, a digest, an ID prefix).
//!
//! Reference: the docker CLI's `docker images` (cli/command/image/list.go and
//! formatter/image.go) and go-units (`HumanDuration`, `HumanSizeWithPrecision`) for how
//! times and sizes read; OCI image-layout.md for `org.opencontainers.image.ref.name`.
//!
//! One row per `index.json` entry: an image with several names has one entry per name; an
//! entry without a name is a dangling image (`<none> <none>`). The IMAGE ID is the digest of
//! the image config (as classic Docker shows it); for a multi-platform index it is the
//! index's own digest, since no one config stands for the whole. SIZE is the bytes of the
//! distinct blobs the entry reaches that are present in the store (compressed, as stored).

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gc::{self, Reach};
use crate::oci::{self, Descriptor, ImageConfig, Index, Manifest};
use crate::reference::Reference;
use crate::store::{self, Store};

/// One line of `box-images`.
#[derive(Debug, Clone)]
pub struct Row {
    /// The full `org.opencontainers.image.ref.name`, if any.
    pub name: Option<String>,
    pub repository: String,
    pub tag: String,
    /// The digest `index.json` names (a manifest, or an index).
    pub digest: Digest,
    pub id: Digest,
    /// Seconds since the epoch, from the config's `created`.
    pub created: Option<i64>,
    pub size: u64,
}

// ANCHOR: split_name
/// REPOSITORY and TAG for a name: `docker.io/library/busybox:1.36` → (`busybox`, `1.36`);
/// `x@sha256:…` → (`x`, `<none>`); no name → (`<none>`, `<none>`). A name without `/` is an
/// OCI layout's plain tag (`latest`, as umoci and skopeo write): (`<none>`, `latest`).
pub fn split_name(name: Option<&str>) -> (String, String) {
    let none = || "<none>".to_string();
    match name {
        None => (none(), none()),
        Some(n) if !n.contains('/') => (none(), n.to_string()),
        Some(n) => match Reference::parse(n) {
            Ok(r) => (r.familiar_repository(), r.tag().map_or_else(none, String::from)),
            Err(_) => (n.to_string(), none()),
        },
    }
}
// ANCHOR_END: split_name

/// The short form of a stored name, as docker prints it: `busybox:latest`, `x@sha256:…`.
pub fn familiar(name: &str) -> String {
    match Reference::parse(name) {
        Ok(r) if name.contains('/') => {
            let mut s = r.familiar_repository();
            if let Some(t) = r.tag() {
                s = format!("{s}:{t}");
            }
            if let Some(d) = r.digest() {
                s = format!("{s}@{d}");
            }
            s
        }
        _ => name.to_string(),
    }
}

/// The image ID of an entry: its config's digest, or an index's own digest.
pub fn id_of(store: &Store, d: &Descriptor) -> Digest {
    let manifest = match d.media_type.as_str() {
        oci::MEDIA_OCI_MANIFEST | oci::MEDIA_DOCKER_MANIFEST => store.read_blob(&d.digest).ok(),
        _ => None,
    };
    manifest
        .and_then(|b| oci::from_json::<Manifest>(&b, "manifest").ok())
        .map_or_else(|| d.digest.clone(), |m| m.config.digest)
}

/// The config of the image an entry stands for (an index's entry for this machine, else its
/// first present manifest).
fn config_of(store: &Store, d: &Descriptor) -> Option<ImageConfig> {
    if let Ok(image) = store.image_at(d.clone(), &store::host_platform()) {
        return Some(image.config);
    }
    config_in_index(store, d)
}

/// The config of the first present manifest of an index that [`Store::image_at`] could not load.
fn config_in_index(store: &Store, d: &Descriptor) -> Option<ImageConfig> {
    let index: Index = oci::from_json(&store.read_blob(&d.digest).ok()?, "index").ok()?;
    index.manifests.iter().filter(|m| store.has_blob(&m.digest)).find_map(|m| config_of(store, m))
}

/// An entry's config (as [`config_of`]) and image ID (as [`id_of`]), reading each document once
/// when the image loads.
fn config_and_id(store: &Store, d: &Descriptor) -> (Option<ImageConfig>, Digest) {
    match store.image_at(d.clone(), &store::host_platform()) {
        Ok(image) => {
            let id = match d.media_type.as_str() {
                oci::MEDIA_OCI_MANIFEST | oci::MEDIA_DOCKER_MANIFEST => image.manifest.config.digest,
                _ => d.digest.clone(),
            };
            (Some(image.config), id)
        }
        Err(_) => (config_in_index(store, d), id_of(store, d)),
    }
}

/// Every entry of `index.json` as a row, newest first (then by repository and tag).
pub fn list(store: &Store) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for d in store.index()?.manifests {
        // A blob that does not verify ends the walk: the row shows what was reached, and its
        // CREATED reads N/A (box-prune and box-unpack name the blob at fault).
        let mut reach = Reach::default();
        let _ = gc::walk(store, &d, &mut reach);
        let size = reach.blobs.iter().filter_map(|b| std::fs::metadata(store.blob_path(b)).ok()).map(|m| m.len()).sum();
        let (config, id) = config_and_id(store, &d);
        let created = config.and_then(|c| c.created).and_then(|c| parse_rfc3339(&c));
        let (repository, tag) = split_name(d.ref_name());
        rows.push(Row { name: d.ref_name().map(String::from), repository, tag, id, digest: d.digest, created, size });
    }
    rows.sort_by(|a, b| {
        b.created.cmp(&a.created).then_with(|| a.name.is_none().cmp(&b.name.is_none())).then_with(|| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)))
    });
    Ok(rows)
}

/// How a user's words named images in `index.json` (positions in `manifests`).
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A name: exactly one entry.
    Name(usize),
    /// A digest or an image ID (prefix): every entry of that image, named or not.
    Image(Vec<usize>),
}

// ANCHOR: lookup
/// Find what `s` names: a stored name (as written, or normalized: `busybox` is
/// `docker.io/library/busybox:latest`), then a digest (of a manifest, index or config), then
/// a unique prefix of an image ID, as `docker rmi` and `docker tag` accept.
pub fn lookup(store: &Store, index: &Index, s: &str) -> Result<Found> {
    let by_name = |n: &str| index.manifests.iter().position(|d| d.ref_name() == Some(n));
    if let Some(i) = by_name(s) {
        return Ok(Found::Name(i));
    }
    let parsed = Reference::parse(s);
    if let Some(i) = parsed.as_ref().ok().and_then(|r| by_name(&r.to_string())) {
        return Ok(Found::Name(i));
    }
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    let is_hex = !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if is_hex && (hex.len() == 64 || !s.starts_with("sha256:")) {
        let ids: Vec<Digest> = index.manifests.iter().map(|d| id_of(store, d)).collect();
        let exact = hex.len() == 64;
        let hits: Vec<usize> = (0..ids.len())
            .filter(|&i| {
                let digest = &index.manifests[i].digest;
                if exact { ids[i].hex() == hex || digest.hex() == hex } else { ids[i].hex().starts_with(hex) }
            })
            .collect();
        let mut distinct: Vec<&Digest> = hits.iter().map(|&i| &ids[i]).collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() > 1 {
            return Err(Error::invalid(format!("image ID prefix {s:?} is ambiguous: it matches {} images", distinct.len())));
        }
        if !hits.is_empty() {
            return Ok(Found::Image(hits));
        }
    } else {
        parsed?; // not a name, and not hex: say what is wrong with it as a name
    }
    Err(Error::not_found(format!("no image {s:?} in {}", store.dir().display())))
}
// ANCHOR_END: lookup

/// The one descriptor `s` names (for `box-tag SRC`); a name of the form `x@sha256:…` may also
/// name a manifest that is in the store without being in `index.json`.
pub fn resolve_one(store: &Store, s: &str) -> Result<Descriptor> {
    let index = store.index()?;
    match lookup(store, &index, s) {
        Ok(Found::Name(i)) => Ok(index.manifests[i].clone()),
        Ok(Found::Image(v)) => {
            let first = &index.manifests[v[0]];
            if v.iter().any(|&i| index.manifests[i].digest != first.digest) {
                return Err(Error::invalid(format!("{s:?} names several manifests of the same config: give a digest")));
            }
            Ok(first.clone())
        }
        Err(e) if e.kind() == crate::Kind::NotFound => store.resolve(s).map_err(|_| e),
        Err(e) => Err(e),
    }
}

/// Seconds since the epoch for an RFC 3339 time (`2023-11-14T22:13:20.123+01:00`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let v = rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60;
            if rest.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

// ANCHOR: human_duration
/// How long ago, as docker says it (go-units `HumanDuration` + " ago"): "3 days ago".
pub fn human_duration(secs: i64) -> String {
    let hours = (secs as f64 / 3600.0 + 0.5) as i64;
    let d = match secs {
        s if s < 1 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".to_string(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    };
    format!("{d} ago")
}
// ANCHOR_END: human_duration

/// A size as docker prints it: decimal units and `precision` significant digits ("4.26MB").
pub fn docker_size(n: u64, precision: usize) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    let int_digits = if v < 1.0 { 1 } else { (v.log10().floor() as usize) + 1 };
    let decimals = precision.saturating_sub(int_digits);
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[u])
}

/// Lay out cells in columns as the docker CLI's tabwriter does (each column at least 10
/// wide, 3 spaces of padding; the last column unpadded).
pub fn table(rows: &[Vec<String>]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count() + 3).max().unwrap_or(0).max(10)).collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                if c + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}", w = widths[c]));
                }
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_read_as_docker_prints_them() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.5Z"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339("2023-11-14T23:13:20+01:00"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(human_duration(0), "Less than a second ago");
        assert_eq!(human_duration(90), "About a minute ago");
        assert_eq!(human_duration(3 * 86_400), "3 days ago");
        assert_eq!(human_duration(1_780_000_000), "56 years ago");
        assert_eq!(docker_size(4_261_234, 3), "4.26MB");
        assert_eq!(docker_size(12_345_678, 3), "12.3MB");
        assert_eq!(docker_size(500, 3), "500B");
        assert_eq!(docker_size(2_000, 3), "2kB");
        assert_eq!(docker_size(0, 4), "0B");
    }

    #[test]
    fn names_split_into_repository_and_tag() {
        let s = |n: Option<&str>| split_name(n);
        assert_eq!(s(Some("docker.io/library/busybox:1.36")), ("busybox".into(), "1.36".into()));
        assert_eq!(s(Some("localhost:5000/a/b:t")), ("localhost:5000/a/b".into(), "t".into()));
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(s(Some(&format!("docker.io/x/y@{d}"))), ("x/y".into(), "<none>".into()));
        assert_eq!(s(None), ("<none>".into(), "<none>".into()));
        assert_eq!(s(Some("latest")), ("<none>".into(), "latest".into()));
        assert_eq!(familiar("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(table(&[vec!["A".into(), "B".into()], vec!["longer-than-ten".into(), "x".into()]]), ["A                 B", "longer-than-ten   x"]);
    }
}
