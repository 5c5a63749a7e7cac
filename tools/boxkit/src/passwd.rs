//! Users and groups of an image, read from the image's own `/etc/passwd` and `/etc/group`.
//!
//! Reference: passwd(5), group(5); Docker's `USER` semantics (`name`, `uid`, `name:group`,
//! `uid:gid`). The files are parsed directly, found through [`Root`] so a symlinked
//! `/etc/passwd` cannot point at the host's: no NSS module, and so no library from the
//! image, is ever loaded into a host process (docker CVE-2019-14271).

use crate::error::{Error, Result};
use crate::fsroot::{CleanPath, Root};
use std::io::Read;

/// The identity a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct Entry {
    name: String,
    id: u32,
    gid: u32,
    home: String,
    members: Vec<String>,
}

fn read_db(root: &Root, path: &str, group: bool) -> Vec<Entry> {
    // O_NONBLOCK and a regular-file check: a FIFO or device planted at /etc/passwd must not
    // hang or feed the reader.
    let Ok(fd) = root.open_in(&CleanPath::new(path.as_bytes()), libc::O_RDONLY | libc::O_NONBLOCK) else { return Vec::new() };
    match crate::fsroot::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd)) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {}
        _ => return Vec::new(),
    }
    let mut text = String::new();
    // At most 1 MiB: a user database is small, and the image may be hostile.
    if std::fs::File::from(fd).take(1 << 20).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if group {
                // name:password:gid:members
                Some(Entry {
                    name: f.first()?.to_string(),
                    id: f.get(2)?.parse().ok()?,
                    gid: 0,
                    home: String::new(),
                    members: f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).map(String::from).collect()).unwrap_or_default(),
                })
            } else {
                // name:password:uid:gid:gecos:home:shell
                Some(Entry {
                    name: f.first()?.to_string(),
                    id: f.get(2)?.parse().ok()?,
                    gid: f.get(3)?.parse().ok()?,
                    home: f.get(5).unwrap_or(&"/").to_string(),
                    members: Vec::new(),
                })
            }
        })
        .collect()
}

/// Resolve Docker's `USER` string (empty means root) inside the image.
pub fn resolve_user(root: &Root, spec: &str) -> Result<ResolvedUser> {
    let passwd = read_db(root, "/etc/passwd", false);
    let groups = read_db(root, "/etc/group", true);
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let (uid, mut gid, home, name) = match passwd.iter().find(|e| e.name == u) {
        Some(e) => (e.id, e.gid, e.home.clone(), Some(e.name.clone())),
        None => match u.parse::<u32>() {
            Ok(uid) => match passwd.iter().find(|e| e.id == uid) {
                Some(e) => (uid, e.gid, e.home.clone(), Some(e.name.clone())),
                None => (uid, 0, "/".to_string(), None),
            },
            Err(_) => return Err(Error::invalid(format!("user {u:?} is not in the image's /etc/passwd"))),
        },
    };
    if let Some(g) = g {
        gid = match groups.iter().find(|e| e.name == g) {
            Some(e) => e.id,
            None => g
                .parse()
                .map_err(|_| Error::invalid(format!("group {g:?} is not in the image's /etc/group")))?,
        };
    }
    let mut additional_gids: Vec<u32> = match (&name, g) {
        (Some(n), None) => groups.iter().filter(|e| e.members.contains(n)).map(|e| e.id).filter(|&x| x != gid).collect(),
        _ => Vec::new(),
    };
    additional_gids.sort();
    additional_gids.dedup();
    Ok(ResolvedUser { uid, gid, additional_gids, home: if home.is_empty() { "/".into() } else { home } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(passwd: &str, group: &str) -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(t.path().join("etc/group"), group).unwrap();
        let r = Root::open(t.path()).unwrap();
        (t, r)
    }

    #[test]
    fn resolves_docker_user_forms() {
        let (_t, r) = root_with(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n",
            "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,other\n",
        );
        let u = |s| resolve_user(&r, s).unwrap();
        assert_eq!((u("").uid, u("").gid, u("").home.as_str()), (0, 0, "/root"));
        assert_eq!((u("nobody").uid, u("nobody").gid), (65534, 65534));
        assert_eq!(u("app").additional_gids, vec![10]);
        assert_eq!((u("1000:10").uid, u("1000:10").gid), (1000, 10));
        assert_eq!((u("app:nogroup").gid, u("4242").uid, u("4242").gid), (65534, 4242, 0));
        assert!(resolve_user(&r, "ghost").unwrap_err().to_string().contains("not in the image"));
        assert!(resolve_user(&r, "app:ghosts").is_err());
    }

    #[test]
    fn a_passwd_symlink_cannot_reach_the_host() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("etc/passwd")).unwrap();
        let r = Root::open(t.path()).unwrap();
        // The host's /etc/passwd names root, but the link resolves inside the (empty) root.
        assert!(resolve_user(&r, "root").is_err());
    }
}
