//! boxkit: the mechanisms behind the `box-*` tools, one module per kernel or format concept.
//!
//! Every module opens with the mechanism it implements and its primary reference (a man page
//! or a spec section). Library code never prints and never exits: it returns [`Error`], and
//! narrates its steps through [`explain!`] only when a binary asked for `--explain`.
//! Functions that touch the system take their root path as a parameter.

pub mod auth;
pub mod bundle;
pub mod caps;
pub mod cgroup;
pub mod changes;
pub mod compress;
pub mod digest;
pub mod error;
pub mod explain;
pub mod export;
pub mod fsroot;
pub mod import;
pub mod layer;
pub mod layercache;
pub mod mount;
pub mod oci;
pub mod overlay;
pub mod passwd;
pub mod push;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod runtime;
pub mod spawn;
pub mod store;
pub mod tarstream;
pub mod unpack;

pub use error::{Error, Kind, Result};
