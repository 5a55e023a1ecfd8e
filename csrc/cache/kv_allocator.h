// KV slot allocator: hands out KV-cache slot indices in pages of `page_size` slots.
//
// Layout: page k holds slots [k * page_size, (k + 1) * page_size). Page 0 is reserved so that
// slot 0 stays a padding sink that attention kernels may read and write freely. The usable
// pages are 1 .. num_slots / page_size - 1: the KV tensors have `num_slots` rows (a multiple of
// page_size) and size() = num_slots - page_size slots are usable. With page_size 1 that is the
// plain "slots 1 .. num_slots - 1".
//
// alloc(n) takes ceil(n / page_size) whole pages and returns all their slots (n rounded up to
// whole pages), or fails without side effects. free(slots) frees every page that contains at
// least one of the given slots (several slots of one page in one call free it once); freeing a
// page that is not in use or a slot outside the usable range throws std::invalid_argument
// (ValueError in Python) and frees nothing. With page_size 1 a repeated slot is a double free.
#pragma once

#include <cstdint>
#include <vector>

namespace radixserve {

class KVAllocator {
 public:
  KVAllocator(int64_t num_slots, int64_t page_size = 1);

  // Appends the slots of ceil(n / page_size) pages to `out`, in page order of hand-out
  // (most recently freed first); returns false and leaves everything unchanged when short.
  bool alloc(int64_t n, std::vector<int64_t>& out);
  void free(const int64_t* slots, int64_t n);
  void reset();

  int64_t available() const { return static_cast<int64_t>(free_pages_.size()) * page_size_; }
  int64_t size() const { return size_; }
  int64_t page_size() const { return page_size_; }
  int64_t num_slots() const { return size_ + page_size_; }
  // Every free slot, in no particular order (for tests and accounting).
  std::vector<int64_t> free_slots() const;

 private:
  enum : uint8_t { kInUse = 0, kFree = 1, kFreeing = 2 };

  int64_t size_;
  int64_t page_size_;
  int64_t num_pages_;                // usable pages: 1 .. num_pages_
  std::vector<int64_t> free_pages_;  // a stack: back() is handed out next
  std::vector<uint8_t> state_;       // per page (index 0 unused): kInUse / kFree / kFreeing
};

}  // namespace radixserve
