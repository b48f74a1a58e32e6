// ChildTable: lookups over the children by (key, generation), key and pid.
#include "spawner/child_table.hpp"

namespace provisr::spawner {

Child& ChildTable::add(std::unique_ptr<Child> c) {
  noteGeneration(c->key, c->generation);
  Id id{c->key, c->generation};
  if (c->pid() > 0) byPid_[c->pid()] = id;
  auto& slot = children_[id];
  slot = std::move(c);
  return *slot;
}

Child* ChildTable::find(const std::string& key, std::uint64_t generation) {
  auto it = children_.find(Id{key, generation});
  return it == children_.end() ? nullptr : it->second.get();
}

Child* ChildTable::findLive(const std::string& key) {
  for (auto it = children_.lower_bound(Id{key, 0}); it != children_.end() && it->first.first == key; ++it) {
    if (it->second->alive()) return it->second.get();
  }
  return nullptr;
}

Child* ChildTable::findByKey(const std::string& key) {
  if (Child* live = findLive(key)) return live;
  Child* newest = nullptr;
  for (auto it = children_.lower_bound(Id{key, 0}); it != children_.end() && it->first.first == key; ++it) {
    newest = it->second.get();
  }
  return newest;
}

Child* ChildTable::findByPid(pid_t pid) {
  auto it = byPid_.find(pid);
  if (it == byPid_.end()) return nullptr;
  auto c = children_.find(it->second);
  return c == children_.end() ? nullptr : c->second.get();
}

void ChildTable::erase(const std::string& key, std::uint64_t generation) {
  auto it = children_.find(Id{key, generation});
  if (it == children_.end()) return;
  auto p = byPid_.find(it->second->pid());
  if (p != byPid_.end() && p->second == it->first) byPid_.erase(p);
  children_.erase(it);
}

std::optional<std::uint64_t> ChildTable::lastGeneration(const std::string& key) const {
  auto it = lastGeneration_.find(key);
  if (it == lastGeneration_.end()) return std::nullopt;
  return it->second;
}

void ChildTable::noteGeneration(const std::string& key, std::uint64_t generation) {
  auto [it, fresh] = lastGeneration_.emplace(key, generation);
  if (!fresh && it->second < generation) it->second = generation;
}

bool ChildTable::isOwnChild(pid_t pid) const {
  auto it = byPid_.find(pid);
  if (it == byPid_.end()) return false;
  auto c = children_.find(it->second);
  return c != children_.end() && c->second->exitSource == ExitSource::kOwnChild && c->second->proc &&
         !c->second->proc->released();
}

}  // namespace provisr::spawner
