//! SQL warehouses and the Statement Execution API: a warehouse is one or
//! more real engines (Sail, like a cluster's) that Kiln starts, stops and
//! scales; a statement runs on one through Spark Connect (Kiln's front, so
//! table writes behave as everywhere else), its rows become JSON, Arrow or
//! CSV chunks; what ran is kept in the query history.

pub mod history;
pub mod lifecycle;
pub mod params;
pub mod protocol;
pub mod reconciler;
pub mod results;
pub mod session;
pub mod statements;
pub mod warehouse;
pub mod warehouses;

pub use statements::Statements;
pub use warehouses::Warehouses;
