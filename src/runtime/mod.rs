//! This worker's part of the relay inside nginx: the shared zone and its
//! lock (`zone`), the worker's state and lifecycle (`worker`), running
//! relay operations and carrying out their effects (`ops`), the requests
//! it holds (`parked`) and those waiting on Redis (`waiting`), its Redis
//! connections (`redis`), wake-ups between workers (`wakeup`), and the
//! faults tests can inject (`faults`).

pub mod faults;
pub mod ops;
pub mod parked;
pub mod redis;
pub mod waiting;
pub mod wakeup;
pub mod worker;
pub mod zone;
