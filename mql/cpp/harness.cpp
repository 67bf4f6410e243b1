// harness.cpp: runs the EA's pure-logic core (mql/MQL5/Include/mtgate/*.mqh, compiled as C++
// through mql5_prelude.h) on cases read from stdin, one per line, and prints one line per
// case. tests/unit/test_mql_core.py builds it, feeds it cases derived from
// mql/vectors/golden.json and compares every answer with mtgate.protocol.
//
// Input:  <id> TAB <op> TAB <arg> ...   (bytes and strings as lowercase hex of their bytes,
//                                         strings as UTF-8; numbers in decimal)
// Output: <id> TAB <result>
//
// ops (results in parentheses):
//   sha256 DATA                                    (hex digest, or "error")
//   hmac KEY MESSAGE                               (hex MAC, or "error")
//   hex DATA                                       (MtgHex of DATA)
//   unhex TEXT                                     ("ok:" hex of the bytes, or "refused")
//   proof ROLE KEY TID EA_NONCE BRIDGE_NONCE       (MtgProof)
//   bridge_proof / ea_proof KEY TID EA BRIDGE      (MtgBridgeProof / MtgEaProof)
//   session_key KEY TID EA BRIDGE HELLO WELCOME    (hex K_s, or "error")
//   nonce KEY TID COUNTER ENTROPY                  (MtgPrfNonce)
//   hexeq A B                                      ("1" / "0")
//   valid_nonce TEXT                               ("1" / "0")
//   seal_new NAME KEY LABEL                        ("ok"; a named MtgFrameSeal)
//   seal_setseq NAME SEQ                           ("ok")
//   seal NAME JSON                                 (hex body, or "refused")
//   open NAME BODY                                 ("0:" hex json, "1" bad_mac, "2" out_of_order)
//   seal_next NAME                                 (next seq in decimal, "+exhausted" if so)
//   frame LIMIT BODY                               (hex frame, or "refused")
//   decode LIMIT SWITCH_AFTER LIMIT2 CHUNK STREAM  (the bodies, each hex ("-" if empty),
//        comma-separated, then ";pending=N" or ";too_large"; the limit becomes LIMIT2 after
//        SWITCH_AFTER bodies (-1: never); STREAM is fed CHUNK bytes at a time, and Next() is
//        called until it says more after each Feed)

#include "mql5_prelude.h"

#include <mtgate/Auth.mqh>
#include <mtgate/Bytes.mqh>
#include <mtgate/Frame.mqh>
#include <mtgate/Hmac.mqh>
#include <mtgate/Sha256.mqh>

#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// The harness's own hex, independent of the core's.
std::vector<uchar> Unhex(const std::string &h) {
  if (h.size() % 2 != 0) throw std::runtime_error("odd hex: " + h);
  std::vector<uchar> out;
  for (size_t i = 0; i < h.size(); i += 2) {
    out.push_back(static_cast<uchar>(std::stoul(h.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::string Hex(const std::vector<uchar> &v) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (uchar b : v) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

std::string Hex(const MqlArray<uchar> &a) { return Hex(a.Raw()); }

MqlArray<uchar> Bytes(const std::string &h) { return mtg_prelude::Bytes(Unhex(h)); }

string Text(const std::string &h) {
  std::vector<uchar> b = Unhex(h);
  return mtg_prelude::FromUtf8(std::string(b.begin(), b.end()));
}

std::string Out(const string &s) { return mtg_prelude::ToUtf8(s); }

std::string Decode(int limit, int switch_after, int limit2, size_t chunk,
                   const std::vector<uchar> &stream) {
  MtgFrameDecoder decoder;
  decoder.Init(limit);
  std::string bodies;
  int taken = 0;
  bool too_large = false;
  for (size_t at = 0; at < stream.size() && !too_large; at += chunk) {
    size_t n = std::min(chunk, stream.size() - at);
    MqlArray<uchar> piece = mtg_prelude::Bytes(
        std::vector<uchar>(stream.begin() + static_cast<long>(at),
                           stream.begin() + static_cast<long>(at + n)));
    decoder.Feed(piece, static_cast<int>(n));
    for (;;) {
      MqlArray<uchar> body;
      int r = decoder.Next(body);
      if (r == MTG_NEXT_MORE) break;
      if (r == MTG_NEXT_TOO_LARGE) {
        too_large = true;
        break;
      }
      if (!bodies.empty()) bodies += ",";
      bodies += ArraySize(body) == 0 ? std::string("-") : Hex(body);
      taken++;
      if (taken == switch_after) decoder.SetLimit(limit2);
    }
  }
  if (too_large) {
    if (!decoder.Failed()) return "decoder says too_large but not failed";
    return bodies + ";too_large";
  }
  return bodies + ";pending=" + std::to_string(decoder.Buffered());
}

std::string Run(const std::vector<std::string> &a, std::map<std::string, MtgFrameSeal> &seals) {
  const std::string &op = a.at(1);
  auto arg = [&a](size_t i) -> const std::string & { return a.at(i + 2); };
  if (op == "sha256") {
    MqlArray<uchar> digest;
    return MtgSha256(Bytes(arg(0)), digest) ? Hex(digest) : "error";
  }
  if (op == "hmac") {
    MqlArray<uchar> mac;
    return MtgHmacSha256(Bytes(arg(0)), Bytes(arg(1)), mac) ? Hex(mac) : "error";
  }
  if (op == "hex") return Out(MtgHex(Bytes(arg(0))));
  if (op == "unhex") {
    MqlArray<uchar> out;
    return MtgHexDecode(Text(arg(0)), out) ? "ok:" + Hex(out) : "refused";
  }
  if (op == "proof") {
    return Out(MtgProof(Text(arg(0)), Bytes(arg(1)), Text(arg(2)), Text(arg(3)), Text(arg(4))));
  }
  if (op == "bridge_proof") {
    return Out(MtgBridgeProof(Bytes(arg(0)), Text(arg(1)), Text(arg(2)), Text(arg(3))));
  }
  if (op == "ea_proof") {
    return Out(MtgEaProof(Bytes(arg(0)), Text(arg(1)), Text(arg(2)), Text(arg(3))));
  }
  if (op == "session_key") {
    MqlArray<uchar> ks;
    bool ok = MtgSessionKey(Bytes(arg(0)), Text(arg(1)), Text(arg(2)), Text(arg(3)),
                            Bytes(arg(4)), Bytes(arg(5)), ks);
    return ok ? Hex(ks) : "error";
  }
  if (op == "nonce") {
    ulong counter = std::stoul(arg(2));
    return Out(MtgPrfNonce(Bytes(arg(0)), Text(arg(1)), counter, Text(arg(3))));
  }
  if (op == "hexeq") return MtgHexEqual(Text(arg(0)), Text(arg(1))) ? "1" : "0";
  if (op == "valid_nonce") return MtgValidNonce(Text(arg(0))) ? "1" : "0";
  if (op == "seal_new") {
    MtgFrameSeal seal;
    seal.Init(Bytes(arg(1)), Text(arg(2)));
    seals[arg(0)] = seal;
    return "ok";
  }
  if (op == "seal_setseq") {
    seals.at(arg(0)).SetNextSeq(std::stoul(arg(1)));
    return "ok";
  }
  if (op == "seal") {
    MqlArray<uchar> body;
    return seals.at(arg(0)).Seal(Bytes(arg(1)), body) ? Hex(body) : "refused";
  }
  if (op == "open") {
    MqlArray<uchar> json;
    int r = seals.at(arg(0)).Open(Bytes(arg(1)), json);
    if (r == MTG_OPEN_OK) return "0:" + Hex(json);
    if (ArraySize(json) != 0) return "refused with a json";
    return std::to_string(r);
  }
  if (op == "seal_next") {
    const MtgFrameSeal &seal = seals.at(arg(0));
    return std::to_string(seal.NextSeq()) + (seal.Exhausted() ? "+exhausted" : "");
  }
  if (op == "frame") {
    MqlArray<uchar> frame;
    return MtgFrameEncode(Bytes(arg(1)), std::stoi(arg(0)), frame) ? Hex(frame) : "refused";
  }
  if (op == "decode") {
    return Decode(std::stoi(arg(0)), std::stoi(arg(1)), std::stoi(arg(2)),
                  static_cast<size_t>(std::stoul(arg(3))), Unhex(arg(4)));
  }
  throw std::runtime_error("unknown op " + op);
}

}  // namespace

int main() {
  std::ios::sync_with_stdio(false);
  std::map<std::string, MtgFrameSeal> seals;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    std::vector<std::string> fields;
    std::stringstream ss(line);
    std::string field;
    while (std::getline(ss, field, '\t')) fields.push_back(field);
    if (!line.empty() && line.back() == '\t') fields.push_back("");
    if (fields.size() < 2) {
      std::cerr << "bad line: " << line << "\n";
      return 2;
    }
    try {
      std::cout << fields[0] << '\t' << Run(fields, seals) << '\n';
    } catch (const std::exception &e) {
      std::cerr << "case " << fields[0] << ": " << e.what() << "\n";
      return 2;
    }
  }
  return 0;
}
