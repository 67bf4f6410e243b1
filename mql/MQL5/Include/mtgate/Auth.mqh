//+------------------------------------------------------------------+
//| mtgate/Auth.mqh: the handshake's proofs (protocol s.3.4), the    |
//| session key (s.3.5), the EA's keyed nonce (s.3.2) and constant-  |
//| time comparison of hex texts.                                    |
//+------------------------------------------------------------------+
// Each MAC is over the UTF-8 bytes of a text written exactly as docs/protocol.md shows it;
// `key` is the raw terminal key (not its hex), the result lowercase hex. The reference is
// src/mtgate/protocol/auth.py; mql/vectors/golden.json holds the values the harness checks.

#ifndef MTGATE_AUTH_MQH
#define MTGATE_AUTH_MQH

#include <mtgate/Compat.mqh>
#include <mtgate/Bytes.mqh>
#include <mtgate/Sha256.mqh>
#include <mtgate/Hmac.mqh>

#define MTG_NONCE_HEX 32

// hex(HMAC-SHA256(key, text)), "" if a hash failed.
string MtgHmacHexOfText(MTG_ARG_IN(uchar, key), string text)
  {
   MTG_ARRAY(uchar, message);
   MtgTextToUtf8(text, message);
   MTG_ARRAY(uchar, mac);
   if(!MtgHmacSha256(key, message, mac))
      return "";
   return MtgHex(mac);
  }

// hex(HMAC-SHA256(key, "mtgate/1 " + role + "|" + terminal_id + "|" + ea_nonce + "|" +
// bridge_nonce)); role "bridge" (P_bridge) or "ea" (P_ea). "" if a hash failed.
string MtgProof(string role, MTG_ARG_IN(uchar, key), string terminal_id, string ea_nonce,
                string bridge_nonce)
  {
   string text = "mtgate/1 " + role + "|" + terminal_id + "|" + ea_nonce + "|" + bridge_nonce;
   return MtgHmacHexOfText(key, text);
  }

// P_bridge: what the EA expects in the welcome.
string MtgBridgeProof(MTG_ARG_IN(uchar, key), string terminal_id, string ea_nonce,
                      string bridge_nonce)
  {
   return MtgProof("bridge", key, terminal_id, ea_nonce, bridge_nonce);
  }

// P_ea: what the EA sends in its auth.
string MtgEaProof(MTG_ARG_IN(uchar, key), string terminal_id, string ea_nonce,
                  string bridge_nonce)
  {
   return MtgProof("ea", key, terminal_id, ea_nonce, bridge_nonce);
  }

// session_key = K_s = HMAC-SHA256(key, "mtgate/2 session|" + terminal_id + "|" + ea_nonce +
// "|" + bridge_nonce + "|" + hex(SHA-256(hello)) + "|" + hex(SHA-256(welcome))), 32 raw
// bytes; hello and welcome are the two bodies exactly as they crossed the wire (the hello
// the EA wrote, the welcome it read). False if a hash failed.
bool MtgSessionKey(MTG_ARG_IN(uchar, key), string terminal_id, string ea_nonce,
                   string bridge_nonce, MTG_ARG_IN(uchar, hello), MTG_ARG_IN(uchar, welcome),
                   MTG_ARG_OUT(uchar, session_key))
  {
   ArrayResize(session_key, 0);
   MTG_ARRAY(uchar, hello_hash);
   MTG_ARRAY(uchar, welcome_hash);
   if(!MtgSha256(hello, hello_hash) || !MtgSha256(welcome, welcome_hash))
      return false;
   string text = "mtgate/2 session|" + terminal_id + "|" + ea_nonce + "|" + bridge_nonce +
                 "|" + MtgHex(hello_hash) + "|" + MtgHex(welcome_hash);
   MTG_ARRAY(uchar, message);
   MtgTextToUtf8(text, message);
   return MtgHmacSha256(key, message, session_key);
  }

// The EA's nonce without a CSPRNG (protocol s.3.2): the first 16 bytes of HMAC-SHA256(key,
// "mtgate/2 nonce|" + terminal_id + "|" + counter + "|" + entropy), as 32 lowercase hex
// chars; counter in decimal, persisted and incremented by the caller before each use.
// "" if a hash failed.
string MtgPrfNonce(MTG_ARG_IN(uchar, key), string terminal_id, ulong counter, string entropy)
  {
   string text = "mtgate/2 nonce|" + terminal_id + "|" + MtgULongToDecimal(counter) + "|" +
                 entropy;
   MTG_ARRAY(uchar, message);
   MtgTextToUtf8(text, message);
   MTG_ARRAY(uchar, mac);
   if(!MtgHmacSha256(key, message, mac))
      return "";
   ArrayResize(mac, MTG_NONCE_HEX / 2);
   return MtgHex(mac);
  }

// Whether a and b are the same text, in a time that depends on their length only (for
// proofs and MACs: where a wrong guess differs must not show). Texts of different lengths
// differ at once (a length is not secret).
bool MtgHexEqual(string a, string b)
  {
   int n = StringLen(a);
   if(StringLen(b) != n)
      return false;
   int diff = 0;
   for(int i = 0; i < n; i++)
      diff |= StringGetCharacter(a, i) ^ StringGetCharacter(b, i);
   return diff == 0;
  }

// A nonce as the protocol writes it: 32 lowercase hex chars, nothing else (s.3.3).
bool MtgValidNonce(string nonce)
  {
   if(StringLen(nonce) != MTG_NONCE_HEX)
      return false;
   for(int i = 0; i < MTG_NONCE_HEX; i++)
      if(MtgHexValue(StringGetCharacter(nonce, i), false) < 0)
         return false;
   return true;
  }

#endif
