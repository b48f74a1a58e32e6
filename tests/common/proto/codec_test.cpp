// The codec: golden bytes pin the wire format; hostile input (truncated, garbage, lying headers,
// deep nesting) gives an error value, never a crash, an exception or an unbounded allocation.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <random>

#include "common/proto/codec.hpp"

using namespace provisr;
using namespace provisr::proto;

// Largest single allocation seen while armed: hostile headers must not turn into huge requests.
// msgpack-c's zone calls malloc directly, so malloc itself is wrapped (forwarding to glibc's own
// allocator, so free stays right). Not under ASan, which owns malloc.
namespace {
std::atomic<bool> gTrackAllocations{false};
std::atomic<std::size_t> gLargestAllocation{0};
[[maybe_unused]] void noteAllocation(std::size_t n) {
  if (!gTrackAllocations.load(std::memory_order_relaxed)) return;
  std::size_t prev = gLargestAllocation.load(std::memory_order_relaxed);
  while (n > prev && !gLargestAllocation.compare_exchange_weak(prev, n)) {
  }
}
}  // namespace

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kTracking = false;
#else
constexpr bool kTracking = true;
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* malloc(std::size_t n) {
  noteAllocation(n);
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t m) {
  noteAllocation(n * m);
  return __libc_calloc(n, m);
}
void* realloc(void* p, std::size_t n) {
  noteAllocation(n);
  return __libc_realloc(p, n);
}
}
#endif

namespace {

std::string hex(const std::string& bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string unhex(std::string_view h) {
  std::string out;
  auto val = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
    if (h[i] == ' ') {
      --i;
      continue;
    }
    out += static_cast<char>(val(h[i]) * 16 + val(h[i + 1]));
  }
  return out;
}

// The envelope head {v: 1, id: 1, type: <t>, body: ...} as hex, for hand-made inputs.
std::string head(std::uint16_t type) {
  std::string h = "84 a176 01 a26964 01 a474797065 ";
  if (type < 128) {
    const char* d = "0123456789abcdef";
    h += std::string{d[type >> 4], d[type & 15]};
  } else {
    char buf[8];
    std::snprintf(buf, sizeof buf, "cd%04x", type);
    h += buf;
  }
  return h + " a4626f6479 ";
}

// Decodes under allocation tracking; returns the largest single allocation.
template <class F>
std::size_t largestAllocationDuring(F&& f) {
  gLargestAllocation = 0;
  gTrackAllocations = true;
  f();
  gTrackAllocations = false;
  return gLargestAllocation.load();
}

struct NameArgs {
  std::string name;
  MSGPACK_DEFINE_MAP(name)
};

}  // namespace

TEST_CASE("golden bytes pin the envelope and body layout", "[common]") {
  // {v:1, id:1, type:108 (Ack), body:{epoch:5, seq:77}}
  CHECK(hex(encode(Ack{5, 77}, 1)) ==
        "84" "a176" "01" "a26964" "01" "a474797065" "6c" "a4626f6479"
        "82" "a565706f6368" "05" "a3736571" "4d");
  // ErrorReply: code is the ErrorCode number.
  CHECK(hex(encode(ErrorReply{ErrorCode::kNotFound, "no"}, 7)) ==
        "84" "a176" "01" "a26964" "07" "a474797065" "01" "a4626f6479"
        "82" "a4636f6465" "02" "a76d657373616765" "a26e6f");
  // Optionals are nil, enums their names, ids above 127 a uint.
  ChildExited ex{300, "w", 2, 99, std::nullopt, 9, false, 1000};
  CHECK(hex(encode(ex, 1000)) ==
        "84" "a176" "01" "a26964" "cd03e8" "a474797065" "6e" "a4626f6479"
        "88" "a3736571" "cd012c" "a36b6579" "a177" "aa67656e65726174696f6e" "02" "a3706964" "63"
        "a9657869745f636f6465" "c0" "ab657869745f7369676e616c" "09" "ab636f72655f64756d706564" "c2"
        "a26174" "cd03e8");
  // Status selector: a type above 127, an enum by name.
  CHECK(hex(encode(StatusRequest{{SelectorKind::kGroup, "web"}, false}, 2)) ==
        "84" "a176" "01" "a26964" "02" "a474797065" "cc"
        "c8" "a4626f6479"
        "82" "a873656c6563746f72" "82" "a46b696e64" "a567726f7570" "a576616c7565" "a3776562"
        "a673616d706c65" "c2");
  // SpawnFailed's errno field is named "errno" on the wire.
  const std::string sf = encode(SpawnFailed{1, "k", 1, 2, "exec", "m"}, 1);
  CHECK(hex(sf).find("a56572726e6f02") != std::string::npos);
}

TEST_CASE("fields can be added on either side", "[common]") {
  // A newer sender adds a field and an envelope key: ignored. An older one omits seq: default.
  const std::string bytes = unhex(head(108) + "83 a565706f6368 05 a3736571 4d a56578747261 a3787878" );
  auto ack = decode<Ack>(bytes.data(), bytes.size());
  REQUIRE(ack.ok());
  CHECK(ack->epoch == 5);
  CHECK(ack->seq == 77);
  const std::string older = unhex(head(108) + "81 a565706f6368 05");
  auto ack2 = decode<Ack>(older.data(), older.size());
  REQUIRE(ack2.ok());
  CHECK(ack2->seq == 0);
  const std::string extraEnvelopeKey = unhex("85 a176 01 a26964 01 a474797065 6c a4626f6479 80 a474726163 01");
  CHECK(decode<Ack>(extraEnvelopeKey.data(), extraEnvelopeKey.size()).ok());
}

TEST_CASE("an unknown type is kUnknownMessage and the error reply keeps the id", "[common]") {
  const std::string bytes = unhex("84 a176 01 a26964 2a a474797065 cd2710 a4626f6479 80");  // type 10000, id 42
  auto env = decodeEnvelope(bytes.data(), bytes.size());
  REQUIRE_FALSE(env.ok());
  CHECK(env.error().code == ErrorCode::kUnknownMessage);
  CHECK(env.error().message.find("10000") != std::string::npos);
  CHECK(peekId(bytes.data(), bytes.size()) == 42u);
  const std::string reply = errorReplyFor(bytes.data(), bytes.size(), env.error());
  auto renv = decodeEnvelope(reply.data(), reply.size());
  REQUIRE(renv.ok());
  CHECK(renv->id == 42);
  auto er = decodeBody<ErrorReply>(*renv);
  REQUIRE(er.ok());
  CHECK(er->code == ErrorCode::kUnknownMessage);
  // Garbage has no id: the reply goes to id 0.
  const std::string junk = "\xc1\xc1";
  const std::string r2 = errorReplyFor(junk.data(), junk.size(), Error{ErrorCode::kMalformed, "x"});
  CHECK(decodeEnvelope(r2.data(), r2.size())->id == 0);
}

TEST_CASE("a malformed body or envelope is kMalformed with a message", "[common]") {
  auto expectMalformed = [](const std::string& bytes) {
    auto env = decodeEnvelope(bytes.data(), bytes.size());
    if (env.ok()) {
      auto body = decodeBody<Ack>(*env);
      REQUIRE_FALSE(body.ok());
      CHECK(body.error().code == ErrorCode::kMalformed);
      CHECK_FALSE(body.error().message.empty());
      return;
    }
    CHECK(env.error().code == ErrorCode::kMalformed);
    CHECK_FALSE(env.error().message.empty());
  };
  SECTION("wrong field type") { expectMalformed(unhex(head(108) + "81 a3736571 a178")); }
  SECTION("negative into unsigned") { expectMalformed(unhex(head(108) + "81 a3736571 ff")); }
  SECTION("body not a map") { expectMalformed(unhex(head(108) + "93 01 02 03")); }
  SECTION("non-string key") { expectMalformed(unhex(head(108) + "81 01 02")); }
  SECTION("version 2") { expectMalformed(unhex("84 a176 02 a26964 01 a474797065 6c a4626f6479 80")); }
  SECTION("no body") { expectMalformed(unhex("83 a176 01 a26964 01 a474797065 6c")); }
  SECTION("top level not a map") { expectMalformed(unhex("94 01 01 6c 80")); }
  SECTION("trailing bytes") { expectMalformed(unhex(head(108) + "80 c0")); }
  SECTION("empty") { expectMalformed(std::string()); }
  SECTION("unknown enum name") {
    const std::string bytes = unhex(head(200) + "81 a873656c6563746f72 81 a46b696e64 a46e6f7065");
    auto st = decode<StatusRequest>(bytes.data(), bytes.size());
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == ErrorCode::kMalformed);
    CHECK(st.error().message.find("Status") != std::string::npos);
  }
  SECTION("integer out of range") {
    // HelloReply.pid is an int32: 2^40 does not fit.
    const std::string bytes = unhex(head(101) + "81 a3706964 cf0000010000000000");
    CHECK_FALSE(decode<HelloReply>(bytes.data(), bytes.size()).ok());
  }
  SECTION("asking for the wrong type") {
    const std::string bytes = encode(Ack{1, 2}, 3);
    auto hello = decode<Hello>(bytes.data(), bytes.size());
    REQUIRE_FALSE(hello.ok());
    CHECK(hello.error().code == ErrorCode::kMalformed);
  }
}

TEST_CASE("decodeReply turns an ErrorReply into its error", "[common]") {
  const std::string bytes = encodeError(9, ErrorCode::kStaleEpoch, "epoch 3 < 4");
  auto env = decodeEnvelope(bytes.data(), bytes.size());
  REQUIRE(env.ok());
  auto r = decodeReply<SnapshotReply>(*env);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ErrorCode::kStaleEpoch);
  CHECK(r.error().message == "epoch 3 < 4");
}

TEST_CASE("truncated input never decodes and never crashes", "[common]") {
  SpawnReply reply{{{"a", 1, true, false, 5, ErrorCode::kOk, "fine"}}};
  for (const std::string& full : {encode(Ack{1, 2}, 3), encode(reply, 4),
                                   encode(LogTailReply{{{1, LogStream::kStdout, "x", "a"}}, 2}, 5)}) {
    for (std::size_t n = 0; n < full.size(); ++n) {
      auto env = decodeEnvelope(full.data(), n);
      REQUIRE_FALSE(env.ok());
      CHECK(env.error().code == ErrorCode::kMalformed);
    }
    CHECK(decodeEnvelope(full.data(), full.size()).ok());
  }
}

TEST_CASE("lying headers are refused before anything is allocated", "[common]") {
  struct Case {
    const char* name;
    std::string bytes;
  };
  const std::vector<Case> cases = {
      {"array32 claiming 4 G elements", unhex("dd ffffffff")},
      {"array32 in a body", unhex(head(102) + "82 a565706f6368 01 a86368696c6472656e dd ffffffff c0 c0")},
      {"map32 claiming 4 G entries", unhex("df ffffffff 01 02")},
      {"array16 claiming more than is left", unhex("dc ffff 01 02 03")},
      {"str32 of 4 GB", unhex("db ffffffff 61 62")},
      {"bin32 of 4 GB", unhex("c6 ffffffff 61 62")},
      {"str in a body claiming 2 GB", unhex(head(104) + "81 a36b6579 db 7fffffff 61")},
      {"ext", unhex("d4 01 02")},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    Result<Envelope> env = Error{};
    const std::size_t largest = largestAllocationDuring([&] { env = decodeEnvelope(c.bytes.data(), c.bytes.size()); });
    REQUIRE_FALSE(env.ok());
    CHECK(env.error().code == ErrorCode::kMalformed);
    if (kTracking) CHECK(largest < 64 * 1024);
  }
}

TEST_CASE("the allocation tracker sees a large honest allocation", "[common]") {
  if (!kTracking) return;
  const std::string bytes = encode(Register{std::string(200 * 1024, 'x')}, 1);
  Result<Register> r = Error{};
  const std::size_t largest = largestAllocationDuring([&] { r = decode<Register>(bytes.data(), bytes.size()); });
  REQUIRE(r.ok());
  CHECK(largest >= 200 * 1024);
}

TEST_CASE("deep nesting is refused without recursion", "[common]") {
  std::string deep(200000, '\x91');  // [[[[...]]]]
  deep += '\xc0';
  Result<Envelope> env = Error{};
  const std::size_t largest = largestAllocationDuring([&] { env = decodeEnvelope(deep.data(), deep.size()); });
  REQUIRE_FALSE(env.ok());
  CHECK(env.error().code == ErrorCode::kMalformed);
  CHECK(env.error().message.find("nesting") != std::string::npos);
  if (kTracking) CHECK(largest < 64 * 1024);
  // Nesting inside the limit is fine for the structure check.
  std::string ok(10, '\x91');
  ok += '\xc0';
  CHECK(checkStructure(ok.data(), ok.size()).ok());
}

TEST_CASE("too large a message is refused by size", "[common]") {
  std::string big(kMaxMessageSize + 1, '\0');
  auto env = decodeEnvelope(big.data(), big.size());
  REQUIRE_FALSE(env.ok());
  CHECK(env.error().code == ErrorCode::kMalformed);
  CHECK(env.error().message.find("exceeds") != std::string::npos);
  DecodeLimits tight;
  tight.objects = 3;
  const std::string ack = encode(Ack{1, 2}, 3);
  CHECK_FALSE(decodeEnvelope(ack.data(), ack.size(), tight).ok());
}

TEST_CASE("random garbage and mutations never crash", "[common]") {
  std::mt19937_64 rng(20261127);
  std::size_t decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng() % 64, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    auto env = decodeEnvelope(junk.data(), junk.size());
    if (env.ok()) ++decoded;
  }
  // Bit flips and byte changes in valid messages of every shape: any outcome but a crash.
  const std::vector<std::string> seeds = {
      encode(Spawn{1, {ChildSpec{"k", 1, {"/bin/true"}, {"A=B"}, "/", "u", "g", 022, {}, 1, 2}}}, 1),
      encode(StatusReply{{InstanceStatus{}}, true}, 2), encode(ChildExited{1, "k", 1, 2, 3, 4, true, 5}, 3),
      encode(LogsReply{{{1, LogStream::kStderr, "t", "i"}}, {{"i", 2}}}, 4)};
  for (int i = 0; i < 20000; ++i) {
    std::string m = seeds[static_cast<std::size_t>(i) % seeds.size()];
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) m[rng() % m.size()] = static_cast<char>(rng());
    // The pre-scan and msgpack-c agree on what is one well-formed object (ext aside, which
    // provisr refuses on purpose).
    const bool scanOk = checkStructure(m.data(), m.size()).ok();
    bool msgpackOk = false;
    bool hasExt = false;
    try {
      std::size_t off = 0;
      auto oh = msgpack::unpack(m.data(), m.size(), off, nullptr, nullptr,
                                msgpack::unpack_limit(1u << 16, 1u << 16, 1u << 16, 1u << 16, 1u << 16, 64));
      msgpackOk = off == m.size();
      std::vector<const msgpack::object*> todo{&oh.get()};
      while (!todo.empty()) {
        const msgpack::object* o = todo.back();
        todo.pop_back();
        if (o->type == msgpack::type::EXT) hasExt = true;
        if (o->type == msgpack::type::ARRAY) {
          for (std::uint32_t k = 0; k < o->via.array.size; ++k) todo.push_back(&o->via.array.ptr[k]);
        }
        if (o->type == msgpack::type::MAP) {
          for (std::uint32_t k = 0; k < o->via.map.size; ++k) {
            todo.push_back(&o->via.map.ptr[k].key);
            todo.push_back(&o->via.map.ptr[k].val);
          }
        }
      }
    } catch (const std::exception&) {
    }
    if (scanOk) CHECK(msgpackOk);
    if (msgpackOk && !hasExt) CHECK(scanOk);
    auto env = decodeEnvelope(m.data(), m.size());
    if (!env.ok()) continue;
    ++decoded;
    // Whatever type it now claims, asking for any body must give a value or an error.
    forEachMessageType([&]<class T>() { (void)decodeBody<T>(*env); });
  }
  SUCCEED("decoded " << decoded << " mutated inputs without a crash");
}

TEST_CASE("public API requests and replies", "[common]") {
  // {v:1, id:5, op:"status", args:{name:"web"}, token:"t"}
  const std::string req = unhex("85 a176 01 a26964 05 a26f70 a6737461747573 a461726773 81 a46e616d65 a3776562 a5746f6b656e a174");
  auto r = decodeApiRequest(req.data(), req.size());
  REQUIRE(r.ok());
  CHECK(r->id == 5);
  CHECK(r->op == "status");
  CHECK(r->token == "t");
  auto args = decodeApiArgs<NameArgs>(*r);
  REQUIRE(args.ok());
  CHECK(args->name == "web");
  // No args: an empty map.
  const std::string bare = unhex("83 a176 01 a26964 06 a26f70 a672656c6f6164");
  auto noArgs = decodeApiRequest(bare.data(), bare.size());
  REQUIRE(noArgs.ok());
  CHECK(noArgs->op == "reload");
  CHECK(noArgs->args.via.map.size == 0);
  // No op: malformed.
  const std::string noOp = unhex("82 a176 01 a26964 06");
  CHECK(decodeApiRequest(noOp.data(), noOp.size()).error().code == ErrorCode::kMalformed);

  CHECK(hex(encodeApiError(5, ErrorCode::kNotFound, "no")) ==
        "84" "a176" "01" "a26964" "05" "a26f6b" "c2" "a56572726f72"
        "82" "a4636f6465" "a96e6f745f666f756e64" "a76d657373616765" "a26e6f");
  CHECK(hex(encodeApiResult(5, Ack{1, 2})) ==
        "84" "a176" "01" "a26964" "05" "a26f6b" "c3" "a6726573756c74" "82" "a565706f6368" "01" "a3736571" "02");
  CHECK(parseErrorCodeName("not_found") == ErrorCode::kNotFound);
  CHECK_FALSE(parseErrorCodeName("nope").has_value());
}
