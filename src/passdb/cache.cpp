#include "passdb/cache.hpp"

#include <asio/co_spawn.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <functional>
#include <thread>

#include "passdb/password.hpp"

namespace portier::passdb {

void AuthCache::Shard::erase(std::list<Entry>::iterator it) {
  index.erase(std::string_view(it->key));
  bytes -= it->bytes;
  lru.erase(it);
}

void AuthCache::Shard::evict_to(size_t budget) {
  while (bytes > budget && !lru.empty()) erase(std::prev(lru.end()));
}

AuthCache::Shard& AuthCache::shard(std::string_view key) {
  return shards_[std::hash<std::string_view>{}(key) % kShards];
}

void AuthCache::configure(const CacheSettings& s) {
  ttl_ms_ = s.ttl.count();
  negative_ttl_ms_ = s.negative_ttl.count();
  size_ = s.size;
  for (auto& sh : shards_) {
    std::lock_guard lock(sh.mu);
    sh.evict_to(s.size / kShards);
  }
}

bool AuthCache::enabled() const { return size_.load(std::memory_order_relaxed) > 0; }

std::optional<AuthCache::Hit> AuthCache::get(std::string_view key, Clock::time_point now) {
  Shard& sh = shard(key);
  std::lock_guard lock(sh.mu);
  auto it = sh.index.find(key);
  if (it == sh.index.end()) return std::nullopt;
  sh.lru.splice(sh.lru.begin(), sh.lru, it->second);
  const Entry& e = *it->second;
  return Hit{e.answer, now >= e.expires, e.last_ok};
}

size_t AuthCache::entry_bytes(std::string_view key, std::string_view user, const CachedAnswer& a) {
  // The list node (two links + the Entry), the hash-map node (its key view,
  // iterator, hash and next pointer), and every string's payload.
  size_t n = sizeof(Entry) + 2 * sizeof(void*) + sizeof(std::string_view) + 3 * sizeof(void*);
  n += key.size() + user.size() + a.reply.user.size();
  for (const auto& [k, v] : a.reply.fields) n += sizeof(std::pair<std::string, std::string>) + k.size() + v.size();
  if (a.stored) n += sizeof(core::Secret) + a.stored->size();
  return n;
}

void AuthCache::put(std::string_view key, std::string_view user, CachedAnswer answer, bool last_ok,
                    Clock::time_point now) {
  const size_t size = size_.load(std::memory_order_relaxed);
  if (size == 0) return;
  const std::chrono::milliseconds ttl(answer.found ? ttl_ms_.load(std::memory_order_relaxed)
                                                   : negative_ttl_ms_.load(std::memory_order_relaxed));
  if (!answer.found && ttl.count() == 0) return;
  const size_t budget = size / kShards;
  Entry e;
  e.bytes = entry_bytes(key, user, answer);
  if (e.bytes > budget) return;  // never fits
  e.key = std::string(key);
  e.user = std::string(user);
  e.answer = std::move(answer);
  e.expires = now + ttl;
  e.last_ok = last_ok;
  Shard& sh = shard(key);
  std::lock_guard lock(sh.mu);
  if (auto it = sh.index.find(key); it != sh.index.end()) sh.erase(it->second);
  sh.lru.push_front(std::move(e));
  sh.index.emplace(std::string_view(sh.lru.front().key), sh.lru.begin());
  sh.bytes += sh.lru.front().bytes;
  sh.evict_to(budget);
}

void AuthCache::set_last_ok(std::string_view key, bool ok) {
  Shard& sh = shard(key);
  std::lock_guard lock(sh.mu);
  if (auto it = sh.index.find(key); it != sh.index.end()) it->second->last_ok = ok;
}

size_t AuthCache::flush(const std::vector<std::string>& users) {
  size_t removed = 0;
  for (auto& sh : shards_) {
    std::lock_guard lock(sh.mu);
    for (auto it = sh.lru.begin(); it != sh.lru.end();) {
      auto next = std::next(it);
      if (users.empty() || std::find(users.begin(), users.end(), it->user) != users.end()) {
        sh.erase(it);
        ++removed;
      }
      it = next;
    }
  }
  return removed;
}

void AuthCache::count_hit() {
  // Counted in a shard picked by the thread, so workers rarely share a lock.
  Shard& sh = shards_[std::hash<std::thread::id>{}(std::this_thread::get_id()) % kShards];
  std::lock_guard lock(sh.mu);
  ++sh.hits;
}

void AuthCache::count_miss() {
  Shard& sh = shards_[std::hash<std::thread::id>{}(std::this_thread::get_id()) % kShards];
  std::lock_guard lock(sh.mu);
  ++sh.misses;
}

CacheStats AuthCache::stats() const {
  CacheStats st;
  for (const auto& sh : shards_) {
    std::lock_guard lock(sh.mu);
    st.hits += sh.hits;
    st.misses += sh.misses;
    st.entries += sh.lru.size();
    st.bytes += sh.bytes;
  }
  return st;
}

AuthCache& auth_cache() {
  static AuthCache cache;
  return cache;
}

size_t auth_cache_flush(const std::vector<std::string>& users) { return auth_cache().flush(users); }

CacheStats auth_cache_stats() { return auth_cache().stats(); }

StoredCheck stored_check(const Reply& reply, std::string_view stored) {
  std::string_view bare = stored;
  if (!bare.empty() && bare.front() == '{') {
    auto close = bare.find('}');
    if (close != std::string_view::npos) bare.remove_prefix(close + 1);
  }
  if (bare.empty()) return reply.has("nopassword") ? StoredCheck::Ok : StoredCheck::Mismatch;
  return StoredCheck::Verify;
}

namespace {

// By-value parameters (GCC 12 coroutine captures): runs on the hashing pool.
net::Task<VerifyResult> verify_on_pool(std::shared_ptr<const core::Secret> stored, RequestCopy req,
                                       std::string scheme) {
  co_return verify_password(stored->view(), req.view().password, scheme);
}

}  // namespace

net::Task<Lookup> cached_verdict(CachedAnswer a, const Request& req, std::string default_scheme,
                                 std::string_view who) {
  Lookup l;
  if (!a.found) {
    l.result = Result::UnknownUser;
    co_return l;
  }
  l.reply = std::move(a.reply);
  if (req.lookup_only) {
    l.result = Result::Ok;
    co_return l;
  }
  std::string_view stored = a.stored ? a.stored->view() : std::string_view();
  switch (stored_check(l.reply, stored)) {
    case StoredCheck::Ok: l.result = Result::Ok; co_return l;
    case StoredCheck::Mismatch:
      l.result = Result::Mismatch;
      l.error = std::string(who) + ": user " + l.reply.user + " has no password";
      co_return l;
    case StoredCheck::Verify: break;
  }
  VerifyResult v;
  if (!req.hashing || cleartext_scheme(stored, default_scheme)) {
    v = verify_password(stored, req.password, default_scheme);
  } else {
    RequestCopy copy(req);
    net::Task<VerifyResult> task = verify_on_pool(a.stored, std::move(copy), default_scheme);
    v = co_await asio::co_spawn(req.hashing->get_executor(), std::move(task), asio::use_awaitable);
  }
  const std::string what = std::string(who) + ": user " + l.reply.user;
  apply_verify(l, v, what);
  co_return l;
}

}  // namespace portier::passdb
