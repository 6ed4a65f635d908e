//! The image step: the build context as Docker reads it ([`context`], [`dockerignore`],
//! [`dockerfile`]), the build ([`build`]) with its layer cache from ECR ([`cache`]), and the
//! push ([`push`]).

pub mod build;
pub mod cache;
pub mod context;
pub mod dockerfile;
pub mod dockerignore;
pub mod push;
