//! Packaging of the config-bridge filter: release build, Kong meta.json, OCI layouts, registry push.

pub mod canonical_json;
pub mod digest;
pub mod image;
pub mod layout;
pub mod meta;
pub mod package;
pub mod push;
pub mod release_build;
pub mod targz;
