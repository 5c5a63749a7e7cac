#!/usr/bin/env python3
"""make-fixtures.py OUTDIR

Writes small, uncompressed OCI layer tars into OUTDIR for the layer-applying code
(box-import, box-unpack, box-export): ordinary layers that exercise whiteouts, opaque
directories, links, long names, special files and xattrs, and hostile layers modelled
on published attacks against runc, containerd, docker, umoci and containers/storage.
OUTDIR/README lists every fixture and the effect a correct unpacker must produce.

Conventions:
  * One layer per file. A scenario of several layers is NAME.1.tar, NAME.2.tar, ...,
    applied in that order onto an empty root. Fixtures described as "over base" are
    applied after base.tar.
  * PAX format (tarfile.PAX_FORMAT), every mtime 1700000000, uid/gid 0 with empty
    user/group names unless stated. Headers are produced by Python's tarfile; the
    archive bytes are assembled here so that hostile names (`../x`, `/../x`) are kept
    verbatim and broken archives (truncated, trailing garbage) can be made.
  * Each archive ends with the two zero blocks and no padding to a 10240-byte record,
    the way Go's archive/tar (and so most registries' layers) writes them.
  * Deterministic: same bytes on every run. Nothing depends on the host's files; the
    attack tests create /tmp/boxkit-victim themselves.

Needs only python3 (stdlib). Run: python3 make-fixtures.py OUTDIR
"""

import json
import os
import struct
import sys
import tarfile

MTIME = 1700000000
BLOCK = 512
VICTIM = "/tmp/boxkit-victim"


# --------------------------------------------------------------------------------------
# Layer builder
# --------------------------------------------------------------------------------------

def _checksum(block):
    b = bytearray(block)
    b[148:156] = b" " * 8
    return sum(b)


class Layer:
    """Accumulates tar entries as bytes; headers come from tarfile.TarInfo.tobuf."""

    def __init__(self):
        self.buf = bytearray()

    def _info(self, name, typ, mode, uid=0, gid=0, size=0, linkname="", pax=None):
        ti = tarfile.TarInfo(name)
        ti.type = typ
        ti.mode = mode
        ti.uid = uid
        ti.gid = gid
        ti.uname = ""
        ti.gname = ""
        ti.size = size
        ti.mtime = MTIME
        ti.linkname = linkname
        if pax:
            ti.pax_headers = dict(pax)
        return ti

    def header(self, ti, fmt=tarfile.PAX_FORMAT):
        hdr = bytearray(ti.tobuf(fmt, "utf-8", "surrogateescape"))
        # Keep whole seconds in the ustar mtime field even when a PAX "mtime" record
        # carries the precise value, so readers that ignore PAX still see MTIME.
        main = len(hdr) - BLOCK
        want = b"%011o\0" % (int(ti.mtime) & 0o77777777777)
        if bytes(hdr[main + 136:main + 148]) != want:
            hdr[main + 136:main + 148] = want
            hdr[main + 148:main + 155] = b"%06o\0" % _checksum(hdr[main:])
            hdr[main + 155] = 0x20
        return bytes(hdr)

    def raw(self, data):
        self.buf += data

    def add(self, ti, data=b""):
        self.buf += self.header(ti)
        if data:
            self.buf += data
            rem = len(data) % BLOCK
            if rem:
                self.buf += b"\0" * (BLOCK - rem)

    def file(self, name, data, mode=0o644, uid=0, gid=0, pax=None):
        self.add(self._info(name, tarfile.REGTYPE, mode, uid, gid, len(data), pax=pax), data)

    def dir(self, name, mode=0o755, uid=0, gid=0):
        self.add(self._info(name, tarfile.DIRTYPE, mode, uid, gid))

    def symlink(self, name, target):
        self.add(self._info(name, tarfile.SYMTYPE, 0o777, linkname=target))

    def hardlink(self, name, target, mode=0o644):
        self.add(self._info(name, tarfile.LNKTYPE, mode, linkname=target))

    def fifo(self, name, mode=0o644):
        self.add(self._info(name, tarfile.FIFOTYPE, mode))

    def device(self, name, typ, major, minor, mode):
        ti = self._info(name, typ, mode)
        ti.devmajor = major
        ti.devminor = minor
        self.add(ti)

    def whiteout(self, name):
        self.file(name, b"", mode=0o644)

    def end(self):
        """The archive: entries followed by the two zero end-of-archive blocks."""
        return bytes(self.buf) + b"\0" * (2 * BLOCK)


# --------------------------------------------------------------------------------------
# Fixtures. Each function returns bytes (or a dict of suffix -> bytes for multi-layer).
# --------------------------------------------------------------------------------------

FIXTURES = []   # (filenames, builder, description)


def fixture(names, description):
    def reg(fn):
        FIXTURES.append((names, fn, description))
        return fn
    return reg


@fixture(["base.tar"], """\
Base layer for the whiteout and opaque fixtures below.
  dirs (0755):  etc/ data/ data/dir/ data/dir/sub/ data/keep/
  files (0644): etc/conf "conf v1\\n", data/a "a v1\\n", data/b "b v1\\n",
                data/c "c v1\\n", data/dir/x "x\\n", data/dir/sub/y "y\\n",
                data/keep/k "k\\n"
  symlink:      data/c.link -> c
Expected: exactly that tree.""")
def base():
    L = Layer()
    L.dir("etc/")
    L.file("etc/conf", b"conf v1\n")
    L.dir("data/")
    L.file("data/a", b"a v1\n")
    L.file("data/b", b"b v1\n")
    L.file("data/c", b"c v1\n")
    L.symlink("data/c.link", "c")
    L.dir("data/dir/")
    L.file("data/dir/x", b"x\n")
    L.dir("data/dir/sub/")
    L.file("data/dir/sub/y", b"y\n")
    L.dir("data/keep/")
    L.file("data/keep/k", b"k\n")
    return L.end()


@fixture(["whiteout.tar"], """\
Over base. Entries: data/ (dir), data/.wh.b, data/.wh.keep, data/a "a v2\\n".
Expected: data/b gone (file whiteout), data/keep/ and data/keep/k gone (directory
whiteout), data/a is "a v2\\n", everything else as in base. No .wh.* name appears
in the result.""")
def whiteout():
    L = Layer()
    L.dir("data/")
    L.whiteout("data/.wh.b")
    L.whiteout("data/.wh.keep")
    L.file("data/a", b"a v2\n")
    return L.end()


@fixture(["opaque.tar"], """\
Over base. Entries: data/, data/dir/, data/dir/.wh..wh..opq, data/dir/z "z\\n",
data/dir/newsub/, data/dir/newsub/w "w\\n".
Expected: data/dir holds only z and newsub/w (x and sub/ from base are hidden);
the rest of base is untouched; no .wh..wh..opq file in the result.""")
def opaque():
    L = Layer()
    L.dir("data/")
    L.dir("data/dir/")
    L.whiteout("data/dir/.wh..wh..opq")
    L.file("data/dir/z", b"z\n")
    L.dir("data/dir/newsub/")
    L.file("data/dir/newsub/w", b"w\n")
    return L.end()


@fixture(["opaque-last.tar"], """\
Over base. Same entries as opaque.tar but the opaque marker data/dir/.wh..wh..opq
is the LAST entry, after z and newsub/w.
Expected: identical to opaque.tar - the marker hides lower-layer children only,
whatever its position, so z and newsub/w survive.""")
def opaque_last():
    L = Layer()
    L.dir("data/")
    L.dir("data/dir/")
    L.file("data/dir/z", b"z\n")
    L.dir("data/dir/newsub/")
    L.file("data/dir/newsub/w", b"w\n")
    L.whiteout("data/dir/.wh..wh..opq")
    return L.end()


@fixture(["whiteout-after-file.tar"], """\
Over base. Entries: data/, data/b "b v2\\n", then data/.wh.b.
Expected: data/b exists with "b v2\\n" - a whiteout deletes lower-layer content
only, never an entry of its own layer, whatever the order.""")
def whiteout_after_file():
    L = Layer()
    L.dir("data/")
    L.file("data/b", b"b v2\n")
    L.whiteout("data/.wh.b")
    return L.end()


_DEEP = ["deep%02d-%s" % (i, "d" * 7) for i in range(10)]   # 10 components of 14 chars
_DEEP[-1] += "e"
LONG_DIR = "/".join(_DEEP)                                      # 150 characters
LONG_FILE = ("long-file-name-" + "n" * 200)[:200]
assert len(LONG_DIR) == 150 and len(LONG_FILE) == 200


@fixture(["links.tar"], """\
Links, long names and special modes, on an empty root.
  f                 file "hello\\n" 0644
  h                 hardlink -> f            (same inode as f, link count 2)
  s                 symlink -> f
  d                 symlink -> /nonexistent  (dangling; must not be followed)
  "name with spaces" file "spaces\\n"
  DEEP/LONG         a 200-character file name in a 150-character directory path
                    (351 characters in all; PAX "path" records; every level of DEEP
                    has its own directory entry), content "long\\n"
  suid              file 04755 uid 0, content "suid\\n"
  sgid/             dir 02775
  tmp/              dir 01777
  empty/            empty dir 0755
  fifo              named pipe 0644
  owned             file uid 1000 gid 1001, content "owned\\n"
  ns                file "ns\\n" with PAX mtime "1700000000.123456789" (ustar field
                    1700000000)
Expected: all of the above with exactly these modes (setuid/setgid/sticky bits kept
when unpacking as root), owners and targets; ns has mtime 1700000000.123456789 where
the filesystem keeps nanoseconds; every other entry mtime 1700000000.
DEEP = "deep00-ddddddd/deep01-ddddddd/.../deep09-ddddddde" (150 chars),
LONG = "long-file-name-nnn...n" (200 chars).""")
def links():
    L = Layer()
    L.file("f", b"hello\n")
    L.hardlink("h", "f")
    L.symlink("s", "f")
    L.symlink("d", "/nonexistent")
    L.file("name with spaces", b"spaces\n")
    parts = LONG_DIR.split("/")
    for i in range(1, len(parts) + 1):
        L.dir("/".join(parts[:i]) + "/")
    L.file(LONG_DIR + "/" + LONG_FILE, b"long\n")
    L.file("suid", b"suid\n", mode=0o4755)
    L.dir("sgid/", mode=0o2775)
    L.dir("tmp/", mode=0o1777)
    L.dir("empty/")
    L.fifo("fifo", mode=0o644)
    L.file("owned", b"owned\n", uid=1000, gid=1001)
    L.file("ns", b"ns\n", pax={"mtime": "1700000000.123456789"})
    return L.end()


@fixture(["devices.tar"], """\
Device nodes, on an empty root: dev/ (dir), dev/mynull char 1,3 0666,
dev/myblk block 7,0 0660, dev/zero00 char 0,0 0644.
Expected (as root, outside a user namespace): the three nodes with these numbers
and modes. In a tar layer a 0,0 character device is an ordinary device, not a
whiteout (tar whiteouts are .wh. names); 0,0 only means "whiteout" on an overlayfs
upper directory - reading one back for commit/export is where that matters.
Where mknod is not permitted (user namespace), the unpacker must say so or skip
the nodes as documented, never create regular files in their place silently.""")
def devices():
    L = Layer()
    L.dir("dev/")
    L.device("dev/mynull", tarfile.CHRTYPE, 1, 3, 0o666)
    L.device("dev/myblk", tarfile.BLKTYPE, 7, 0, 0o660)
    L.device("dev/zero00", tarfile.CHRTYPE, 0, 0, 0o644)
    return L.end()


# struct vfs_cap_data, revision 2 (linux/capability.h):
#   magic_etc = VFS_CAP_REVISION_2 (0x02000000) | VFS_CAP_FLAGS_EFFECTIVE (0x000001)
#   data[2] = {permitted, inheritable} x 2 (low and high 32 capability bits)
# CAP_NET_BIND_SERVICE = 10, so data[0].permitted = 1 << 10.
CAP_NET_BIND_SERVICE = 10
CAP_BLOB = struct.pack("<5I", 0x02000000 | 0x000001, 1 << CAP_NET_BIND_SERVICE, 0, 0, 0)
assert CAP_BLOB == bytes.fromhex("0100000200040000000000000000000000000000"), CAP_BLOB.hex()
assert all(b < 0x80 for b in CAP_BLOB)   # so the PAX record holds these bytes verbatim


@fixture(["xattrs.tar"], """\
Extended attributes as PAX SCHILY.xattr.* records, on an empty root.
  x     file "x\\n" 0644, SCHILY.xattr.user.comment = "hello"
  ping  file "ping\\n" 0755, SCHILY.xattr.security.capability = the 20-byte
        VFS_CAP_REVISION_2 blob 01000002 00040000 00000000 00000000 00000000
        (effective, permitted = cap_net_bind_service; getcap prints
        "ping cap_net_bind_service=ep")
Expected (as root, on a filesystem with user xattrs): getfattr -n user.comment x
gives "hello"; ping carries exactly those 20 bytes.""")
def xattrs():
    L = Layer()
    L.file("x", b"x\n", pax={"SCHILY.xattr.user.comment": "hello"})
    L.file("ping", b"ping\n", mode=0o755,
           pax={"SCHILY.xattr.security.capability": CAP_BLOB.decode("ascii")})
    return L.end()


# ----- attacks ------------------------------------------------------------------------

@fixture(["attack-dotdot.tar"], """\
ATTACK: path traversal by name. Regular files "../escape-dotdot", "/../escape-abs",
"a/../../escape-nested" (names stored verbatim).
Expected: nothing is created outside the root (no escape-* file next to or above
it, none in /); each entry is refused (layer fails with a clear error) or is
clamped inside the root.""")
def attack_dotdot():
    L = Layer()
    L.file("../escape-dotdot", b"escape\n")
    L.file("/../escape-abs", b"escape\n")
    L.file("a/../../escape-nested", b"escape\n")
    return L.end()


@fixture(["attack-symlink-dir.tar"], """\
ATTACK: write through a symlinked directory in the same layer.
  loop -> ../../../../../../tmp/boxkit-victim,  then file loop/pwned
  abs  -> /tmp/boxkit-victim,                   then file abs/pwned2
Expected: /tmp/boxkit-victim/pwned and /tmp/boxkit-victim/pwned2 do not exist on
the host afterwards. The files land inside the root (symlinks resolved as if the
root were /, i.e. at ROOT/tmp/boxkit-victim/...) or the layer is refused.""")
def attack_symlink_dir():
    L = Layer()
    L.symlink("loop", "../../../../../../tmp/boxkit-victim")
    L.file("loop/pwned", b"pwned\n")
    L.symlink("abs", VICTIM)
    L.file("abs/pwned2", b"pwned\n")
    return L.end()


@fixture(["attack-hardlink.tar"], """\
ATTACK: hardlinks to host files.
  hl  hardlink -> ../../../../../../etc/passwd
  sl  symlink -> /etc,  then  hl2 hardlink -> sl/passwd
Expected: refused, or contained (the link target resolved inside the root, where
no such file exists, so the entry fails). The host /etc/passwd keeps its link count
and contents, and nothing in the root shares its inode.""")
def attack_hardlink():
    L = Layer()
    L.hardlink("hl", "../../../../../../etc/passwd")
    L.symlink("sl", "/etc")
    L.hardlink("hl2", "sl/passwd")
    return L.end()


@fixture(["attack-layer-dot-symlink.1.tar", "attack-layer-dot-symlink.2.tar"], """\
ATTACK (two layers, umoci CVE-2021-29136 style): a directory of the root is a
symlink to a host path in layer 1, and layer 2 writes beneath it.
  .1.tar  etcdir -> /tmp/boxkit-victim
  .2.tar  file etcdir/pwned3
Expected: /tmp/boxkit-victim/pwned3 does not exist on the host; etcdir/pwned3 is
resolved inside the root (ROOT/tmp/boxkit-victim/pwned3) or layer 2 is refused.""")
def attack_layer_dot_symlink():
    L1 = Layer()
    L1.symlink("etcdir", VICTIM)
    L2 = Layer()
    L2.file("etcdir/pwned3", b"pwned\n")
    return [L1.end(), L2.end()]


@fixture(["attack-root-dot-symlink.1.tar", "attack-root-dot-symlink.2.tar"], """\
ATTACK (two layers, umoci CVE-2021-29136 as published): the root itself, ".",
arrives as a symlink to a host path, then a later layer writes a file.
  .1.tar  "." symlink -> /tmp/boxkit-victim
  .2.tar  file pwned4
Expected: the root directory is never replaced by a symlink; layer 1 is refused
(or the "." entry ignored); /tmp/boxkit-victim/pwned4 does not exist on the host.""")
def attack_root_dot_symlink():
    L1 = Layer()
    L1.symlink(".", VICTIM)
    L2 = Layer()
    L2.file("pwned4", b"pwned\n")
    return [L1.end(), L2.end()]


@fixture(["attack-hardlink-symlink-chmod.tar"], """\
ATTACK (containerd CVE-2021-32760): chmod through a hardlink to a symlink.
  link  symlink -> /tmp/boxkit-victim/file
  hard  hardlink -> link, header mode 0777
  hard  hardlink -> link again, header mode 0777 (replaces it and re-applies modes)
Expected: the host file /tmp/boxkit-victim/file (created by the test, e.g. 0600)
keeps its mode, owner and contents; "hard" is a link to the symlink itself (or the
entry is refused). Nothing chmods, chowns or utimes through a symlink.""")
def attack_hardlink_symlink_chmod():
    L = Layer()
    L.symlink("link", VICTIM + "/file")
    L.hardlink("hard", "link", mode=0o777)
    L.hardlink("hard", "link", mode=0o777)
    return L.end()


WHITEOUT_NAMES = [
    ("dotdot", ".wh..", 'it would delete "." (the directory holding it)'),
    ("dots3", ".wh...", 'it would delete ".." (here the parent of the root)'),
    ("nested", "dir/.wh..", 'it would delete "dir/." (dir itself, through ".")'),
    ("bare", ".wh.", 'it names the empty string (the directory holding it)'),
]


def _whiteout_name_builder(entry):
    def build():
        L = Layer()
        L.whiteout(entry)
        return L.end()
    return build


for _suffix, _entry, _why in WHITEOUT_NAMES:
    FIXTURES.append((["attack-whiteout-names.%s.tar" % _suffix], _whiteout_name_builder(_entry),
                     "ATTACK: invalid whiteout name. A single empty-file entry %r;\n"
                     "%s.\n"
                     "Expected: the layer is refused with a clear error; nothing is deleted."
                     % (_entry, _why)))


@fixture(["attack-whiteout-linkdir.1.tar", "attack-whiteout-linkdir.2.tar"], """\
ATTACK (two layers): a whiteout beneath a symlink to a host directory.
  .1.tar  linkdir -> /tmp/boxkit-victim
  .2.tar  whiteout linkdir/.wh.keepme
Expected: the host file /tmp/boxkit-victim/keepme (created by the test) survives.
The whiteout resolves inside the root (nothing to delete there) or is refused.""")
def attack_whiteout_linkdir():
    L1 = Layer()
    L1.symlink("linkdir", VICTIM)
    L2 = Layer()
    L2.whiteout("linkdir/.wh.keepme")
    return [L1.end(), L2.end()]


@fixture(["attack-trailing-garbage.tar"], """\
ATTACK: data after the end of the archive. A valid tar holding file "ok" ("ok\\n"),
its two zero end-of-archive blocks, then 1024 bytes of 0x41 ("A").
Expected: a clear error (import stores nothing); the garbage is never read as
entries.""")
def attack_trailing_garbage():
    L = Layer()
    L.file("ok", b"ok\n")
    return L.end() + b"\x41" * 1024


BIG = bytes((i * 7 + 3) % 251 for i in range(100000))


@fixture(["attack-truncated.tar"], """\
ATTACK: truncated archive. Header of file "big" (100000 bytes) followed by only
the first 50000 bytes of its data; no end-of-archive blocks.
Expected: a clear "unexpected end of archive" style error; the layer is not
recorded as applied (import stores nothing).""")
def attack_truncated():
    L = Layer()
    L.file("big", BIG)
    whole = L.end()
    return whole[:BLOCK + 50000]


@fixture(["attack-sparse-huge.tar"], """\
ATTACK: absurd size. File "huge" whose size (PAX "size" record) is 1 TiB
(1099511627776 bytes), followed by only 4096 zero bytes of data, then EOF.
Expected: fails cleanly with a clear error and bounded memory: no attempt to
buffer or preallocate 1 TiB, no disk filled, import stores nothing.
Note: the ustar size field is 0 (the value does not fit, so tarfile leaves it 0 and
relies on PAX); a reader that ignores the PAX size sees an empty file followed by
zero blocks, i.e. a "valid" archive - that too is a failure of this test.""")
def attack_sparse_huge():
    L = Layer()
    ti = L._info("huge", tarfile.REGTYPE, 0o644, size=1 << 40)
    L.raw(L.header(ti))
    L.raw(b"\0" * 4096)
    return bytes(L.buf)


@fixture(["attack-huge-base256.tar"], """\
ATTACK: absurd size, other encoding. As attack-sparse-huge.tar, but a GNU-format
header (tarfile.GNU_FORMAT) with no PAX record: the 1 TiB size is in the ustar size
field itself, in GNU base-256 (first byte 0x80). 4096 zero bytes of data, then EOF.
Expected: same as attack-sparse-huge.tar (or refused as an unsupported encoding).""")
def attack_huge_base256():
    L = Layer()
    ti = L._info("huge", tarfile.REGTYPE, 0o644, size=1 << 40)
    hdr = L.header(ti, tarfile.GNU_FORMAT)
    assert len(hdr) == BLOCK and hdr[124] == 0x80, hdr[124:136]
    L.raw(hdr)
    L.raw(b"\0" * 4096)
    return bytes(L.buf)


FIXTURES.append((["attack-volume-config.json"], lambda: (json.dumps({
    "architecture": "amd64",
    "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": []},
    "config": {"Volumes": {"/../../etc/shadow-boxkit": {}}, "Cmd": ["sh"]},
}, indent=2) + "\n").encode(), """\
ATTACK (containerd CVE-2022-23648), not a tar: an OCI image config whose Volumes
holds "/../../etc/shadow-boxkit" (Cmd ["sh"], no layers).
Expected: the volume path is resolved inside the root (ROOT/etc/shadow-boxkit) or
refused; /etc/shadow-boxkit never appears on the host and nothing outside the root
is created, copied or mounted."""))


# --------------------------------------------------------------------------------------

README_HEAD = """\
Layer fixtures written by make-fixtures.py (deterministic; regenerate, do not edit).

One layer per .tar, uncompressed, PAX format (GNU only where stated), mtime
1700000000, uid/gid 0 unless stated. NAME.1.tar, NAME.2.tar, ... are applied in
order onto an empty root.
"Over base" means: apply base.tar first. ROOT is the directory being unpacked into.
Attack fixtures aim at /tmp/boxkit-victim: the test creates that directory (and any
file named below) before unpacking and checks it afterwards.
"""


def readme_text():
    out = [README_HEAD]
    for names, _fn, desc in FIXTURES:
        out.append("\n" + "\n".join(names) + "\n" + "".join("    " + l + "\n" if l else "\n"
                                                         for l in desc.split("\n")))
    return "".join(out)


def write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv):
    if len(argv) == 2 and argv[1] == "--readme":
        sys.stdout.write(readme_text())
        return 0
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.stderr.write("usage: make-fixtures.py OUTDIR   (or --readme to print the README)\n")
        return 2
    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)
    for names, fn, _desc in FIXTURES:
        data = fn()
        parts = data if isinstance(data, list) else [data]
        assert len(parts) == len(names), names
        for name, blob in zip(names, parts):
            write(os.path.join(outdir, name), blob)
    write(os.path.join(outdir, "README"), readme_text().encode())
    sys.stderr.write("make-fixtures.py: wrote %d files to %s\n"
                     % (sum(len(n) for n, _f, _d in FIXTURES) + 1, outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
