//+------------------------------------------------------------------+
//| mtgate/Bytes.mqh: byte arrays, and the edges where MQL's UTF-16  |
//| strings become UTF-8 bytes and back.                             |
//+------------------------------------------------------------------+
// The core keeps bytes in uchar arrays; a string is converted only at the edge, here.
// Nothing relies on an open case of the builtins: StringToCharArray's terminating zero is
// dropped whether or not it was counted, ArrayCopy is only called with count > 0 into a
// destination already resized, CharArrayToString is never called with count 0.

#ifndef MTGATE_BYTES_MQH
#define MTGATE_BYTES_MQH

#include <mtgate/Compat.mqh>

// The UTF-8 bytes of text, without StringToCharArray's terminating zero. Returns their
// number.
int MtgTextToUtf8(string text, MTG_ARG_OUT(uchar, out))
  {
   ArrayResize(out, 0);
   int n = StringToCharArray(text, out, 0, WHOLE_ARRAY, CP_UTF8);
   if(n < 0)
      n = 0;
   if(n > ArraySize(out))
      n = ArraySize(out);
   // An MQL string cannot hold a 0, so a 0 at the end is the terminator.
   if(n > 0 && out[n - 1] == 0)
      n--;
   ArrayResize(out, n);
   return n;
  }

// The text of count UTF-8 bytes of src from position from ("" for none).
string MtgUtf8ToText(MTG_ARG_IN(uchar, src), int from, int count)
  {
   if(count <= 0 || from < 0 || from + count > ArraySize(src))
      return "";
   return CharArrayToString(src, from, count, CP_UTF8);
  }

// Appends count bytes of src, from position from, to dst.
void MtgAppendRange(MTG_ARG_OUT(uchar, dst), MTG_ARG_IN(uchar, src), int from, int count)
  {
   if(count <= 0)
      return;
   int at = ArraySize(dst);
   ArrayResize(dst, at + count);
   ArrayCopy(dst, src, at, from, count);
  }

// Appends all of src to dst.
void MtgAppend(MTG_ARG_OUT(uchar, dst), MTG_ARG_IN(uchar, src))
  {
   MtgAppendRange(dst, src, 0, ArraySize(src));
  }

// Appends the UTF-8 bytes of text to dst.
void MtgAppendText(MTG_ARG_OUT(uchar, dst), string text)
  {
   MTG_ARRAY(uchar, bytes);
   MtgTextToUtf8(text, bytes);
   MtgAppend(dst, bytes);
  }

// Sets dst to count bytes of src from position from (dst empty for none).
void MtgCopyRange(MTG_ARG_OUT(uchar, dst), MTG_ARG_IN(uchar, src), int from, int count)
  {
   ArrayResize(dst, 0);
   MtgAppendRange(dst, src, from, count);
  }

// Whether count bytes of a from a_from equal count bytes of b from b_from, in a time that
// depends on count only (not on where they differ). Out of range: false.
bool MtgEqualConstTime(MTG_ARG_IN(uchar, a), int a_from, MTG_ARG_IN(uchar, b), int b_from,
                       int count)
  {
   if(count < 0 || a_from < 0 || b_from < 0)
      return false;
   if(a_from + count > ArraySize(a) || b_from + count > ArraySize(b))
      return false;
   int diff = 0;
   for(int i = 0; i < count; i++)
      diff |= a[a_from + i] ^ b[b_from + i];
   return diff == 0;
  }

// The decimal digits of v (0 to 2^64-1), as MQL's own conversions are not relied on
// (IntegerToString takes a signed long).
string MtgULongToDecimal(ulong v)
  {
   MTG_ARRAY(uchar, reversed);
   ArrayResize(reversed, 20);
   int n = 0;
   do
     {
      reversed[n] = (uchar)(48 + (int)(v % 10));
      v /= 10;
      n++;
     }
   while(v > 0);
   MTG_ARRAY(uchar, digits);
   ArrayResize(digits, n);
   for(int i = 0; i < n; i++)
      digits[i] = reversed[n - 1 - i];
   return MtgUtf8ToText(digits, 0, n);
  }

#endif
