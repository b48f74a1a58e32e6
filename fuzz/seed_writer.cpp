// Writes the MessagePack seed corpora (not a fuzz target): one envelope per message type, with
// default and with filled fields, into DIR/proto; public API requests into DIR/api_request.
//   fuzz_seed_writer DIR
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/proto/codec.hpp"
#include "fuzz/messages.hpp"

namespace {

void put(const std::string& dir, const std::string& name, const std::string& bytes) {
  mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

// A few messages with their fields set, so the seeds reach the nested decoders.
void filled(const std::string& dir) {
  using namespace provisr::proto;
  ChildSpec c;
  c.key = "web-1";
  c.generation = 3;
  c.argv = {"/bin/sleep", "100"};
  c.env = {"A=1", "PATH=/usr/bin"};
  c.cwd = "/";
  c.user = "nobody";
  c.umask = 022;
  c.log.stdout_path = "/var/log/web-1.out";
  Spawn s;
  s.epoch = 7;
  s.children = {c, c};
  put(dir, "spawn-filled", encode(s, 11));
  StatusReply sr;
  InstanceStatus is;
  is.name = "web-1";
  is.running = true;
  is.pid = 42;
  is.state = InstanceState::kRunning;
  is.groups = {"backend"};
  is.exits = {{"0", 1}, {"SIGKILL", 2}};
  is.cpu_seconds = 0.5;
  sr.instances = {is};
  put(dir, "status-reply-filled", encode(sr, 12));
  StatusRequest st;
  st.selector = Selector{SelectorKind::kWildcard, "web-*"};
  put(dir, "status-filled", encode(st, 13));
  LogLines ll;
  ll.key = "web-1";
  ll.lines = {LogLine{10, LogStream::kStderr, "boom", "web-1"}};
  put(dir, "loglines-filled", encode(ll, 14));
  put(dir, "error-filled", encodeError(15, provisr::ErrorCode::kNotFound, "no such program"));
  Deposit d;
  d.key = "web-1";
  d.kinds = {FdKind::kStdoutPipe, FdKind::kStderrPipe, FdKind::kPidfd};
  put(dir, "deposit-filled", encode(d, 16));
}

void api(const std::string& dir) {
  using nlohmann::json;
  auto req = [&](const std::string& name, json args, bool token) {
    json j{{"v", 1}, {"id", 5}, {"op", name}, {"args", std::move(args)}};
    if (token) j["token"] = "full-token";
    auto b = json::to_msgpack(j);
    put(dir, name + (token ? "-token" : ""), std::string(b.begin(), b.end()));
  };
  req("status", json::object(), false);
  req("status", {{"name", "web-1"}}, true);
  req("start", {{"name", "web"}, {"wait_ms", 500}}, true);
  req("stop", {{"base", "web"}, {"dry_run", true}}, true);
  req("restart", {{"wildcard", "w*"}, {"wait", "2s"}}, true);
  req("scale", {{"name", "web"}, {"instances", 3}}, true);
  req("register", {{"spec", {{"name", "api"}, {"command", "/bin/true"}}}}, true);
  req("update", {{"spec_json", "{\"name\":\"api\",\"command\":\"/bin/true\"}"}}, true);
  req("unregister", {{"name", "api"}}, true);
  req("groups", json::object(), true);
  req("group_status", {{"group", "g"}}, true);
  req("group_start", {{"group", "g"}, {"wait_ms", 10}}, true);
  req("logs", {{"name", "web-1"}, {"since", 0}, {"limit", 5}}, true);
  req("spec", {{"name", "web"}}, true);
  req("settings", json::object(), true);
  req("reload", {{"dry_run", true}}, true);
  req("health", json::object(), false);
  req("version", json::object(), true);
  req("nope", json::object(), true);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seed_writer DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  mkdir(dir.c_str(), 0755);
  int n = 0;
  provisr::fuzz::forEachMessage([&](auto m) {
    put(dir + "/proto", std::string(provisr::proto::msgTypeName(decltype(m)::kType)), provisr::proto::encode(m, 1));
    ++n;
  });
  filled(dir + "/proto");
  api(dir + "/api_request");
  std::printf("%d message types\n", n);
  return 0;
}
