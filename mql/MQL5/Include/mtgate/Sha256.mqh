//+------------------------------------------------------------------+
//| mtgate/Sha256.mqh: SHA-256 of a byte array.                      |
//+------------------------------------------------------------------+
// MQL5 has SHA-256 built in: CryptEncode(CRYPT_HASH_SHA256, data, key, result), with a key
// that hashing does not use (MQL5 Reference / Common Functions / CryptEncode). This is the
// one place the core calls it. The C++ build compiles and runs this same body against
// mql/cpp/mql5_prelude.h, whose CryptEncode is a SHA-256 written from FIPS 180-4: the harness
// therefore checks the call and everything built on it, against that model of CryptEncode,
// never against the terminal's own.
//
// Not known without a terminal: what CryptEncode does with an empty data array. The core
// never asks for one (HMAC hashes at least 64 bytes; the handshake bodies are not empty).

#ifndef MTGATE_SHA256_MQH
#define MTGATE_SHA256_MQH

#include <mtgate/Compat.mqh>

#define MTG_SHA256_BYTES 32

// digest = SHA-256(data), 32 bytes. False if the platform call failed.
bool MtgSha256(MTG_ARG_IN(uchar, data), MTG_ARG_OUT(uchar, digest))
  {
   MTG_ARRAY(uchar, no_key);
   if(CryptEncode(CRYPT_HASH_SHA256, data, no_key, digest) != MTG_SHA256_BYTES)
      return false;
   return ArraySize(digest) == MTG_SHA256_BYTES;
  }

#endif
