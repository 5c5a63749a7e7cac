//! Removing images by name, digest or ID, as `docker rmi` does, over an OCI image layout.
//!
//! Reference: the docker CLI's `docker rmi` and moby's daemon/images/image_delete.go (which
//! names go, when an image goes, and when a container's use of it stops both); OCI
//! image-layout.md for `index.json`.
//!
//! A name is an `index.json` entry's `org.opencontainers.image.ref.name`. Removing a name
//! removes its entry; when it was the image's last name the image goes too, and
//! [`crate::gc::sweep`] then deletes the blobs nothing else reaches. An image a live bundle
//! was made from keeps its last name unless forced; forced, it stays listed without a name
//! (dangling) until the bundle is gone, so the bundle's layers and base stay available to
//! `box-commit`, and `box-prune` collects it afterwards.

use crate::bundle::BundleInfo;
use crate::error::{Error, Result};
use crate::gc;
use crate::images::{self, Found};
use crate::oci::{Descriptor, ANNOTATION_REF_NAME};
use crate::store::Store;
use std::path::PathBuf;

/// What one `box-rmi REF` changed in `index.json`.
#[derive(Debug, Default)]
pub struct Removal {
    /// The names removed (full stored form).
    pub untagged: Vec<String>,
    /// The images that left `index.json` altogether.
    pub removed: Vec<Descriptor>,
}

// ANCHOR: untag
/// Remove what `s` names from `index.json` (under its lock). Refused, changing nothing, when
/// `s` is an ID shared by several names, or when an image would lose its last name while a
/// live bundle uses it, unless `force`.
pub fn untag(store: &Store, live: &[(PathBuf, BundleInfo)], s: &str, force: bool) -> Result<Removal> {
    store.update_index(|index| {
        let targets = match images::lookup(store, index, s)? {
            Found::Name(i) => vec![i],
            Found::Image(v) => {
                let names: Vec<String> = v.iter().filter_map(|&i| index.manifests[i].ref_name()).map(images::familiar).collect();
                if names.len() > 1 && !force {
                    return Err(Error::invalid(format!(
                        "image {s} has several names ({}): remove them one by one, or use -f to remove them all",
                        names.join(", ")
                    )));
                }
                v
            }
        };
        let mut out = Removal::default();
        let mut digests: Vec<Descriptor> = Vec::new();
        for &i in &targets {
            let d = &index.manifests[i];
            out.untagged.extend(d.ref_name().map(String::from));
            if !digests.iter().any(|x| x.digest == d.digest) {
                digests.push(d.clone());
            }
        }
        let mut keep_dangling = Vec::new();
        for d in &digests {
            let still_named = index.manifests.iter().enumerate().any(|(i, e)| !targets.contains(&i) && e.digest == d.digest && e.ref_name().is_some());
            if still_named {
                continue;
            }
            match gc::used_by(store, d, live)? {
                Some(bundle) if !force => {
                    return Err(Error::invalid(format!(
                        "image {s} is used by the bundle {} (remove the bundle, or use -f to untag it anyway)",
                        bundle.display()
                    )))
                }
                Some(_) => keep_dangling.push(d.clone()),
                None => out.removed.push(d.clone()),
            }
        }
        let gone: Vec<_> = out.removed.iter().map(|d| d.digest.clone()).collect();
        let mut i = 0;
        index.manifests.retain(|e| {
            let drop = targets.contains(&i) || gone.contains(&e.digest);
            i += 1;
            !drop
        });
        for mut d in keep_dangling {
            if !index.manifests.iter().any(|e| e.digest == d.digest) {
                d.annotations.remove(ANNOTATION_REF_NAME);
                index.manifests.push(d);
            }
        }
        Ok(out)
    })
}
// ANCHOR_END: untag
