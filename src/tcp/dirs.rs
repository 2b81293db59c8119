//! The two directions of a connection by name: what the client sent (`to_server`) and what the
//! server sent (`to_client`), for code that reads one direction at a time rather than looping
//! over [`Dir::BOTH`](super::Dir::BOTH).

use super::{Connection, Dir, DirSummary};

impl<O> Connection<O> {
    /// What the client (the proxy, in a proxy→backend connection) sent.
    pub(crate) fn to_server(&self) -> &DirSummary {
        self.dir(Dir::ClientToServer)
    }

    /// What the server (the backend) sent.
    pub(crate) fn to_client(&self) -> &DirSummary {
        self.dir(Dir::ServerToClient)
    }
}
