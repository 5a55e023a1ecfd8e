// Radix tree over token ids whose values are KV slot indices: the prefix cache.
//
// Keys match only in whole pages of `page_size` tokens: match_prefix and insert first cut their
// input down to whole pages (a 10-token prompt with page_size 4 matches at most 8 tokens, and
// insert caches at most 8 of them; the caller keeps and frees the rest).
//
// LRU is deterministic: a clock is incremented once per match_prefix / insert call, and every
// node on the matched or inserted path gets that clock value. evict() removes unlocked leaves
// in increasing (last_access, node id) order; node ids come from a counter at node creation
// (a split creates the new prefix node). A leaf's parent can become a leaf and be evicted next.
//
// Locks: lock(node) / unlock(node) add / remove one reference on every node of root..node,
// moving their tokens between the evictable and the protected size. Node handles carry the
// node id and the tree generation (bumped by reset), so stale handles raise instead of crashing.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace radixserve {

struct RadixNodeRef {
  uint64_t id = 0;  // 0 is the root
  uint64_t generation = 0;
};

class RadixTree {
 public:
  struct MatchResult {
    std::vector<int64_t> slots;  // one per matched token
    RadixNodeRef node;           // node holding the last matched token (root if none)
  };
  struct InsertResult {
    int64_t cached_len;  // leading tokens that were already in the tree
    RadixNodeRef node;   // node holding the last inserted token (root if none)
  };

  explicit RadixTree(int64_t page_size = 1);
  ~RadixTree();
  RadixTree(const RadixTree&) = delete;
  RadixTree& operator=(const RadixTree&) = delete;

  MatchResult match_prefix(const int32_t* tokens, int64_t n);
  // The tree keeps slots[cached_len:aligned_len]; slots[:cached_len] are duplicates of what it
  // already had (unless they are the very slots a match returned) and stay the caller's.
  InsertResult insert(const int32_t* tokens, const int64_t* slots, int64_t n);
  void lock(RadixNodeRef ref);
  void unlock(RadixNodeRef ref);
  // Evicts LRU unlocked leaves until at least num_tokens are freed or nothing is evictable.
  std::vector<int64_t> evict(int64_t num_tokens);
  // Drops every node (locked or not) and returns all their slots; old handles become stale.
  std::vector<int64_t> reset();

  RadixNodeRef root() const { return RadixNodeRef{0, generation_}; }
  int64_t page_size() const { return page_size_; }
  int64_t total_size() const { return evictable_size_ + protected_size_; }
  int64_t evictable_size() const { return evictable_size_; }
  int64_t protected_size() const { return protected_size_; }
  int64_t num_nodes() const { return static_cast<int64_t>(nodes_.size()); }  // without root
  int64_t lock_ref(RadixNodeRef ref) const;
  std::vector<int64_t> all_slots() const;  // every cached slot, depth-first order

 private:
  struct Node {
    std::vector<int32_t> key;
    std::vector<int64_t> value;
    Node* parent = nullptr;
    // Children keyed by their first page of tokens, as raw bytes (no allocation for page <= 3).
    std::unordered_map<std::string, std::unique_ptr<Node>> children;
    int64_t lock_ref = 0;
    uint64_t last_access = 0;
    uint64_t id = 0;
    bool in_lru = false;
    uint64_t lru_stamp = 0;  // last_access at the time it entered lru_
  };
  using LruKey = std::tuple<uint64_t, uint64_t, Node*>;  // (last_access, id, node)

  std::string page_key(const int32_t* tokens) const;
  int64_t match_len(const Node* node, const int32_t* tokens, int64_t n) const;
  Node* find(RadixNodeRef ref) const;
  Node* new_node(Node* parent);
  Node* split(Node* child, int64_t len);
  void touch(Node* node);
  void update_lru(Node* node);
  static void destroy(std::unique_ptr<Node> node);

  int64_t page_size_;
  std::unique_ptr<Node> root_;
  std::unordered_map<uint64_t, Node*> nodes_;  // id -> node, for handle lookups
  std::set<LruKey> lru_;                       // unlocked leaves, oldest first
  uint64_t clock_ = 0;
  uint64_t next_id_ = 1;
  uint64_t generation_ = 0;
  int64_t evictable_size_ = 0;
  int64_t protected_size_ = 0;
};

}  // namespace radixserve
