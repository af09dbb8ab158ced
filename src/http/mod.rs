//! A request as the module reads and answers it: a handle over nginx's
//! request (`request`), and the answers written through it (`response`).

pub mod request;
pub mod response;
