//! etcd's on-disk formats, in one place: the bbolt backend (snapshot files and `member/snap/db`)
//! and what etcd keeps in it.

pub mod bolt;
pub mod boltw;
pub mod forge;
pub mod ids;
pub mod inspect;
pub mod pb;
pub mod restore;
pub mod snapfile;
pub mod snapshot;
pub mod wal;
