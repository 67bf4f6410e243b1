//+------------------------------------------------------------------+
//| mtgate/Hmac.mqh: HMAC-SHA256 (RFC 2104) on MtgSha256, and hex.   |
//+------------------------------------------------------------------+
// MQL has no HMAC; RFC 2104 builds it from the hash: K0 = the key (hashed first if longer
// than the 64-byte block), zero-padded to 64 bytes; HMAC = H((K0 ^ opad) || H((K0 ^ ipad) ||
// message)), ipad = 0x36 and opad = 0x5c repeated. MQL has no incremental hash either, so
// each hash is over one whole array.

#ifndef MTGATE_HMAC_MQH
#define MTGATE_HMAC_MQH

#include <mtgate/Compat.mqh>
#include <mtgate/Bytes.mqh>
#include <mtgate/Sha256.mqh>

#define MTG_HMAC_BLOCK 64

// mac = HMAC-SHA256(key, message), 32 bytes. False if a hash failed.
bool MtgHmacSha256(MTG_ARG_IN(uchar, key), MTG_ARG_IN(uchar, message), MTG_ARG_OUT(uchar, mac))
  {
   MTG_ARRAY(uchar, k0);
   ArrayResize(k0, MTG_HMAC_BLOCK);
   for(int i = 0; i < MTG_HMAC_BLOCK; i++)
      k0[i] = 0;
   if(ArraySize(key) > MTG_HMAC_BLOCK)
     {
      MTG_ARRAY(uchar, hashed);
      if(!MtgSha256(key, hashed))
         return false;
      ArrayCopy(k0, hashed, 0, 0, MTG_SHA256_BYTES);
     }
   else
      if(ArraySize(key) > 0)
         ArrayCopy(k0, key, 0, 0, ArraySize(key));

   int n = ArraySize(message);
   MTG_ARRAY(uchar, inner);
   ArrayResize(inner, MTG_HMAC_BLOCK + n);
   for(int i = 0; i < MTG_HMAC_BLOCK; i++)
      inner[i] = (uchar)(k0[i] ^ 0x36);
   if(n > 0)
      ArrayCopy(inner, message, MTG_HMAC_BLOCK, 0, n);
   MTG_ARRAY(uchar, inner_hash);
   if(!MtgSha256(inner, inner_hash))
      return false;

   MTG_ARRAY(uchar, outer);
   ArrayResize(outer, MTG_HMAC_BLOCK + MTG_SHA256_BYTES);
   for(int i = 0; i < MTG_HMAC_BLOCK; i++)
      outer[i] = (uchar)(k0[i] ^ 0x5c);
   ArrayCopy(outer, inner_hash, MTG_HMAC_BLOCK, 0, MTG_SHA256_BYTES);
   return MtgSha256(outer, mac);
  }

// The ASCII code of hex digit v (0..15), lowercase.
uchar MtgHexDigit(int v)
  {
   if(v < 10)
      return (uchar)(48 + v);
   return (uchar)(87 + v);
  }

// The value of hex digit c, or -1. Uppercase digits count only if allow_upper.
int MtgHexValue(int c, bool allow_upper)
  {
   if(c >= 48 && c <= 57)
      return c - 48;
   if(c >= 97 && c <= 102)
      return c - 87;
   if(allow_upper && c >= 65 && c <= 70)
      return c - 55;
   return -1;
  }

// out = the lowercase hex of bytes, as ASCII bytes (2 per byte).
void MtgHexBytes(MTG_ARG_IN(uchar, bytes), MTG_ARG_OUT(uchar, out))
  {
   int n = ArraySize(bytes);
   ArrayResize(out, 2 * n);
   for(int i = 0; i < n; i++)
     {
      out[2 * i] = MtgHexDigit(bytes[i] >> 4);
      out[2 * i + 1] = MtgHexDigit(bytes[i] & 15);
     }
  }

// The lowercase hex of bytes.
string MtgHex(MTG_ARG_IN(uchar, bytes))
  {
   MTG_ARRAY(uchar, ascii);
   MtgHexBytes(bytes, ascii);
   return MtgUtf8ToText(ascii, 0, ArraySize(ascii));
  }

// out = the bytes of hex text (an even number of digits, either case, nothing else, e.g.
// a configured key). False, out empty, for anything else.
bool MtgHexDecode(string text, MTG_ARG_OUT(uchar, out))
  {
   ArrayResize(out, 0);
   int n = StringLen(text);
   if(n % 2 != 0)
      return false;
   MTG_ARRAY(uchar, bytes);
   ArrayResize(bytes, n / 2);
   for(int i = 0; i < n / 2; i++)
     {
      int hi = MtgHexValue(StringGetCharacter(text, 2 * i), true);
      int lo = MtgHexValue(StringGetCharacter(text, 2 * i + 1), true);
      if(hi < 0 || lo < 0)
         return false;
      bytes[i] = (uchar)(hi * 16 + lo);
     }
   MtgAppend(out, bytes);
   return true;
  }

#endif
