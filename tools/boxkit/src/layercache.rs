//! The shared layer cache: each layer of the store extracted once, in overlay form, and used
//! as an overlayfs lower directory by every image and container that has it.
//!
//! Reference: the kernel's overlayfs documentation,
//! Documentation/filesystems/overlayfs.rst ("whiteouts and opaque directories").
//!
//! ```text
//! $BOXKIT_ROOT/layers/
//!   sha256/<diff_id hex>/    one layer's tree, by the digest of its uncompressed tar
//!   .tmp-*                   a layer being extracted (never used; removed by box-prune)
//! ```

use crate::digest::Digest;
use crate::error::{Context, Error, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The directory that holds (or will hold) the layer whose diff_id is `diff_id`.
pub fn dir_of(root: &Path, diff_id: &Digest) -> PathBuf {
    root.join("layers").join(diff_id.algorithm()).join(diff_id.hex())
}

/// Every layer in the cache, by diff_id.
pub fn cached(root: &Path) -> Result<Vec<Digest>> {
    let dir = root.join("layers").join("sha256");
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.ctx(|| format!("read {}", dir.display()))?;
        if let Ok(d) = format!("sha256:{}", ent.file_name().to_string_lossy()).parse::<Digest>() {
            out.push(d);
        }
    }
    out.sort();
    Ok(out)
}
