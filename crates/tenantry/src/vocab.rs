//! The typed vocabulary: closed sets of names (permissions, roles, plans, job statuses)
//! as enums that travel as their stable strings.
//!
//! [`text_enum!`] gives an enum its wire and storage form in one place: `as_str`, exact
//! `parse`, `ALL`, `Display`, serde as the string, and sqlx encoding as text on both
//! backends. A stored string that names no variant does not decode: the column decode error
//! becomes [`StoreError::Corrupt`](crate::store::StoreError::Corrupt), never a default.

/// Defines a string enum: `Variant => "wire-name"` pairs, each with its doc comment, or
/// `Variant => "wire-name": "description"` pairs, whose description is both the variant's
/// doc and what `description()` returns.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $variant:ident => $text:literal : $desc:literal, )+
        }
    ) => {
        $crate::vocab::text_enum! {
            $(#[$meta])*
            $vis enum $name {
                $( #[doc = $desc] $variant => $text, )+
            }
        }

        impl $name {
            /// What the value means, as published.
            pub const fn description(self) -> &'static str {
                match self {
                    $( $name::$variant => $desc, )+
                }
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$( $name::$variant ),+];

            /// The stable name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// The value named exactly `raw`.
            pub fn parse(raw: &str) -> Option<Self> {
                match raw {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <::std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&raw).ok_or_else(|| {
                    ::serde::de::Error::custom(format!(
                        concat!("unknown ", stringify!($name), " `{}`"),
                        raw
                    ))
                })
            }
        }

        impl<DB: ::sqlx::Database> ::sqlx::Type<DB> for $name
        where
            str: ::sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as ::sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as ::sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: ::sqlx::Database> ::sqlx::Encode<'q, DB> for $name
        where
            &'q str: ::sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as ::sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                <&'q str as ::sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: ::sqlx::Database> ::sqlx::Decode<'r, DB> for $name
        where
            &'r str: ::sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as ::sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, ::sqlx::error::BoxDynError> {
                let raw = <&'r str as ::sqlx::Decode<'r, DB>>::decode(value)?;
                Self::parse(raw).ok_or_else(|| {
                    format!(concat!("unknown ", stringify!($name), " `{}`"), raw).into()
                })
            }
        }
    };
}
pub(crate) use text_enum;

/// JSON stored in a text column (both backends keep JSON as text), decoded once when the
/// row is read: a value that does not decode fails the row's decode, which the store
/// reports as [`StoreError::Corrupt`](crate::store::StoreError::Corrupt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonText<T>(pub T);

impl<DB: sqlx::Database, T> sqlx::Type<DB> for JsonText<T>
where
    str: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <str as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <str as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database, T: serde::de::DeserializeOwned> sqlx::Decode<'r, DB> for JsonText<T>
where
    &'r str: sqlx::Decode<'r, DB>,
{
    fn decode(
        value: <DB as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        let raw = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
        Ok(Self(serde_json::from_str(raw)?))
    }
}

impl<'q, DB: sqlx::Database, T: serde::Serialize> sqlx::Encode<'q, DB> for JsonText<T>
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, DB>>::encode(serde_json::to_string(&self.0)?, buf)
    }
}
