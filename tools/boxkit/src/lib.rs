//! boxkit: the mechanisms behind the `box-*` tools, one module per kernel or format concept.
//!
//! Every module opens with the mechanism it implements and its primary reference (a man page
//! or a spec section). Library code never prints and never exits: it returns [`Error`], and
//! narrates its steps through [`explain!`] only when a binary asked for `--explain`.
//! Functions that touch the system take their root path as a parameter.

pub mod archive;
pub mod auth;
pub mod bundle;
pub mod caps;
pub mod cgroup;
pub mod changes;
pub mod commit;
pub mod compress;
pub mod copyup;
pub mod detach;
pub mod diff;
pub mod devices;
pub mod digest;
pub mod error;
pub mod explain;
pub mod export;
pub mod freeze;
pub mod fsroot;
pub mod gc;
pub mod images;
pub mod hardening;
pub mod import;
pub mod layer;
pub mod layercache;
pub mod load;
pub mod mount;
pub mod mtree;
pub mod oci;
pub mod overlay;
pub mod passwd;
pub mod pty;
pub mod push;
pub mod pull;
pub mod reference;
pub mod rmi;
pub mod registry;
pub mod rootless;
pub mod runtime;
pub mod runopts;
pub mod seccomp;
pub mod save;
pub mod spawn;
pub mod state;
pub mod store;
pub mod tarstream;
pub mod unpack;
pub mod userns;
pub mod volmount;
pub mod volume;

pub use error::{Error, Kind, Result};
