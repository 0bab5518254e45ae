/// Generates an open codepoint enum: every known value gets a variant, any
/// other value is kept as `Unknown(n)`; conversions both ways never fail, so an
/// unknown protocol number or SADB type round-trips unchanged.
///
/// ```ignore
/// enum_with_unknown! {
///     /// IP protocol numbers (IANA).
///     pub enum IpProtocol(u8) {
///         Esp = 50,
///         Ah = 51,
///     }
/// }
/// ```
#[macro_export]
macro_rules! enum_with_unknown {
    (
        $( #[$enum_attr:meta] )*
        pub enum $name:ident($ty:ty) {
            $(
              $( #[$variant_attr:meta] )*
              $variant:ident = $value:expr
            ),+ $(,)?
        }
    ) => {
        #[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Clone, Copy)]
        $( #[$enum_attr] )*
        pub enum $name {
            $(
              $( #[$variant_attr] )*
              $variant
            ),*,
            /// A value this implementation has no name for; kept verbatim.
            Unknown($ty)
        }

        impl ::core::convert::From<$ty> for $name {
            // Always inlined: a protocol byte is classified on every
            // packet's path (as a call it costs more than the lookup).
            #[inline(always)]
            fn from(value: $ty) -> Self {
                match value {
                    $( value if value == $value => $name::$variant ),*,
                    other => $name::Unknown(other)
                }
            }
        }

        impl ::core::convert::From<$name> for $ty {
            // Always inlined too: ESP output and the outer header write a
            // protocol byte on every packet.
            #[inline(always)]
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value ),*,
                    $name::Unknown(other) => other
                }
            }
        }
    }
}
