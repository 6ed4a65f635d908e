//! The deploy's steps, in the order they run: [`image`] (context, build, cache, push),
//! [`register`], [`rollout`], [`migrate`], [`schedules`], [`cleanup`]. Each first looks in AWS
//! for the result it would produce, and reports "already done" instead of redoing it.

pub mod cleanup;
pub mod image;
pub mod migrate;
pub mod register;
pub mod rollout;
pub mod schedules;
