//! boxkit's integration tests: the built `box-*` binaries driven end to end, compared with
//! runc, crun, umoci and skopeo, and attacked with the hostile layers of THREATS.md.
//! Run as root, after `cargo build --workspace` (tests/run.sh does both).

mod support;

mod book;
mod cgroups;
mod cli;
mod commit;
mod export;
mod faultproxy;
mod images;
mod hardening;
mod import;
mod interop;
mod lessons;
mod overlay;
mod pull;
mod registry;
mod saveload;
mod spawn;
mod tokenserver;
mod tree;
mod threats;
mod unpack;
mod userns;
mod runopts;
