//! A registered agent workspace: where to reach it (push, with a URL) or
//! that it polls its activity feed instead (poll), the hash of its token,
//! and the capacity it last reported.

mod aggregate;

pub use aggregate::{
    DeliveryMode, Workspace, WorkspaceCommand, WorkspaceError, WorkspaceEvent, MAX_NAME_CHARS,
};
