// mql5_prelude.h: the few MQL5 types and built-in functions that the EA's pure-logic core
// (mql/MQL5/Include/mtgate/*.mqh) uses, declared and implemented in C++17 so that the same
// headers compile with g++ and run in the harness (mql/cpp/harness.cpp).
//
// Each builtin below is written from its documented MQL5 signature; the comment above it
// names the reference page (MQL5 Reference, mql5.com/en/docs/...; the MQL4 reference at
// docs.mql4.com has the same page for every function used here, and is the copy that was
// read). Nothing is declared that the core does not call: a core that starts using another
// builtin fails to compile here until the builtin is added, with its page.
//
// Where the documentation leaves a case open, or MQL is lenient, this prelude is STRICTER
// than MQL and aborts the program (as MQL stops an EA on a "critical runtime error"), so the
// core cannot come to depend on the open case: ArrayCopy never grows its destination,
// index and start positions out of range abort, array elements added by ArrayResize hold
// garbage (0xA5), not zeros.
//
// WHAT THIS DOES NOT PROVE. Code that compiles and passes here has the logic right against
// this model of MQL, not against MQL itself. In particular, none of the following is
// checked, because only MetaEditor and a terminal have the real thing:
//   - that MetaEditor accepts the headers at all (its parser, its preprocessor's handling of
//     the parametric macros in Compat.mqh, its warnings);
//   - the real CryptEncode: here CRYPT_HASH_SHA256 is a SHA-256 written for this prelude
//     from FIPS 180-4 (mtg_prelude::Sha256 below), so the core's call to CryptEncode is
//     compiled and run against this model only (an empty key array, the result resized to
//     32, what it does with an empty data array are the documented or assumed behaviour);
//   - string/number conversions of MQL ((string)x, IntegerToString, StringFormat): the core
//     avoids them and writes its own decimal and hex digits;
//   - array bounds behaviour: MQL stops the program on an index out of range; so does this
//     prelude, but the two may differ on the edge cases of ArrayCopy/StringToCharArray/
//     CharArrayToString with out-of-range start or count (here: abort or documented case);
//   - UTF-16: MQL strings are UTF-16; this string is a std::u16string, converted to and
//     from UTF-8 by this file's own code (invalid UTF-8 and lone surrogates become
//     U+FFFD, as Windows' converters do - assumed, not verified); CP_UTF8 is the only code
//     page modelled;
//   - the integer types' sizes are those of MQL (checked below), but MQL's rules for
//     implicit conversions and its warnings are not C++'s.
//
// The namespace mtg_prelude holds helpers that are NOT MQL (the harness uses them to move
// values in and out); the .mqh files must not use it (tests/unit/test_mql_core.py checks).

#ifndef MTG_MQL5_PRELUDE_H
#define MTG_MQL5_PRELUDE_H

#define MTG_MQL5_PRELUDE 1

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

// --- types (MQL5 Reference / Language Basics / Data Types / Integer Types) -----------------
typedef unsigned char uchar;
typedef unsigned short ushort;
typedef unsigned int uint;
typedef unsigned long ulong;

static_assert(sizeof(uchar) == 1 && sizeof(ushort) == 2 && sizeof(short) == 2, "MQL sizes");
static_assert(sizeof(int) == 4 && sizeof(uint) == 4, "MQL int/uint are 32 bits");
static_assert(sizeof(long) == 8 && sizeof(ulong) == 8, "MQL long/ulong are 64 bits (LP64)");

// --- constants -----------------------------------------------------------------------------
// WHOLE_ARRAY: MQL5 Reference / Constants / Other Constants (-1).
#define WHOLE_ARRAY (-1)
// ULONG_MAX: MQL5 Reference / Constants / Numerical Type Properties (18446744073709551615);
// the C++ <climits> macro has that value on LP64.
static_assert(ULONG_MAX == 18446744073709551615UL, "MQL's ULONG_MAX");
// CP_UTF8: MQL5 Reference / Constants / Input/Output Constants / Use of a Codepage (65001).
#define CP_UTF8 65001

namespace mtg_prelude {

// An MQL "critical runtime error": the program stops.
[[noreturn]] inline void Fail(const char *what) {
  std::fprintf(stderr, "mql5_prelude: critical runtime error: %s\n", what);
  std::abort();
}

// --- UTF-8 <-> UTF-16, for MqlString and the CP_UTF8 code page --------------------------------
inline void AppendUtf8(std::string &out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// UTF-16 code units to UTF-8; a lone surrogate becomes U+FFFD.
inline std::string Utf16ToUtf8(const std::u16string &in) {
  std::string out;
  for (size_t i = 0; i < in.size(); i++) {
    char32_t u = in[i];
    if (u >= 0xD800 && u <= 0xDBFF && i + 1 < in.size() && in[i + 1] >= 0xDC00 &&
        in[i + 1] <= 0xDFFF) {
      char32_t lo = in[i + 1];
      AppendUtf8(out, 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00));
      i++;
    } else if (u >= 0xD800 && u <= 0xDFFF) {
      AppendUtf8(out, 0xFFFD);
    } else {
      AppendUtf8(out, u);
    }
  }
  return out;
}

// UTF-8 bytes to UTF-16 code units; each byte that does not start a well-formed sequence
// (overlong forms, surrogates and values above U+10FFFF included) becomes one U+FFFD.
inline std::u16string Utf8ToUtf16(const unsigned char *p, size_t n) {
  std::u16string out;
  size_t i = 0;
  while (i < n) {
    unsigned char b = p[i];
    size_t len = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if (b < 0x80) {
      len = 1;
      cp = b;
    } else if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
      cp = b & 0x1F;
      min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      cp = b & 0x0F;
      min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      cp = b & 0x07;
      min = 0x10000;
    }
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; k++) {
      if ((p[i + k] & 0xC0) != 0x80) {
        ok = false;
      } else {
        cp = (cp << 6) | (p[i + k] & 0x3F);
      }
    }
    if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
    if (!ok) {
      out += static_cast<char16_t>(0xFFFD);
      i++;
      continue;
    }
    if (cp >= 0x10000) {
      out += static_cast<char16_t>(0xD800 + ((cp - 0x10000) >> 10));
      out += static_cast<char16_t>(0xDC00 + ((cp - 0x10000) & 0x3FF));
    } else {
      out += static_cast<char16_t>(cp);
    }
    i += len;
  }
  return out;
}

// --- SHA-256, written for this prelude from FIPS 180-4 (the model of CRYPT_HASH_SHA256) ------
class Sha256 {
 public:
  // FIPS 180-4 §5.3.3 and §4.2.2 define the initial hash value and the 64 constants as the
  // first 32 bits of the fractional parts of the square roots of the first 8 primes and of
  // the cube roots of the first 64 primes. They are computed here from that definition with
  // exact integer roots (floor(root(p) * 2^32) mod 2^32 = low 32 bits of the integer root
  // of p * 2^64, resp. p * 2^96), instead of being typed in.
  static const Sha256 &Tables() {
    static const Sha256 tables;
    return tables;
  }

  static std::vector<unsigned char> Digest(const unsigned char *data, size_t n) {
    const Sha256 &t = Tables();
    unsigned int h[8];
    for (int i = 0; i < 8; i++) h[i] = t.h0_[i];
    // §5.1.1 padding: the message, one 1 bit, zeros to 448 mod 512 bits, the 64-bit length.
    std::vector<unsigned char> m(data, data + n);
    m.push_back(0x80);
    while (m.size() % 64 != 56) m.push_back(0);
    unsigned long long bits = static_cast<unsigned long long>(n) * 8u;
    for (int i = 7; i >= 0; i--) m.push_back(static_cast<unsigned char>(bits >> (8 * i)));
    for (size_t block = 0; block < m.size(); block += 64) t.Compress(h, &m[block]);
    std::vector<unsigned char> out(32);
    for (int i = 0; i < 8; i++) {
      for (int k = 0; k < 4; k++) {
        out[static_cast<size_t>(4 * i + k)] = static_cast<unsigned char>(h[i] >> (24 - 8 * k));
      }
    }
    return out;
  }

 private:
  unsigned int k_[64];
  unsigned int h0_[8];

  __extension__ typedef unsigned __int128 U128;

  // The largest x with x^power <= v (power 2 or 3), by bisection over [0, 2^40).
  static U128 IntegerRoot(U128 v, int power) {
    U128 lo = 0, hi = static_cast<U128>(1) << 40;
    while (hi - lo > 1) {
      U128 mid = (lo + hi) / 2;
      U128 p = mid * mid;
      if (power == 3) p *= mid;
      if (p <= v) lo = mid; else hi = mid;
    }
    return lo;
  }

  Sha256() : k_(), h0_() {
    int found = 0;
    for (unsigned int p = 2; found < 64; p++) {
      bool prime = true;
      for (unsigned int d = 2; d * d <= p; d++) {
        if (p % d == 0) { prime = false; break; }
      }
      if (!prime) continue;
      U128 cube = IntegerRoot(static_cast<U128>(p) << 96, 3);
      k_[found] = static_cast<unsigned int>(cube & 0xFFFFFFFFu);
      if (found < 8) {
        U128 square = IntegerRoot(static_cast<U128>(p) << 64, 2);
        h0_[found] = static_cast<unsigned int>(square & 0xFFFFFFFFu);
      }
      found++;
    }
  }

  static unsigned int Rotr(unsigned int x, int n) { return (x >> n) | (x << (32 - n)); }

  // §6.2.2: one 512-bit block.
  void Compress(unsigned int h[8], const unsigned char *block) const {
    unsigned int w[64];
    for (int t = 0; t < 16; t++) {
      w[t] = (static_cast<unsigned int>(block[4 * t]) << 24) |
             (static_cast<unsigned int>(block[4 * t + 1]) << 16) |
             (static_cast<unsigned int>(block[4 * t + 2]) << 8) |
             static_cast<unsigned int>(block[4 * t + 3]);
    }
    for (int t = 16; t < 64; t++) {
      unsigned int s0 = Rotr(w[t - 15], 7) ^ Rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      unsigned int s1 = Rotr(w[t - 2], 17) ^ Rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = s1 + w[t - 7] + s0 + w[t - 16];
    }
    unsigned int a = h[0], b = h[1], c = h[2], d = h[3];
    unsigned int e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int t = 0; t < 64; t++) {
      unsigned int big_s1 = Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25);
      unsigned int ch = (e & f) ^ (~e & g);
      unsigned int t1 = hh + big_s1 + ch + k_[t] + w[t];
      unsigned int big_s0 = Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22);
      unsigned int maj = (a & b) ^ (a & c) ^ (b & c);
      unsigned int t2 = big_s0 + maj;
      hh = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
};

}  // namespace mtg_prelude

// --- dynamic arrays (MQL5 Reference / Language Basics / Data Types / Dynamic Array Object) ---
// MQL's `T name[]` (a dynamic array) and `T &name[]` (an array parameter) are spelled
// MTG_ARRAY(T, name) / MTG_ARG_OUT(T, name) / MTG_ARG_IN(T, name) in the core
// (mtgate/Compat.mqh); in C++ they are this class. Indexing is bounds-checked: out of range
// is MQL's "array out of range" critical error.
template <typename T>
class MqlArray {
  static_assert(std::is_arithmetic<T>::value, "the core uses arrays of numbers only");

 public:
  T &operator[](int i) { return v_[Check(i)]; }
  const T &operator[](int i) const { return v_[Check(i)]; }

  // Not MQL: for the builtins and the harness.
  std::vector<T> &Raw() { return v_; }
  const std::vector<T> &Raw() const { return v_; }

 private:
  size_t Check(int i) const {
    if (i < 0 || static_cast<size_t>(i) >= v_.size()) mtg_prelude::Fail("array out of range");
    return static_cast<size_t>(i);
  }
  std::vector<T> v_;
};

// ArraySize: MQL5 Reference / Array Functions / ArraySize.
//   int ArraySize(const void &array[]);
template <typename T>
int ArraySize(const MqlArray<T> &array) {
  return static_cast<int>(array.Raw().size());
}

// ArrayResize: MQL5 Reference / Array Functions / ArrayResize.
//   int ArrayResize(void &array[], int new_size, int reserve_size=0);
// Returns the new number of elements, or -1 (array unchanged). The values of added elements
// are not defined by MQL: here they are 0xA5, so code that assumes zeros fails its tests.
template <typename T>
int ArrayResize(MqlArray<T> &array, int new_size, int reserve_size = 0) {
  if (new_size < 0 || reserve_size < 0) return -1;
  std::vector<T> &v = array.Raw();
  size_t want = static_cast<size_t>(new_size);
  if (want > v.capacity()) v.reserve(want + static_cast<size_t>(reserve_size));
  v.resize(want, static_cast<T>(0xA5));
  return new_size;
}

// ArrayCopy: MQL5 Reference / Array Functions / ArrayCopy.
//   int ArrayCopy(void &dst_array[], const void &src_array[], int dst_start=0,
//                 int src_start=0, int count=WHOLE_ARRAY);
// Documented: count <= 0 or count > src_size - src_start copies the rest of the source
// (modelled); a copy of an array to itself is undefined (here: abort); a dynamic destination
// grows, except a class or structure member (here: never grows - the caller resizes first,
// and a destination too small aborts). Same element type only (MQL converts; the core does
// not rely on it).
template <typename T>
int ArrayCopy(MqlArray<T> &dst_array, const MqlArray<T> &src_array, int dst_start = 0,
              int src_start = 0, int count = WHOLE_ARRAY) {
  if (&dst_array == &src_array) mtg_prelude::Fail("ArrayCopy of an array to itself");
  int src_size = ArraySize(src_array);
  if (dst_start < 0 || src_start < 0 || src_start > src_size) {
    mtg_prelude::Fail("ArrayCopy start out of range");
  }
  if (count <= 0 || count > src_size - src_start) count = src_size - src_start;
  if (dst_start + count > ArraySize(dst_array)) {
    mtg_prelude::Fail("ArrayCopy destination too small (resize it first)");
  }
  for (int i = 0; i < count; i++) {
    dst_array.Raw()[static_cast<size_t>(dst_start + i)] =
        src_array.Raw()[static_cast<size_t>(src_start + i)];
  }
  return count;
}

// --- strings (MQL5 Reference / Language Basics / Data Types / String Type) ------------------
// A UTF-16 string with the operations MQL has: assignment, +, +=, ==, !=. It has no members
// that MQL lacks (no .size(), no []): the core goes through StringLen/StringGetCharacter.
// Numbers do not convert to it (MQL converts them, with a warning; the core never relies on
// that, and in C++ `"literal" + number` would be pointer arithmetic).
class MqlString {
 public:
  MqlString() {}
  MqlString(const char *utf8)  // NOLINT: literals convert implicitly, as in MQL
      : s_(mtg_prelude::Utf8ToUtf16(reinterpret_cast<const unsigned char *>(utf8),
                                    std::char_traits<char>::length(utf8))) {}
  MqlString(int) = delete;
  MqlString(long) = delete;
  MqlString(uint) = delete;
  MqlString(ulong) = delete;
  MqlString(double) = delete;

  MqlString &operator+=(const MqlString &other) {
    s_ += other.s_;
    return *this;
  }
  friend MqlString operator+(const MqlString &a, const MqlString &b) {
    MqlString r(a);
    r += b;
    return r;
  }
  friend bool operator==(const MqlString &a, const MqlString &b) { return a.s_ == b.s_; }
  friend bool operator!=(const MqlString &a, const MqlString &b) { return a.s_ != b.s_; }

  // Not MQL: for the builtins and the harness.
  const std::u16string &Units() const { return s_; }
  static MqlString FromUnits(std::u16string units) {
    MqlString r;
    r.s_ = std::move(units);
    return r;
  }

 private:
  std::u16string s_;
};

typedef MqlString string;

// StringLen: MQL5 Reference / String Functions / StringLen.
//   int StringLen(string string_value);
// Number of characters (UTF-16 code units) without the ending zero.
inline int StringLen(const string &string_value) {
  return static_cast<int>(string_value.Units().size());
}

// StringGetCharacter: MQL5 Reference / String Functions / StringGetCharacter.
//   ushort StringGetCharacter(string string_value, int pos);
// The code at pos (0 .. StringLen-1), or 0 in case of an error.
inline ushort StringGetCharacter(const string &string_value, int pos) {
  if (pos < 0 || pos >= StringLen(string_value)) return 0;
  return static_cast<ushort>(string_value.Units()[static_cast<size_t>(pos)]);
}

// StringToCharArray: MQL5 Reference / Conversion Functions / StringToCharArray.
//   int StringToCharArray(string text_string, uchar &array[], int start=0, int count=-1,
//                         uint codepage=CP_ACP);
// Documented: count=-1 copies the whole string AND its terminating zero; a dynamic array
// grows as needed and is never made smaller; returns the number of elements copied.
// Only CP_UTF8 is modelled (anything else aborts); start beyond the array's end aborts.
inline int StringToCharArray(const string &text_string, MqlArray<uchar> &array, int start = 0,
                             int count = -1, uint codepage = 0) {
  if (codepage != CP_UTF8) mtg_prelude::Fail("StringToCharArray: only CP_UTF8 is modelled");
  if (start < 0 || start > ArraySize(array)) mtg_prelude::Fail("StringToCharArray: start");
  std::string bytes = mtg_prelude::Utf16ToUtf8(text_string.Units());
  bytes += '\0';
  size_t n = bytes.size();
  if (count >= 0 && static_cast<size_t>(count) < n) n = static_cast<size_t>(count);
  std::vector<uchar> &v = array.Raw();
  size_t end = static_cast<size_t>(start) + n;
  if (v.size() < end) v.resize(end, 0xA5);
  for (size_t i = 0; i < n; i++) v[static_cast<size_t>(start) + i] = static_cast<uchar>(bytes[i]);
  return static_cast<int>(n);
}

// CharArrayToString: MQL5 Reference / Conversion Functions / CharArrayToString.
//   string CharArrayToString(uchar array[], int start=0, int count=-1, uint codepage=CP_ACP);
// Documented: count=-1 copies to the end of the array or to a terminating 0. Here a 0 ends
// the string whatever count is (a C string underneath: assumed). Only CP_UTF8 is modelled;
// start outside the array aborts.
inline string CharArrayToString(const MqlArray<uchar> &array, int start = 0, int count = -1,
                                uint codepage = 0) {
  if (codepage != CP_UTF8) mtg_prelude::Fail("CharArrayToString: only CP_UTF8 is modelled");
  int size = ArraySize(array);
  if (start < 0 || start > size) mtg_prelude::Fail("CharArrayToString: start");
  int end = (count < 0 || count > size - start) ? size : start + count;
  int stop = start;
  while (stop < end && array[stop] != 0) stop++;
  const uchar *p = array.Raw().data() + start;
  return string::FromUnits(mtg_prelude::Utf8ToUtf16(p, static_cast<size_t>(stop - start)));
}

// --- CryptEncode (MQL5 Reference / Common Functions / CryptEncode) ---------------------------
//   int CryptEncode(ENUM_CRYPT_METHOD method, const uchar &data[], const uchar &key[],
//                   uchar &result[]);
// Returns the number of bytes in result, 0 on error. ENUM_CRYPT_METHOD documents
// CRYPT_BASE64, CRYPT_AES128, CRYPT_AES256, CRYPT_DES, CRYPT_HASH_SHA1, CRYPT_HASH_SHA256,
// CRYPT_HASH_MD5 and CRYPT_ARCH_ZIP; only CRYPT_HASH_SHA256 is declared here (the core uses
// no other, and its numeric value is not modelled: use the name). "A key is not needed for
// hashing" (MQL5 book, CryptEncode): the key is ignored.
enum ENUM_CRYPT_METHOD { CRYPT_HASH_SHA256 };

inline int CryptEncode(ENUM_CRYPT_METHOD method, const MqlArray<uchar> &data,
                       const MqlArray<uchar> &key, MqlArray<uchar> &result) {
  (void)key;
  if (method != CRYPT_HASH_SHA256) return 0;
  result.Raw() = mtg_prelude::Sha256::Digest(data.Raw().data(), data.Raw().size());
  return ArraySize(result);
}

// --- harness helpers (NOT MQL) ---------------------------------------------------------------
namespace mtg_prelude {

inline std::string ToUtf8(const string &s) { return Utf16ToUtf8(s.Units()); }

inline string FromUtf8(const std::string &s) {
  return string::FromUnits(
      Utf8ToUtf16(reinterpret_cast<const unsigned char *>(s.data()), s.size()));
}

inline MqlArray<uchar> Bytes(const std::vector<uchar> &v) {
  MqlArray<uchar> a;
  a.Raw() = v;
  return a;
}

}  // namespace mtg_prelude

#endif  // MTG_MQL5_PRELUDE_H
