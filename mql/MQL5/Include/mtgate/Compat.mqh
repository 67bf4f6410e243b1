//+------------------------------------------------------------------+
//| mtgate/Compat.mqh: how the core spells arrays, so that it is     |
//| both MQL5 and C++17 (through mql/cpp/mql5_prelude.h).            |
//+------------------------------------------------------------------+
// The core (Bytes, Sha256, Hmac, Auth, Frame) is written once, in the subset of MQL5 that is
// also C++. One MQL construct has no C++ spelling: the dynamic array. In MQL a local or
// member dynamic array is `uchar buf[];` and an array parameter is `uchar &buf[]` or
// `const uchar &buf[]`; in C++ the first is an array of unknown size (ill-formed as a
// variable) and the second an array of references (ill-formed). A prelude cannot make those
// spellings valid C++, so the core spells them with three parametric macros (MQL's
// preprocessor has the parametric form of #define, up to 8 parameters: MQL5 Reference /
// Language Basics / Preprocessor / Macro substitution):
//
//   MTG_ARRAY(uchar, buf)        MQL: uchar buf[]          C++: MqlArray<uchar> buf
//   MTG_ARG_OUT(uchar, buf)      MQL: uchar &buf[]         C++: MqlArray<uchar> &buf
//   MTG_ARG_IN(uchar, buf)       MQL: const uchar &buf[]   C++: const MqlArray<uchar> &buf
//
// Under MQL they expand to exactly the native spelling, so every builtin (CryptEncode,
// ArrayResize, SocketRead, ...) gets a native array; in C++ MqlArray is the prelude's
// bounds-checked dynamic array. Everything else in the core (indexing with [], ArrayResize,
// ArraySize, ArrayCopy, StringToCharArray, ...) is written as plain MQL and is also valid C++
// against the prelude. Other rules of the subset, so that both compilers see the same thing:
// no `input`, no pointers (no `->`, new or delete), no templates, no std::, no casts other
// than C-style `(type)x`, no unsigned/size_t spellings (uchar/ushort/uint/ulong only),
// numbers never concatenated to strings (the core writes its own digits), no #error/#pragma.
//
// __MQL5__ (and __MQL4__ for a later MQL4 build of the same core) is defined by MetaEditor
// (MQL5 Reference / Language Basics / Preprocessor / Conditional Compilation). Without
// either, this is the C++ build, and the prelude must have been included first (MqlArray is
// otherwise undefined, and compilation fails at the first use).

#ifndef MTGATE_COMPAT_MQH
#define MTGATE_COMPAT_MQH

#ifdef __MQL5__
#define MTG_MQL_NATIVE_ARRAYS
#endif
#ifdef __MQL4__
#define MTG_MQL_NATIVE_ARRAYS
#endif

#ifdef MTG_MQL_NATIVE_ARRAYS
#define MTG_ARRAY(T, name) T name[]
#define MTG_ARG_OUT(T, name) T &name[]
#define MTG_ARG_IN(T, name) const T &name[]
#else
#define MTG_ARRAY(T, name) MqlArray<T> name
#define MTG_ARG_OUT(T, name) MqlArray<T> &name
#define MTG_ARG_IN(T, name) const MqlArray<T> &name
#endif

#endif
