//! `box-import`: a root filesystem tar becomes a one-layer image.
//!
//! Reference: OCI image spec manifest.md and config.md; `docker import`.
//!
//! Reproducibility is the point: the same tree gives the same digest on every run and machine.
//! The input (plain, gzip or zstd) is first spooled, uncompressed, to a temporary file; its
//! entries are then written back out in a canonical order (a depth-first walk with names
//! sorted bytewise, the same order `box-export` walks a directory) with headers rebuilt from
//! their fields alone. The config's `created` time is `$SOURCE_DATE_EPOCH` or the epoch.
//! Memory holds one small record per entry; file data only ever streams.

use crate::changes;
use crate::compress;
use crate::digest::{Digest, HashingWriter};
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::explain::human_size;
use crate::fsroot::CleanPath;
use crate::layer::{self, WHITEOUT_PREFIX};
use crate::oci::{self, Descriptor, History, ImageConfig, Manifest, RootFs, RunConfig};
use crate::reference::Reference;
use crate::store::{BlobWriter, Store};
use crate::tarstream::{self, Kind, Meta, TarWriter};
use flate2::write::GzEncoder;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;

/// What to record in the new image besides its layer.
#[derive(Debug, Default, Clone)]
pub struct ImportOptions {
    /// Dockerfile instructions (`CMD ["sh"]`, `ENV A=1` …).
    pub changes: Vec<String>,
    /// The history comment.
    pub message: Option<String>,
}

/// One entry of the spooled input: where its data lies in the spool file.
struct Record {
    meta: Meta,
    offset: u64,
}

// ANCHOR: import_fn
/// Import a root filesystem tar from `input`, tag it `reference`, and return the manifest's
/// descriptor.
pub fn import(store: &Store, input: impl Read + Send + 'static, reference: &Reference, opts: &ImportOptions) -> Result<Descriptor> {
    let mut config = RunConfig::default();
    for c in &opts.changes {
        changes::apply(&mut config, c)?;
    }
    let created = oci::rfc3339(oci::source_date_epoch()?);

    // 1. Spool the uncompressed tar so its entries can be re-read in any order.
    let (kind, decoded) = compress::decoder(input).ctx(|| "read input")?;
    let mut spool = tempfile::tempfile_in(store.dir().join("blobs")).ctx(|| "create spool file")?;
    let n = io::copy(&mut compress::pipelined(decoded), &mut spool).map_err(|e| Error::io("read input tar", e))?;
    explain!("spool {} input tar ({} uncompressed) to a temporary file", kind.name(), human_size(n));

    // 2. Index it: path -> record, the last entry for a path wins (as tar extraction does).
    spool.seek(SeekFrom::Start(0)).ctx(|| "rewind spool")?;
    let records = index_entries(&spool)?;
    explain!("{} entries; write them sorted by path, headers rebuilt (PAX where needed)", records.len());

    // 3. Write the canonical layer, gzip-compressed, hashing both forms.
    let mut tar = LayerWriter::new(store)?;
    let mut first_of_inode: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for (path, rec) in &records {
        let mut meta = rec.meta.clone();
        meta.path = path.clone();
        if let Kind::Hardlink(target) = &rec.meta.kind {
            // Link groups are renumbered so the first member in output order holds the data.
            let target = normalize(target);
            let leader = resolve_link(&records, &target)
                .ok_or_else(|| Error::invalid(format!("entry {:?}: hardlink target {:?} is not in the archive", show(path), show(&target))))?;
            let leader_meta = &records[&leader].meta;
            if let Some(first) = first_of_inode.get(&leader) {
                meta.kind = Kind::Hardlink(first.clone());
                tar.append(&meta, None).ctx(|| format!("write entry {:?}", show(path)))?;
                continue;
            }
            first_of_inode.insert(leader.clone(), path.clone());
            let mut m = leader_meta.clone();
            m.path = path.clone();
            write_with_data(&mut tar, &mut spool, &m, records[&leader].offset, path)?;
            continue;
        }
        if let Some(first) = first_of_inode.get(path) {
            // This file's data was already written under an earlier link name.
            meta.kind = Kind::Hardlink(first.clone());
            meta.size = 0;
            tar.append(&meta, None).ctx(|| format!("write entry {:?}", show(path)))?;
            continue;
        }
        if links_to(&records, path) {
            first_of_inode.insert(path.clone(), path.clone());
        }
        write_with_data(&mut tar, &mut spool, &meta, rec.offset, path)?;
    }
    let (diff_id, layer) = tar.finish()?;

    // 4. Config, manifest, tag.
    let image_config = ImageConfig {
        created: Some(created.clone()),
        author: None,
        architecture: oci::host_architecture().to_string(),
        os: "linux".to_string(),
        variant: None,
        config,
        rootfs: RootFs { kind: "layers".to_string(), diff_ids: vec![diff_id] },
        history: vec![History {
            created: Some(created),
            created_by: Some("box-import".to_string()),
            comment: opts.message.clone(),
            ..Default::default()
        }],
        extra: Default::default(),
    };
    let config_desc = store.put_json(oci::MEDIA_OCI_CONFIG, &image_config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_OCI_MANIFEST.to_string()),
        config: config_desc,
        layers: vec![layer],
        annotations: Default::default(),
        extra: Default::default(),
    };
    let desc = store.put_json(oci::MEDIA_OCI_MANIFEST, &manifest)?;
    store.tag(reference, &desc)?;
    Ok(desc)
}
// ANCHOR_END: import_fn

// ANCHOR: layer_writer
/// A layer being written into the store: entries go into a tar, which is hashed (the
/// diff_id), gzip-compressed at level 6 with no name and no time in its header, and written
/// into a store blob that hashes what it receives (the digest).
pub(crate) struct LayerWriter {
    tar: TarWriter<HashingWriter<GzEncoder<BlobWriter>>>,
}

impl LayerWriter {
    pub(crate) fn new(store: &Store) -> Result<LayerWriter> {
        let gz = GzEncoder::new(store.blob_writer()?, flate2::Compression::new(6));
        Ok(LayerWriter { tar: TarWriter::new(HashingWriter::new(gz)) })
    }

    pub(crate) fn append(&mut self, meta: &Meta, data: Option<&mut dyn Read>) -> io::Result<()> {
        self.tar.append(meta, data)
    }

    /// End the tar and the gzip stream, commit the blob: the diff_id and the blob's
    /// descriptor.
    pub(crate) fn finish(self) -> Result<(Digest, Descriptor)> {
        let (diff_id, raw, gz) = self.tar.finish().ctx(|| "finish layer tar")?.finish();
        let blob = gz.finish().ctx(|| "finish gzip stream")?;
        let (digest, size) = blob.commit(None)?;
        explain!("layer: diff_id {diff_id} ({}), gzip blob {digest} ({})", human_size(raw), human_size(size));
        Ok((diff_id, Descriptor::new(oci::MEDIA_OCI_LAYER_GZIP, digest, size)))
    }
}
// ANCHOR_END: layer_writer

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// A tar path as boxkit writes it: cleaned, relative, `.` for the root.
fn normalize(name: &[u8]) -> Vec<u8> {
    let p = CleanPath::new(name);
    if p.is_root() {
        return b".".to_vec();
    }
    p.components().iter().map(|c| c.as_bytes()).collect::<Vec<_>>().join(&b'/')
}

// ANCHOR: walk_order
/// The order of a depth-first walk with sorted names: compare component by component.
#[derive(PartialEq, Eq)]
struct WalkOrder(Vec<u8>);
impl Ord for WalkOrder {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        tarstream::walk_order_cmp(&self.0, &other.0)
    }
}
// ANCHOR_END: walk_order
impl PartialOrd for WalkOrder {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Sorted records. Implemented as a map from walk-ordered key to record.
struct Records(BTreeMap<WalkOrder, Record>, HashMap<Vec<u8>, Vec<Vec<u8>>>);

impl std::ops::Index<&Vec<u8>> for Records {
    type Output = Record;
    fn index(&self, p: &Vec<u8>) -> &Record {
        &self.0[&WalkOrder(p.clone())]
    }
}
impl Records {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Record)> {
        self.0.iter().map(|(k, v)| (&k.0, v))
    }
    fn get(&self, p: &[u8]) -> Option<&Record> {
        self.0.get(&WalkOrder(p.to_vec()))
    }
}
impl<'a> IntoIterator for &'a Records {
    type Item = (&'a Vec<u8>, &'a Record);
    type IntoIter = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Record)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

fn index_entries(spool: &std::fs::File) -> Result<Records> {
    let mut map = BTreeMap::new();
    let mut linked: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    let mut archive = tar::Archive::new(spool);
    for entry in archive.entries().map_err(|e| Error::io("read tar", e))? {
        let mut entry = entry.map_err(|e| Error::io("read tar entry", e))?;
        let raw = entry.path_bytes().into_owned();
        let Some(meta) = tarstream::read_meta(&mut entry).map_err(|e| e.context(format!("entry {:?}", show(&raw))))? else {
            continue;
        };
        let path = normalize(&meta.path);
        if layer::is_whiteout_name(&path) {
            return Err(Error::invalid(format!(
                "entry {:?}: a root filesystem cannot hold a whiteout file ({WHITEOUT_PREFIX}*)",
                show(&raw)
            )));
        }
        if path == b"." && meta.kind != Kind::Dir {
            return Err(Error::invalid(format!("entry {:?}: the root must be a directory", show(&raw))));
        }
        if entry.header().entry_type() == tar::EntryType::GNUSparse {
            return Err(Error::invalid(format!(
                "entry {:?}: GNU sparse files are not supported; make the tar without --sparse",
                show(&raw)
            )));
        }
        if let Kind::Hardlink(t) = &meta.kind {
            // A link names the entry that exists when the link appears.
            let t = normalize(t);
            match map.get(&WalkOrder(t.clone())).map(|r: &Record| &r.meta.kind) {
                None => {
                    return Err(Error::invalid(format!(
                        "entry {:?}: hardlink target {:?} does not come earlier in the archive",
                        show(&raw),
                        show(&t)
                    )))
                }
                Some(Kind::Dir) => {
                    return Err(Error::invalid(format!("entry {:?}: a hard link to a directory", show(&raw))))
                }
                _ => {}
            }
            linked.entry(t).or_default().push(path.clone());
        }
        // An entry that replaces the target of earlier links: they keep the old content, so
        // the first of them takes the old data and the others link to it.
        if let Some(links) = linked.remove(&path) {
            if let Some(old) = map.get(&WalkOrder(path.clone())) {
                let (first, rest) = links.split_first().unwrap();
                let mut m = old.meta.clone();
                m.path = first.clone();
                let offset = old.offset;
                map.insert(WalkOrder(first.clone()), Record { meta: m, offset });
                for l in rest {
                    if let Some(r) = map.get_mut(&WalkOrder(l.clone())) {
                        r.meta.kind = Kind::Hardlink(first.clone());
                    }
                }
                if !rest.is_empty() {
                    linked.insert(first.clone(), rest.to_vec());
                }
            }
        }
        let offset = entry.raw_file_position();
        map.insert(WalkOrder(path), Record { meta, offset });
    }
    tarstream::expect_only_padding(archive.into_inner())?;
    Ok(Records(map, linked))
}

/// Follow a hard link to the entry that holds the data.
fn resolve_link(records: &Records, target: &[u8]) -> Option<Vec<u8>> {
    let mut t = target.to_vec();
    for _ in 0..64 {
        match &records.get(&t)?.meta.kind {
            Kind::Hardlink(next) => t = normalize(next),
            Kind::File => return Some(t),
            _ => return Some(t),
        }
    }
    None
}

fn links_to(records: &Records, path: &[u8]) -> bool {
    records.1.contains_key(path)
}

fn write_with_data(tar: &mut LayerWriter, spool: &mut std::fs::File, meta: &Meta, offset: u64, path: &[u8]) -> Result<()> {
    if meta.kind == Kind::File && meta.size > 0 {
        spool.seek(SeekFrom::Start(offset)).ctx(|| "seek spool")?;
        let mut data = (&*spool).take(meta.size);
        tar.append(meta, Some(&mut data))
    } else {
        tar.append(meta, None)
    }
    .ctx(|| format!("write entry {:?}", show(path)))
}
