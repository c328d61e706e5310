//! Closed sets of named values (a distance, a view mode, an optimiser, a split set...): each
//! enum lists its names once, with [`choice!`], and gets [`Choice`], `FromStr`, `Display` and
//! serde's `Serialize` / `Deserialize` from that one list. The command lines (`src/cli`, the
//! binaries) offer [`Choice::NAMES`] as their possible values, and the service parses query
//! and form values through serde, so the library depends on no command-line parser and every
//! front end spells a value the same way.

use std::fmt;

/// An enum whose values have names.
pub trait Choice: Copy + Sized + 'static {
    /// What the values choose, in words (for messages), e.g. `"distance"`.
    const WHAT: &'static str;
    /// The names users may give, in the order shown to them.
    const NAMES: &'static [&'static str];

    /// The value's name (serialised, shown and parsed the same way).
    fn name(self) -> &'static str;

    /// One line on what the value does, where the enum gives one (command-line help, the
    /// OpenAPI document).
    fn help(self) -> Option<&'static str>;

    /// The values offered to users, in the order of [`Self::NAMES`].
    fn offered() -> Vec<Self> {
        Self::NAMES
            .iter()
            .filter_map(|n| Self::from_name(n))
            .collect()
    }

    /// The value named `name`, compared ignoring ASCII case; `None` for any other text. Also
    /// accepts the names of values not offered to users (such as [`crate::data::SplitSet`]'s
    /// `inputs`).
    fn from_name(name: &str) -> Option<Self>;

    /// [`Self::from_name`], with an error that lists the names.
    fn parse(name: &str) -> Result<Self, UnknownName> {
        Self::from_name(name).ok_or_else(|| UnknownName {
            what: Self::WHAT,
            given: name.to_string(),
            names: Self::NAMES,
        })
    }
}

/// A name that is none of a [`Choice`]'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    pub what: &'static str,
    pub given: String,
    pub names: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a {}; expected one of: {}",
            self.given,
            self.what,
            self.names.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

/// Implements [`Choice`], `FromStr`, `Display`, `Serialize` and `Deserialize` for a fieldless
/// enum from one list of `Variant = "name"`, each optionally with `=> "help"`. Variants after
/// `hidden:` parse and serialise but are not offered in [`Choice::NAMES`].
///
/// ```ignore
/// choice!(Distance, "distance", { L2 = "l2" => "Euclidean distance.", Cosine = "cosine" });
/// ```
#[macro_export]
macro_rules! choice {
    (@help) => { None };
    (@help $h:literal) => { Some($h) };
    ($ty:ty, $what:literal, { $($v:ident = $n:literal $(=> $h:literal)?),+ $(,)? } $(hidden: { $($hv:ident = $hn:literal),+ $(,)? })?) => {
        impl $crate::choice::Choice for $ty {
            const WHAT: &'static str = $what;
            const NAMES: &'static [&'static str] = &[$($n),+];

            fn name(self) -> &'static str {
                match self {
                    $(Self::$v => $n,)+
                    $($(Self::$hv => $hn,)+)?
                }
            }

            fn help(self) -> Option<&'static str> {
                match self {
                    $(Self::$v => $crate::choice!(@help $($h)?),)+
                    $($(Self::$hv => None,)+)?
                }
            }

            fn from_name(name: &str) -> Option<Self> {
                $(if name.eq_ignore_ascii_case($n) {
                    return Some(Self::$v);
                })+
                $($(if name.eq_ignore_ascii_case($hn) {
                    return Some(Self::$hv);
                })+)?
                None
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::choice::UnknownName;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                <Self as $crate::choice::Choice>::parse(s)
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::choice::Choice::name(*self))
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                s.serialize_str($crate::choice::Choice::name(*self))
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                // Records hold the names exactly as written (parsing ignores case).
                let text = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                <Self as $crate::choice::Choice>::parse(&text)
                    .ok()
                    .filter(|v| $crate::choice::Choice::name(*v) == text)
                    .ok_or_else(|| {
                        ::serde::de::Error::custom($crate::choice::UnknownName {
                            what: <Self as $crate::choice::Choice>::WHAT,
                            given: text.to_string(),
                            names: <Self as $crate::choice::Choice>::NAMES,
                        })
                    })
            }
        }
    };
}

/// Parses `text` as a `T` through serde, as the service reads a query or form value: in any
/// case (the names are lower case; a manifest, read by serde directly, must spell them
/// exactly).
pub fn from_text<T: Choice + serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    use serde::de::IntoDeserializer;
    let lower = text.to_ascii_lowercase();
    let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        lower.as_str().into_deserializer();
    T::deserialize(d).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Colour {
        Red,
        DarkBlue,
        Secret,
    }
    crate::choice!(Colour, "colour", {
        Red = "red" => "The colour of blood.",
        DarkBlue = "dark-blue",
    } hidden: { Secret = "secret" });

    #[test]
    fn names_parse_display_and_serialise_the_same_way() {
        assert_eq!(Colour::NAMES, &["red", "dark-blue"]);
        assert_eq!(Colour::offered(), [Colour::Red, Colour::DarkBlue]);
        assert_eq!(Colour::Red.help(), Some("The colour of blood."));
        assert_eq!(Colour::DarkBlue.help(), None);
        for c in [Colour::Red, Colour::DarkBlue, Colour::Secret] {
            assert_eq!(c.to_string().parse::<Colour>(), Ok(c));
            let json = serde_json::to_string(&c).expect("json");
            assert_eq!(json, format!("\"{}\"", c.name()));
            assert_eq!(serde_json::from_str::<Colour>(&json).expect("parse"), c);
            assert_eq!(from_text::<Colour>(c.name()), Ok(c));
        }
        assert_eq!("Dark-Blue".parse::<Colour>(), Ok(Colour::DarkBlue));
        let err = "green".parse::<Colour>().expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "'green' is not a colour; expected one of: red, dark-blue"
        );
        assert!(serde_json::from_str::<Colour>("\"green\"").is_err());
        assert!(
            serde_json::from_str::<Colour>("\"RED\"").is_err(),
            "records spell names exactly"
        );
        assert_eq!(
            from_text::<Colour>("RED"),
            Ok(Colour::Red),
            "query values in any case"
        );
        assert!(from_text::<Colour>("green")
            .expect_err("unknown")
            .contains("expected one of: red, dark-blue"));
    }
}
