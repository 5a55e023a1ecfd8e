#include "cache/radix_tree.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace radixserve {

RadixTree::RadixTree(int64_t page_size) : page_size_(page_size), root_(new Node()) {
  if (page_size < 1) {
    throw std::invalid_argument("RadixTree: page_size must be >= 1, got " +
                                std::to_string(page_size));
  }
}

RadixTree::~RadixTree() { destroy(std::move(root_)); }

// Iterative teardown: a long chain of nodes would overflow the stack with recursive destructors.
void RadixTree::destroy(std::unique_ptr<Node> node) {
  std::vector<std::unique_ptr<Node>> stack;
  if (node) stack.push_back(std::move(node));
  while (!stack.empty()) {
    std::unique_ptr<Node> cur = std::move(stack.back());
    stack.pop_back();
    for (auto& kv : cur->children) stack.push_back(std::move(kv.second));
    cur->children.clear();
  }
}

std::string RadixTree::page_key(const int32_t* tokens) const {
  return std::string(reinterpret_cast<const char*>(tokens),
                     static_cast<size_t>(page_size_) * sizeof(int32_t));
}

// Length of the common prefix of node->key and tokens[0:n], in whole pages.
int64_t RadixTree::match_len(const Node* node, const int32_t* tokens, int64_t n) const {
  const int64_t limit = std::min<int64_t>(static_cast<int64_t>(node->key.size()), n);
  int64_t i = 0;
  while (i < limit && node->key[static_cast<size_t>(i)] == tokens[i]) ++i;
  return i / page_size_ * page_size_;
}

RadixTree::Node* RadixTree::find(RadixNodeRef ref) const {
  if (ref.id == 0) return root_.get();
  if (ref.generation != generation_) {
    throw std::invalid_argument("RadixTree: node handle is from before a reset()");
  }
  auto it = nodes_.find(ref.id);
  if (it == nodes_.end()) {
    throw std::invalid_argument("RadixTree: node handle refers to a node that was evicted");
  }
  return it->second;
}

RadixTree::Node* RadixTree::new_node(Node* parent) {
  auto* node = new Node();
  node->parent = parent;
  node->id = next_id_++;
  nodes_.emplace(node->id, node);
  return node;
}

// Splits `child` after its first `len` tokens: a new node takes the prefix and child's place
// under the parent; child keeps the suffix (and its timestamp, lock count and children).
RadixTree::Node* RadixTree::split(Node* child, int64_t len) {
  Node* parent = child->parent;
  std::unique_ptr<Node>& slot = parent->children[page_key(child->key.data())];
  std::unique_ptr<Node> owned = std::move(slot);
  Node* prefix = new_node(parent);
  slot.reset(prefix);
  prefix->key.assign(child->key.begin(), child->key.begin() + len);
  prefix->value.assign(child->value.begin(), child->value.begin() + len);
  prefix->lock_ref = child->lock_ref;
  prefix->last_access = child->last_access;
  child->key.erase(child->key.begin(), child->key.begin() + len);
  child->value.erase(child->value.begin(), child->value.begin() + len);
  child->parent = prefix;
  prefix->children.emplace(page_key(child->key.data()), std::move(owned));
  return prefix;
}

void RadixTree::touch(Node* node) {
  node->last_access = clock_;
  if (node->in_lru) update_lru(node);
}

// Re-files a node in the LRU set after its timestamp, lock count or children changed.
void RadixTree::update_lru(Node* node) {
  if (node->in_lru) {
    lru_.erase(LruKey{node->lru_stamp, node->id, node});
    node->in_lru = false;
  }
  if (node != root_.get() && node->children.empty() && node->lock_ref == 0) {
    lru_.emplace(node->last_access, node->id, node);
    node->in_lru = true;
    node->lru_stamp = node->last_access;
  }
}

RadixTree::MatchResult RadixTree::match_prefix(const int32_t* tokens, int64_t n) {
  if (n < 0) throw std::invalid_argument("RadixTree.match_prefix: negative length");
  ++clock_;
  n = n / page_size_ * page_size_;
  MatchResult res;
  Node* node = root_.get();
  int64_t pos = 0;
  while (pos < n) {
    auto it = node->children.find(page_key(tokens + pos));
    if (it == node->children.end()) break;
    Node* child = it->second.get();
    const int64_t m = match_len(child, tokens + pos, n - pos);
    const bool partial = m < static_cast<int64_t>(child->key.size());
    if (partial) child = split(child, m);
    res.slots.insert(res.slots.end(), child->value.begin(), child->value.end());
    touch(child);
    node = child;
    pos += m;
    if (partial) break;
  }
  res.node = RadixNodeRef{node == root_.get() ? 0 : node->id, generation_};
  return res;
}

RadixTree::InsertResult RadixTree::insert(const int32_t* tokens, const int64_t* slots, int64_t n) {
  if (n < 0) throw std::invalid_argument("RadixTree.insert: negative length");
  ++clock_;
  n = n / page_size_ * page_size_;
  Node* node = root_.get();
  int64_t pos = 0;
  while (pos < n) {
    auto it = node->children.find(page_key(tokens + pos));
    if (it == node->children.end()) break;
    Node* child = it->second.get();
    const int64_t m = match_len(child, tokens + pos, n - pos);
    if (m < static_cast<int64_t>(child->key.size())) child = split(child, m);
    touch(child);
    node = child;
    pos += m;
  }
  const int64_t cached = pos;
  if (pos < n) {
    Node* leaf = new_node(node);
    leaf->key.assign(tokens + pos, tokens + n);
    leaf->value.assign(slots + pos, slots + n);
    leaf->last_access = clock_;
    node->children.emplace(page_key(tokens + pos), std::unique_ptr<Node>(leaf));
    evictable_size_ += n - pos;
    update_lru(node);  // no longer a leaf
    update_lru(leaf);
    node = leaf;
  }
  return InsertResult{cached, RadixNodeRef{node == root_.get() ? 0 : node->id, generation_}};
}

void RadixTree::lock(RadixNodeRef ref) {
  for (Node* x = find(ref); x != root_.get(); x = x->parent) {
    if (x->lock_ref++ == 0) {
      const auto len = static_cast<int64_t>(x->key.size());
      evictable_size_ -= len;
      protected_size_ += len;
      update_lru(x);
    }
  }
}

void RadixTree::unlock(RadixNodeRef ref) {
  Node* node = find(ref);
  if (node == root_.get()) return;
  // Locks cover whole paths, so a locked node's ancestors are locked too: one check suffices.
  if (node->lock_ref <= 0) throw std::invalid_argument("RadixTree.unlock: node is not locked");
  for (Node* x = node; x != root_.get(); x = x->parent) {
    if (--x->lock_ref == 0) {
      const auto len = static_cast<int64_t>(x->key.size());
      protected_size_ -= len;
      evictable_size_ += len;
      update_lru(x);
    }
  }
}

std::vector<int64_t> RadixTree::evict(int64_t num_tokens) {
  if (num_tokens < 0) throw std::invalid_argument("RadixTree.evict: num_tokens must be >= 0");
  std::vector<int64_t> out;
  while (static_cast<int64_t>(out.size()) < num_tokens && !lru_.empty()) {
    Node* leaf = std::get<2>(*lru_.begin());
    lru_.erase(lru_.begin());
    leaf->in_lru = false;
    out.insert(out.end(), leaf->value.begin(), leaf->value.end());
    evictable_size_ -= static_cast<int64_t>(leaf->key.size());
    Node* parent = leaf->parent;
    nodes_.erase(leaf->id);
    parent->children.erase(page_key(leaf->key.data()));  // destroys the leaf
    update_lru(parent);
  }
  return out;
}

std::vector<int64_t> RadixTree::reset() {
  std::vector<int64_t> out = all_slots();
  std::unique_ptr<Node> old = std::move(root_);
  root_.reset(new Node());
  destroy(std::move(old));
  nodes_.clear();
  lru_.clear();
  evictable_size_ = 0;
  protected_size_ = 0;
  ++generation_;
  return out;
}

int64_t RadixTree::lock_ref(RadixNodeRef ref) const { return find(ref)->lock_ref; }

std::vector<int64_t> RadixTree::all_slots() const {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(total_size()));
  std::vector<const Node*> stack{root_.get()};
  while (!stack.empty()) {
    const Node* cur = stack.back();
    stack.pop_back();
    out.insert(out.end(), cur->value.begin(), cur->value.end());
    for (const auto& kv : cur->children) stack.push_back(kv.second.get());
  }
  return out;
}

}  // namespace radixserve
