//! # incident: from connections judged one by one to the incident as a whole
//!
//! In: judged connections (the views, the diagnosis, the clock offset), one at a time as the
//! pipeline hands them out. Out: what an on-call engineer asks first — how many requests failed,
//! when, in which shape (all at once, under load, clustered, sporadic: `timeline`), and what the
//! failed requests have in common (method, path, body size, connection reuse: `patterns`).
//!
//! Every accumulator here is bounded: counts per time bucket (a fixed number of buckets, made
//! coarser as the capture grows) and per category (a fixed number of categories), never a list of
//! connections. The report layer turns the results into words, tables and a plot.

pub mod patterns;
pub mod timeline;
