//+------------------------------------------------------------------+
//| mtgate/Frame.mqh: frames (protocol s.2.1), their seal (s.3.5).   |
//+------------------------------------------------------------------+
// A frame is a 4-byte big-endian length N, then N bytes of body. N is refused above a
// limit as soon as the header is there (the body is not awaited): 16 KiB before `ready`,
// 1 MiB after (s.13), the seal included. MQL has no htonl: the header is written and read a
// byte at a time.
//
// From the end of the handshake each body is sealed: MAC (64 lowercase hex) + seq (16
// lowercase hex) + json, MAC = hex(HMAC-SHA256(K_s, label + seq + json)), one MtgFrameSeal
// per direction (label MTG_LABEL_TO_EA or MTG_LABEL_TO_BRIDGE), the first sealed frame 0.

#ifndef MTGATE_FRAME_MQH
#define MTGATE_FRAME_MQH

#include <mtgate/Compat.mqh>
#include <mtgate/Bytes.mqh>
#include <mtgate/Hmac.mqh>

#define MTG_HEADER_BYTES 4
#define MTG_MAX_FRAME_BYTES 1048576
#define MTG_MAX_HANDSHAKE_FRAME_BYTES 16384

#define MTG_MAC_HEX 64
#define MTG_SEQ_HEX 16
#define MTG_SEAL_BYTES 80

#define MTG_LABEL_TO_EA "mtgate/2 bridge>ea|"
#define MTG_LABEL_TO_BRIDGE "mtgate/2 ea>bridge|"

// MtgFrameSeal::Open results: the bye code to send for each refusal.
#define MTG_OPEN_OK 0
#define MTG_OPEN_BAD_MAC 1
#define MTG_OPEN_OUT_OF_ORDER 2

// MtgFrameDecoder::Next results.
#define MTG_NEXT_BODY 1
#define MTG_NEXT_MORE 0
#define MTG_NEXT_TOO_LARGE -1

// frame = the 4-byte big-endian length of body, then body. False (frame empty) for a body
// over limit.
bool MtgFrameEncode(MTG_ARG_IN(uchar, body), int limit, MTG_ARG_OUT(uchar, frame))
  {
   ArrayResize(frame, 0);
   int n = ArraySize(body);
   if(n > limit)
      return false;
   ArrayResize(frame, MTG_HEADER_BYTES);
   frame[0] = (uchar)((n >> 24) & 0xFF);
   frame[1] = (uchar)((n >> 16) & 0xFF);
   frame[2] = (uchar)((n >> 8) & 0xFF);
   frame[3] = (uchar)(n & 0xFF);
   MtgAppend(frame, body);
   return true;
  }

//+------------------------------------------------------------------+
//| Splits the bytes of a connection, as they arrive, into bodies.   |
//| Feed() what each read returned, then call Next() until it says   |
//| MTG_NEXT_MORE. The limit is checked by Next() when a header is   |
//| complete, against the limit in force then: SetLimit() between    |
//| two Next() calls applies to the next frame (the EA raises it     |
//| once it has taken `ready`, before asking for the next body).     |
//+------------------------------------------------------------------+
class MtgFrameDecoder
  {
private:
   MTG_ARRAY(uchar, m_buf);
   int               m_start;       // first byte not yet consumed
   int               m_limit;
   bool              m_failed;

public:
                     MtgFrameDecoder(void) { m_start = 0; m_limit = MTG_MAX_HANDSHAKE_FRAME_BYTES; m_failed = false; }

   void              Init(int limit)
     {
      ArrayResize(m_buf, 0);
      m_start = 0;
      m_limit = limit;
      m_failed = false;
     }

   void              SetLimit(int limit) { m_limit = limit; }
   int               Limit(void) const { return m_limit; }
   // A header over the limit was seen: the session ends (bye frame_too_large).
   bool              Failed(void) const { return m_failed; }
   // Bytes received and not yet returned as a body.
   int               Buffered(void) const { return ArraySize(m_buf) - m_start; }

   // Takes the first count bytes of data (what SocketRead returned). Nothing after a failure.
   void              Feed(MTG_ARG_IN(uchar, data), int count)
     {
      if(m_failed || count <= 0)
         return;
      if(count > ArraySize(data))
         count = ArraySize(data);
      if(m_start > 0)
        {
         // Drop what was consumed (a copy of an array to itself is undefined in MQL).
         int rest = ArraySize(m_buf) - m_start;
         for(int i = 0; i < rest; i++)
            m_buf[i] = m_buf[m_start + i];
         ArrayResize(m_buf, rest);
         m_start = 0;
        }
      MtgAppendRange(m_buf, data, 0, count);
     }

   // MTG_NEXT_BODY with the next complete body in body; MTG_NEXT_MORE while the next frame
   // is incomplete; MTG_NEXT_TOO_LARGE once a header announced more than the limit (then
   // always, and nothing more is buffered).
   int               Next(MTG_ARG_OUT(uchar, body))
     {
      ArrayResize(body, 0);
      if(m_failed)
         return MTG_NEXT_TOO_LARGE;
      int avail = ArraySize(m_buf) - m_start;
      if(avail < MTG_HEADER_BYTES)
         return MTG_NEXT_MORE;
      uint n = ((uint)m_buf[m_start] << 24) | ((uint)m_buf[m_start + 1] << 16) |
               ((uint)m_buf[m_start + 2] << 8) | (uint)m_buf[m_start + 3];
      if(m_limit < 0 || n > (uint)m_limit)
        {
         m_failed = true;
         ArrayResize(m_buf, 0);
         m_start = 0;
         return MTG_NEXT_TOO_LARGE;
        }
      int size = (int)n;
      if(avail - MTG_HEADER_BYTES < size)
         return MTG_NEXT_MORE;
      MtgAppendRange(body, m_buf, m_start + MTG_HEADER_BYTES, size);
      m_start += MTG_HEADER_BYTES + size;
      return MTG_NEXT_BODY;
     }
  };

//+------------------------------------------------------------------+
//| One direction of a session's frames: Seal() on the sending side, |
//| Open() on the receiving side, each keeping the next sequence     |
//| number. Numbers never wrap: after 2^64-1 nothing more is sealed  |
//| (the session closes) and nothing more opens (out_of_order).      |
//+------------------------------------------------------------------+
class MtgFrameSeal
  {
private:
   MTG_ARRAY(uchar, m_key);
   MTG_ARRAY(uchar, m_label);
   ulong             m_next;
   bool              m_exhausted;   // frame 2^64-1 has been sealed or opened

   // mac_hex = the 64 ASCII hex bytes of HMAC(K_s, label + seq_hex + json), where seq_hex
   // and json are count bytes of src from position from.
   bool              Mac(MTG_ARG_IN(uchar, src), int from, int count, MTG_ARG_OUT(uchar, mac_hex))
     {
      MTG_ARRAY(uchar, message);
      MtgAppend(message, m_label);
      MtgAppendRange(message, src, from, count);
      MTG_ARRAY(uchar, mac);
      if(!MtgHmacSha256(m_key, message, mac))
         return false;
      MtgHexBytes(mac, mac_hex);
      return true;
     }

public:
                     MtgFrameSeal(void) { m_next = 0; m_exhausted = false; }

   // key: K_s (32 raw bytes); label: MTG_LABEL_TO_EA or MTG_LABEL_TO_BRIDGE.
   void              Init(MTG_ARG_IN(uchar, key), string label)
     {
      ArrayResize(m_key, 0);
      MtgAppend(m_key, key);
      MtgTextToUtf8(label, m_label);
      m_next = 0;
      m_exhausted = false;
     }

   ulong             NextSeq(void) const { return m_next; }
   bool              Exhausted(void) const { return m_exhausted; }
   // For self-tests only: continue from frame number seq.
   void              SetNextSeq(ulong seq) { m_next = seq; m_exhausted = false; }

   // body = the sealed body of the next frame sent with this json. False (body empty) once
   // the numbers are exhausted or if a hash failed.
   bool              Seal(MTG_ARG_IN(uchar, json), MTG_ARG_OUT(uchar, body))
     {
      ArrayResize(body, 0);
      if(m_exhausted)
         return false;
      MTG_ARRAY(uchar, tail);
      ArrayResize(tail, MTG_SEQ_HEX);
      for(int i = 0; i < MTG_SEQ_HEX; i++)
         tail[i] = MtgHexDigit((int)((m_next >> (4 * (MTG_SEQ_HEX - 1 - i))) & 15));
      MtgAppend(tail, json);
      MTG_ARRAY(uchar, mac_hex);
      if(!Mac(tail, 0, ArraySize(tail), mac_hex))
         return false;
      MtgAppend(body, mac_hex);
      MtgAppend(body, tail);
      if(m_next == ULONG_MAX)
         m_exhausted = true;
      else
         m_next++;
      return true;
     }

   // Checks a received body before its JSON is read, in the protocol's order: at least 80
   // bytes, seq 16 lowercase hex, the MAC (compared in constant time), or MTG_OPEN_BAD_MAC;
   // then seq is the next number, or MTG_OPEN_OUT_OF_ORDER. MTG_OPEN_OK: json = the body's
   // JSON, and the next number moves on. A refused frame changes nothing.
   int               Open(MTG_ARG_IN(uchar, body), MTG_ARG_OUT(uchar, json))
     {
      ArrayResize(json, 0);
      int n = ArraySize(body);
      if(n < MTG_SEAL_BYTES)
         return MTG_OPEN_BAD_MAC;
      ulong seq = 0;
      for(int i = 0; i < MTG_SEQ_HEX; i++)
        {
         int d = MtgHexValue(body[MTG_MAC_HEX + i], false);
         if(d < 0)
            return MTG_OPEN_BAD_MAC;
         seq = (seq << 4) | (ulong)d;
        }
      MTG_ARRAY(uchar, expected);
      if(!Mac(body, MTG_MAC_HEX, n - MTG_MAC_HEX, expected))
         return MTG_OPEN_BAD_MAC;
      if(!MtgEqualConstTime(expected, 0, body, 0, MTG_MAC_HEX))
         return MTG_OPEN_BAD_MAC;
      if(m_exhausted || seq != m_next)
         return MTG_OPEN_OUT_OF_ORDER;
      MtgAppendRange(json, body, MTG_SEAL_BYTES, n - MTG_SEAL_BYTES);
      if(m_next == ULONG_MAX)
         m_exhausted = true;
      else
         m_next++;
      return MTG_OPEN_OK;
     }
  };

#endif
