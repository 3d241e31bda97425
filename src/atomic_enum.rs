//! An enum kept in an atomic byte. Each enum lists its variants and their
//! bytes once, in [`u8_enum!`]: the encoding match is exhaustive (a new
//! variant is a compile error at that list), and a byte no variant wrote
//! is an error, never a silent default. [`AtomicEnum`] is written only
//! with the enum, so its loads always decode.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};

/// An enum with a byte per variant (implemented by [`u8_enum!`]).
pub(crate) trait U8Enum: Copy + Sized + 'static {
    /// Every variant, in the order listed (the list is the macro's, which
    /// the encoding match keeps complete).
    const ALL: &'static [Self];
    fn to_u8(self) -> u8;
    /// The variant `v` encodes; `None` for a byte no variant has.
    fn from_u8(v: u8) -> Option<Self>;
}

/// Implement [`U8Enum`] from one list: `u8_enum!(Type { A = 0, B = 1 })`.
/// Every variant must be listed (the encoding match is exhaustive), each
/// byte once (a duplicate is an unreachable pattern, denied by the lints).
macro_rules! u8_enum {
    ($ty:ident { $($var:ident = $n:literal),+ $(,)? }) => {
        impl $crate::atomic_enum::U8Enum for $ty {
            const ALL: &'static [Self] = &[$($ty::$var),+];
            fn to_u8(self) -> u8 {
                match self {
                    $($ty::$var => $n,)+
                }
            }
            #[deny(unreachable_patterns)]
            fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $($n => Some($ty::$var),)+
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use u8_enum;

/// An enum value shared between threads, in an `AtomicU8`.
pub(crate) struct AtomicEnum<T: U8Enum> {
    v: AtomicU8,
    _t: PhantomData<T>,
}

impl<T: U8Enum> AtomicEnum<T> {
    pub(crate) fn new(t: T) -> AtomicEnum<T> {
        AtomicEnum {
            v: AtomicU8::new(t.to_u8()),
            _t: PhantomData,
        }
    }

    pub(crate) fn load(&self, o: Ordering) -> T {
        decode(self.v.load(o))
    }

    pub(crate) fn store(&self, t: T, o: Ordering) {
        self.v.store(t.to_u8(), o);
    }

    /// Store `t`; the value before.
    pub(crate) fn swap(&self, t: T, o: Ordering) -> T {
        decode(self.v.swap(t.to_u8(), o))
    }

    /// Store `new` if the value is `cur`; the value before, `Ok` when stored.
    pub(crate) fn compare_exchange(
        &self,
        cur: T,
        new: T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<T, T> {
        self.v
            .compare_exchange(cur.to_u8(), new.to_u8(), success, failure)
            .map(decode)
            .map_err(decode)
    }
}

/// Only bytes written from a `T` are ever stored, so this always decodes.
fn decode<T: U8Enum>(v: u8) -> T {
    match T::from_u8(v) {
        Some(t) => t,
        None => unreachable!("an AtomicEnum holds only bytes its enum wrote ({v})"),
    }
}

impl<T: U8Enum + Default> Default for AtomicEnum<T> {
    fn default() -> Self {
        AtomicEnum::new(T::default())
    }
}

impl<T: U8Enum + fmt::Debug> fmt::Debug for AtomicEnum<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.load(Ordering::Relaxed).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    enum Light {
        #[default]
        Red,
        Amber,
        Green,
    }
    u8_enum!(Light {
        Red = 0,
        Amber = 1,
        Green = 7
    });

    #[test]
    fn every_variant_round_trips_and_unknown_bytes_are_errors() {
        for l in [Light::Red, Light::Amber, Light::Green] {
            assert_eq!(Light::from_u8(l.to_u8()), Some(l));
        }
        for v in [2u8, 3, 6, 8, 255] {
            assert_eq!(Light::from_u8(v), None, "{v}");
        }
    }

    #[test]
    fn atomic_ops_speak_the_enum() {
        let a = AtomicEnum::<Light>::default();
        assert_eq!(a.load(Relaxed), Light::Red);
        assert_eq!(a.swap(Light::Green, Relaxed), Light::Red);
        assert_eq!(
            a.compare_exchange(Light::Red, Light::Amber, Relaxed, Relaxed),
            Err(Light::Green)
        );
        assert_eq!(
            a.compare_exchange(Light::Green, Light::Amber, Relaxed, Relaxed),
            Ok(Light::Green)
        );
        a.store(Light::Red, Relaxed);
        assert_eq!(format!("{a:?}"), "Red");
    }
}
