//! The registry of transforms: `registry! { "tag" => module::Type, ... }` (one line per
//! transform, in `augment/mod.rs`) declares each transform's module (its file), re-exports
//! each type and makes [`super::Step`], the serde
//! enum a [`super::Compose`] holds, tagged by `type` in JSON, with its dispatch to each
//! type's [`super::Transform`], and [`super::TRANSFORMS`], the list of tags. The tags are
//! torchvision's class names in snake_case.

/// Expands one line per transform into its re-export, [`super::Step`], the dispatch and
/// [`super::TRANSFORMS`].
macro_rules! registry {
    ($($tag:literal => $module:ident :: $ty:ident,)*) => {
        $(pub mod $module;)*
        $(pub use $module::$ty;)*

        /// One transform of a [`Compose`]: in JSON an object tagged by `type` (the tags are
        /// [`TRANSFORMS`]) with the transform's parameters beside it.
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "type")]
        pub enum Step {
            $(
                #[serde(rename = $tag)]
                $ty($module::$ty),
            )*
        }

        /// The tag of every transform, in registry order.
        pub const TRANSFORMS: &[&str] = &[$($tag),*];

        impl Step {
            /// The transform's tag (`type` in JSON).
            pub fn tag(&self) -> &'static str {
                match self {
                    $(Step::$ty(_) => $tag,)*
                }
            }

            /// Draws and applies this transform ([`apply`]).
            pub fn apply(&self, img: Planes, size: Size, rng: &mut Rng) -> Planes {
                match self {
                    $(Step::$ty(t) => apply(t, img, size, rng),)*
                }
            }

            /// [`Transform::sets_size`] of the transform.
            pub fn sets_size(&self) -> bool {
                match self {
                    $(Step::$ty(t) => t.sets_size(),)*
                }
            }

            /// [`Transform::validate`] of the transform.
            pub fn validate(&self) -> std::result::Result<(), String> {
                match self {
                    $(Step::$ty(t) => t.validate(),)*
                }
            }
        }

        $(
            impl From<$module::$ty> for Step {
                fn from(t: $module::$ty) -> Self {
                    Step::$ty(t)
                }
            }
        )*
    };
}
